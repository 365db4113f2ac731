//! `KeyChanges`: following one key's changes.

use std::fmt;

use tokio::sync::watch as signal;

use super::ConfigEntry;
use super::live::LiveConfig;

/// Changes of one key, from [`LiveConfig::watch`].
///
/// Backed by a `tokio::sync::watch` channel: the updater never waits for a subscriber, and a slow
/// subscriber sees the newest state, skipping intermediate ones.
pub struct KeyChanges {
    pub(super) config: LiveConfig,
    pub(super) key: String,
    pub(super) seen: Option<i64>,
    pub(super) updates: signal::Receiver<u64>,
}

impl fmt::Debug for KeyChanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyChanges")
            .field("key", &self.key)
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

impl KeyChanges {
    /// Waits until the key's value differs from the last one seen, and returns the new entry
    /// (`None`: the key was deleted).
    pub async fn changed(&mut self) -> Option<ConfigEntry> {
        loop {
            let entry = self.config.snapshot().entry(&self.key).cloned();
            let revision = entry.as_ref().map(|e| e.revision);
            if revision != self.seen {
                self.seen = revision;
                return entry;
            }
            // The sender lives as long as `self.config`, which this holds: never closed.
            if self.updates.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
