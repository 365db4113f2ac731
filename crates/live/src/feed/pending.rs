//! What the listener has announced and the worker has not yet loaded.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::Notice;

/// At most this many distinct keys wait for a keyed reload; a burst that names more turns into
/// one full reload, so memory stays bounded whatever the rate of notifications.
const MAX_PENDING_KEYS: usize = 1_024;

/// What the listener has announced and the worker has not yet loaded. Bounded: at most
/// [`MAX_PENDING_KEYS`] keys, beyond which it asks for a full reload instead.
#[derive(Debug, Default)]
pub(super) struct Pending {
    pub(super) full: bool,
    /// Key → the newest revision announced for it, and whether that change was a delete.
    pub(super) rows: HashMap<String, (i64, bool), foldhash::fast::RandomState>,
}

impl Pending {
    pub(super) fn add(&mut self, notice: Notice) {
        match notice {
            Notice::Ignore => {}
            Notice::Reload => self.full_reload(),
            Notice::Row { .. } if self.full => {}
            Notice::Row {
                key,
                revision,
                deleted,
            } => {
                if self.rows.len() >= MAX_PENDING_KEYS && !self.rows.contains_key(&key) {
                    self.full_reload();
                    return;
                }
                let newest = self.rows.entry(key).or_insert((revision, deleted));
                if revision > newest.0 {
                    *newest = (revision, deleted);
                }
            }
        }
    }

    fn full_reload(&mut self) {
        self.full = true;
        // Released, not just cleared: a burst must not leave a large table behind.
        self.rows = HashMap::default();
    }
}

pub(super) fn lock_pending(pending: &Mutex<Pending>) -> MutexGuard<'_, Pending> {
    // Pending is a set of keys: a panic while holding the lock cannot leave it inconsistent.
    pending.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    fn changed(key: &str, revision: i64) -> Notice {
        Notice::Row {
            key: key.to_owned(),
            revision,
            deleted: false,
        }
    }

    #[test]
    fn pending_keeps_the_newest_revision_of_each_key() {
        let mut pending = Pending::default();
        for revision in [3, 9, 5] {
            pending.add(changed("a", revision));
        }
        pending.add(Notice::Ignore);
        pending.add(Notice::Row {
            key: "b".to_owned(),
            revision: 4,
            deleted: true,
        });
        assert!(!pending.full);
        assert_eq!(pending.rows.get("a"), Some(&(9, false)));
        assert_eq!(pending.rows.get("b"), Some(&(4, true)));
    }

    #[test]
    fn a_burst_of_distinct_keys_is_bounded_and_becomes_a_full_reload() {
        let mut pending = Pending::default();
        for i in 0..10_000 {
            pending.add(changed(&format!("key{i}"), i));
            assert!(pending.rows.len() <= MAX_PENDING_KEYS);
        }
        assert!(pending.full);
        assert!(pending.rows.is_empty());
        // Nothing is queued after that: the reload covers it.
        pending.add(changed("later", 1));
        assert!(pending.rows.is_empty());
    }
}
