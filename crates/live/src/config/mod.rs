//! The `platform_config` client: every value of one environment in memory, replaced whole when
//! the table changes, read without waiting for anything.
//!
//! [`LiveConfig`] is the handle business code holds. [`LiveConfig::get`] and
//! [`LiveConfig::get_or`] (the seed's `get(key, defaultValue)`) read a typed value that is decoded
//! once per change, not per read, and that stays at its last good value when a new one does not
//! decode; a [`Setting`] is the same for one key without the lookup; [`LiveConfig::watch`] follows
//! one key's changes. Where the values come from is separate: a [`Source`] is either the table,
//! which [`watch`] follows through [`crate::start_keyed`], or a JSON or TOML file
//! ([`FileSource`]); [`Source::start`] gives the same [`LiveConfig`] and [`crate::Feed`] for both.

pub mod admin;
mod file;
mod source;
mod table;

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};

use arc_swap::ArcSwap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch as signal;

pub use file::{FileError, FileSource, load_file};
pub use source::{Source, SourceError};
pub use table::{CHANNEL, MIGRATIONS, load_env, watch, write_migrations};

type Hasher = foldhash::fast::RandomState;

/// One value of `platform_config`, as a service sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigEntry {
    /// The key, e.g. `matching.algorithm.weights`.
    pub key: String,
    /// The value: any JSON.
    pub value: serde_json::Value,
    /// The revision of the last change to this row; increases across the whole table.
    pub revision: i64,
    /// What the value is for.
    pub description: Option<String>,
    /// Who changed it last.
    pub updated_by: Option<String>,
}

/// An immutable view of one environment's values, indexed by key, with a cache of each value
/// decoded into the types it has been read as.
#[derive(Debug, Clone, Default)]
pub struct ConfigSnapshot {
    env: String,
    by_key: Keys,
    problems: Arc<Mutex<Problems>>,
}

/// A snapshot's entries by key, in shards shared between successive snapshots: applying a
/// change of one key copies one shard (a few dozen pointers for a thousand keys), not the map.
#[derive(Debug, Clone)]
struct Keys {
    shards: Vec<Arc<Shard>>,
    len: usize,
}

type Shard = HashMap<Arc<str>, Stored, Hasher>;

const SHARD_BITS: u32 = 6;

impl Default for Keys {
    fn default() -> Self {
        Self {
            shards: (0..1 << SHARD_BITS).map(|_| Arc::default()).collect(),
            len: 0,
        }
    }
}

/// The shard of `key`: a quick mix of (at most) three 8-byte words of the key rather than a full
/// hash, because every read computes it before the shard's map hashes the key anyway. Dotted
/// keys differ mostly in their middle and end, which the words cover.
#[inline]
fn shard_of(key: &str) -> usize {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let bytes = key.as_bytes();
    let len = bytes.len();
    let word = |at: usize| {
        let mut word = [0_u8; 8];
        let end = (at + 8).min(len);
        if let (Some(to), Some(from)) = (word.get_mut(..end - at), bytes.get(at..end)) {
            to.copy_from_slice(from);
        }
        u64::from_le_bytes(word)
    };
    let words = if len <= 8 {
        word(0)
    } else {
        word(0) ^ word(len / 2 - 4).rotate_left(21) ^ word(len - 8).rotate_left(42)
    };
    let mix = (words ^ u64::try_from(len).unwrap_or(u64::MAX)).wrapping_mul(K);
    usize::try_from(mix >> (64 - SHARD_BITS)).unwrap_or(0)
}

impl Keys {
    #[inline]
    fn get(&self, key: &str) -> Option<&Stored> {
        self.shards.get(shard_of(key))?.get(key)
    }

    fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Inserts or replaces; copies the key's shard first if another snapshot shares it.
    fn insert(&mut self, key: Arc<str>, stored: Stored) {
        if let Some(shard) = self.shards.get_mut(shard_of(&key))
            && Arc::make_mut(shard).insert(key, stored).is_none()
        {
            self.len += 1;
        }
    }

    /// Removes `key`; copies its shard first if another snapshot shares it. True if it was there.
    fn remove(&mut self, key: &str) -> bool {
        let Some(shard) = self.shards.get_mut(shard_of(key)) else {
            return false;
        };
        if !shard.contains_key(key) {
            return false;
        }
        Arc::make_mut(shard).remove(key);
        self.len -= 1;
        true
    }

    fn values(&self) -> impl Iterator<Item = &Stored> {
        self.shards.iter().flat_map(|shard| shard.values())
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = (&Arc<str>, &mut Stored)> {
        self.shards
            .iter_mut()
            .flat_map(|shard| Arc::make_mut(shard).iter_mut())
    }
}

impl FromIterator<(Arc<str>, Stored)> for Keys {
    fn from_iter<I: IntoIterator<Item = (Arc<str>, Stored)>>(entries: I) -> Self {
        let mut keys = Self::default();
        for (key, stored) in entries {
            keys.insert(key, stored);
        }
        keys
    }
}

type Problems = BTreeMap<(String, &'static str), ConfigProblem>;

/// An entry and what it decoded to, per Rust type.
#[derive(Debug, Clone)]
struct Stored {
    entry: Arc<ConfigEntry>,
    decoded: Arc<Decoded>,
    /// The previous entry's decodings, for a type first read after the value changed: its
    /// last good value is the fallback if the new value does not decode.
    previous: Option<Arc<Decoded>>,
}

/// One entry's value decoded into each type it has been read as. Types are added on first read
/// and never removed; the entry's next value gets a new `Decoded`.
#[derive(Debug, Default)]
struct Decoded {
    /// The first type read: almost every key is read as one type only, and a `OnceLock` costs
    /// one atomic load to read, which keeps the hot path of [`LiveConfig::get_or`] short.
    first: OnceLock<Decoding>,
    /// Any further types.
    more: ArcSwap<Vec<Decoding>>,
}

impl Decoded {
    fn from_decodings(decodings: Vec<Decoding>) -> Self {
        let mut decodings = decodings.into_iter();
        let first = OnceLock::new();
        if let Some(decoding) = decodings.next() {
            let _ = first.set(decoding);
        }
        Self {
            first,
            more: ArcSwap::from_pointee(decodings.collect()),
        }
    }

    /// Calls `read` with the decoding for `type_id`, if the key has been read as that type.
    #[inline]
    fn with<R>(&self, type_id: TypeId, read: impl FnOnce(&Decoding) -> R) -> Option<R> {
        if let Some(first) = self.first.get() {
            if first.type_id == type_id {
                return Some(read(first));
            }
        } else {
            return None;
        }
        self.more
            .load()
            .iter()
            .find(|d| d.type_id == type_id)
            .map(read)
    }

    /// Every decoding, the first type first.
    fn all(&self) -> Vec<Decoding> {
        let mut all: Vec<Decoding> = self.first.get().cloned().into_iter().collect();
        all.extend(self.more.load().iter().cloned());
        all
    }

    /// Adds `decoding` unless its type is there already (another reader may have added it).
    fn add(&self, decoding: Decoding) {
        let type_id = decoding.type_id;
        let Err(decoding) = self.first.set(decoding) else {
            return;
        };
        if self
            .first
            .get()
            .is_some_and(|first| first.type_id == type_id)
        {
            return;
        }
        self.more.rcu(|more| {
            let mut more = Vec::clone(more);
            if !more.iter().any(|d| d.type_id == type_id) {
                more.push(decoding.clone());
            }
            more
        });
    }
}

type AnyValue = Arc<dyn Any + Send + Sync>;
type DecodeFn = fn(&serde_json::Value) -> Result<AnyValue, String>;

/// One key decoded as one type.
#[derive(Clone)]
struct Decoding {
    type_id: TypeId,
    type_name: &'static str,
    decode: DecodeFn,
    /// The value served and the revision it was decoded from; `None` when no revision of the
    /// key ever decoded as this type.
    good: Option<(AnyValue, i64)>,
}

impl fmt::Debug for Decoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoding")
            .field("type", &self.type_name)
            .field("good_revision", &self.good.as_ref().map(|(_, r)| r))
            .finish_non_exhaustive()
    }
}

fn decode_as<T: DeserializeOwned + Send + Sync + 'static>(
    value: &serde_json::Value,
) -> Result<AnyValue, String> {
    T::deserialize(value)
        .map(|decoded| Arc::new(decoded) as AnyValue)
        .map_err(|error| error.to_string())
}

impl Decoding {
    /// Decodes `entry` with `decode`; on failure keeps `fallback` and reports the problem.
    fn new(
        entry: &ConfigEntry,
        type_id: TypeId,
        type_name: &'static str,
        decode: DecodeFn,
        fallback: Option<(AnyValue, i64)>,
        problems: &Mutex<Problems>,
    ) -> Self {
        let good = match decode(&entry.value) {
            Ok(value) => {
                lock(problems).remove(&(entry.key.clone(), type_name));
                Some((value, entry.revision))
            }
            Err(error) => {
                let serving = fallback.as_ref().map(|(_, revision)| *revision);
                tracing::error!(key = %entry.key, revision = entry.revision, expected = type_name, %error, serving_revision = ?serving, "config value does not decode; keeping the last good value");
                let problem = ConfigProblem {
                    key: entry.key.clone(),
                    revision: entry.revision,
                    expected: type_name,
                    error,
                    serving,
                };
                lock(problems).insert((entry.key.clone(), type_name), problem);
                fallback
            }
        };
        Self {
            type_id,
            type_name,
            decode,
            good,
        }
    }
}

impl Stored {
    fn new(entry: ConfigEntry) -> Self {
        Self {
            entry: Arc::new(entry),
            decoded: Arc::default(),
            previous: None,
        }
    }

    /// `entry`, the new value of the key `old` held: decoded now into every type `old` was read
    /// as, keeping the last good value of each type whose decoding fails.
    fn succeed(old: &Self, entry: Arc<ConfigEntry>, problems: &Mutex<Problems>) -> Self {
        let decoded: Vec<Decoding> = old
            .decoded
            .all()
            .iter()
            .map(|d| {
                Decoding::new(
                    &entry,
                    d.type_id,
                    d.type_name,
                    d.decode,
                    d.good.clone(),
                    problems,
                )
            })
            .collect();
        Self {
            entry,
            decoded: Arc::new(Decoded::from_decodings(decoded)),
            previous: Some(Arc::clone(&old.decoded)),
        }
    }

    /// Calls `read` with the cached value of type `T`, without touching reference counts; `None`
    /// when `T` is not cached (or has no good value).
    #[inline]
    fn read_cached<T: Send + Sync + 'static, R>(&self, read: impl FnOnce(&T) -> R) -> Option<R> {
        self.decoded
            .with(TypeId::of::<T>(), |decoding| {
                let (value, _) = decoding.good.as_ref()?;
                value.downcast_ref::<T>().map(read)
            })
            .flatten()
    }

    fn get<T: DeserializeOwned + Send + Sync + 'static>(
        &self,
        problems: &Mutex<Problems>,
    ) -> Option<Arc<T>> {
        let type_id = TypeId::of::<T>();
        if let Some(value) = self.decoded.with(type_id, good_as) {
            return value;
        }
        // First read of this key as `T` since the value changed: decode once and cache.
        let fallback = self
            .previous
            .as_ref()
            .and_then(|previous| previous.with(type_id, |d| d.good.clone()).flatten());
        let decoding = Decoding::new(
            &self.entry,
            type_id,
            std::any::type_name::<T>(),
            decode_as::<T>,
            fallback,
            problems,
        );
        let value = good_as(&decoding);
        self.decoded.add(decoding);
        value
    }
}

fn good_as<T: Send + Sync + 'static>(decoding: &Decoding) -> Option<Arc<T>> {
    let (value, _) = decoding.good.as_ref()?;
    Arc::clone(value).downcast::<T>().ok()
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
    /// [`LiveConfig::problems`]); `None` when the key is absent or never decoded as `T`.
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
    fn inherit(&mut self, previous: &Self) {
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

/// A stored value that does not decode into the type a service reads it as. The service keeps
/// serving what it served before (see [`ConfigProblem::serving`]); a health check or an admin
/// page lists these from [`LiveConfig::problems`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ConfigProblem {
    /// The key.
    pub key: String,
    /// The revision of the value that does not decode.
    pub revision: i64,
    /// The Rust type the service reads the key as.
    pub expected: &'static str,
    /// Why it does not decode (serde's message: it names the field and the type expected).
    pub error: String,
    /// What is served instead: `None` for the default, else the revision of the last good value.
    pub serving: Option<i64>,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "config key `{}` at revision {} is not a valid {}: {}; serving ",
            self.key, self.revision, self.expected, self.error
        )?;
        match self.serving {
            None => f.write_str("the default"),
            Some(revision) => write!(f, "the value of revision {revision}"),
        }
    }
}

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

fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data is only replaced whole, never left half-written: a panic elsewhere while
    // holding the lock does not make it unusable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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

/// Changes of one key, from [`LiveConfig::watch`].
///
/// Backed by a `tokio::sync::watch` channel: the updater never waits for a subscriber, and a slow
/// subscriber sees the newest state, skipping intermediate ones.
pub struct KeyChanges {
    config: LiveConfig,
    key: String,
    seen: Option<i64>,
    updates: signal::Receiver<u64>,
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

/// A typed, live view of one key, from [`LiveConfig::setting`]. Cloning shares the view.
pub struct Setting<T> {
    slot: Arc<Slot<T>>,
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

struct Slot<T> {
    key: String,
    default: Arc<T>,
    value: ArcSwap<T>,
    /// The revision of the entry last looked at; `None` when the key was absent.
    seen: Mutex<Option<i64>>,
}

trait Refresh: Send + Sync {
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
