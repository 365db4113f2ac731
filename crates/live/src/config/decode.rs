//! The decode cache: each entry's value decoded once per change into every type it is read as,
//! with the last good value kept when a new one does not decode.

use std::any::{Any, TypeId};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{ConfigEntry, lock};

pub(super) type Problems = BTreeMap<(String, &'static str), ConfigProblem>;

/// An entry and what it decoded to, per Rust type.
#[derive(Debug, Clone)]
pub(super) struct Stored {
    pub(super) entry: Arc<ConfigEntry>,
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
    pub(super) fn new(entry: ConfigEntry) -> Self {
        Self {
            entry: Arc::new(entry),
            decoded: Arc::default(),
            previous: None,
        }
    }

    /// `entry`, the new value of the key `old` held: decoded now into every type `old` was read
    /// as, keeping the last good value of each type whose decoding fails.
    pub(super) fn succeed(old: &Self, entry: Arc<ConfigEntry>, problems: &Mutex<Problems>) -> Self {
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
    pub(super) fn read_cached<T: Send + Sync + 'static, R>(
        &self,
        read: impl FnOnce(&T) -> R,
    ) -> Option<R> {
        self.decoded
            .with(TypeId::of::<T>(), |decoding| {
                let (value, _) = decoding.good.as_ref()?;
                value.downcast_ref::<T>().map(read)
            })
            .flatten()
    }

    pub(super) fn get<T: DeserializeOwned + Send + Sync + 'static>(
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

/// A stored value that does not decode into the type a service reads it as. The service keeps
/// serving what it served before (see [`ConfigProblem::serving`]); a health check or an admin
/// page lists these from [`LiveConfig::problems`](super::LiveConfig::problems).
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
