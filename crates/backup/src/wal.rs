//! PostgreSQL WAL archiving: `archive_command` pushes one file (a segment, a timeline
//! `.history` or a `.backup` label) through the pipeline, `restore_command` fetches it back.
//!
//! Each archived file is two objects under `postgres/<source>/wal/<timeline>/`: the data
//! (`<name>.zst`, or `<name>.zst.age` when encrypted) and, written after the data is stored, its
//! record `<name>.json` (sizes, SHA-256 of the stored and of the original bytes). A file is
//! archived if and only if its record exists, like a backup and its manifest.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path as FsPath, PathBuf};
use std::time::SystemTime;

use object_store::path::Path;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::manifest::{Compression, Encryption, StoredObject, rfc3339};
use crate::pipeline::{self, DownloadSpec, PipelineOptions};
use crate::storage::Storage;
use crate::{BackupError, Identity};

/// The directory under a source that holds archived WAL.
pub(crate) const WAL_DIR: &str = "wal";

/// What kind of file PostgreSQL archives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WalFileKind {
    /// A WAL segment, `000000010000000000000003`.
    Segment,
    /// The last, partial segment of a timeline after a promotion, `….partial`.
    Partial,
    /// A timeline history file, `00000002.history`.
    History,
    /// A base backup's label, `000000010000000000000003.00000028.backup`.
    Backup,
}

/// A validated name of a file PostgreSQL archives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WalFileName(String);

impl WalFileName {
    /// Validates `name`, which must be a bare file name as PostgreSQL passes in `%f`.
    pub fn parse(name: &str) -> Result<Self, BackupError> {
        let hex = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        };
        let valid = match name.len() {
            24 => hex(name),
            32 => name.ends_with(".partial") && hex(&name[..24]),
            16 => name.ends_with(".history") && hex(&name[..8]),
            40 => {
                name.ends_with(".backup")
                    && name.as_bytes()[24] == b'.'
                    && hex(&name[..24])
                    && hex(&name[25..33])
            }
            _ => false,
        };
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(BackupError::config(
                "wal file name",
                format!(
                    "{name:?} is not a WAL segment, .partial, .history or .backup file name \
                     (archive_command passes %p, restore_command %f)"
                ),
            ))
        }
    }

    /// The name as PostgreSQL writes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The timeline, 8 hex digits.
    pub fn timeline(&self) -> &str {
        &self.0[..8]
    }

    /// What kind of file this is.
    pub fn kind(&self) -> WalFileKind {
        if self.0.ends_with(".history") {
            WalFileKind::History
        } else if self.0.ends_with(".backup") {
            WalFileKind::Backup
        } else if self.0.ends_with(".partial") {
            WalFileKind::Partial
        } else {
            WalFileKind::Segment
        }
    }

    /// The segment's log and segment numbers as one comparable key (`None` for `.history`).
    pub(crate) fn position(&self) -> Option<(u32, u32)> {
        if self.kind() == WalFileKind::History {
            return None;
        }
        let log = u32::from_str_radix(&self.0[8..16], 16).ok()?;
        let seg = u32::from_str_radix(&self.0[16..24], 16).ok()?;
        Some((log, seg))
    }
}

impl fmt::Display for WalFileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The record of one archived file, stored next to it as `<name>.json` once it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalRecord {
    /// The file name as PostgreSQL wrote it.
    pub name: String,
    /// What kind of file.
    pub kind: WalFileKind,
    /// The timeline, 8 hex digits.
    pub timeline: String,
    /// SHA-256 of the original file, lowercase hex: what a second push is compared against.
    pub raw_sha256: String,
    /// The stored object: sizes and SHA-256 of the stored bytes.
    pub object: StoredObject,
    /// Compression settings.
    pub compression: Compression,
    /// Encryption settings; `None` when stored unencrypted.
    pub encryption: Option<Encryption>,
    /// When it was archived (RFC 3339, UTC).
    pub archived_at: String,
}

/// What a push did.
#[derive(Debug, Clone, Serialize)]
pub struct WalPushReport {
    /// The record in storage.
    pub record: WalRecord,
    /// `false` when the same content was already stored (PostgreSQL retried a push).
    pub stored_now: bool,
}

/// `postgres/<source>/wal/`.
pub(crate) fn wal_root(source: &str) -> Path {
    Path::from_iter(["postgres", source, WAL_DIR])
}

fn record_path(source: &str, name: &WalFileName) -> Path {
    Path::from_iter([
        "postgres",
        source,
        WAL_DIR,
        name.timeline(),
        &format!("{name}.json"),
    ])
}

fn data_path(source: &str, name: &WalFileName, object: &str) -> Path {
    Path::from_iter(["postgres", source, WAL_DIR, name.timeline(), object])
}

pub(crate) fn check_source(source: &str) -> Result<(), BackupError> {
    if source.is_empty() || source.contains('/') {
        return Err(BackupError::config(
            "source name",
            "it must be non-empty and contain no '/'",
        ));
    }
    Ok(())
}

/// Reads the record of `name`; `Ok(None)` when it is not archived.
pub async fn read_wal_record(
    storage: &Storage,
    source: &str,
    name: &WalFileName,
) -> Result<Option<WalRecord>, BackupError> {
    let path = record_path(source, name);
    let bytes = match storage.get_bytes(&path).await {
        Ok(bytes) => bytes,
        Err(BackupError::Storage {
            source: object_store::Error::NotFound { .. },
            ..
        }) => return Ok(None),
        Err(err) => return Err(err),
    };
    let record: WalRecord =
        serde_json::from_slice(&bytes).map_err(|err| BackupError::InvalidManifest {
            object: path.to_string(),
            reason: err.to_string(),
        })?;
    if record.name != name.as_str() {
        return Err(BackupError::InvalidManifest {
            object: path.to_string(),
            reason: format!("it describes {} instead", record.name),
        });
    }
    Ok(Some(record))
}

/// Archives the file at `file` (what `archive_command` passes as `%p`): compressed and
/// encrypted through the pipeline, then its record. Returns only once the store confirmed both.
///
/// A file already archived with the same content (PostgreSQL retries a push whose answer it did
/// not see) succeeds without storing it again; one archived with different content is refused
/// with [`BackupError::WalConflict`], as two servers writing to one archive would be.
pub async fn push_wal(
    storage: &Storage,
    source: &str,
    file: &FsPath,
    options: &PipelineOptions,
) -> Result<WalPushReport, BackupError> {
    check_source(source)?;
    options.validate(storage)?;
    let file_name = file.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        BackupError::config("wal file", format!("{} has no file name", file.display()))
    })?;
    let name = WalFileName::parse(file_name)?;
    if let Some(existing) = read_wal_record(storage, source, &name).await? {
        return same_content_or_conflict(storage, file, &name, existing).await;
    }

    let object_name = if options.recipients.is_empty() {
        format!("{name}.zst")
    } else {
        format!("{name}.zst.age")
    };
    let path = data_path(source, &name, &object_name);
    let owned = file.to_owned();
    // The common case, a file not archived yet: hashed in the same pass as it is uploaded.
    let (raw_sha256, object) = pipeline::upload(storage, &path, options, move |sink| {
        let read_err = |source| BackupError::Io {
            action: "read wal file",
            path: owned.display().to_string(),
            source,
        };
        let input = std::fs::File::open(&owned).map_err(read_err)?;
        let mut input = HashingReader {
            inner: input,
            hasher: Sha256::new(),
        };
        pipeline::pump(&mut input, sink).map_err(read_err)?;
        Ok(format!("{:x}", input.hasher.finalize()))
    })
    .await?;
    // The file changed while it was read: PostgreSQL never does that to a finished segment.
    let raw_len = std::fs::metadata(file).map(|m| m.len()).ok();
    if raw_len != Some(object.raw_bytes) {
        let _ = storage.delete_object(&path).await;
        return Err(BackupError::Io {
            action: "archive wal file",
            path: file.display().to_string(),
            source: std::io::Error::other("it changed size while it was read"),
        });
    }
    let record = WalRecord {
        name: name.to_string(),
        kind: name.kind(),
        timeline: name.timeline().to_owned(),
        raw_sha256,
        object,
        compression: Compression {
            algorithm: "zstd".into(),
            level: options.zstd_level,
        },
        encryption: pipeline::encryption_of(options),
        archived_at: rfc3339(SystemTime::now()),
    };
    storage
        .put_json(&record_path(source, &name), &record)
        .await?;
    tracing::info!(segment = %name, stored_bytes = record.object.stored_bytes, "wal archived");
    Ok(WalPushReport {
        record,
        stored_now: true,
    })
}

/// A second push of an archived file: success if the content is the same, a conflict if not.
async fn same_content_or_conflict(
    storage: &Storage,
    file: &FsPath,
    name: &WalFileName,
    existing: WalRecord,
) -> Result<WalPushReport, BackupError> {
    let owned = file.to_owned();
    let (raw_sha256, raw_len) = tokio::task::spawn_blocking(move || hash_file(&owned))
        .await
        .map_err(|err| BackupError::Pipeline {
            action: "hashing the wal file",
            source: std::io::Error::other(err.to_string()),
        })??;
    if existing.raw_sha256 == raw_sha256 && existing.object.raw_bytes == raw_len {
        tracing::info!(segment = %name, "already archived with the same content");
        return Ok(WalPushReport {
            record: existing,
            stored_now: false,
        });
    }
    Err(BackupError::WalConflict {
        segment: name.to_string(),
        location: storage.location().to_owned(),
    })
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

pub(crate) fn hash_file(path: &FsPath) -> Result<(String, u64), BackupError> {
    let io_err = |source| BackupError::Io {
        action: "read wal file",
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io_err)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0_u8; 256 * 1024];
    let mut total = 0_u64;
    loop {
        let n = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(io_err(err)),
        };
        hasher.update(&buffer[..n]);
        total += n as u64;
    }
    Ok((format!("{:x}", hasher.finalize()), total))
}

/// Where a fetch wrote the file.
#[derive(Debug, Clone, Serialize)]
pub struct WalFetchReport {
    /// The file fetched.
    pub name: String,
    /// Where it was written.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
}

/// Fetches `name` (what `restore_command` passes as `%f`) into `dest` (`%p`): the stored bytes are
/// hashed and compared with the record, decrypted, decompressed and compared with the original's
/// SHA-256 before `dest` appears (it is written next to it and renamed).
///
/// A file that was never archived is [`BackupError::WalMissing`]; a damaged one
/// [`BackupError::ChecksumMismatch`] (or [`BackupError::Decode`]) naming the object.
pub async fn fetch_wal(
    storage: &Storage,
    source: &str,
    name: &str,
    dest: &FsPath,
    identities: Vec<Identity>,
) -> Result<WalFetchReport, BackupError> {
    check_source(source)?;
    let name = WalFileName::parse(name)?;
    let Some(record) = read_wal_record(storage, source, &name).await? else {
        return Err(BackupError::WalMissing {
            segment: name.to_string(),
            location: storage.location().to_owned(),
        });
    };
    let spec = DownloadSpec {
        backup: format!("wal {name}"),
        path: data_path(source, &name, &record.object.name),
        object: record.object.clone(),
        recipients: record.encryption.as_ref().map(|e| e.recipients.join(", ")),
    };
    let partial = dest.with_file_name(format!(
        ".{}.groundwork-fetch",
        dest.file_name().and_then(|n| n.to_str()).unwrap_or("wal")
    ));
    let writing = partial.clone();
    let expected = (record.raw_sha256.clone(), record.object.raw_bytes);
    let segment = name.to_string();
    let fetched = pipeline::download(storage, spec, identities, None, move |plain| {
        let io_err = |source| BackupError::Io {
            action: "write fetched wal file",
            path: writing.display().to_string(),
            source,
        };
        let file = std::fs::File::create(&writing).map_err(io_err)?;
        let mut out = HashingWriter {
            inner: std::io::BufWriter::new(file),
            hasher: Sha256::new(),
        };
        let bytes = pipeline::pump(plain, &mut out).map_err(|err| BackupError::Decode {
            object: segment.clone(),
            reason: err.to_string(),
        })?;
        let file = out
            .inner
            .into_inner()
            .map_err(|err| io_err(err.into_error()))?;
        file.sync_all().map_err(io_err)?;
        let sha = format!("{:x}", out.hasher.finalize());
        if (sha.as_str(), bytes) != (expected.0.as_str(), expected.1) {
            return Err(BackupError::Decode {
                object: segment,
                reason: format!(
                    "the decoded file ({bytes} bytes, sha256 {sha}) differs from the one archived \
                     ({} bytes, sha256 {})",
                    expected.1, expected.0
                ),
            });
        }
        Ok(bytes)
    })
    .await;
    let bytes = match fetched {
        Ok(bytes) => bytes,
        Err(err) => {
            let _ = std::fs::remove_file(&partial);
            return Err(err);
        }
    };
    std::fs::rename(&partial, dest).map_err(|source| BackupError::Io {
        action: "move the fetched wal file to",
        path: dest.display().to_string(),
        source,
    })?;
    Ok(WalFetchReport {
        name: name.to_string(),
        path: dest.to_owned(),
        bytes,
    })
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Every archived file of `source` (those with a record), sorted by name within each timeline.
pub async fn list_wal(storage: &Storage, source: &str) -> Result<Vec<WalFileName>, BackupError> {
    check_source(source)?;
    let mut names = Vec::new();
    for meta in storage.list_all(Some(&wal_root(source))).await? {
        let Some(file) = meta.location.filename() else {
            continue;
        };
        let Some(stem) = file.strip_suffix(".json") else {
            continue;
        };
        if let Ok(name) = WalFileName::parse(stem) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Deletes an archived file: its record first, so an interrupted delete never leaves a record
/// without data.
pub(crate) async fn delete_wal(
    storage: &Storage,
    source: &str,
    name: &str,
) -> Result<(), BackupError> {
    let name = WalFileName::parse(name)?;
    let name = &name;
    storage.delete_object(&record_path(source, name)).await?;
    for object in [format!("{name}.zst"), format!("{name}.zst.age")] {
        storage
            .delete_object(&data_path(source, name, &object))
            .await?;
    }
    Ok(())
}

/// For each source with a kept complete base backup, the archived files before the oldest kept
/// one's start (timeline history files excepted). A source whose base backups would all go, or
/// that has none, keeps all its WAL.
pub(crate) async fn plan_wal_prune(
    storage: &Storage,
    entries: &[crate::catalog::BackupEntry],
    deleted: &[crate::catalog::PrunedBackup],
) -> Result<Vec<crate::catalog::PrunedWal>, BackupError> {
    use std::collections::BTreeMap;

    let mut oldest_kept: BTreeMap<&str, WalFileName> = BTreeMap::new();
    for entry in entries {
        let (crate::BackupKind::PostgresBase, Some(manifest)) = (entry.kind, &entry.manifest)
        else {
            continue;
        };
        let gone = deleted
            .iter()
            .any(|d| d.kind == entry.kind && d.source == entry.source && d.id == entry.id);
        let Some(start) = manifest
            .physical
            .as_ref()
            .and_then(|p| WalFileName::parse(&p.start_wal_file).ok())
        else {
            continue;
        };
        if gone {
            continue;
        }
        let slot = oldest_kept
            .entry(entry.source.as_str())
            .or_insert_with(|| start.clone());
        if start.position() < slot.position() {
            *slot = start;
        }
    }
    let mut plan = Vec::new();
    for (source, keep_from) in oldest_kept {
        let Some(keep_position) = keep_from.position() else {
            continue;
        };
        let deleted: Vec<String> = list_wal(storage, source)
            .await?
            .into_iter()
            .filter(|name| name.kind() != WalFileKind::History)
            .filter(|name| name.position().is_some_and(|at| at < keep_position))
            .map(|name| name.to_string())
            .collect();
        if !deleted.is_empty() {
            plan.push(crate::catalog::PrunedWal {
                source: source.to_owned(),
                keep_from: keep_from.to_string(),
                deleted,
            });
        }
    }
    Ok(plan)
}

/// The state of one source's WAL archive, for monitoring.
#[derive(Debug, Clone, Serialize)]
pub struct WalArchiveStatus {
    /// The source.
    pub source: String,
    /// Archived files.
    pub files: usize,
    /// The newest archived file by name.
    pub newest_file: Option<String>,
    /// When the most recent file was archived, seconds since the Unix epoch.
    pub last_archived_unix: Option<f64>,
}

/// The WAL archive of every source (or of `source`), from one listing.
pub async fn wal_archive_status(
    storage: &Storage,
    source: Option<&str>,
) -> Result<Vec<WalArchiveStatus>, BackupError> {
    use std::collections::BTreeMap;

    let prefix = match source {
        Some(source) => Path::from_iter(["postgres", source]),
        None => Path::from("postgres"),
    };
    let mut found: BTreeMap<String, WalArchiveStatus> = BTreeMap::new();
    for meta in storage.list_all(Some(&prefix)).await? {
        let parts: Vec<String> = meta
            .location
            .parts()
            .map(|p| p.as_ref().to_owned())
            .collect();
        let [_, source, wal, _, file] = parts.as_slice() else {
            continue;
        };
        let Some(name) = file.strip_suffix(".json") else {
            continue;
        };
        if wal != WAL_DIR || WalFileName::parse(name).is_err() {
            continue;
        }
        let status = found
            .entry(source.clone())
            .or_insert_with(|| WalArchiveStatus {
                source: source.clone(),
                files: 0,
                newest_file: None,
                last_archived_unix: None,
            });
        status.files += 1;
        if status.newest_file.as_deref() < Some(name) {
            status.newest_file = Some(name.to_owned());
        }
        let modified = SystemTime::from(meta.last_modified)
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        if status.last_archived_unix < Some(modified) {
            status.last_archived_unix = Some(modified);
        }
    }
    Ok(found.into_values().collect())
}

/// A log sequence number, `16/B374D848` as PostgreSQL prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Parses `X/Y` (hexadecimal halves).
    pub fn parse(text: &str) -> Result<Self, BackupError> {
        let parsed = text.trim().split_once('/').and_then(|(hi, lo)| {
            let hi = u32::from_str_radix(hi, 16).ok()?;
            let lo = u32::from_str_radix(lo, 16).ok()?;
            Some((u64::from(hi) << 32) | u64::from(lo))
        });
        parsed.map(Self).ok_or_else(|| {
            BackupError::config(
                "lsn",
                format!("{text:?} is not a WAL location like 0/3000148"),
            )
        })
    }

    /// The name of the segment holding this location on `timeline`.
    pub(crate) fn segment_name(self, timeline: u32, segment_size: u64) -> String {
        let segno = self.0 / segment_size.max(1);
        let per_log = 0x1_0000_0000 / segment_size.max(1);
        format!(
            "{timeline:08X}{:08X}{:08X}",
            segno / per_log.max(1),
            segno % per_log.max(1)
        )
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// The segments from `first` up to and including `last` (same numbering, any timeline) that
/// are not archived on any timeline at or above `first`'s: a gap PostgreSQL would silently stop
/// recovery at.
pub(crate) fn missing_segments(
    archived: &[WalFileName],
    first: &WalFileName,
    last_position: (u32, u32),
    segment_size: u64,
) -> Vec<String> {
    let per_log = u32::try_from(0x1_0000_0000 / segment_size.max(1)).unwrap_or(u32::MAX);
    let present: std::collections::BTreeSet<(u32, u32)> = archived
        .iter()
        .filter(|n| n.kind() == WalFileKind::Segment && n.timeline() >= first.timeline())
        .filter_map(WalFileName::position)
        .collect();
    let Some(mut at) = first.position() else {
        return Vec::new();
    };
    let mut missing = Vec::new();
    while at <= last_position {
        if !present.contains(&at) {
            missing.push(format!("{}{:08X}{:08X}", first.timeline(), at.0, at.1));
            if missing.len() >= 10 {
                break;
            }
        }
        at = if at.1 + 1 >= per_log {
            (at.0 + 1, 0)
        } else {
            (at.0, at.1 + 1)
        };
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::{Lsn, WalFileKind, WalFileName, missing_segments};

    #[test]
    fn wal_file_names_are_validated_and_classified() {
        for (name, kind, timeline) in [
            ("000000010000000000000003", WalFileKind::Segment, "00000001"),
            ("00000002.history", WalFileKind::History, "00000002"),
            (
                "000000010000000000000003.00000028.backup",
                WalFileKind::Backup,
                "00000001",
            ),
            (
                "000000010000000000000003.partial",
                WalFileKind::Partial,
                "00000001",
            ),
        ] {
            let parsed = WalFileName::parse(name);
            assert_eq!(
                parsed.as_ref().map(|n| (n.kind(), n.timeline())).ok(),
                Some((kind, timeline)),
                "{name}"
            );
        }
        for bad in [
            "",
            "../000000010000000000000003",
            "00000001000000000000000g",
            "000000010000000000000003.history",
            "RECOVERYXLOG",
            "000000010000000000000003 ",
        ] {
            assert!(WalFileName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lsns_parse_print_and_name_their_segment() {
        let lsn = Lsn::parse("16/B374D848").ok();
        assert_eq!(lsn.map(|l| l.to_string()).as_deref(), Some("16/B374D848"));
        assert_eq!(
            lsn.map(|l| l.segment_name(1, 16 * 1024 * 1024)).as_deref(),
            Some("0000000100000016000000B3")
        );
        assert!(Lsn::parse("16").is_err());
        assert!(Lsn::parse("x/1").is_err());
    }

    #[test]
    fn a_gap_in_the_archive_is_found_across_log_boundaries() {
        let names: Vec<WalFileName> = [
            "0000000100000000000000FE",
            "000000010000000100000000",
            "000000010000000100000002",
        ]
        .iter()
        .filter_map(|n| WalFileName::parse(n).ok())
        .collect();
        let first = names[0].clone();
        let missing = missing_segments(&names, &first, (1, 2), 16 * 1024 * 1024);
        assert_eq!(
            missing,
            vec![
                "0000000100000000000000FF".to_owned(),
                "000000010000000100000001".to_owned()
            ]
        );
    }
}
