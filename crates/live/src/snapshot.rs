//! The local snapshot file: the last good load, for a cold start while the database is down.

use std::os::unix::fs::PermissionsExt;
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
/// The mode of snapshot files.
const FILE_MODE: u32 = 0o600;
/// The mode of directories created for them.
const DIR_MODE: u32 = 0o700;

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
        create_private_dir_all(dir).await?;
    }
    // Configuration can hold what only the service should read: 0600, whatever the umask.
    let mut handle = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(&temp)
        .await?;
    // The mode only applies to a new file, and the umask may have removed bits from it.
    handle
        .set_permissions(std::fs::Permissions::from_mode(FILE_MODE))
        .await?;
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

/// Creates `dir` and its missing ancestors with mode 0700; existing directories are left as
/// they are.
async fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut next = Some(dir);
    while let Some(candidate) = next.filter(|d| !d.as_os_str().is_empty()) {
        match tokio::fs::metadata(candidate).await {
            Ok(_) => break,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => missing.push(candidate),
            Err(err) => return Err(err),
        }
        next = candidate.parent();
    }
    for created in missing.into_iter().rev() {
        match tokio::fs::DirBuilder::new()
            .mode(DIR_MODE)
            .create(created)
            .await
        {
            Ok(()) => {
                tokio::fs::set_permissions(created, std::fs::Permissions::from_mode(DIR_MODE))
                    .await?;
            }
            // Another writer created it meanwhile.
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::PermissionsExt;

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path).map_or(0, |m| m.permissions().mode() & 0o7777)
    }

    #[tokio::test]
    async fn snapshot_files_and_their_new_directories_are_private() -> std::io::Result<()> {
        // Under the usual umask 022 they would otherwise be 0644 and 0755.
        let parent = tempfile::tempdir()?;
        let dir = parent.path().join("state");
        let path = dir.join("flags").join("production.json");
        super::write(&path, "feature_flags", &[1_u32, 2, 3]).await?;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("flags")), 0o700);

        // Replacing it keeps it private too.
        super::write(&path, "feature_flags", &[4_u32]).await?;
        assert_eq!(mode(&path), 0o600);
        let rows: Result<Vec<u32>, String> = super::read(&path, "feature_flags").await;
        assert_eq!(rows, Ok(vec![4]));
        Ok(())
    }
}
