//! Rows from a JSON or TOML file, for development and tests without a database, reloaded when
//! the file changes.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::{Feed, FeedStatus};

/// What a file holds, for messages: e.g. `flags file` and `a list of flags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileKind {
    /// What the file is called in messages, e.g. `config file`.
    pub name: &'static str,
    /// What its document must be, e.g. `an object of keys and values`.
    pub shape: &'static str,
}

/// The format of a file, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileFormat {
    /// `.json`.
    Json,
    /// `.toml`.
    Toml,
}

impl FileFormat {
    /// The format named by `path`'s extension; `None` for any other.
    pub fn of(path: &Path) -> Option<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Some(Self::Json),
            Some("toml") => Some(Self::Toml),
            _ => None,
        }
    }

    /// `JSON` or `TOML`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "JSON",
            Self::Toml => "TOML",
        }
    }
}

/// A file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The file cannot be read.
    #[error("cannot read {} {}: {reason}", kind.name, path.display())]
    Read {
        /// What the file holds.
        kind: FileKind,
        /// The file.
        path: PathBuf,
        /// Why. Not the error's source: the message includes it.
        reason: std::io::Error,
    },
    /// The file does not parse, or does not hold what it must.
    #[error("{} {} is not {format} holding {}: {message}", kind.name, path.display(), kind.shape)]
    Parse {
        /// What the file holds.
        kind: FileKind,
        /// The file.
        path: PathBuf,
        /// `JSON` or `TOML`, from the file's extension.
        format: &'static str,
        /// The parser's message.
        message: String,
    },
    /// An entry is refused (a name or tenant that a write would refuse), or a TOML number that
    /// JSON cannot hold ([`NonFiniteNumber`]).
    #[error("{} {} is refused: {problem}", kind.name, path.display())]
    Invalid {
        /// What the file holds.
        kind: FileKind,
        /// The file.
        path: PathBuf,
        /// The entry's problem.
        problem: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The extension says neither JSON nor TOML.
    #[error("{} {} must end in .json or .toml", kind.name, path.display())]
    UnknownFormat {
        /// What the file holds.
        kind: FileKind,
        /// The file.
        path: PathBuf,
    },
}

impl FileError {
    /// [`FileError::Parse`] for a document of `path` that is not what `kind` must hold.
    pub fn parse(kind: FileKind, path: &Path, message: impl Into<String>) -> Self {
        Self::Parse {
            kind,
            path: path.to_owned(),
            format: FileFormat::of(path).map_or("JSON", FileFormat::name),
            message: message.into(),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        match self {
            Self::Read { path, .. }
            | Self::Parse { path, .. }
            | Self::Invalid { path, .. }
            | Self::UnknownFormat { path, .. } => path,
        }
    }
}

/// Reads `path` (`.json` or `.toml`, anything else refused) into one JSON document: TOML's
/// tables become objects. `kind` names the file in errors. A TOML `nan`, `inf` or `-inf`, which
/// JSON cannot hold, is refused ([`FileError::Invalid`] with a [`NonFiniteNumber`] naming its key).
pub fn read_document(path: &Path, kind: FileKind) -> Result<serde_json::Value, FileError> {
    let Some(format) = FileFormat::of(path) else {
        return Err(FileError::UnknownFormat {
            kind,
            path: path.to_owned(),
        });
    };
    let text = std::fs::read_to_string(path).map_err(|reason| FileError::Read {
        kind,
        path: path.to_owned(),
        reason,
    })?;
    let parse_error = |message: String| FileError::Parse {
        kind,
        path: path.to_owned(),
        format: format.name(),
        message,
    };
    match format {
        FileFormat::Json => serde_json::from_str(&text).map_err(|e| parse_error(e.to_string())),
        FileFormat::Toml => {
            let table: toml::Table =
                toml::from_str(&text).map_err(|e| parse_error(e.message().to_owned()))?;
            // JSON has no NaN or infinities: the conversion would turn them into `null` unseen.
            if let Some(problem) = NonFiniteNumber::find(&table) {
                return Err(FileError::Invalid {
                    kind,
                    path: path.to_owned(),
                    problem: Box::new(problem),
                });
            }
            serde_json::to_value(table).map_err(|e| parse_error(e.to_string()))
        }
    }
}

/// A TOML number that JSON cannot hold (`nan`, `inf`, `-inf`), which TOML documents are
/// refused for rather than read with `null` in its place.
#[derive(Debug, Clone, PartialEq)]
pub struct NonFiniteNumber {
    /// The key path, such as `flags[1].variants[0].payload.ratio`.
    pub key: String,
    /// The number.
    pub value: f64,
    /// The outermost array entry holding it and that entry's `name`, when it has one as a
    /// string: `("flags[1]", "checkout.button")`.
    pub entry: Option<(String, String)>,
}

impl NonFiniteNumber {
    /// The first such number of `table`, in document order.
    pub fn find(table: &toml::Table) -> Option<Self> {
        let mut key = String::new();
        Self::in_table(table, &mut key, None)
    }

    fn in_table(
        table: &toml::Table,
        key: &mut String,
        entry: Option<&(String, String)>,
    ) -> Option<Self> {
        table.iter().find_map(|(name, value)| {
            let len = key.len();
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(name);
            let found = Self::in_value(value, key, entry);
            key.truncate(len);
            found
        })
    }

    fn in_value(
        value: &toml::Value,
        key: &mut String,
        entry: Option<&(String, String)>,
    ) -> Option<Self> {
        match value {
            toml::Value::Float(f) if !f.is_finite() => Some(Self {
                key: key.clone(),
                value: *f,
                entry: entry.cloned(),
            }),
            toml::Value::Table(table) => Self::in_table(table, key, entry),
            toml::Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
                let len = key.len();
                key.push('[');
                key.push_str(&i.to_string());
                key.push(']');
                let named = match (entry, item) {
                    (None, toml::Value::Table(table)) => table
                        .get("name")
                        .and_then(toml::Value::as_str)
                        .map(|name| (key.clone(), name.to_owned())),
                    _ => None,
                };
                let found = Self::in_value(item, key, entry.or(named.as_ref()));
                key.truncate(len);
                found
            }),
            _ => None,
        }
    }
}

impl std::fmt::Display for NonFiniteNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = if self.value.is_nan() {
            "nan"
        } else if self.value > 0.0 {
            "inf"
        } else {
            "-inf"
        };
        write!(f, "{} is {value}", self.key)?;
        if let Some((entry, name)) = &self.entry {
            write!(f, " (in {entry}, named {name:?})")?;
        }
        f.write_str(
            "; the document is read as JSON, which has no NaN or infinite numbers: write a \
             finite number, or a string",
        )
    }
}

impl std::error::Error for NonFiniteNumber {}

/// One version of a file, as a [`FileTarget`] receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct FileDocument<'a> {
    /// The file.
    pub path: &'a Path,
    /// What it holds, TOML's tables as objects.
    pub value: serde_json::Value,
    /// Which version of the file this is since the source opened it: 1, 2, ...
    pub revision: i64,
}

/// What a [`FileSource`] keeps up to date: decodes the file's document and publishes it to the
/// application (e.g. swaps the live flags or config).
pub trait FileTarget: Send + 'static {
    /// What the file holds, for messages.
    const KIND: FileKind;

    /// Decodes `document` and publishes it. On error nothing is published: the previous values
    /// stay.
    fn publish(&mut self, document: FileDocument<'_>) -> Result<(), FileError>;
}

/// A file followed by modification time: [`FileSource::reload_if_changed`] from a timer, a file
/// watcher or a test, [`FileSource::spawn_reloader`] on a background task, or
/// [`FileSource::follow`] with a [`Feed`] to report health with.
#[derive(Debug)]
pub struct FileSource<T> {
    path: PathBuf,
    modified: Option<SystemTime>,
    revision: i64,
    target: T,
}

impl<T: FileTarget> FileSource<T> {
    /// Loads `path` into `target`.
    pub fn open(path: impl Into<PathBuf>, mut target: T) -> Result<Self, FileError> {
        let path = path.into();
        let modified = modified(&path);
        let value = read_document(&path, T::KIND)?;
        target.publish(FileDocument {
            path: &path,
            value,
            revision: 1,
        })?;
        Ok(Self {
            path,
            modified,
            revision: 1,
            target,
        })
    }

    /// What this source updates.
    pub fn target(&self) -> &T {
        &self.target
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reloads when the file's modification time changed. A file that no longer parses keeps
    /// the previous values and returns the error. `Ok(true)` when the values were replaced.
    pub fn reload_if_changed(&mut self) -> Result<bool, FileError> {
        let now = modified(&self.path);
        if now == self.modified {
            return Ok(false);
        }
        let value = read_document(&self.path, T::KIND)?;
        self.target.publish(FileDocument {
            path: &self.path,
            value,
            revision: self.revision + 1,
        })?;
        self.revision += 1;
        self.modified = now;
        Ok(true)
    }

    /// Checks the file every `interval` on a background task and reloads it when it changed, so
    /// edits reach the application like database changes do. A file that stops parsing keeps the
    /// previous values and logs the error. The task ends when the returned handle is aborted or
    /// the runtime shuts down.
    pub fn spawn_reloader(mut self, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(error) = self.reload_if_changed() {
                    self.report(&error);
                }
            }
        })
    }

    /// Checks the file every `interval` on a background task, reporting on a [`Feed`]: fresh
    /// while the file last read parsed, stale (with the error) while an edit does not, the
    /// previous values being served meanwhile. The task ends when the feed is dropped or shut
    /// down.
    pub fn follow(mut self, interval: Duration) -> Feed {
        let (status_tx, status_rx) = watch::channel(FeedStatus::Fresh {
            loaded_at: SystemTime::now(),
        });
        let (generation_tx, generation_rx) = watch::channel(1_u64);
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stop_rx => break,
                    _ = ticks.tick() => {}
                }
                match self.reload_if_changed() {
                    Ok(false) => {}
                    Ok(true) => {
                        status_tx.send_replace(FeedStatus::Fresh {
                            loaded_at: SystemTime::now(),
                        });
                        generation_tx.send_modify(|g| *g += 1);
                    }
                    Err(error) => {
                        self.report(&error);
                        status_tx.send_modify(|status| {
                            *status = FeedStatus::stale(status, error.to_string());
                        });
                    }
                }
            }
        });
        Feed::new(status_rx, generation_rx, stop_tx, task)
    }

    fn report(&self, error: &FileError) {
        let kind = T::KIND.name;
        tracing::error!(%error, file = %self.path.display(), "{kind} changed but cannot be used; keeping the previous values");
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
