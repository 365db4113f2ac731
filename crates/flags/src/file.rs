//! Flags from a file, for development and tests without a database.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::{Flag, FlagSet, Flags};

/// A flags file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The file cannot be read.
    #[error("cannot read flags file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not parse as flags.
    #[error("flags file {path} is not valid {format}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// `JSON` or `TOML`.
        format: &'static str,
        /// The parser's message.
        message: String,
    },
    /// A flag's name or whitelist is refused.
    #[error("flags file {path} is refused: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The flag's problem.
        problem: crate::InvalidFlag,
    },
    /// The extension says neither JSON nor TOML.
    #[error("flags file {0} must end in .json or .toml")]
    UnknownFormat(PathBuf),
}

#[derive(serde::Deserialize)]
struct Document {
    #[serde(default)]
    flags: Vec<Flag>,
}

/// Reads flags from a `.json` file (an array of flags, or `{"flags": [...]}`) or a `.toml` file
/// (`[[flags]]` tables), with the table's column names.
///
/// ```toml
/// [[flags]]
/// name = "supplier.realtime.sync"
/// enabled = true
/// rollout_pct = 5
/// ```
pub fn load_file(path: &Path) -> Result<FlagSet, FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let parse_error = |format, message: String| FileError::Parse {
        path: path.to_owned(),
        format,
        message,
    };
    let flags = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => {
            if text.trim_start().starts_with('[') {
                serde_json::from_str::<Vec<Flag>>(&text)
                    .map_err(|e| parse_error("JSON", e.to_string()))?
            } else {
                serde_json::from_str::<Document>(&text)
                    .map_err(|e| parse_error("JSON", e.to_string()))?
                    .flags
            }
        }
        Some("toml") => {
            toml::from_str::<Document>(&text)
                .map_err(|e| parse_error("TOML", e.message().to_owned()))?
                .flags
        }
        _ => return Err(FileError::UnknownFormat(path.to_owned())),
    };
    if let Some(problem) = flags.iter().find_map(|flag| flag.validate().err()) {
        return Err(FileError::Invalid {
            path: path.to_owned(),
            problem,
        });
    }
    Ok(FlagSet::new(flags))
}

/// A flags file followed by modification time: call [`FileSource::reload_if_changed`] from a
/// timer, a file watcher or a test to pick up edits.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    modified: Option<SystemTime>,
    flags: Flags,
}

impl FileSource {
    /// Loads `path` into new live [`Flags`].
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, FileError> {
        let path = path.into();
        let modified = modified(&path);
        let flags = Flags::new(load_file(&path)?);
        Ok(Self {
            path,
            modified,
            flags,
        })
    }

    /// The live flags this source updates.
    pub fn flags(&self) -> Flags {
        self.flags.clone()
    }

    /// Reloads when the file's modification time changed. A file that no longer parses keeps
    /// the previous flags and returns the error. `Ok(true)` when the flags were replaced.
    pub fn reload_if_changed(&mut self) -> Result<bool, FileError> {
        let now = modified(&self.path);
        if now == self.modified {
            return Ok(false);
        }
        let set = load_file(&self.path)?;
        self.flags.replace(set);
        self.modified = now;
        Ok(true)
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
