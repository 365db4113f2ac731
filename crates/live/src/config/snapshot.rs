//! `ConfigSnapshot`: one environment's values at one moment.

use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;

use super::decode::{Problems, Stored};
use super::shards::Keys;
use super::{ConfigEntry, lock};

/// An immutable view of one environment's values, indexed by key, with a cache of each value
/// decoded into the types it has been read as.
#[derive(Debug, Clone, Default)]
pub struct ConfigSnapshot {
    pub(super) env: String,
    pub(super) by_key: Keys,
    pub(super) problems: Arc<Mutex<Problems>>,
}

impl ConfigSnapshot {
    /// Indexes `entries` of environment `env` by key; a later entry with the same key replaces an
    /// earlier one.
    pub fn new(env: impl Into<String>, entries: impl IntoIterator<Item = ConfigEntry>) -> Self {
        let by_key = entries
            .into_iter()
            .map(|entry| (Arc::from(entry.key.as_str()), Stored::new(entry)))
            .collect();
        Self {
            env: env.into(),
            by_key,
            problems: Arc::default(),
        }
    }

    /// The environment these values belong to.
    pub fn env(&self) -> &str {
        &self.env
    }

    /// The value of `key` decoded as `T`: decoded on the first read after each change and
    /// cached, so later reads cost a lookup. When the current value does not decode as `T`, the
    /// last revision that did is returned (and the problem logged once and listed in
    /// [`LiveConfig::problems`](super::LiveConfig::problems)); `None` when the key is absent or never decoded as `T`.
    #[inline]
    pub fn get<T: DeserializeOwned + Send + Sync + 'static>(&self, key: &str) -> Option<Arc<T>> {
        self.by_key.get(key)?.get::<T>(&self.problems)
    }

    /// The entry for `key`.
    #[inline]
    pub fn entry(&self, key: &str) -> Option<&ConfigEntry> {
        self.by_key.get(key).map(|stored| &*stored.entry)
    }

    /// The raw value of `key`.
    #[inline]
    pub fn value(&self, key: &str) -> Option<&serde_json::Value> {
        self.entry(key).map(|entry| &entry.value)
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &ConfigEntry> {
        self.by_key.values().map(|stored| &*stored.entry)
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.by_key.len
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.by_key.len == 0
    }

    /// Carries the decode caches over from `previous`, the snapshot this one replaces: unchanged
    /// keys keep theirs; changed keys are decoded again, now, into every type they were read as,
    /// keeping the last good value of each type whose decoding fails.
    pub(super) fn inherit(&mut self, previous: &Self) {
        self.problems = Arc::clone(&previous.problems);
        for (key, stored) in self.by_key.iter_mut() {
            let Some(old) = previous.by_key.get(key) else {
                continue;
            };
            if old.entry == stored.entry {
                *stored = old.clone();
                continue;
            }
            *stored = Stored::succeed(old, Arc::clone(&stored.entry), &self.problems);
        }
        // A deleted key has no problem left: readers get their defaults.
        lock(&self.problems).retain(|(key, _), _| self.by_key.contains_key(key.as_str()));
    }
}
