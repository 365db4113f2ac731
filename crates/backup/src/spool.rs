//! Asynchronous WAL archiving through a local spool, as pgBackRest's `archive-async` does.
//!
//! `archive_command` starts one process per file. With a spool, the process that PostgreSQL
//! starts for one file also pushes the other files PostgreSQL has marked ready
//! (`pg_wal/archive_status/*.ready`), several at once, and for each file whose push the object
//! store confirmed writes an acknowledgement into the spool directory. When PostgreSQL then asks
//! for one of those files, the acknowledgement answers at once. A file is therefore reported
//! archived only after its data and record were stored, exactly as without a spool.
//!
//! An acknowledgement names the storage location and source it was pushed to and the file it was
//! pushed from (device, inode, size, modification time) with its SHA-256. It is trusted only for
//! the same location and source and the same file; a file that differs is hashed, and unless its
//! content is the one acknowledged, pushed the normal way (which refuses different content
//! already in the archive).

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path as FsPath, PathBuf};

use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::BackupError;
use crate::pipeline::PipelineOptions;
use crate::storage::Storage;
use crate::wal::{WalFileName, WalPushReport, check_source, push_wal};

/// How `wal-push` uses a spool.
#[derive(Debug, Clone)]
pub struct WalSpoolOptions {
    /// The spool directory (created if missing); local to the server, e.g. next to `PGDATA`.
    pub dir: PathBuf,
    /// The most files one invocation pushes, the one asked for included (at least 1).
    pub batch: usize,
    /// How many of them are pushed at once (at least 1).
    pub parallel: usize,
}

impl WalSpoolOptions {
    /// `dir` with 8 files per invocation, 2 at once.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            batch: 8,
            parallel: 2,
        }
    }
}

/// What a spooled push did.
#[derive(Debug, Clone, Serialize)]
pub struct WalSpoolReport {
    /// The file PostgreSQL asked for.
    pub name: String,
    /// `true` when an acknowledgement from an earlier invocation answered.
    pub acknowledged_earlier: bool,
    /// The push of the file asked for, when it was pushed (or found archived) now.
    pub push: Option<WalPushReport>,
    /// Other ready files pushed and acknowledged ahead of PostgreSQL asking for them.
    pub pushed_ahead: Vec<String>,
    /// Other ready files whose push failed (PostgreSQL asks for them again later).
    pub failed_ahead: Vec<String>,
}

/// The acknowledgement of one pushed file, `<spool>/<name>.ok`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Acknowledgement {
    name: String,
    location: String,
    source: String,
    raw_sha256: String,
    raw_bytes: u64,
    file: FileIdentity,
}

/// What identifies the file a push read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct FileIdentity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl FileIdentity {
    fn of(path: &FsPath) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        Ok(Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        })
    }
}

fn ack_path(spool: &FsPath, name: &WalFileName) -> PathBuf {
    spool.join(format!("{name}.ok"))
}

/// Archives `file` (`%p`) like [`push_wal`], and with it up to `batch - 1` other files that
/// PostgreSQL marked ready in the `archive_status` directory next to it, `parallel` at once,
/// acknowledging each in the spool once the store confirmed it. Returns `Ok` only if `file` is
/// archived: acknowledged earlier for this very file, or pushed now.
pub async fn push_wal_spooled(
    storage: &Storage,
    source: &str,
    file: &FsPath,
    options: &PipelineOptions,
    spool: &WalSpoolOptions,
) -> Result<WalSpoolReport, BackupError> {
    check_source(source)?;
    options.validate(storage)?;
    let file_name = file.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        BackupError::config("wal file", format!("{} has no file name", file.display()))
    })?;
    let name = WalFileName::parse(file_name)?;
    std::fs::create_dir_all(&spool.dir).map_err(|source| BackupError::Io {
        action: "create the wal spool directory",
        path: spool.dir.display().to_string(),
        source,
    })?;
    let location = storage.location();

    if acknowledged(&spool.dir, &name, file, location, source).await? {
        // PostgreSQL marks the file done now; a retry after a crash pushes it again, which
        // the archive answers as the same content.
        let _ = std::fs::remove_file(ack_path(&spool.dir, &name));
        tracing::info!(segment = %name, "archived earlier (acknowledged in the spool)");
        return Ok(WalSpoolReport {
            name: name.to_string(),
            acknowledged_earlier: true,
            push: None,
            pushed_ahead: Vec::new(),
            failed_ahead: Vec::new(),
        });
    }

    let wal_dir = file.parent().unwrap_or_else(|| FsPath::new("."));
    forget_stale_acknowledgements(&spool.dir, wal_dir);
    let ahead = ready_files(wal_dir, &name, &spool.dir, spool.batch.max(1) - 1);
    let mut jobs: Vec<(WalFileName, PathBuf)> = vec![(name.clone(), file.to_owned())];
    jobs.extend(ahead.into_iter().map(|n| {
        let path = wal_dir.join(n.as_str());
        (n, path)
    }));
    let pushes = futures_util::stream::iter(jobs.into_iter().map(|(name, path)| async move {
        let identity = FileIdentity::of(&path);
        let pushed = push_wal(storage, source, &path, options).await;
        (name, path, identity, pushed)
    }))
    .buffered(spool.parallel.max(1))
    .collect::<Vec<_>>()
    .await;

    let mut report = WalSpoolReport {
        name: name.to_string(),
        acknowledged_earlier: false,
        push: None,
        pushed_ahead: Vec::new(),
        failed_ahead: Vec::new(),
    };
    let mut asked = None;
    for (pushed_name, path, identity, pushed) in pushes {
        if pushed_name == name {
            asked = Some(pushed);
            continue;
        }
        match (pushed, identity) {
            (Ok(push), Ok(identity)) => {
                let ack = Acknowledgement {
                    name: pushed_name.to_string(),
                    location: location.to_owned(),
                    source: source.to_owned(),
                    raw_sha256: push.record.raw_sha256.clone(),
                    raw_bytes: push.record.object.raw_bytes,
                    file: identity,
                };
                match write_acknowledgement(&spool.dir, &pushed_name, &ack) {
                    Ok(()) => report.pushed_ahead.push(pushed_name.to_string()),
                    Err(err) => {
                        tracing::warn!(segment = %pushed_name, error = &err as &dyn std::error::Error, "acknowledging in the spool failed");
                        report.failed_ahead.push(pushed_name.to_string());
                    }
                }
            }
            (Err(err), _) => {
                tracing::warn!(segment = %pushed_name, file = %path.display(), error = &err as &dyn std::error::Error, "pushing ahead failed");
                report.failed_ahead.push(pushed_name.to_string());
            }
            (Ok(_), Err(err)) => {
                tracing::warn!(segment = %pushed_name, error = &err as &dyn std::error::Error, "the pushed file vanished");
                report.failed_ahead.push(pushed_name.to_string());
            }
        }
    }
    let push = asked.ok_or_else(|| BackupError::Pipeline {
        action: "pushing the wal file",
        source: std::io::Error::other("the push of the file asked for did not run"),
    })??;
    report.push = Some(push);
    Ok(report)
}

/// Whether an acknowledgement in the spool covers `file` as it is now.
async fn acknowledged(
    spool: &FsPath,
    name: &WalFileName,
    file: &FsPath,
    location: &str,
    source: &str,
) -> Result<bool, BackupError> {
    let Ok(bytes) = std::fs::read(ack_path(spool, name)) else {
        return Ok(false);
    };
    let covers = match serde_json::from_slice::<Acknowledgement>(&bytes) {
        Ok(ack)
            if ack.name == name.as_str() && ack.location == location && ack.source == source =>
        {
            match FileIdentity::of(file) {
                Ok(identity) if identity == ack.file => true,
                // Another file under the same name (copied, or a new cluster): only the same
                // content counts.
                Ok(_) => {
                    let owned = file.to_owned();
                    let hashed = tokio::task::spawn_blocking(move || crate::wal::hash_file(&owned))
                        .await
                        .map_err(|err| BackupError::Pipeline {
                            action: "hashing the wal file",
                            source: std::io::Error::other(err.to_string()),
                        })??;
                    hashed == (ack.raw_sha256, ack.raw_bytes)
                }
                Err(_) => false,
            }
        }
        _ => false,
    };
    if !covers {
        // It answers for nothing any more; the push that follows decides.
        let _ = std::fs::remove_file(ack_path(spool, name));
    }
    Ok(covers)
}

fn write_acknowledgement(
    spool: &FsPath,
    name: &WalFileName,
    ack: &Acknowledgement,
) -> std::io::Result<()> {
    let json = serde_json::to_vec(ack).map_err(std::io::Error::other)?;
    let partial = spool.join(format!(".{name}.ok.partial"));
    std::fs::write(&partial, json)?;
    std::fs::rename(&partial, ack_path(spool, name))
}

/// Up to `limit` files marked ready in `<wal_dir>/archive_status`, oldest first, other than
/// `asked` and not acknowledged yet.
fn ready_files(
    wal_dir: &FsPath,
    asked: &WalFileName,
    spool: &FsPath,
    limit: usize,
) -> Vec<WalFileName> {
    if limit == 0 {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir(wal_dir.join("archive_status")) else {
        return Vec::new();
    };
    let ready: BTreeSet<WalFileName> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let file = entry.file_name();
            let stem = file.to_str()?.strip_suffix(".ready")?;
            WalFileName::parse(stem).ok()
        })
        .filter(|name| name != asked && !ack_path(spool, name).exists())
        .filter(|name| wal_dir.join(name.as_str()).is_file())
        .collect();
    ready.into_iter().take(limit).collect()
}

/// Removes acknowledgements of files no longer in `wal_dir` (archived and recycled since).
fn forget_stale_acknowledgements(spool: &FsPath, wal_dir: &FsPath) {
    let Ok(entries) = std::fs::read_dir(spool) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let file = entry.file_name();
        let Some(stem) = file.to_str().and_then(|f| f.strip_suffix(".ok")) else {
            continue;
        };
        if WalFileName::parse(stem).is_ok() && !wal_dir.join(stem).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
