//! `LiveConfig`: the handle on the newest snapshot, read through a per-thread cache.

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use arc_swap::ArcSwap;
use serde::de::DeserializeOwned;
use tokio::sync::watch as signal;

use super::decode::{ConfigProblem, Stored};
use super::key_changes::KeyChanges;
use super::setting::{Refresh, Setting, Slot};
use super::snapshot::ConfigSnapshot;
use super::{ConfigEntry, lock};

/// Live config values: a cheap, cloneable handle on the newest [`ConfigSnapshot`].
///
/// Reads never block on the database, the network or a writer: the snapshot is swapped whole
/// (`arc-swap`), so a reader sees either the old values or the new ones, never a mix.
#[derive(Clone)]
pub struct LiveConfig {
    shared: Arc<Shared>,
}

struct Shared {
    /// Unique per `LiveConfig` for the life of the process, so thread caches never confuse two.
    id: u64,
    /// Incremented after every store to `current`: a thread whose cached snapshot carries an
    /// older generation loads the current one.
    generation: AtomicU64,
    current: ArcSwap<ConfigSnapshot>,
    /// Every live [`Setting`]; refreshed under this lock so none misses a replacement.
    settings: Mutex<Vec<Weak<dyn Refresh>>>,
    updates: signal::Sender<u64>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// How many `LiveConfig`s a thread keeps a snapshot of; services have one or two.
const READ_CACHE_SLOTS: usize = 4;

thread_local! {
    static READ_CACHE: RefCell<ReadCache> = const { RefCell::new(ReadCache { entries: Vec::new() }) };
}

/// A thread's last-read snapshots: `(LiveConfig id, generation, snapshot)`.
struct ReadCache {
    entries: Vec<(u64, u64, Arc<ConfigSnapshot>)>,
}

impl ReadCache {
    fn snapshot(
        &mut self,
        id: u64,
        generation: u64,
        load: impl FnOnce() -> Arc<ConfigSnapshot>,
    ) -> &ConfigSnapshot {
        let index = if let Some(index) = self.entries.iter().position(|entry| entry.0 == id) {
            if self.entries[index].1 != generation {
                // Loaded after the generation was read, so never older than that generation.
                self.entries[index] = (id, generation, load());
            }
            index
        } else {
            if self.entries.len() >= READ_CACHE_SLOTS {
                self.entries.remove(0);
            }
            self.entries.push((id, generation, load()));
            self.entries.len() - 1
        };
        &self.entries[index].2
    }
}

impl fmt::Debug for LiveConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snapshot = self.snapshot();
        f.debug_struct("LiveConfig")
            .field("env", &snapshot.env())
            .field("keys", &snapshot.len())
            .finish_non_exhaustive()
    }
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self::new(ConfigSnapshot::default())
    }
}

impl LiveConfig {
    /// Live config starting at `snapshot`.
    pub fn new(snapshot: ConfigSnapshot) -> Self {
        Self {
            shared: Arc::new(Shared {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                generation: AtomicU64::new(0),
                current: ArcSwap::from_pointee(snapshot),
                settings: Mutex::new(Vec::new()),
                updates: signal::Sender::new(0),
            }),
        }
    }

    /// The value of `key` as `T`, decoded once per change and cached (see
    /// [`ConfigSnapshot::get`]). When the current value does not decode as `T`, the last good
    /// value is returned and the problem is logged and listed in [`LiveConfig::problems`].
    /// `None` when the key is absent, or has never decoded as `T`.
    #[inline]
    pub fn get<T: DeserializeOwned + Send + Sync + 'static>(&self, key: &str) -> Option<Arc<T>> {
        self.read(|snapshot| snapshot.get::<T>(key))
    }

    /// The value of `key` as `T`, or `default` when [`LiveConfig::get`] has none: the seed's
    /// `get(key, defaultValue)`. Clones the cached value; for large values prefer
    /// [`LiveConfig::get`] or a [`Setting`].
    #[inline]
    pub fn get_or<T>(&self, key: &str, default: T) -> T
    where
        T: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        self.read(|snapshot| {
            let Some(stored) = snapshot.by_key.get(key) else {
                return default;
            };
            // The hot path: the value is cached; clone it without touching reference counts.
            if let Some(value) = stored.read_cached(T::clone) {
                return value;
            }
            stored
                .get::<T>(&snapshot.problems)
                .map_or(default, |value| T::clone(&value))
        })
    }

    /// The raw JSON value of `key`.
    pub fn value(&self, key: &str) -> Option<serde_json::Value> {
        self.read(|snapshot| snapshot.value(key).cloned())
    }

    /// Calls `read` with the current snapshot. Each thread keeps the snapshot it last read of the
    /// few `LiveConfig`s it reads, with the generation it had; while the generation is unchanged
    /// a read costs one atomic load instead of arc-swap's reference bookkeeping. A thread holds
    /// on to a replaced snapshot until its next read (or until it exits).
    #[inline]
    fn read<R>(&self, read: impl FnOnce(&ConfigSnapshot) -> R) -> R {
        let generation = self.shared.generation.load(Ordering::Acquire);
        let mut read = Some(read);
        let cached = READ_CACHE.try_with(|cell| {
            let mut cache = cell.try_borrow_mut().ok()?;
            let snapshot = cache.snapshot(self.shared.id, generation, || {
                self.shared.current.load_full()
            });
            read.take().map(|read| read(snapshot))
        });
        if let Ok(Some(result)) = cached {
            return result;
        }
        // No thread cache (the thread is exiting, or a read inside a read): read directly.
        match read.take() {
            Some(read) => read(&self.shared.current.load()),
            None => unreachable!("the read closure ran and returned its result above"),
        }
    }

    /// A typed, live view of `key`, refreshed when the key changes, so that [`Setting::get`]
    /// costs one atomic load (no key lookup). It serves what [`LiveConfig::get`] would, or
    /// `default` when that is `None` (the key is absent or never decoded as `T`).
    ///
    /// Create settings once (at start-up, in the service's state), not per request: each one is
    /// refreshed on every change until it is dropped.
    pub fn setting<T>(&self, key: &str, default: T) -> Setting<T>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let default = Arc::new(default);
        let slot = Arc::new(Slot {
            key: key.to_owned(),
            default: Arc::clone(&default),
            value: ArcSwap::new(default),
            seen: Mutex::new(None),
        });
        // Registered and read under the settings lock: a replacement cannot slip in between.
        let mut settings = lock(&self.shared.settings);
        slot.refresh(&self.shared.current.load());
        let weak: Weak<dyn Refresh> = Arc::downgrade(&slot) as Weak<dyn Refresh>;
        settings.push(weak);
        Setting { slot }
    }

    /// Changes of one key, for code that must act on a change (resize a pool, rebuild a client).
    pub fn watch(&self, key: &str) -> KeyChanges {
        KeyChanges {
            config: self.clone(),
            key: key.to_owned(),
            seen: self.snapshot().entry(key).map(|e| e.revision),
            updates: self.shared.updates.subscribe(),
        }
    }

    /// The current values, whole: a consistent view of several keys.
    pub fn snapshot(&self) -> Arc<ConfigSnapshot> {
        self.shared.current.load_full()
    }

    /// Replaces every value at once, decodes changed keys into the types they are read as, and
    /// refreshes every [`Setting`]. Sources call this; business code only reads.
    pub fn replace(&self, mut snapshot: ConfigSnapshot) {
        let settings = lock(&self.shared.settings);
        snapshot.inherit(&self.shared.current.load());
        self.publish(snapshot, settings);
    }

    /// Changes some values and keeps the others: `changed` entries replace those with the same
    /// key (or add the key), `deleted` keys are removed. Changed keys are decoded into the types
    /// they are read as and every [`Setting`] is refreshed, as with [`LiveConfig::replace`], but
    /// the cost grows with the number of keys changed, not the number held. Does nothing (and
    /// signals no update) when nothing differs. Sources call this; business code only reads.
    pub fn apply<K: AsRef<str>>(
        &self,
        changed: impl IntoIterator<Item = ConfigEntry>,
        deleted: impl IntoIterator<Item = K>,
    ) {
        let settings = lock(&self.shared.settings);
        let current = self.shared.current.load();
        let mut next = ConfigSnapshot {
            env: current.env.clone(),
            by_key: current.by_key.clone(),
            problems: Arc::clone(&current.problems),
        };
        let mut any = false;
        for key in deleted {
            let key = key.as_ref();
            if next.by_key.remove(key) {
                any = true;
                // A deleted key has no problem left: readers get their defaults.
                lock(&next.problems).retain(|(problem, _), _| problem != key);
            }
        }
        for entry in changed {
            let stored = match current.by_key.get(entry.key.as_str()) {
                Some(old) if *old.entry == entry => continue,
                Some(old) => Stored::succeed(old, Arc::new(entry), &next.problems),
                None => Stored::new(entry),
            };
            any = true;
            next.by_key
                .insert(Arc::from(stored.entry.key.as_str()), stored);
        }
        drop(current);
        if any {
            self.publish(next, settings);
        }
    }

    /// Stores `snapshot`, refreshes every [`Setting`] (under `settings`, the lock) and signals
    /// the update.
    fn publish(
        &self,
        snapshot: ConfigSnapshot,
        mut settings: MutexGuard<'_, Vec<Weak<dyn Refresh>>>,
    ) {
        let snapshot = Arc::new(snapshot);
        self.shared.current.store(Arc::clone(&snapshot));
        // After the store: a reader that sees the new generation loads the new snapshot.
        self.shared.generation.fetch_add(1, Ordering::Release);
        settings.retain(|weak| match weak.upgrade() {
            Some(slot) => {
                slot.refresh(&snapshot);
                true
            }
            None => false,
        });
        drop(settings);
        self.shared.updates.send_modify(|n| *n += 1);
    }

    /// Values that do not decode as the type a service reads them as, with what is served
    /// instead. Empty when all is well; a health check reports these.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        lock(&self.shared.current.load().problems)
            .values()
            .cloned()
            .collect()
    }

    /// A receiver whose value increases on every [`LiveConfig::replace`]; await `changed()` on it
    /// to learn that any value may have changed.
    pub fn updates(&self) -> signal::Receiver<u64> {
        self.shared.updates.subscribe()
    }
}
