//! Config values from a JSON or TOML file, for development and tests without a database.

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
    /// The file is not an object (JSON) or table (TOML) of keys and values.
    #[error(
        "config file {path} is not a {format} object of keys and values (`{{\"matching.algorithm.weights\": {{...}}}}`): {message}"
    )]
    Parse {
        /// The file.
        path: PathBuf,
        /// `JSON` or `TOML`, from the file's extension.
        format: &'static str,
        /// The parser's message.
        message: String,
    },
    /// A key holds a control character.
    #[error("config file {path} is refused: {problem}")]
    InvalidKey {
        /// The file.
        path: PathBuf,
        /// The key and the character.
        problem: crate::ControlCharacter,
    },
}

/// Reads a JSON file holding one object whose members are the keys and their values, or a TOML
/// file (extension `.toml`) whose top-level entries are (quote keys that contain dots:
/// `"order.expiry.minutes" = 30`):
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
    let parse_error = |format, message: String| FileError::Parse {
        path: path.to_owned(),
        format,
        message,
    };
    let values: serde_json::Map<String, serde_json::Value> =
        if path.extension().and_then(|e| e.to_str()) == Some("toml") {
            let table: toml::Table =
                toml::from_str(&text).map_err(|e| parse_error("TOML", e.message().to_owned()))?;
            match serde_json::to_value(table) {
                Ok(serde_json::Value::Object(map)) => map,
                Ok(_) => return Err(parse_error("TOML", "not a table".to_owned())),
                Err(e) => return Err(parse_error("TOML", e.to_string())),
            }
        } else {
            serde_json::from_str(&text).map_err(|e| parse_error("JSON", e.to_string()))?
        };
    if let Some(problem) = values
        .keys()
        .find_map(|key| crate::name::check_name("config key", key).err())
    {
        return Err(FileError::InvalidKey {
            path: path.to_owned(),
            problem,
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

impl FileSource {
    /// Checks the file every `interval` on a background task and reloads it when it changed, so
    /// edits reach the application like database changes do. A file that stops parsing keeps the
    /// previous values and logs the error. The task ends when the returned handle is aborted or
    /// the runtime shuts down.
    pub fn spawn_reloader(mut self, interval: std::time::Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(error) = self.reload_if_changed() {
                    tracing::error!(%error, "config file changed but cannot be used; keeping the previous values");
                }
            }
        })
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
