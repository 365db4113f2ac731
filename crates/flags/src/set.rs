//! Sets of flags: an immutable [`FlagSet`] snapshot and the live [`Flags`] handle.

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::{Evaluation, Flag, Reason};

type Hasher = foldhash::fast::RandomState;

/// An immutable set of flags, indexed by name.
#[derive(Debug, Clone, Default)]
pub struct FlagSet {
    by_name: HashMap<Box<str>, Flag, Hasher>,
}

impl FlagSet {
    /// Indexes `flags` by name; a later flag with the same name replaces an earlier one. A flag
    /// whose `rollout_pct` is out of range is kept (it evaluates to off) and reported with a
    /// warning, so one bad legacy row cannot take every other flag down; so is a flag that fails
    /// [`Flag::validate`] (a control character in its name, an empty or `,`-holding tenant),
    /// which evaluates as stored.
    pub fn new(flags: impl IntoIterator<Item = Flag>) -> Self {
        let mut by_name: HashMap<Box<str>, Flag, Hasher> = HashMap::default();
        for flag in flags {
            if let Err(problem) = flag.validate() {
                // Written by plain SQL (every other write path refuses it): served as stored,
                // since callers that name the flag exactly and tenants that match still work.
                tracing::warn!(%problem, "feature flag is served as stored; correct it");
            }
            if !flag.has_valid_rollout() {
                tracing::warn!(
                    flag = %flag.name,
                    rollout_pct = flag.rollout_pct,
                    "feature flag has a rollout_pct outside 0..=100 and is treated as disabled"
                );
            }
            by_name.insert(flag.name.clone().into_boxed_str(), flag);
        }
        Self { by_name }
    }

    /// The flag named `name`.
    #[inline]
    pub fn get(&self, name: &str) -> Option<&Flag> {
        self.by_name.get(name)
    }

    /// Every flag, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Flag> {
        self.by_name.values()
    }

    /// The number of flags.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether the set holds no flag.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Flags that evaluate to off because their stored values are invalid.
    pub fn invalid(&self) -> impl Iterator<Item = &Flag> {
        self.by_name
            .values()
            .filter(|flag| !flag.has_valid_rollout())
    }
}

impl FromIterator<Flag> for FlagSet {
    fn from_iter<I: IntoIterator<Item = Flag>>(iter: I) -> Self {
        Self::new(iter)
    }
}

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
#[derive(Debug, Clone, Default)]
pub struct Flags {
    inner: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    current: ArcSwap<FlagSet>,
    /// Unknown names already reported, so each is logged once rather than on every request.
    reported_unknown: Mutex<HashSet<Box<str>>>,
}

impl Flags {
    /// Live flags starting from `set`.
    pub fn new(set: FlagSet) -> Self {
        Self {
            inner: Arc::new(Shared {
                current: ArcSwap::from_pointee(set),
                reported_unknown: Mutex::default(),
            }),
        }
    }

    /// Whether flag `name` is on for `tenant_id`. An unknown flag is off.
    #[inline]
    pub fn is_enabled(&self, name: &str, tenant_id: &str) -> bool {
        self.evaluate(name, tenant_id).enabled
    }

    /// Evaluates flag `name` for `tenant_id`, with the reason.
    pub fn evaluate(&self, name: &str, tenant_id: &str) -> Evaluation {
        let set = self.inner.current.load();
        if let Some(flag) = set.get(name) {
            return flag.evaluate(tenant_id);
        }
        self.report_unknown(name);
        Evaluation {
            enabled: false,
            reason: Reason::NotFound,
        }
    }

    #[cold]
    fn report_unknown(&self, name: &str) {
        // A poisoned lock only means another thread panicked while logging; the set is still valid.
        let mut reported = self
            .inner
            .reported_unknown
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !reported.contains(name) {
            tracing::debug!(flag = name, "unknown feature flag evaluated as off");
            reported.insert(name.into());
        }
    }

    /// The current set, for listing and admin views.
    pub fn snapshot(&self) -> Arc<FlagSet> {
        self.inner.current.load_full()
    }

    /// Replaces the whole set; readers see the old or the new set, never a mix.
    pub fn replace(&self, set: FlagSet) {
        self.inner.current.store(Arc::new(set));
    }
}
