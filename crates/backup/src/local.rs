//! `file://` storage that only its owner can read: every directory it creates is 0700 and every
//! object it writes 0600, whatever the process umask. An unencrypted dump holds the database in
//! clear, and under the usual umask 022 `object_store`'s [`LocalFileSystem`] would leave it 0644 in
//! 0755 directories.
//!
//! A backup's directory is created 0700 before its first object is staged in it, so the staging
//! file of an upload (which [`LocalFileSystem`] creates with the umask's mode) is never reachable
//! by another user either; the finished object is then set to 0600.

use std::fmt;
use std::fs::{DirBuilder, Permissions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
};

use crate::BackupError;

/// The mode of directories this crate creates for backups.
pub(crate) const PRIVATE_DIR_MODE: u32 = 0o700;
/// The mode of backup files.
pub(crate) const PRIVATE_FILE_MODE: u32 = 0o600;

/// Creates `dir` and its missing ancestors with mode 0700; existing directories are left as
/// they are.
pub(crate) fn create_private_dir_all(dir: &std::path::Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir_all(parent)?;
    }
    match DirBuilder::new().mode(PRIVATE_DIR_MODE).create(dir) {
        // The umask can only have removed bits; set them all the same.
        Ok(()) => std::fs::set_permissions(dir, Permissions::from_mode(PRIVATE_DIR_MODE)),
        // Another writer created it meanwhile.
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(err) => Err(err),
    }
}

/// A [`LocalFileSystem`] that writes private directories and files.
#[derive(Debug)]
pub(crate) struct PrivateFileSystem {
    inner: LocalFileSystem,
}

impl PrivateFileSystem {
    /// Opens `dir` as storage, creating it (0700) if it is missing.
    pub(crate) fn open(dir: &std::path::Path) -> Result<Self, BackupError> {
        create_private_dir_all(dir).map_err(|source| BackupError::Io {
            action: "create backup directory",
            path: dir.display().to_string(),
            source,
        })?;
        let inner = LocalFileSystem::new_with_prefix(dir)
            .map_err(|err| BackupError::storage("opening", dir.display().to_string(), err))?
            .with_automatic_cleanup(true)
            .with_fsync(true);
        Ok(Self { inner })
    }

    /// The file behind `location`, with its directory created private.
    fn prepare(&self, location: &Path) -> Result<PathBuf> {
        let file = self.inner.path_to_filesystem(location)?;
        if let Some(dir) = file.parent() {
            create_private_dir_all(dir).map_err(|err| io_error("create directory", dir, &err))?;
        }
        Ok(file)
    }
}

fn make_private(file: &std::path::Path) -> Result<()> {
    std::fs::set_permissions(file, Permissions::from_mode(PRIVATE_FILE_MODE))
        .map_err(|err| io_error("set the mode of", file, &err))
}

fn io_error(action: &str, path: &std::path::Path, err: &io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "LocalFileSystem",
        source: format!("cannot {action} {}: {err}", path.display()).into(),
    }
}

impl fmt::Display for PrivateFileSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait]
impl ObjectStore for PrivateFileSystem {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let file = self.prepare(location)?;
        let result = self.inner.put_opts(location, payload, opts).await?;
        make_private(&file)?;
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let file = self.prepare(location)?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(PrivateUpload { inner, file }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let file = self.prepare(to)?;
        self.inner.copy_opts(from, to, options).await?;
        make_private(&file)
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let file = self.prepare(to)?;
        self.inner.rename_opts(from, to, options).await?;
        make_private(&file)
    }
}

/// A multipart upload whose finished file is made private.
#[derive(Debug)]
struct PrivateUpload {
    inner: Box<dyn MultipartUpload>,
    file: PathBuf,
}

#[async_trait]
impl MultipartUpload for PrivateUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let result = self.inner.complete().await?;
        make_private(&self.file)?;
        Ok(result)
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}
