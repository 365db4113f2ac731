//! Flags from a file, for development and tests without a database.

use std::path::{Path, PathBuf};

use groundwork_live::versioned::{self, FileDocument, FileKind, FileTarget};

pub use groundwork_live::versioned::FileError;

use crate::{Flag, FlagSet, Flags};

/// What a flags file is, for messages.
const KIND: FileKind = FileKind {
    name: "flags file",
    shape: "flags (a list of flags, `{\"flags\": [...]}` or `[[flags]]` tables)",
};

#[derive(serde::Deserialize)]
struct Document {
    #[serde(default)]
    flags: Vec<Flag>,
}

/// Reads flags from a `.json` file (an array of flags, or `{"flags": [...]}`) or a `.toml` file
/// (`[[flags]]` tables), with the table's column names; any other extension is refused.
///
/// ```toml
/// [[flags]]
/// name = "supplier.realtime.sync"
/// enabled = true
/// rollout_pct = 5
/// ```
pub fn load_file(path: &Path) -> Result<FlagSet, FileError> {
    set_of(path, versioned::read_document(path, KIND)?)
}

fn set_of(path: &Path, document: serde_json::Value) -> Result<FlagSet, FileError> {
    let flags = if document.is_array() {
        serde_json::from_value::<Vec<Flag>>(document)
    } else {
        serde_json::from_value::<Document>(document).map(|document| document.flags)
    }
    .map_err(|error| FileError::parse(KIND, path, error.to_string()))?;
    if let Some(problem) = flags.iter().find_map(|flag| {
        flag.validate()
            .and_then(|()| flag.validate_targeting())
            .err()
    }) {
        return Err(FileError::Invalid {
            kind: KIND,
            path: path.to_owned(),
            problem: Box::new(problem),
        });
    }
    Ok(FlagSet::new(flags))
}

/// The live flags a flags file updates.
#[derive(Debug)]
struct FlagsFile(Flags);

impl FileTarget for FlagsFile {
    const KIND: FileKind = KIND;

    // Flags carry no revision: a reload swaps the whole set.
    fn publish(&mut self, document: FileDocument<'_>) -> Result<(), FileError> {
        self.0.replace(set_of(document.path, document.value)?);
        Ok(())
    }
}

/// A flags file followed by modification time: call [`FileSource::reload_if_changed`] from a
/// timer, a file watcher or a test to pick up edits, or let [`FileSource::spawn_reloader`] or
/// [`FileSource::follow`] do it.
#[derive(Debug)]
pub struct FileSource(versioned::FileSource<FlagsFile>);

impl FileSource {
    /// Loads `path` into new live [`Flags`].
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, FileError> {
        versioned::FileSource::open(path, FlagsFile(Flags::default())).map(Self)
    }

    /// The live flags this source updates.
    pub fn flags(&self) -> Flags {
        self.0.target().0.clone()
    }

    /// Reloads when the file's modification time changed. A file that no longer parses keeps
    /// the previous flags and returns the error. `Ok(true)` when the flags were replaced.
    pub fn reload_if_changed(&mut self) -> Result<bool, FileError> {
        self.0.reload_if_changed()
    }

    /// Checks the file every `interval` on a background task and reloads it when it changed, so
    /// edits reach the application like database changes do. A file that stops parsing keeps the
    /// previous flags and logs the error. The task ends when the returned handle is aborted or
    /// the runtime shuts down.
    pub fn spawn_reloader(self, interval: std::time::Duration) -> tokio::task::JoinHandle<()> {
        self.0.spawn_reloader(interval)
    }

    /// Like [`FileSource::spawn_reloader`], reporting on a [`groundwork_live::Feed`] as the
    /// table does: fresh while the file last read parsed, stale (with the error) while an edit
    /// does not. The task ends when the feed is dropped or shut down.
    pub fn follow(self, interval: std::time::Duration) -> groundwork_live::Feed {
        self.0.follow(interval)
    }
}
