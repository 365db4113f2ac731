//! What a backup records about itself, and where its objects live.

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::BackupError;

/// The current manifest format.
pub const MANIFEST_FORMAT: u32 = 1;

/// The file written first: its presence without a manifest marks a backup as incomplete.
pub(crate) const STARTED_FILE: &str = "started.json";
/// The file written last: a backup without it is incomplete.
pub(crate) const MANIFEST_FILE: &str = "manifest.json";

/// What was backed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum BackupKind {
    /// A PostgreSQL database (`pg_dump -Fc`).
    Postgres,
    /// A Redis RDB snapshot.
    Redis,
    /// A ClickHouse database (portable export).
    #[serde(rename = "clickhouse")]
    ClickHouse,
    /// A PostgreSQL cluster's physical base backup (`pg_basebackup`), restored to a point in
    /// time with the archived WAL.
    #[serde(rename = "postgres-base")]
    PostgresBase,
}

impl BackupKind {
    /// The name used in object paths and in the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Redis => "redis",
            Self::ClickHouse => "clickhouse",
            Self::PostgresBase => "postgres-base",
        }
    }

    /// Every kind.
    pub const ALL: [Self; 4] = [
        Self::Postgres,
        Self::Redis,
        Self::ClickHouse,
        Self::PostgresBase,
    ];
}

impl fmt::Display for BackupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A backup's id: its start time in UTC, `YYYYMMDDTHHMMSS.mmmZ`, so ids sort by age.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BackupId(String);

impl BackupId {
    /// The id of a backup starting at `at`.
    pub fn at(at: SystemTime) -> Self {
        // `2025-01-15T08:30:15.123Z` without the separators that are awkward in paths.
        let rfc = humantime::format_rfc3339_millis(at).to_string();
        Self(rfc.chars().filter(|c| *c != '-' && *c != ':').collect())
    }

    /// Parses an id as printed by `list`.
    pub fn parse(id: &str) -> Result<Self, BackupError> {
        let valid = id.len() == 20
            && id.ends_with('Z')
            && id.as_bytes().get(8) == Some(&b'T')
            && id.as_bytes().get(15) == Some(&b'.')
            && id
                .bytes()
                .enumerate()
                .all(|(i, b)| matches!(i, 8 | 15 | 19) || b.is_ascii_digit());
        if valid {
            Ok(Self(id.to_owned()))
        } else {
            Err(BackupError::config(
                "backup id",
                format!("expected YYYYMMDDTHHMMSS.mmmZ as printed by `list`, got {id:?}"),
            ))
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How the stored bytes were compressed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compression {
    /// Always `zstd`.
    pub algorithm: String,
    /// The zstd level.
    pub level: i32,
}

/// How the stored bytes were encrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    /// Always `age`.
    pub algorithm: String,
    /// The x25519 recipients (`age1...` public keys) that can decrypt.
    pub recipients: Vec<String>,
}

/// One stored data object of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredObject {
    /// The object name inside the backup's directory, e.g. `dump.pgc.zst.age`.
    pub name: String,
    /// Bytes produced by the source program, before compression.
    pub raw_bytes: u64,
    /// Bytes stored, after compression and encryption.
    pub stored_bytes: u64,
    /// SHA-256 of the stored bytes, lowercase hex.
    pub sha256: String,
    /// The multipart part size used for the upload.
    pub part_size: u64,
    /// What was done to the data before compression: `None` for nothing, `pg-bytea-hex-1` for
    /// a PostgreSQL dump whose `bytea` hex text was packed into bytes. A reader that does not
    /// know the name refuses the object instead of restoring packed bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packing: Option<String>,
}

/// The manifest: written last, it makes a backup complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BackupManifest {
    /// [`MANIFEST_FORMAT`].
    pub format: u32,
    /// The backup id.
    pub id: BackupId,
    /// What was backed up.
    pub kind: BackupKind,
    /// The database name (PostgreSQL) or source label (Redis).
    pub source: String,
    /// The server version, e.g. `15.8`.
    pub server_version: String,
    /// The dump program and its version, e.g. `pg_dump (PostgreSQL) 15.8`.
    pub tool_version: String,
    /// When the backup started (RFC 3339, UTC).
    pub started_at: String,
    /// When the data was stored, just before the manifest was written (RFC 3339, UTC).
    pub finished_at: String,
    /// Milliseconds from start to finish. An integer, so a manifest reads back exactly as it was
    /// written (a float such as 3.2152267119999998 seconds did not survive `serde_json`). Manifests
    /// that stored `duration_seconds` read as the same time in milliseconds.
    #[serde(
        alias = "duration_seconds",
        deserialize_with = "millis_or_legacy_seconds"
    )]
    pub duration_ms: u64,
    /// Total bytes before compression.
    pub raw_bytes: u64,
    /// Total bytes stored.
    pub stored_bytes: u64,
    /// The data objects.
    pub objects: Vec<StoredObject>,
    /// Compression settings.
    pub compression: Compression,
    /// Encryption settings; `None` when stored unencrypted.
    pub encryption: Option<Encryption>,
    /// Rows per table (`schema.table`), counted in the snapshot the dump was taken from.
    pub row_counts: BTreeMap<String, i64>,
    /// For a physical base backup: where its WAL starts and stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical: Option<PhysicalBackup>,
    /// For a Redis Cluster backup: which object holds which master's slots, in the order of
    /// `objects`. A restore gives each master's data to a node serving the same slots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_cluster: Option<Vec<RedisClusterMaster>>,
}

/// One master of a backed-up Redis Cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisClusterMaster {
    /// The master's `host:port` when it was backed up.
    pub address: String,
    /// Its RDB object in the backup (`dump-<host>-<port>.rdb.zst`).
    pub object: String,
    /// The slot ranges it served, inclusive: `[[0, 5460]]`.
    pub slots: Vec<[u16; 2]>,
}

/// What a physical base backup needs from the WAL archive to be restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhysicalBackup {
    /// The WAL location the backup starts at (`0/2000028`); recovery replays from here.
    pub start_lsn: String,
    /// The WAL location the backup ended at; a restore is consistent once replay passed it.
    pub stop_lsn: String,
    /// The timeline the backup was taken on.
    pub timeline: u32,
    /// The cluster's WAL segment size in bytes.
    pub wal_segment_size: u64,
    /// The first WAL file a restore needs.
    pub start_wal_file: String,
    /// The last WAL file a restore needs at the least.
    pub stop_wal_file: String,
}

/// What a source knows once its data is stored; [`BackupManifest::completed`] derives the rest.
pub(crate) struct Completed<'a> {
    pub(crate) id: BackupId,
    pub(crate) kind: BackupKind,
    pub(crate) source: String,
    pub(crate) server_version: String,
    pub(crate) tool_version: String,
    pub(crate) started: SystemTime,
    pub(crate) clock: std::time::Instant,
    pub(crate) objects: Vec<StoredObject>,
    pub(crate) pipeline: &'a crate::pipeline::PipelineOptions,
    pub(crate) row_counts: BTreeMap<String, i64>,
}

impl BackupManifest {
    /// The manifest of a backup whose objects are all stored: totals, timings, compression and
    /// encryption follow from `completed`.
    pub(crate) fn completed(completed: Completed<'_>) -> Self {
        Self {
            format: MANIFEST_FORMAT,
            id: completed.id,
            kind: completed.kind,
            source: completed.source,
            server_version: completed.server_version,
            tool_version: completed.tool_version,
            started_at: rfc3339(completed.started),
            finished_at: rfc3339(SystemTime::now()),
            duration_ms: u64::try_from(completed.clock.elapsed().as_millis()).unwrap_or(u64::MAX),
            raw_bytes: completed.objects.iter().map(|o| o.raw_bytes).sum(),
            stored_bytes: completed.objects.iter().map(|o| o.stored_bytes).sum(),
            objects: completed.objects,
            compression: Compression {
                algorithm: "zstd".into(),
                level: completed.pipeline.zstd_level,
            },
            encryption: crate::pipeline::encryption_of(completed.pipeline),
            row_counts: completed.row_counts,
            physical: None,
            redis_cluster: None,
        }
    }

    /// The time from start to finish.
    pub fn duration(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.duration_ms)
    }

    /// The start time as seconds since the Unix epoch.
    pub fn started_unix(&self) -> Option<f64> {
        parse_unix(&self.started_at)
    }

    /// The finish time as seconds since the Unix epoch.
    pub fn finished_unix(&self) -> Option<f64> {
        parse_unix(&self.finished_at)
    }

    pub(crate) fn recipients_text(&self) -> String {
        self.encryption
            .as_ref()
            .map_or_else(String::new, |enc| enc.recipients.join(", "))
    }
}

/// Reads `duration_ms`: an integer is milliseconds; a float is the `duration_seconds` of an
/// earlier manifest (`serde_json` always writes an f64 with a fraction or an exponent, so an old
/// manifest never holds an integer there).
fn millis_or_legacy_seconds<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<u64, D::Error> {
    struct Millis;

    impl serde::de::Visitor<'_> for Millis {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("milliseconds (an integer) or seconds (a number with a fraction)")
        }

        fn visit_u64<E: serde::de::Error>(self, millis: u64) -> Result<u64, E> {
            Ok(millis)
        }

        fn visit_i64<E: serde::de::Error>(self, millis: i64) -> Result<u64, E> {
            u64::try_from(millis).map_err(|_| E::custom("a duration cannot be negative"))
        }

        fn visit_f64<E: serde::de::Error>(self, seconds: f64) -> Result<u64, E> {
            std::time::Duration::try_from_secs_f64(seconds)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .map_err(|err| E::custom(format!("duration of {seconds} seconds: {err}")))
        }
    }

    deserializer.deserialize_any(Millis)
}

/// The marker written before any data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StartedMarker {
    pub(crate) id: BackupId,
    pub(crate) kind: BackupKind,
    pub(crate) source: String,
    pub(crate) started_at: String,
}

/// The directory of one backup.
pub(crate) fn backup_dir(kind: BackupKind, source: &str, id: &BackupId) -> Path {
    Path::from_iter([kind.as_str(), source, id.as_str()])
}

/// An object inside a backup's directory.
pub(crate) fn backup_object(kind: BackupKind, source: &str, id: &BackupId, name: &str) -> Path {
    Path::from_iter([kind.as_str(), source, id.as_str(), name])
}

pub(crate) fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

pub(crate) fn parse_unix(rfc: &str) -> Option<f64> {
    let at = humantime::parse_rfc3339(rfc).ok()?;
    Some(
        at.duration_since(SystemTime::UNIX_EPOCH)
            .ok()?
            .as_secs_f64(),
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::{BackupId, BackupKind, BackupManifest, Compression};

    fn manifest_lasting(duration: Duration) -> BackupManifest {
        BackupManifest {
            format: super::MANIFEST_FORMAT,
            id: BackupId::at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_736_929_815)),
            kind: BackupKind::Postgres,
            source: "orders".into(),
            server_version: "15.8".into(),
            tool_version: "pg_dump (PostgreSQL) 15.8".into(),
            started_at: "2025-01-15T08:30:15.000Z".into(),
            finished_at: "2025-01-15T08:30:18.215Z".into(),
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            raw_bytes: 10,
            stored_bytes: 5,
            objects: Vec::new(),
            compression: Compression {
                algorithm: "zstd".into(),
                level: 3,
            },
            encryption: None,
            row_counts: std::collections::BTreeMap::new(),
            physical: None,
            redis_cluster: None,
        }
    }

    #[test]
    fn a_manifest_reads_back_exactly_as_written() {
        // 3.215226712 s as f64 seconds is 3.2152267119999998, which serde_json read back as
        // 3.215226712: a manifest found in storage then differed from the one written.
        for duration in [
            Duration::new(3, 215_226_712),
            Duration::from_millis(1),
            Duration::new(86_399, 999_999_999),
        ] {
            let manifest = manifest_lasting(duration);
            let text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
            let read: Option<BackupManifest> = serde_json::from_str(&text).ok();
            assert_eq!(read.as_ref(), Some(&manifest), "{text}");
        }
    }

    #[test]
    fn a_manifest_with_duration_in_seconds_still_reads() {
        let written = manifest_lasting(Duration::new(3, 215_226_712));
        let text = serde_json::to_string(&written).unwrap_or_default().replace(
            "\"duration_ms\":3215",
            "\"duration_seconds\":3.2152267119999998",
        );
        assert!(text.contains("duration_seconds"), "{text}");
        let read: Result<BackupManifest, _> = serde_json::from_str(&text);
        assert_eq!(
            read.map(|m| m.duration_ms).map_err(|e| e.to_string()),
            Ok(3215)
        );
    }

    #[test]
    fn ids_are_compact_utc_times_that_sort_by_age() {
        let early = BackupId::at(SystemTime::UNIX_EPOCH + Duration::from_millis(1_736_929_815_123));
        assert_eq!(early.as_str(), "20250115T083015.123Z");
        let later = BackupId::at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_736_929_816));
        assert!(early < later);
        assert_eq!(BackupId::parse(early.as_str()).ok(), Some(early));
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "",
            "latest",
            "20250115T083015Z",
            "20250115X083015.123Z",
            "2025011aT083015.123Z",
        ] {
            assert!(BackupId::parse(bad).is_err(), "{bad}");
        }
    }
}
