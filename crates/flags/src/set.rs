//! Sets of flags: an immutable [`FlagSet`] snapshot and the live [`Flags`] handle.

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::{ArcSwap, Guard};

use crate::{Context, Evaluation, Flag, Reason, Resolution, Variant};

type Hasher = foldhash::fast::RandomState;

/// A flag with its usage counters: `[off, on]`, or `[off, variant 0, variant 1, ...]`.
#[derive(Debug, Clone)]
struct Entry {
    flag: Flag,
    counters: Box<[Arc<AtomicU64>]>,
}

impl Entry {
    fn new(flag: Flag) -> Self {
        let outcomes = 1 + flag.variants.len().max(1);
        let counters = (0..outcomes).map(|_| Arc::default()).collect();
        Self { flag, counters }
    }

    /// The label of counter `index`: `off`, `on`, or the variant's name.
    fn outcome(&self, index: usize) -> &str {
        match (index, self.flag.variants.is_empty()) {
            (0, _) => "off",
            (_, true) => "on",
            (i, false) => self
                .flag
                .variants
                .get(i - 1)
                .map_or("on", |v| v.name.as_str()),
        }
    }

    #[inline]
    fn count(&self, resolution: &Resolution<'_>) {
        let index = match (resolution.enabled, resolution.variant_index) {
            (false, _) => 0,
            (true, None) => 1,
            (true, Some(i)) => 1 + i,
        };
        if let Some(counter) = self.counters.get(index) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An immutable set of flags, indexed by name.
#[derive(Debug, Clone, Default)]
pub struct FlagSet {
    entries: Vec<Entry>,
    by_name: HashMap<Box<str>, usize, Hasher>,
}

impl FlagSet {
    /// Indexes `flags` by name; a later flag with the same name replaces an earlier one. A flag
    /// whose `rollout_pct` is out of range is kept (it evaluates to off) and reported with a
    /// warning, so one bad legacy row cannot take every other flag down; so is a flag that fails
    /// [`Flag::validate`] (a control character in its name, an empty or `,`-holding tenant),
    /// which evaluates as stored, and one that fails [`Flag::validate_targeting`], which
    /// evaluates to off ([`Reason::InvalidConfig`]). The loaders (table, file) refuse the
    /// latter before it gets here.
    pub fn new(flags: impl IntoIterator<Item = Flag>) -> Self {
        let mut entries: Vec<Entry> = Vec::new();
        let mut by_name: HashMap<Box<str>, usize, Hasher> = HashMap::default();
        for flag in flags {
            if let Err(problem) = flag.validate() {
                // Written by plain SQL (every other write path refuses it): served as stored,
                // since callers that name the flag exactly and tenants that match still work.
                tracing::warn!(%problem, "feature flag is served as stored; correct it");
            }
            if let Err(problem) = flag.validate_targeting() {
                tracing::warn!(%problem, "feature flag is treated as off; correct it");
            }
            if !flag.has_valid_rollout() {
                tracing::warn!(
                    flag = %flag.name,
                    rollout_pct = flag.rollout_pct,
                    "feature flag has a rollout_pct outside 0..=100 and is treated as disabled"
                );
            }
            let entry = Entry::new(flag);
            if let Some(&index) = by_name.get(entry.flag.name.as_str()) {
                entries[index] = entry;
            } else {
                by_name.insert(entry.flag.name.clone().into_boxed_str(), entries.len());
                entries.push(entry);
            }
        }
        Self { entries, by_name }
    }

    #[inline]
    fn entry(&self, name: &str) -> Option<&Entry> {
        self.by_name.get(name).and_then(|&i| self.entries.get(i))
    }

    /// The flag named `name`.
    #[inline]
    pub fn get(&self, name: &str) -> Option<&Flag> {
        self.entry(name).map(|entry| &entry.flag)
    }

    /// Every flag, in the order given (a later duplicate takes the earlier one's place).
    pub fn iter(&self) -> impl Iterator<Item = &Flag> {
        self.entries.iter().map(|entry| &entry.flag)
    }

    /// The number of flags.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set holds no flag.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Flags that evaluate to off because their stored values are invalid.
    pub fn invalid(&self) -> impl Iterator<Item = &Flag> {
        self.iter()
            .filter(|flag| !flag.has_valid_rollout() || flag.validate_targeting().is_err())
    }

    /// The names of flags that differ between `self` and `other` (added, removed or changed).
    pub fn changed_names(&self, other: &FlagSet) -> Vec<String> {
        let mut names: Vec<String> = self
            .iter()
            .filter(|flag| other.get(&flag.name) != Some(*flag))
            .chain(other.iter().filter(|flag| self.get(&flag.name).is_none()))
            .map(|flag| flag.name.clone())
            .collect();
        names.sort_unstable();
        names
    }
}

impl FromIterator<Flag> for FlagSet {
    fn from_iter<I: IntoIterator<Item = Flag>>(iter: I) -> Self {
        Self::new(iter)
    }
}

/// How often one flag evaluated to one outcome through a [`Flags`] handle since it was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagUsage {
    /// The flag's name.
    pub flag: String,
    /// `on` or `off` for a flag without variants; the variant's name, or `off`, for one with.
    pub variant: String,
    /// Evaluations with this outcome. Monotonic: reloads and deletions keep the count.
    pub count: u64,
}

/// What [`Flags::on_change`] listeners are told when the set is replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagsChanged {
    /// The flags added, removed or changed, sorted by name.
    pub flags_changed: Vec<String>,
}

type Listener = Arc<dyn Fn(&FlagsChanged) + Send + Sync>;

/// Usage counters by flag name and outcome.
type CounterRegistry = HashMap<(Box<str>, Box<str>), Arc<AtomicU64>, Hasher>;

/// The live flags of a service: lock-free reads of the current [`FlagSet`], replaced whole when
/// the source changes.
///
/// Cloning is cheap and clones share the set. Evaluations neither lock nor allocate.
///
/// ```
/// use groundwork_flags::{Flag, FlagSet, Flags};
///
/// let flags = Flags::new(FlagSet::new([Flag { enabled: true, ..Flag::new("admin.v2") }]));
/// assert!(flags.is_enabled("admin.v2", "tenant-1"));
/// assert!(!flags.is_enabled("no.such.flag", "tenant-1"));
/// ```
#[derive(Clone, Default)]
pub struct Flags {
    inner: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    current: ArcSwap<FlagSet>,
    /// Unknown names already reported, so each is logged once rather than on every request.
    reported_unknown: Mutex<HashSet<Box<str>>>,
    /// Every usage counter by flag and outcome, handed from set to set so counts survive reloads.
    counters: Mutex<CounterRegistry>,
    /// Evaluations of names no flag has.
    unknown: AtomicU64,
    listeners: Mutex<Vec<Listener>>,
}

impl std::fmt::Debug for Flags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flags")
            .field("current", &self.inner.current.load())
            .finish_non_exhaustive()
    }
}

/// A flag's resolution through a [`Flags`] handle, holding the set it was resolved in (so the
/// variant can be borrowed) without allocating.
pub struct Resolved {
    set: Guard<Arc<FlagSet>>,
    entry: Option<usize>,
    /// Whether the feature is on.
    pub enabled: bool,
    /// Why.
    pub reason: Reason,
    variant: Option<usize>,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("enabled", &self.enabled)
            .field("reason", &self.reason)
            .field("variant", &self.variant())
            .finish_non_exhaustive()
    }
}

impl Resolved {
    /// The flag resolved; `None` for an unknown name.
    pub fn flag(&self) -> Option<&Flag> {
        self.entry
            .and_then(|i| self.set.entries.get(i))
            .map(|entry| &entry.flag)
    }

    /// The variant served, if the flag is on and has variants.
    pub fn variant(&self) -> Option<&Variant> {
        self.flag()
            .zip(self.variant)
            .and_then(|(flag, i)| flag.variants.get(i))
    }

    /// The variant's name: the variant served, else `on` or `off`.
    pub fn variant_name(&self) -> &str {
        match self.variant() {
            Some(variant) => &variant.name,
            None if self.enabled => "on",
            None => "off",
        }
    }
}

impl Flags {
    /// Live flags starting from `set`.
    pub fn new(set: FlagSet) -> Self {
        let flags = Self::default();
        flags.replace(set);
        flags
    }

    /// Whether flag `name` is on for `tenant_id`. An unknown flag is off.
    #[inline]
    pub fn is_enabled(&self, name: &str, tenant_id: &str) -> bool {
        self.evaluate(name, tenant_id).enabled
    }

    /// Evaluates flag `name` for `tenant_id` (no other attribute), with the reason.
    #[inline]
    pub fn evaluate(&self, name: &str, tenant_id: &str) -> Evaluation {
        let resolved = self.resolve(name, &Context::new(tenant_id));
        Evaluation {
            enabled: resolved.enabled,
            reason: resolved.reason,
        }
    }

    /// Resolves flag `name` for `context`: on or off, why, and the variant. Counts the outcome
    /// (see [`Flags::usage`]); never locks or allocates once an unknown name has been reported.
    ///
    /// ```
    /// use groundwork_flags::{Attribute, Context, Flag, FlagSet, Flags, Operator, Rule, Variant};
    ///
    /// let flags = Flags::new(FlagSet::new([Flag {
    ///     enabled: true,
    ///     rules: vec![Rule::new("plan", Operator::In, vec!["gold".into(), "platinum".into()])],
    ///     variants: vec![Variant::new("blue", 50), Variant::new("green", 50)],
    ///     ..Flag::new("checkout.button")
    /// }]));
    /// let gold = [("plan", Attribute::Str("gold"))];
    /// let resolved = flags.resolve("checkout.button", &Context::new("tenant-1").with_attributes(&gold));
    /// assert!(resolved.enabled);
    /// assert_eq!(resolved.variant_name(), "green"); // variant point 58: past blue's 50
    /// ```
    #[inline]
    pub fn resolve(&self, name: &str, context: &Context<'_>) -> Resolved {
        let set = self.inner.current.load();
        if let Some(&index) = set.by_name.get(name)
            && let Some(entry) = set.entries.get(index)
        {
            let resolution = entry.flag.resolve(context);
            entry.count(&resolution);
            let (enabled, reason, variant) = (
                resolution.enabled,
                resolution.reason,
                resolution.variant_index,
            );
            return Resolved {
                set,
                entry: Some(index),
                enabled,
                reason,
                variant,
            };
        }
        self.report_unknown(name);
        Resolved {
            set,
            entry: None,
            enabled: false,
            reason: Reason::NotFound,
            variant: None,
        }
    }

    #[cold]
    fn report_unknown(&self, name: &str) {
        self.inner.unknown.fetch_add(1, Ordering::Relaxed);
        // A poisoned lock only means another thread panicked while logging; the set is still valid.
        let mut reported = self
            .inner
            .reported_unknown
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !reported.contains(name) {
            tracing::debug!(flag = name, "unknown feature flag evaluated as off");
            reported.insert(name.into());
        }
    }

    /// The current set, for listing and admin views.
    pub fn snapshot(&self) -> Arc<FlagSet> {
        self.inner.current.load_full()
    }

    /// Replaces the whole set; readers see the old or the new set, never a mix. Usage counts
    /// carry over by flag and outcome name; [`Flags::on_change`] listeners are called on this
    /// thread when any flag differs.
    pub fn replace(&self, mut set: FlagSet) {
        self.adopt_counters(&mut set);
        let set = Arc::new(set);
        let old = self.inner.current.swap(Arc::clone(&set));
        let listeners: Vec<Listener> = self
            .inner
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if listeners.is_empty() {
            return;
        }
        let flags_changed = old.changed_names(&set);
        if flags_changed.is_empty() {
            return;
        }
        let change = FlagsChanged { flags_changed };
        for listener in listeners {
            listener(&change);
        }
    }

    /// Gives every counter of `set` the registry's counter of the same flag and outcome, so that
    /// counts continue across reloads.
    fn adopt_counters(&self, set: &mut FlagSet) {
        let mut registry = self
            .inner
            .counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for entry in &mut set.entries {
            let mut counters = std::mem::take(&mut entry.counters).into_vec();
            for (index, counter) in counters.iter_mut().enumerate() {
                let key = (
                    Box::<str>::from(entry.flag.name.as_str()),
                    Box::<str>::from(entry.outcome(index)),
                );
                *counter = Arc::clone(registry.entry(key).or_default());
            }
            entry.counters = counters.into_boxed_slice();
        }
    }

    /// Calls `listener` after every [`Flags::replace`] that changes a flag (from the table's
    /// feed, the file source, or code), with the names of the flags that changed. It runs on the
    /// replacing thread, so it must be quick: send to a channel rather than do work.
    pub fn on_change(&self, listener: impl Fn(&FlagsChanged) + Send + Sync + 'static) {
        self.inner
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::new(listener));
    }

    /// Evaluation counts by flag and outcome since this handle was created, sorted by flag and
    /// outcome; reading them does not slow evaluations down (each is one relaxed atomic
    /// increment). Flags that were deleted keep their last count.
    pub fn usage(&self) -> Vec<FlagUsage> {
        let registry = self
            .inner
            .counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut usage: Vec<FlagUsage> = registry
            .iter()
            .map(|((flag, variant), count)| FlagUsage {
                flag: flag.to_string(),
                variant: variant.to_string(),
                count: count.load(Ordering::Relaxed),
            })
            .collect();
        usage.sort_unstable_by(|a, b| (&a.flag, &a.variant).cmp(&(&b.flag, &b.variant)));
        usage
    }

    /// Evaluations of names no flag has, since this handle was created.
    pub fn unknown_evaluations(&self) -> u64 {
        self.inner.unknown.load(Ordering::Relaxed)
    }
}
