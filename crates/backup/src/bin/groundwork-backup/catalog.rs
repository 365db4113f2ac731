//! What is stored: listing, retention, metrics, and the keys backups are encrypted to.

use std::time::SystemTime;

use groundwork_backup::{
    BackupError, BackupFilter, BackupStatus, Identity, RetentionPolicy, Storage,
};
use indicatif::HumanBytes;
use serde_json::{Value, json};

use crate::args::{FilterArgs, KindArg, PruneArgs};
use crate::{Outcome, log, to_json};

/// Deletes backups outside the retention policy.
pub(crate) async fn prune(storage: &Storage, args: &PruneArgs) -> Result<Outcome, BackupError> {
    let policy = RetentionPolicy {
        keep_last: Some(args.keep_last),
        max_age: args.max_age,
        incomplete_after: args.incomplete_after,
    };
    let report =
        groundwork_backup::prune(storage, &filter(&args.filter), &policy, args.dry_run).await?;
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    for pruned in &report.deleted {
        log(
            "INFO",
            &format!(
                "{verb} {}/{}/{} ({:?})",
                pruned.kind, pruned.source, pruned.id, pruned.reason
            ),
        );
    }
    for wal in &report.wal {
        log(
            "INFO",
            &format!(
                "{verb} {} archived WAL files of {} (before {}, where the oldest kept base \
                     backup starts)",
                wal.deleted.len(),
                wal.source,
                wal.keep_from
            ),
        );
    }
    log(
        "INFO",
        &format!(
            "{} {verb}, {} complete kept",
            report.deleted.len(),
            report.kept
        ),
    );
    Ok(Outcome::ok(to_json(&report)))
}

/// Prometheus metrics of the newest complete backups and the WAL archives.
pub(crate) async fn metrics(
    storage: &Storage,
    args: &FilterArgs,
    json: bool,
) -> Result<Outcome, BackupError> {
    let entries = groundwork_backup::list(storage, &filter(args)).await?;
    let mut text = groundwork_backup::render_metrics(&entries);
    if matches!(
        args.kind,
        None | Some(KindArg::PostgresBase | KindArg::Postgres)
    ) {
        let archives =
            groundwork_backup::wal_archive_status(storage, args.source.as_deref()).await?;
        text.push_str(&groundwork_backup::render_wal_metrics(
            &archives,
            &entries,
            SystemTime::now(),
        ));
    }
    if json {
        Ok(Outcome::ok(Value::String(text)))
    } else {
        print!("{text}");
        Ok(Outcome::ok(Value::Null))
    }
}

/// Writes a new age identity file and prints its recipient.
pub(crate) fn keygen(output: &std::path::Path, json: bool) -> Result<Outcome, BackupError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;

    let identity = Identity::generate();
    let public = identity.public().to_string();
    let created = humantime::format_rfc3339_seconds(SystemTime::now());
    let io_err = |source| BackupError::Io {
        action: "create identity file",
        path: output.display().to_string(),
        source,
    };
    // Readable by its owner only, and never overwriting a key that may still be needed.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(output)
        .map_err(io_err)?;
    writeln!(
        file,
        "# created: {created}\n# public key: {public}\n{}",
        identity.to_secret_string()
    )
    .map_err(io_err)?;
    log("INFO", &format!("identity written to {}", output.display()));
    if !json {
        println!("{public}");
    }
    Ok(Outcome::ok(
        json!({ "recipient": public, "identity_file": output }),
    ))
}

/// The `list` table.
pub(crate) fn print_list(entries: &[groundwork_backup::BackupEntry]) {
    for entry in entries {
        let detail = match (&entry.status, &entry.manifest) {
            (BackupStatus::Complete, Some(m)) => format!(
                "complete  {:>12} stored  {:>12} raw  {}",
                HumanBytes(m.stored_bytes),
                HumanBytes(m.raw_bytes),
                if m.encryption.is_some() {
                    "encrypted"
                } else {
                    "unencrypted"
                }
            ),
            _ => format!(
                "INCOMPLETE (not restorable){}",
                entry
                    .problem
                    .as_deref()
                    .map(|p| format!(": {p}"))
                    .unwrap_or_default()
            ),
        };
        println!(
            "{:<10} {:<24} {}  {detail}",
            entry.kind, entry.source, entry.id
        );
    }
}

pub(crate) fn filter(args: &FilterArgs) -> BackupFilter {
    BackupFilter {
        kind: args.kind.map(Into::into),
        source: args.source.clone(),
    }
}
