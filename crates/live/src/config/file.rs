//! Config values from a JSON or TOML file, for development and tests without a database.

use std::path::{Path, PathBuf};

use super::{ConfigEntry, ConfigSnapshot, LiveConfig};
use crate::versioned::{self, FileDocument, FileKind, FileTarget};

pub use crate::versioned::FileError;

/// What a config file is, for messages.
const KIND: FileKind = FileKind {
    name: "config file",
    shape: "an object of keys and values (`{\"matching.algorithm.weights\": {...}}`)",
};

/// Reads a `.json` file holding one object whose members are the keys and their values, or a
/// `.toml` file whose top-level entries are (quote keys that contain dots:
/// `"order.expiry.minutes" = 30`); any other extension is refused:
///
/// ```json
/// {
///   "matching.algorithm.weights": {"price_weight": 0.4, "rating_weight": 0.3,
///                                  "availability_weight": 0.2, "supplier_reliability_weight": 0.1},
///   "order.expiry.minutes": 30
/// }
/// ```
///
/// Every entry gets `revision`, so that reloading a changed file re-decodes every
/// [`super::Setting`]. The snapshot's environment is `env`.
pub fn load_file(path: &Path, env: &str, revision: i64) -> Result<ConfigSnapshot, FileError> {
    let document = versioned::read_document(path, KIND)?;
    snapshot_of(path, document, env, revision)
}

fn snapshot_of(
    path: &Path,
    document: serde_json::Value,
    env: &str,
    revision: i64,
) -> Result<ConfigSnapshot, FileError> {
    let serde_json::Value::Object(values) = document else {
        return Err(FileError::parse(
            KIND,
            path,
            "the document is not an object",
        ));
    };
    if let Some(problem) = values
        .keys()
        .find_map(|key| crate::name::check_name("config key", key).err())
    {
        return Err(FileError::Invalid {
            kind: KIND,
            path: path.to_owned(),
            problem: Box::new(problem),
        });
    }
    let entries = values.into_iter().map(|(key, value)| ConfigEntry {
        key,
        value,
        revision,
        description: None,
        updated_by: None,
    });
    Ok(ConfigSnapshot::new(env, entries))
}

/// The live config a config file updates.
#[derive(Debug)]
pub(super) struct ConfigFile {
    env: String,
    config: LiveConfig,
}

impl FileTarget for ConfigFile {
    const KIND: FileKind = KIND;

    fn publish(&mut self, document: FileDocument<'_>) -> Result<(), FileError> {
        let FileDocument {
            path,
            value,
            revision,
        } = document;
        self.config
            .replace(snapshot_of(path, value, &self.env, revision)?);
        Ok(())
    }
}

/// A config file followed by modification time: call [`FileSource::reload_if_changed`] from a
/// timer, a file watcher or a test to pick up edits, or let [`FileSource::spawn_reloader`] do it.
#[derive(Debug)]
pub struct FileSource(pub(super) versioned::FileSource<ConfigFile>);

impl FileSource {
    /// Loads `path` into new [`LiveConfig`] for environment `env`.
    pub fn open(path: impl Into<PathBuf>, env: &str) -> Result<Self, FileError> {
        let target = ConfigFile {
            env: env.to_owned(),
            config: LiveConfig::new(ConfigSnapshot::new(env, [])),
        };
        versioned::FileSource::open(path, target).map(Self)
    }

    /// The live config this source updates.
    pub fn config(&self) -> LiveConfig {
        self.0.target().config.clone()
    }

    /// Reloads when the file's modification time changed. A file that no longer parses keeps
    /// the previous values and returns the error. `Ok(true)` when the values were replaced.
    pub fn reload_if_changed(&mut self) -> Result<bool, FileError> {
        self.0.reload_if_changed()
    }

    /// Checks the file every `interval` on a background task and reloads it when it changed, so
    /// edits reach the application like database changes do. A file that stops parsing keeps the
    /// previous values and logs the error. The task ends when the returned handle is aborted or
    /// the runtime shuts down.
    pub fn spawn_reloader(self, interval: std::time::Duration) -> tokio::task::JoinHandle<()> {
        self.0.spawn_reloader(interval)
    }
}
