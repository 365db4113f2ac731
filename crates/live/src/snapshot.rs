//! The local snapshot file: the last good load, for a cold start while the database is down.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct SnapshotFile<R> {
    /// Bumped when the layout changes, so an old file is refused rather than misread.
    format: u32,
    table: String,
    rows: Vec<R>,
}

/// The same layout as [`SnapshotFile`], borrowed for writing.
#[derive(Serialize)]
struct SnapshotRef<'a, R> {
    format: u32,
    table: &'a str,
    written_unix_ms: u128,
    rows: &'a [R],
}

const FORMAT: u32 = 1;

/// Writes `rows` atomically: a reader (or a crash) sees the old file or the new one, never half.
pub(crate) async fn write<R: Serialize>(
    path: &Path,
    table: &str,
    rows: &[R],
) -> std::io::Result<()> {
    let written_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let file = SnapshotRef {
        format: FORMAT,
        table,
        written_unix_ms,
        rows,
    };
    let bytes = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
    let temp = temp_path(path);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir).await?;
    }
    let mut handle = tokio::fs::File::create(&temp).await?;
    tokio::io::AsyncWriteExt::write_all(&mut handle, &bytes).await?;
    handle.sync_all().await?;
    drop(handle);
    tokio::fs::rename(&temp, path).await
}

/// Reads a snapshot written by [`write`] for `table`.
pub(crate) async fn read<R: DeserializeOwned>(path: &Path, table: &str) -> Result<Vec<R>, String> {
    let bytes = tokio::fs::read(path).await.map_err(|e| e.to_string())?;
    let file: SnapshotFile<R> =
        serde_json::from_slice(&bytes).map_err(|e| format!("not a snapshot file: {e}"))?;
    if file.format != FORMAT {
        return Err(format!("snapshot format {} is not {FORMAT}", file.format));
    }
    if file.table != table {
        return Err(format!(
            "snapshot is of table `{}`, not `{table}`",
            file.table
        ));
    }
    Ok(file.rows)
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}
