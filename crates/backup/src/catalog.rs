//! Listing backups and pruning them by retention policy.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use object_store::path::Path;
use serde::Serialize;

use crate::BackupError;
use crate::manifest::{
    BackupId, BackupKind, BackupManifest, MANIFEST_FILE, backup_dir, backup_object,
};
use crate::storage::Storage;

/// Whether a backup can be restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupStatus {
    /// Its manifest was written: every data object is in place.
    Complete,
    /// Started but never finished (killed, failed, or still running): never restored, never
    /// counted by retention.
    Incomplete,
}

/// One backup found in storage.
#[derive(Debug, Clone, Serialize)]
pub struct BackupEntry {
    /// What was backed up.
    pub kind: BackupKind,
    /// The database name or source label.
    pub source: String,
    /// The id (start time).
    pub id: BackupId,
    /// Complete or incomplete.
    pub status: BackupStatus,
    /// The manifest of a complete backup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<BackupManifest>,
    /// When an incomplete backup was last written to, seconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified_unix: Option<f64>,
    /// Why a backup with a manifest is still listed as incomplete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Which backups to list or prune.
#[derive(Debug, Clone, Default)]
pub struct BackupFilter {
    /// Only this kind.
    pub kind: Option<BackupKind>,
    /// Only this source (database name).
    pub source: Option<String>,
}

/// Lists every backup, complete and incomplete, oldest first per kind and source.
pub async fn list(
    storage: &Storage,
    filter: &BackupFilter,
) -> Result<Vec<BackupEntry>, BackupError> {
    let kinds: Vec<BackupKind> = match filter.kind {
        Some(kind) => vec![kind],
        None => BackupKind::ALL.to_vec(),
    };
    let mut entries = Vec::new();
    for kind in kinds {
        let prefix = match &filter.source {
            Some(source) => Path::from_iter([kind.as_str(), source.as_str()]),
            None => Path::from(kind.as_str()),
        };
        // (source, id) → (has manifest, newest modification)
        let mut found: BTreeMap<(String, String), (bool, SystemTime)> = BTreeMap::new();
        for meta in storage.list_all(Some(&prefix)).await? {
            let parts: Vec<String> = meta
                .location
                .parts()
                .map(|p| p.as_ref().to_owned())
                .collect();
            let [_, source, id, file] = parts.as_slice() else {
                continue;
            };
            let Ok(source) = decode_segment(source) else {
                continue;
            };
            let slot = found
                .entry((source, id.clone()))
                .or_insert((false, SystemTime::UNIX_EPOCH));
            slot.0 |= file == MANIFEST_FILE;
            slot.1 = slot.1.max(meta.last_modified.into());
        }
        for ((source, id), (has_manifest, modified)) in found {
            let Ok(id) = BackupId::parse(&id) else {
                continue;
            };
            let mut entry = BackupEntry {
                kind,
                source,
                id,
                status: BackupStatus::Incomplete,
                manifest: None,
                last_modified_unix: modified
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_secs_f64()),
                problem: None,
            };
            if has_manifest {
                match read_manifest(storage, kind, &entry.source, &entry.id).await {
                    Ok(manifest) => {
                        entry.status = BackupStatus::Complete;
                        entry.manifest = Some(manifest);
                    }
                    Err(err) => entry.problem = Some(err.to_string()),
                }
            }
            entries.push(entry);
        }
    }
    Ok(entries)
}

/// Reads the manifest of one backup.
pub async fn read_manifest(
    storage: &Storage,
    kind: BackupKind,
    source: &str,
    id: &BackupId,
) -> Result<BackupManifest, BackupError> {
    let path = backup_object(kind, source, id, MANIFEST_FILE);
    let bytes = match storage.get_bytes(&path).await {
        Err(BackupError::Storage {
            source: object_store::Error::NotFound { .. },
            ..
        }) => {
            return Err(BackupError::NotFound {
                what: format!("{id} for {kind}/{source}"),
                location: storage.location().to_owned(),
            });
        }
        other => other?,
    };
    let manifest: BackupManifest =
        serde_json::from_slice(&bytes).map_err(|err| BackupError::InvalidManifest {
            object: path.to_string(),
            reason: err.to_string(),
        })?;
    if manifest.kind != kind || manifest.id != *id || manifest.source != source {
        return Err(BackupError::InvalidManifest {
            object: path.to_string(),
            reason: format!(
                "it describes {}/{}/{} instead",
                manifest.kind, manifest.source, manifest.id
            ),
        });
    }
    Ok(manifest)
}

/// The newest complete backup of `source`.
pub async fn latest(
    storage: &Storage,
    kind: BackupKind,
    source: &str,
) -> Result<BackupManifest, BackupError> {
    let filter = BackupFilter {
        kind: Some(kind),
        source: Some(source.to_owned()),
    };
    list(storage, &filter)
        .await?
        .into_iter()
        .rev()
        .find_map(|entry| entry.manifest)
        .ok_or_else(|| BackupError::NotFound {
            what: format!("for {kind}/{source}"),
            location: storage.location().to_owned(),
        })
}

/// Which backups to keep.
#[derive(Debug, Clone)]
pub struct RetentionPolicy {
    /// Keep at most this many complete backups per source (the seeds keep 30).
    pub keep_last: Option<usize>,
    /// Delete complete backups that started longer ago than this.
    pub max_age: Option<Duration>,
    /// Delete incomplete backups last written longer ago than this (default one day, so a
    /// backup still running is never touched).
    pub incomplete_after: Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        Self {
            keep_last: Some(30),
            max_age: None,
            incomplete_after: Duration::from_hours(24),
        }
    }
}

/// Why a backup was (or would be) deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PruneReason {
    /// More than `keep_last` newer complete backups exist.
    BeyondKeepLast,
    /// Older than `max_age`.
    OlderThanMaxAge,
    /// Incomplete and not written to for `incomplete_after`.
    Incomplete,
}

/// One pruned backup.
#[derive(Debug, Clone, Serialize)]
pub struct PrunedBackup {
    /// What was backed up.
    pub kind: BackupKind,
    /// The source.
    pub source: String,
    /// The id.
    pub id: BackupId,
    /// Why.
    pub reason: PruneReason,
}

/// What `prune` did or, with `dry_run`, would do.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    /// Whether anything was deleted.
    pub dry_run: bool,
    /// The backups deleted (or to delete).
    pub deleted: Vec<PrunedBackup>,
    /// Complete backups kept.
    pub kept: usize,
    /// Archived WAL deleted (or to delete) per source: what no kept base backup needs.
    pub wal: Vec<PrunedWal>,
}

/// The archived WAL files of one source that retention removes: those before the start of the
/// oldest kept base backup. Timeline history files are always kept.
#[derive(Debug, Clone, Serialize)]
pub struct PrunedWal {
    /// The source.
    pub source: String,
    /// The first WAL file kept: where the oldest kept base backup starts.
    pub keep_from: String,
    /// The files deleted (or to delete).
    pub deleted: Vec<String>,
}

/// Applies `policy` to every source matching `filter`.
///
/// A complete backup is deleted when it falls outside any configured limit (beyond the newest
/// `keep_last`, or older than `max_age`), except that the newest complete backup of each source
/// is always kept. Incomplete backups never count towards `keep_last`.
pub async fn prune(
    storage: &Storage,
    filter: &BackupFilter,
    policy: &RetentionPolicy,
    dry_run: bool,
) -> Result<PruneReport, BackupError> {
    let now = SystemTime::now();
    let entries = list(storage, filter).await?;
    let mut plan = plan_prune(&entries, policy, now);
    #[cfg(feature = "postgres")]
    {
        plan.wal = crate::wal::plan_wal_prune(storage, &entries, &plan.deleted).await?;
    }
    if !dry_run {
        // Backups first: an interrupted prune never leaves a listed base backup without its WAL.
        for pruned in &plan.deleted {
            let dir = backup_dir(pruned.kind, &pruned.source, &pruned.id);
            let manifest = backup_object(pruned.kind, &pruned.source, &pruned.id, MANIFEST_FILE);
            storage.delete_dir(&dir, Some(&manifest)).await?;
            tracing::info!(kind = %pruned.kind, source = %pruned.source, id = %pruned.id, reason = ?pruned.reason, "backup deleted");
        }
        #[cfg(feature = "postgres")]
        for pruned in &plan.wal {
            for name in &pruned.deleted {
                crate::wal::delete_wal(storage, &pruned.source, name).await?;
            }
            tracing::info!(source = %pruned.source, files = pruned.deleted.len(), keep_from = %pruned.keep_from, "archived wal deleted");
        }
    }
    plan.dry_run = dry_run;
    Ok(plan)
}

/// The pure part of [`prune`].
pub fn plan_prune(
    entries: &[BackupEntry],
    policy: &RetentionPolicy,
    now: SystemTime,
) -> PruneReport {
    let now_unix = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut groups: BTreeMap<(BackupKind, &str), Vec<&BackupEntry>> = BTreeMap::new();
    for entry in entries {
        groups
            .entry((entry.kind, entry.source.as_str()))
            .or_default()
            .push(entry);
    }
    let mut deleted = Vec::new();
    let mut kept = 0;
    for group in groups.values() {
        let mut complete: Vec<&&BackupEntry> = group
            .iter()
            .filter(|e| e.status == BackupStatus::Complete)
            .collect();
        complete.sort_by(|a, b| b.id.cmp(&a.id));
        for (index, entry) in complete.iter().enumerate() {
            let started = entry
                .manifest
                .as_ref()
                .and_then(BackupManifest::started_unix)
                .unwrap_or(now_unix);
            let reason = if index == 0 {
                None
            } else if policy.keep_last.is_some_and(|n| index >= n) {
                Some(PruneReason::BeyondKeepLast)
            } else if policy
                .max_age
                .is_some_and(|max| now_unix - started > max.as_secs_f64())
            {
                Some(PruneReason::OlderThanMaxAge)
            } else {
                None
            };
            match reason {
                Some(reason) => deleted.push(pruned(entry, reason)),
                None => kept += 1,
            }
        }
        for entry in group
            .iter()
            .filter(|e| e.status == BackupStatus::Incomplete)
        {
            let modified = entry.last_modified_unix.unwrap_or(now_unix);
            if now_unix - modified >= policy.incomplete_after.as_secs_f64() {
                deleted.push(pruned(entry, PruneReason::Incomplete));
            }
        }
    }
    PruneReport {
        dry_run: true,
        deleted,
        kept,
        wal: Vec::new(),
    }
}

fn pruned(entry: &BackupEntry, reason: PruneReason) -> PrunedBackup {
    PrunedBackup {
        kind: entry.kind,
        source: entry.source.clone(),
        id: entry.id.clone(),
        reason,
    }
}

/// Object path segments are percent-encoded; source names are shown decoded.
fn decode_segment(segment: &str) -> Result<String, ()> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).map_err(|_| ())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::{BackupEntry, BackupStatus, PruneReason, RetentionPolicy, plan_prune};
    use crate::manifest::{BackupId, BackupKind};

    fn entry(id_secs: u64, status: BackupStatus) -> BackupEntry {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(id_secs);
        BackupEntry {
            kind: BackupKind::Postgres,
            source: "app".into(),
            id: BackupId::at(at),
            status,
            manifest: None,
            last_modified_unix: Some(f64::from(u32::try_from(id_secs).unwrap_or(u32::MAX))),
            problem: None,
        }
    }

    #[test]
    fn keep_last_never_counts_incomplete_backups_and_keeps_the_newest() {
        let day = 86_400;
        let entries = vec![
            entry(day, BackupStatus::Complete),
            entry(2 * day, BackupStatus::Complete),
            entry(3 * day, BackupStatus::Incomplete),
            entry(4 * day, BackupStatus::Complete),
            entry(5 * day, BackupStatus::Incomplete),
        ];
        let policy = RetentionPolicy {
            keep_last: Some(2),
            ..RetentionPolicy::default()
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(5 * day + 60);
        let plan = plan_prune(&entries, &policy, now);
        let deleted: Vec<(String, PruneReason)> = plan
            .deleted
            .iter()
            .map(|p| (p.id.to_string(), p.reason))
            .collect();
        assert_eq!(
            deleted,
            vec![
                (entries[0].id.to_string(), PruneReason::BeyondKeepLast),
                (entries[2].id.to_string(), PruneReason::Incomplete),
            ]
        );
        assert_eq!(plan.kept, 2);
    }

    #[test]
    fn zero_keep_last_still_keeps_the_newest_complete_backup() {
        let entries = vec![
            entry(10, BackupStatus::Complete),
            entry(20, BackupStatus::Complete),
        ];
        let policy = RetentionPolicy {
            keep_last: Some(0),
            max_age: Some(Duration::from_secs(1)),
            incomplete_after: Duration::ZERO,
        };
        let plan = plan_prune(
            &entries,
            &policy,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000),
        );
        assert_eq!(plan.deleted.len(), 1);
        assert_eq!(plan.deleted[0].id, entries[0].id);
        assert_eq!(plan.kept, 1);
    }
}
