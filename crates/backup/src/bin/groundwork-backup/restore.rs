//! Restoring and verifying: one way to select a backup (`SelectArgs`), PostgreSQL, Redis and
//! ClickHouse restores, point-in-time restores and WAL fetches.

use std::sync::Arc;

use groundwork_backup::{
    BackupError, BackupId, BackupKind, BackupManifest, ClickHouseRestoreOptions,
    PostgresRestoreOptions, Progress, RedisRestoreOptions, Storage,
};
use groundwork_cli::OutputArgs;
use groundwork_config::ExposeSecret as _;
use indicatif::HumanBytes;
use secrecy::SecretString;
use serde_json::json;

use crate::args::{
    ChRestoreArgs, Global, PgRestoreArgs, PitrRestoreArgs, RedisRestoreArgs, SelectArgs,
    WalFetchArgs,
};
use crate::progress::ProgressReporter;
use crate::settings::{Settings, identities_of, restore_command, source_of};
use crate::{Outcome, log, to_json};

/// The backup `select` names among the `kind` backups of `source`: by id, else the newest
/// complete one.
async fn select(
    storage: &Storage,
    kind: BackupKind,
    source: &str,
    select: &SelectArgs,
) -> Result<BackupManifest, BackupError> {
    match &select.id {
        Some(id) => {
            let id = BackupId::parse(id)?;
            groundwork_backup::read_manifest(storage, kind, source, &id).await
        }
        None => groundwork_backup::latest(storage, kind, source).await,
    }
}

/// Restores (or, with `verify`, restores into a scratch database and compares) a PostgreSQL
/// backup.
pub(crate) async fn pg_restore(
    storage: &Storage,
    args: PgRestoreArgs,
    settings: &Settings,
    output: OutputArgs,
    verify: bool,
) -> Result<Outcome, BackupError> {
    let url = args.connect.url().map_err(|f| usage(&f))?;
    let source = match &args.select.source {
        Some(source) => source.clone(),
        None => database_name(url.expose_secret())?,
    };
    let manifest = select(storage, BackupKind::Postgres, &source, &args.select).await?;
    // A database that does not answer fails here, within --connect-timeout and with its cause.
    drop(
        args.connect
            .connect_postgres()
            .await
            .map_err(|f| unreachable(&f))?,
    );
    let progress = Arc::new(Progress::default());
    let options = PostgresRestoreOptions {
        identities: identities_of(args.select.identity_file.as_ref(), settings)?,
        clean: args.clean,
        jobs: args.jobs.max(1),
        staging_dir: args.staging_dir.clone(),
        no_owner: args.no_owner,
        progress: Some(Arc::clone(&progress)),
        pg_restore: args.pg_restore.clone(),
    };
    let verb = if verify { "verify" } else { "restore" };
    log(
        "INFO",
        &format!("{verb} of {}/{} started", manifest.source, manifest.id),
    );
    let reporter = ProgressReporter::start(
        Arc::clone(&progress),
        Some(manifest.stored_bytes),
        output.progress_bar(),
    );
    let url = SecretString::from(url.expose_secret().to_owned());
    if !verify {
        let result = groundwork_backup::restore_postgres(storage, &manifest, &url, &options).await;
        reporter.stop();
        let report = result?;
        log(
            "INFO",
            &format!(
                "restore of {}/{} into {} complete in {:.1}s",
                manifest.source, report.id, report.database, report.duration_seconds
            ),
        );
        return Ok(Outcome::ok(to_json(&report)));
    }
    let result = groundwork_backup::verify_postgres(storage, &manifest, &url, &options).await;
    reporter.stop();
    let report = result?;
    for mismatch in &report.mismatches {
        log(
            "ERROR",
            &format!(
                "table {}: manifest {} rows, restored {}",
                mismatch.table,
                mismatch.expected.map_or("none".into(), |n| n.to_string()),
                mismatch.actual.map_or("none".into(), |n| n.to_string())
            ),
        );
    }
    log(
        if report.ok { "INFO" } else { "ERROR" },
        &format!(
            "verify of {}/{}: {} ({} tables, {} rows, restored in {:.1}s)",
            report.source,
            report.id,
            if report.ok { "ok" } else { "FAILED" },
            report.tables,
            report.rows,
            report.restore.duration_seconds
        ),
    );
    Ok(Outcome {
        ok: report.ok,
        value: to_json(&report),
    })
}

/// Writes a Redis backup's RDB to a file.
pub(crate) async fn redis_restore(
    storage: &Storage,
    args: RedisRestoreArgs,
    settings: &Settings,
) -> Result<Outcome, BackupError> {
    let source = args.select.source.as_deref().unwrap_or("redis");
    let manifest = select(storage, BackupKind::Redis, source, &args.select).await?;
    let options = RedisRestoreOptions {
        identities: identities_of(args.select.identity_file.as_ref(), settings)?,
        progress: None,
    };
    let report =
        groundwork_backup::restore_redis_file(storage, &manifest, &args.output, &options).await?;
    log(
        "INFO",
        &format!(
            "restored {}/{} to {} ({}); start Redis with this file as its dir/dbfilename",
            manifest.source,
            manifest.id,
            report.path.display(),
            HumanBytes(report.bytes)
        ),
    );
    Ok(Outcome::ok(to_json(&report)))
}

/// Restores a ClickHouse export and compares row counts.
pub(crate) async fn ch_restore(
    storage: &Storage,
    args: ChRestoreArgs,
    settings: &Settings,
) -> Result<Outcome, BackupError> {
    let source = args
        .select
        .source
        .as_deref()
        .ok_or_else(|| BackupError::Config {
            what: "--source",
            reason: "pass --source: the name the export is filed under, as `list` shows it".into(),
        })?;
    let manifest = select(storage, BackupKind::ClickHouse, source, &args.select).await?;
    let options = ClickHouseRestoreOptions {
        identities: identities_of(args.select.identity_file.as_ref(), settings)?,
        database: args.database.clone(),
        clean: args.clean,
        progress: None,
        tls: args.tls.settings()?,
    };
    let url = SecretString::from(args.clickhouse_url.expose_secret().to_owned());
    let report = groundwork_backup::restore_clickhouse(storage, &manifest, &url, &options).await?;
    for (table, expected, actual) in &report.mismatches {
        log(
            "ERROR",
            &format!("table {table}: manifest {expected} rows, restored {actual}"),
        );
    }
    log(
        if report.mismatches.is_empty() {
            "INFO"
        } else {
            "ERROR"
        },
        &format!(
            "restored {}/{} into {} ({} tables)",
            manifest.source, manifest.id, report.database, report.tables
        ),
    );
    Ok(Outcome {
        ok: report.mismatches.is_empty(),
        value: to_json(&report),
    })
}

fn database_name(url: &str) -> Result<String, BackupError> {
    url::Url::parse(url)
        .ok()
        .map(|u| u.path().trim_start_matches('/').to_owned())
        .filter(|name| !name.is_empty())
        .ok_or_else(|| BackupError::Config {
            what: "database url",
            reason: "it names no database; pass --source to say which backups to use".into(),
        })
}

/// A missing or unreadable `--database-url`, as the usage error it is.
pub(crate) fn usage(failure: &groundwork_cli::Failure) -> BackupError {
    BackupError::Config {
        what: "database url",
        reason: failure.message(),
    }
}

/// A database that cannot be reached, as the failure it is (the message names the server and
/// the cause, never the password).
pub(crate) fn unreachable(failure: &groundwork_cli::Failure) -> BackupError {
    BackupError::Program {
        program: "postgres connect",
        detail: failure.message(),
    }
}

/// Lays out a base backup with recovery settings (`pitr-restore`), and verifies it on request.
pub(crate) async fn pitr_restore(
    storage: &Storage,
    global: &Global,
    args: PitrRestoreArgs,
    settings: &Settings,
) -> Result<Outcome, BackupError> {
    let source = source_of(args.source.as_ref(), settings)?;
    let target = match (&args.to_time, &args.to_lsn) {
        (Some(time), _) => groundwork_backup::RecoveryTarget::Time(
            humantime::parse_rfc3339_weak(time).map_err(|err| BackupError::Config {
                what: "--to-time",
                reason: format!("{time:?}: {err}; expected e.g. 2026-12-06T08:30:00Z (UTC)"),
            })?,
        ),
        (None, Some(lsn)) => {
            groundwork_backup::RecoveryTarget::Lsn(groundwork_backup::Lsn::parse(lsn)?)
        }
        (None, None) => groundwork_backup::RecoveryTarget::Latest,
    };
    let identity_file = settings.path(
        args.identity_file.as_ref(),
        "GROUNDWORK_BACKUP_IDENTITY_FILE",
    );
    let options = groundwork_backup::PitrRestoreOptions {
        source: source.clone(),
        data_dir: args.data_dir.clone(),
        target,
        identities: identities_of(identity_file.as_ref(), settings)?,
        restore_command: restore_command(global, settings, &source, identity_file.as_ref())?,
        tar: args.tar.clone(),
    };
    let report = groundwork_backup::pitr_restore(storage, &options).await?;
    log(
        "INFO",
        &format!(
            "base backup {} laid out in {} in {:.1}s; recovery replays WAL from {} to {}",
            report.base_backup,
            report.data_dir.display(),
            report.duration_seconds,
            report.first_wal_file,
            report.target
        ),
    );
    if !args.verify {
        return Ok(Outcome::ok(json!({ "restore": to_json(&report) })));
    }
    let bin_dir = args
        .pg_bin_dir
        .clone()
        .or_else(groundwork_backup::default_postgres_bin_dir)
        .ok_or_else(|| BackupError::Config {
            what: "--pg-bin-dir",
            reason: "no /usr/lib/postgresql/<major>/bin found; pass the directory of pg_ctl".into(),
        })?;
    let verify = groundwork_backup::PitrVerifyOptions {
        bin_dir,
        user: args.verify_user.clone(),
        timeout: args.verify_timeout,
    };
    let checked = groundwork_backup::verify_restored_cluster(&args.data_dir, &verify).await?;
    for (table, rows) in &checked.row_counts {
        log("INFO", &format!("{table}: {rows} rows"));
    }
    log(
        "INFO",
        &format!(
            "verify: recovered and promoted to timeline {} in {:.1}s ({} tables, {} rows)",
            checked.timeline, checked.recovery_seconds, checked.tables, checked.rows
        ),
    );
    Ok(Outcome::ok(
        json!({ "restore": to_json(&report), "verify": to_json(&checked) }),
    ))
}

/// Fetches one archived WAL file (`restore_command`).
pub(crate) async fn wal_fetch(
    storage: &Storage,
    args: WalFetchArgs,
    settings: &Settings,
) -> Result<Outcome, BackupError> {
    let source = source_of(args.source.as_ref(), settings)?;
    let identities = identities_of(args.identity_file.as_ref(), settings)?;
    let report =
        groundwork_backup::fetch_wal(storage, &source, &args.name, &args.path, identities).await?;
    Ok(Outcome::ok(to_json(&report)))
}
