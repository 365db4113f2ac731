//! Sets of flags: an immutable [`FlagSet`] snapshot and the live [`Flags`] handle.

use std::cell::RefCell;
use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::{ArcSwap, Guard};

use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::{Context, Evaluation, Flag, Reason, Resolution, Variant, bucket};

type Hasher = foldhash::fast::RandomState;

/// A flag with its usage counters: `[off, on]`, or `[off, variant 0, variant 1, ...]`.
#[derive(Debug, Clone)]
struct Entry {
    flag: Flag,
    /// The decision of a flag without rules or variants, worked out once when the set is built.
    plain: Option<Plain>,
    counters: Box<[Arc<AtomicU64>]>,
}

/// What a flag without rules or variants needs at evaluation time: [`Flag::resolve`]'s answer
/// for it, with everything that does not depend on the tenant decided in advance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plain {
    /// Off for everyone: disabled, or `rollout_pct` out of range.
    Off(Reason),
    /// `bucket(tenant, name) < pct`.
    Split(u32),
    /// At 100% with a non-empty whitelist: on for the tenants listed.
    Whitelist,
    /// At 100%, no whitelist: on for everyone.
    On,
}

impl Plain {
    fn of(flag: &Flag) -> Option<Self> {
        if !flag.rules.is_empty() || !flag.variants.is_empty() {
            return None;
        }
        Some(if !flag.enabled {
            Self::Off(Reason::Disabled)
        } else if !flag.has_valid_rollout() {
            Self::Off(Reason::InvalidRollout)
        } else if let Ok(pct @ 0..100) = u32::try_from(flag.rollout_pct) {
            Self::Split(pct)
        } else if flag.whitelist.as_ref().is_some_and(|w| !w.is_empty()) {
            Self::Whitelist
        } else {
            Self::On
        })
    }
}

impl Entry {
    fn new(flag: Flag) -> Self {
        let outcomes = 1 + flag.variants.len().max(1);
        let counters = (0..outcomes).map(|_| Arc::default()).collect();
        Self {
            plain: Plain::of(&flag),
            flag,
            counters,
        }
    }

    /// [`Flag::evaluate`] for `tenant_id`, counted, without building a [`Resolution`] for a
    /// flag without rules or variants.
    #[inline]
    fn evaluate(&self, tenant_id: &str) -> Evaluation {
        let (enabled, reason) = match self.plain {
            Some(Plain::Split(pct)) => (bucket(tenant_id, &self.flag.name) < pct, Reason::Split),
            Some(Plain::On) => (true, Reason::Static),
            Some(Plain::Off(reason)) => (false, reason),
            Some(Plain::Whitelist) => (
                self.flag
                    .whitelist
                    .as_deref()
                    .is_some_and(|w| w.iter().any(|t| t == tenant_id)),
                Reason::TargetingMatch,
            ),
            None => {
                let resolution = self.flag.resolve(&Context::new(tenant_id));
                self.count(&resolution);
                return Evaluation {
                    enabled: resolution.enabled,
                    reason: resolution.reason,
                };
            }
        };
        if let Some(counter) = self.counters.get(usize::from(enabled)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        Evaluation { enabled, reason }
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
#[derive(Clone, Default)]
pub struct FlagSet {
    entries: Vec<Entry>,
    /// Positions in `entries`, by the hash of the flag's name under `hasher`.
    by_name: HashTable<usize>,
    hasher: Hasher,
}

impl std::fmt::Debug for FlagSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlagSet")
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

/// Whether two flag names are equal, compared eight bytes at a time inline: names are short,
/// and a call to the C library's `memcmp` costs more than the comparison.
#[inline]
fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    if a.len() < 8 {
        return a == b;
    }
    let word = |bytes: &[u8], at: usize| {
        bytes
            .get(at..at + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            .map(u64::from_ne_bytes)
    };
    let last = a.len() - 8;
    let mut at = 0;
    while at < last {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    word(a, last) == word(b, last)
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
        let mut by_name: HashTable<usize> = HashTable::new();
        let hasher = Hasher::default();
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
            let hash = hasher.hash_one(entry.flag.name.as_str());
            let same = |&i: &usize| {
                entries
                    .get(i)
                    .is_some_and(|e: &Entry| e.flag.name == entry.flag.name)
            };
            if let Some(&index) = by_name.find(hash, same) {
                entries[index] = entry;
            } else {
                let index = entries.len();
                entries.push(entry);
                by_name.insert_unique(hash, index, |&i| {
                    entries
                        .get(i)
                        .map_or(0, |e| hasher.hash_one(e.flag.name.as_str()))
                });
            }
        }
        Self {
            entries,
            by_name,
            hasher,
        }
    }

    /// The position of flag `name` in `entries`.
    #[inline]
    fn index(&self, name: &str) -> Option<usize> {
        let hash = self.hasher.hash_one(name);
        self.by_name
            .find(hash, |&i| {
                self.entries
                    .get(i)
                    .is_some_and(|e| same_name(&e.flag.name, name))
            })
            .copied()
    }

    #[inline]
    fn entry(&self, name: &str) -> Option<&Entry> {
        self.index(name).and_then(|i| self.entries.get(i))
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

struct Shared {
    current: ArcSwap<FlagSet>,
    /// The address of the set in `current`, written after it under `replacing`: what a thread's
    /// cached set (see [`CACHED`]) is checked against, with one plain load.
    current_ptr: AtomicPtr<FlagSet>,
    /// Held while `current` and `current_ptr` change, so concurrent replacements cannot leave
    /// `current_ptr` at an older set than `current`.
    replacing: Mutex<()>,
    /// Unknown names already reported, so each is logged once rather than on every request.
    reported_unknown: Mutex<HashSet<Box<str>>>,
    /// Every usage counter by flag and outcome, handed from set to set so counts survive reloads.
    counters: Mutex<CounterRegistry>,
    /// Evaluations of names no flag has.
    unknown: AtomicU64,
    listeners: Mutex<Vec<Listener>>,
}

impl Default for Shared {
    fn default() -> Self {
        let set = Arc::new(FlagSet::default());
        Self {
            current_ptr: AtomicPtr::new(Arc::as_ptr(&set).cast_mut()),
            current: ArcSwap::new(set),
            replacing: Mutex::default(),
            reported_unknown: Mutex::default(),
            counters: Mutex::default(),
            unknown: AtomicU64::default(),
            listeners: Mutex::default(),
        }
    }
}

thread_local! {
    /// The set this thread last evaluated a flag in, through any [`Flags`] handle. It is used
    /// while it is still its handle's current set (its address equals the handle's
    /// `current_ptr`; holding it keeps that address from being reused), so an evaluation reads
    /// the current set with one plain load instead of arc-swap's two atomic read-modify-writes
    /// (taking and returning a debt slot). A thread keeps its last set alive until it evaluates
    /// again or exits.
    static CACHED: RefCell<Option<Arc<FlagSet>>> = const { RefCell::new(None) };
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
        let found = CACHED
            .try_with(|cached| {
                // Busy only if evaluating re-entered itself (a tracing subscriber evaluating a
                // flag); that evaluation takes the path below.
                let mut cached = cached.try_borrow_mut().ok()?;
                let current = self.inner.current_ptr.load(Ordering::Acquire);
                if !cached
                    .as_ref()
                    .is_some_and(|set| std::ptr::eq(Arc::as_ptr(set), current))
                {
                    *cached = Some(self.inner.current.load_full());
                }
                let set = cached.as_deref()?;
                Some(set.entry(name).map(|entry| entry.evaluate(tenant_id)))
            })
            .ok()
            .flatten()
            .unwrap_or_else(|| {
                self.inner
                    .current
                    .load()
                    .entry(name)
                    .map(|entry| entry.evaluate(tenant_id))
            });
        if let Some(evaluation) = found {
            return evaluation;
        }
        self.report_unknown(name);
        Evaluation {
            enabled: false,
            reason: Reason::NotFound,
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
        if let Some(index) = set.index(name)
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
        let old = {
            let _replacing = self
                .inner
                .replacing
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let old = self.inner.current.swap(Arc::clone(&set));
            self.inner
                .current_ptr
                .store(Arc::as_ptr(&set).cast_mut(), Ordering::Release);
            old
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The precomputed decision of flags without rules or variants answers like
    /// [`Flag::evaluate`] for every state, and counts the same outcome.
    #[test]
    fn plain_flags_evaluate_like_the_flag() {
        let tenants = ["tenant-1", "tenant-7", "acme-logistics", ""];
        let mut flags = Vec::new();
        for enabled in [false, true] {
            for rollout_pct in [-1, 0, 5, 30, 99, 100, 101] {
                for whitelist in [None, Some(vec![]), Some(vec!["tenant-7".to_owned()])] {
                    flags.push(Flag {
                        enabled,
                        rollout_pct,
                        whitelist,
                        ..Flag::new(format!("flag.{}.{rollout_pct}.{}", enabled, flags.len()))
                    });
                }
            }
        }
        let live = Flags::new(FlagSet::new(flags.clone()));
        for flag in &flags {
            assert!(Plain::of(flag).is_some(), "{flag:?}");
            for tenant in tenants {
                assert_eq!(
                    live.evaluate(&flag.name, tenant),
                    flag.evaluate(tenant),
                    "{flag:?} for {tenant:?}"
                );
            }
        }
        for usage in live.usage() {
            let flag = flags
                .iter()
                .find(|f| f.name == usage.flag)
                .map(|f| tenants.iter().filter(|t| f.is_enabled_for(t)).count());
            let on = u64::try_from(flag.unwrap_or_default()).unwrap_or_default();
            let expected = if usage.variant == "on" { on } else { 4 - on };
            assert_eq!(usage.count, expected, "{usage:?}");
        }
    }

    /// The set a thread keeps from its last evaluation is used only while it is its handle's
    /// current one: two handles evaluated in turn on one thread, and replacements made by another
    /// thread, each answer from their own current set.
    #[test]
    fn evaluations_follow_the_current_set_of_each_handle() {
        let on = |enabled| {
            FlagSet::new([Flag {
                enabled,
                ..Flag::new("admin.v2")
            }])
        };
        let (a, b) = (Flags::new(on(true)), Flags::new(on(false)));
        for round in 0..4 {
            let enabled = round % 2 == 0;
            assert_eq!(
                a.is_enabled("admin.v2", "tenant-1"),
                enabled,
                "a, round {round}"
            );
            assert_eq!(
                b.is_enabled("admin.v2", "tenant-1"),
                !enabled,
                "b, round {round}"
            );
            let (next_a, next_b) = (on(!enabled), on(enabled));
            std::thread::scope(|scope| {
                scope.spawn(|| a.replace(next_a));
                scope.spawn(|| b.replace(next_b));
            });
        }
        assert!(!Flags::default().is_enabled("admin.v2", "tenant-1"));
        assert!(a.is_enabled("admin.v2", "tenant-1"));
    }

    #[test]
    fn names_compare_whole() {
        for (a, b, same) in [
            ("", "", true),
            ("a", "a", true),
            ("a", "b", false),
            ("billing.pdf-export", "billing.pdf-export", true),
            ("billing.pdf-export", "billing.csv-export", false),
            ("orders.v2.enabled", "orders.v3.enabled", false),
            ("12345678", "12345678", true),
            ("12345678", "12345679", false),
            ("123456789", "023456789", false),
            ("supplier.realtime.sync", "supplier.realtime.sync", true),
            ("supplier.realtime.sync", "supplier.realtime.synd", false),
            ("supplier.realtime.sync", "supplier.realtime.syn", false),
        ] {
            assert_eq!(same_name(a, b), same, "{a:?} {b:?}");
        }
    }
}
