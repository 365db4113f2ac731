//! `Setting`: a typed, live view of one key.

use std::fmt;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::de::DeserializeOwned;

use super::lock;
use super::snapshot::ConfigSnapshot;

/// A typed, live view of one key, from [`LiveConfig::setting`](super::LiveConfig::setting). Cloning shares the view.
pub struct Setting<T> {
    pub(super) slot: Arc<Slot<T>>,
}

impl<T> Clone for Setting<T> {
    fn clone(&self) -> Self {
        Self {
            slot: Arc::clone(&self.slot),
        }
    }
}

impl<T> fmt::Debug for Setting<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Setting")
            .field("key", &self.slot.key)
            .field("type", &std::any::type_name::<T>())
            .finish_non_exhaustive()
    }
}

impl<T> Setting<T> {
    /// The current value.
    #[inline]
    pub fn get(&self) -> Arc<T> {
        self.slot.value.load_full()
    }

    /// Calls `read` with the current value, without touching its reference count: the cheapest
    /// read when many threads read the same setting.
    #[inline]
    pub fn with<R>(&self, read: impl FnOnce(&T) -> R) -> R {
        read(&self.slot.value.load())
    }

    /// The key this setting follows.
    pub fn key(&self) -> &str {
        &self.slot.key
    }
}

pub(super) struct Slot<T> {
    pub(super) key: String,
    pub(super) default: Arc<T>,
    pub(super) value: ArcSwap<T>,
    /// The revision of the entry last looked at; `None` when the key was absent.
    pub(super) seen: Mutex<Option<i64>>,
}

pub(super) trait Refresh: Send + Sync {
    fn refresh(&self, snapshot: &ConfigSnapshot);
}

impl<T: DeserializeOwned + Send + Sync + 'static> Refresh for Slot<T> {
    fn refresh(&self, snapshot: &ConfigSnapshot) {
        let mut seen = lock(&self.seen);
        let revision = snapshot.entry(&self.key).map(|e| e.revision);
        if *seen == revision && revision.is_some() {
            return;
        }
        *seen = revision;
        let value = snapshot
            .get::<T>(&self.key)
            .unwrap_or_else(|| Arc::clone(&self.default));
        self.value.store(value);
    }
}
