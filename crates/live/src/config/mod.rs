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

mod decode;
mod key_changes;
mod live;
mod setting;
mod shards;
mod snapshot;

use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

pub use decode::ConfigProblem;
pub use file::{FileError, FileSource, load_file};
pub use key_changes::KeyChanges;
pub use live::LiveConfig;
pub use setting::Setting;
pub use snapshot::ConfigSnapshot;
pub use source::{Source, SourceError};
pub use table::{CHANNEL, MIGRATIONS, load_env, watch, write_migrations};

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

fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded data is only replaced whole, never left half-written: a panic elsewhere while
    // holding the lock does not make it unusable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
