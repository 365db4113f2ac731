//! Config values from a JSON file, for development and tests without a database.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{ConfigEntry, ConfigSnapshot, LiveConfig};

/// A config file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a JSON object of keys and values.
    #[error(
        "config file {path} is not a JSON object of keys and values (`{{\"matching.algorithm.weights\": {{...}}}}`): {message}"
    )]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

/// Reads a JSON file holding one object whose members are the keys and their values:
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
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let values: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&text).map_err(|e| FileError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    let entries = values.into_iter().map(|(key, value)| ConfigEntry {
        key,
        value,
        revision,
        description: None,
        updated_by: None,
    });
    Ok(ConfigSnapshot::new(env, entries))
}

/// A config file followed by modification time: call [`FileSource::reload_if_changed`] from a
/// timer, a file watcher or a test to pick up edits.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    env: String,
    modified: Option<SystemTime>,
    revision: i64,
    config: LiveConfig,
}

impl FileSource {
    /// Loads `path` into new [`LiveConfig`] for environment `env`.
    pub fn open(path: impl Into<PathBuf>, env: &str) -> Result<Self, FileError> {
        let path = path.into();
        let modified = modified(&path);
        let config = LiveConfig::new(load_file(&path, env, 1)?);
        Ok(Self {
            path,
            env: env.to_owned(),
            modified,
            revision: 1,
            config,
        })
    }

    /// The live config this source updates.
    pub fn config(&self) -> LiveConfig {
        self.config.clone()
    }

    /// Reloads when the file's modification time changed. A file that no longer parses keeps
    /// the previous values and returns the error. `Ok(true)` when the values were replaced.
    pub fn reload_if_changed(&mut self) -> Result<bool, FileError> {
        let now = modified(&self.path);
        if now == self.modified {
            return Ok(false);
        }
        let snapshot = load_file(&self.path, &self.env, self.revision + 1)?;
        self.revision += 1;
        self.config.replace(snapshot);
        self.modified = now;
        Ok(true)
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
