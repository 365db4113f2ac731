//! Prometheus text metrics for alerting on missed backups.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::catalog::{BackupEntry, BackupStatus};
use crate::manifest::{BackupKind, BackupManifest};

/// Renders, for the newest complete backup of each source, `backup_last_success_timestamp_seconds`,
/// `backup_last_size_bytes`, `backup_last_raw_size_bytes` and `backup_last_duration_seconds`,
/// labelled `kind` and `source`, in the Prometheus text format (for the node exporter's textfile
/// collector or a scrape endpoint).
///
/// Alert on `time() - backup_last_success_timestamp_seconds > 26 * 3600` for a daily backup.
pub fn render_metrics(entries: &[BackupEntry]) -> String {
    let mut newest: BTreeMap<(BackupKind, &str), &BackupManifest> = BTreeMap::new();
    for entry in entries {
        let (BackupStatus::Complete, Some(manifest)) = (entry.status, &entry.manifest) else {
            continue;
        };
        let slot = newest
            .entry((entry.kind, entry.source.as_str()))
            .or_insert(manifest);
        if manifest.id > slot.id {
            *slot = manifest;
        }
    }
    let families: [Family; 4] = [
        (
            "backup_last_success_timestamp_seconds",
            "gauge",
            "Unix time at which the newest complete backup finished.",
            |m| m.finished_unix().unwrap_or(0.0),
        ),
        (
            "backup_last_size_bytes",
            "gauge",
            "Stored (compressed, encrypted) size of the newest complete backup.",
            #[allow(clippy::cast_precision_loss)]
            |m| m.stored_bytes as f64,
        ),
        (
            "backup_last_raw_size_bytes",
            "gauge",
            "Uncompressed size of the newest complete backup.",
            #[allow(clippy::cast_precision_loss)]
            |m| m.raw_bytes as f64,
        ),
        (
            "backup_last_duration_seconds",
            "gauge",
            "Duration of the newest complete backup.",
            |m| m.duration().as_secs_f64(),
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for ((backup_kind, source), manifest) in &newest {
            let _ = writeln!(
                out,
                "{name}{{kind=\"{backup_kind}\",source=\"{}\"}} {}",
                escape_label(source),
                value(manifest)
            );
        }
    }
    out
}

/// Name, type, help text and value of one metric family.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&BackupManifest) -> f64,
);

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders, per source of a WAL archive, `backup_wal_last_archived_timestamp_seconds` (when the
/// most recent WAL file was archived) and `backup_wal_archived_files`, and per source of base
/// backups `backup_base_backup_age_seconds` (seconds from the newest complete base backup's end
/// to `now`). Alert when archiving stopped:
/// `time() - backup_wal_last_archived_timestamp_seconds > 3 * archive_timeout`.
#[cfg(feature = "postgres")]
pub fn render_wal_metrics(
    archives: &[crate::wal::WalArchiveStatus],
    entries: &[BackupEntry],
    now: std::time::SystemTime,
) -> String {
    let now_unix = now
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut out = String::new();
    let mut family = |name: &str, help: &str, rows: &[(&str, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (source, value) in rows {
            let _ = writeln!(out, "{name}{{source=\"{}\"}} {value}", escape_label(source));
        }
    };
    let last_pushes: Vec<(&str, f64)> = archives
        .iter()
        .filter_map(|a| Some((a.source.as_str(), a.last_archived_unix?)))
        .collect();
    family(
        "backup_wal_last_archived_timestamp_seconds",
        "Unix time at which the most recent WAL file was archived.",
        &last_pushes,
    );
    #[allow(clippy::cast_precision_loss)]
    let files: Vec<(&str, f64)> = archives
        .iter()
        .map(|a| (a.source.as_str(), a.files as f64))
        .collect();
    family(
        "backup_wal_archived_files",
        "WAL files in the archive.",
        &files,
    );
    let mut newest: BTreeMap<&str, f64> = BTreeMap::new();
    for entry in entries {
        let (BackupKind::PostgresBase, BackupStatus::Complete, Some(manifest)) =
            (entry.kind, entry.status, &entry.manifest)
        else {
            continue;
        };
        if let Some(finished) = manifest.finished_unix() {
            let slot = newest.entry(entry.source.as_str()).or_insert(finished);
            *slot = slot.max(finished);
        }
    }
    let ages: Vec<(&str, f64)> = newest
        .into_iter()
        .map(|(source, finished)| (source, (now_unix - finished).max(0.0)))
        .collect();
    family(
        "backup_base_backup_age_seconds",
        "Seconds since the newest complete base backup finished.",
        &ages,
    );
    out
}
