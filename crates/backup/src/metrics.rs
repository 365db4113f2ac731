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
