//! Taking backups: one `run_backup` for every kind, and archiving WAL files.

use std::path::Path;
use std::sync::Arc;

use groundwork_backup::{
    BackupError, BackupFilter, BackupManifest, BaseBackupOptions, ClickHouseBackupOptions,
    PipelineOptions, PostgresBackupOptions, Progress, Recipient, RedisBackupOptions, Storage,
};
use groundwork_cli::OutputArgs;
use indicatif::HumanBytes;
use secrecy::SecretString;
use sqlx::postgres::PgConnection;

use crate::args::{PipelineArgs, WalPushArgs};
use crate::progress::ProgressReporter;
use crate::settings::{Settings, source_of};
use crate::{Outcome, log, to_json};

/// What to back up, with its options built around the pipeline's.
pub(crate) enum Job {
    /// `pg_dump` of one database, on the session that showed the server reachable.
    Postgres(PostgresBackupOptions, PgConnection),
    /// `pg_basebackup` of a cluster.
    Base(BaseBackupOptions),
    /// Redis's RDB snapshot.
    Redis(RedisBackupOptions),
    /// A ClickHouse portable export.
    ClickHouse(ClickHouseBackupOptions),
}

impl Job {
    fn label(&self) -> &'static str {
        match self {
            Self::Postgres(..) => "backup",
            Self::Base(_) => "base backup",
            Self::Redis(_) => "redis backup",
            Self::ClickHouse(_) => "clickhouse export",
        }
    }
}

/// Runs one backup of any kind: the pipeline's options from `pipeline`, the job's options from
/// `job`, progress while it runs, then the summary line and the metrics file.
pub(crate) async fn run_backup(
    storage: &Storage,
    url: &str,
    pipeline: &PipelineArgs,
    output: OutputArgs,
    job: impl FnOnce(PipelineOptions) -> Result<Job, BackupError>,
) -> Result<Outcome, BackupError> {
    let progress = Arc::new(Progress::default());
    let job = job(pipeline_options(pipeline, &progress)?)?;
    log(
        "INFO",
        &format!("{} to {} started", job.label(), storage.location()),
    );
    let reporter = ProgressReporter::start(progress, None, output.progress_bar());
    let url = SecretString::from(url.to_owned());
    let result = match job {
        Job::Postgres(options, session) => {
            groundwork_backup::backup_postgres_with_session(storage, &url, session, &options).await
        }
        Job::Base(options) => groundwork_backup::basebackup_postgres(storage, &url, &options).await,
        Job::Redis(options) => groundwork_backup::backup_redis(storage, &url, &options).await,
        Job::ClickHouse(options) => {
            groundwork_backup::backup_clickhouse(storage, &url, &options).await
        }
    };
    reporter.stop();
    finish_backup(storage, &result?, pipeline.metrics_file.as_deref()).await
}

/// The recipients of `GROUNDWORK_BACKUP_RECIPIENTS` from the env file, when neither the command
/// line nor the environment gave any.
pub(crate) fn recipients_from_settings(pipeline: &mut PipelineArgs, settings: &Settings) {
    if let (true, Some(recipients)) = (
        pipeline.recipients.is_empty(),
        settings.get("GROUNDWORK_BACKUP_RECIPIENTS"),
    ) {
        pipeline.recipients = recipients.split(',').map(str::to_owned).collect();
    }
}

pub(crate) fn pipeline_options(
    args: &PipelineArgs,
    progress: &Arc<Progress>,
) -> Result<PipelineOptions, BackupError> {
    let recipients = args
        .recipients
        .iter()
        .filter(|r| !r.trim().is_empty())
        .map(|r| Recipient::parse(r))
        .collect::<Result<Vec<_>, _>>()?;
    if recipients.is_empty() {
        log(
            "WARN",
            "no --recipient given: the backup is stored unencrypted",
        );
    }
    Ok(PipelineOptions {
        zstd_level: args.zstd_level,
        zstd_workers: args.zstd_workers,
        recipients,
        part_size: args.part_size,
        progress: Some(Arc::clone(progress)),
    })
}

async fn finish_backup(
    storage: &Storage,
    manifest: &BackupManifest,
    metrics_file: Option<&Path>,
) -> Result<Outcome, BackupError> {
    log(
        "INFO",
        &format!(
            "backup {}/{}/{} complete: {} raw, {} stored, sha256 {}, {:.1}s",
            manifest.kind,
            manifest.source,
            manifest.id,
            HumanBytes(manifest.raw_bytes),
            HumanBytes(manifest.stored_bytes),
            manifest.objects.first().map_or("-", |o| o.sha256.as_str()),
            manifest.duration().as_secs_f64()
        ),
    );
    if let Some(path) = metrics_file {
        let filter = BackupFilter {
            kind: Some(manifest.kind),
            source: Some(manifest.source.clone()),
        };
        let entries = groundwork_backup::list(storage, &filter).await?;
        write_atomically(path, &groundwork_backup::render_metrics(&entries))?;
    }
    Ok(Outcome::ok(to_json(manifest)))
}

fn write_atomically(path: &Path, text: &str) -> Result<(), BackupError> {
    let tmp = path.with_extension("prom.tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| BackupError::Io {
            action: "write metrics file",
            path: path.display().to_string(),
            source,
        })
}

/// Archives one WAL file (`archive_command`).
pub(crate) async fn wal_push(
    storage: &Storage,
    mut args: WalPushArgs,
    settings: &Settings,
) -> Result<Outcome, BackupError> {
    let source = source_of(args.source.as_ref(), settings)?;
    recipients_from_settings(&mut args.pipeline, settings);
    let progress = Arc::new(Progress::default());
    let mut options = pipeline_options(&args.pipeline, &progress)?;
    options.progress = None;
    let spool = settings
        .path(args.spool.as_ref(), "GROUNDWORK_BACKUP_WAL_SPOOL")
        .map(|dir| groundwork_backup::WalSpoolOptions {
            dir,
            batch: args.spool_batch as usize,
            parallel: args.spool_parallel as usize,
        });
    if let Some(spool) = spool {
        let report =
            groundwork_backup::push_wal_spooled(storage, &source, &args.path, &options, &spool)
                .await?;
        let how = match &report.push {
            None => "was archived earlier (acknowledged in the spool)",
            Some(push) if !push.stored_now => "was already archived with the same content",
            Some(_) => "archived",
        };
        let mut line = format!("{} {how}", report.name);
        for (label, names) in [
            ("pushed ahead", &report.pushed_ahead),
            ("not pushed ahead", &report.failed_ahead),
        ] {
            if !names.is_empty() {
                line = format!("{line}; {label}: {}", names.join(" "));
            }
        }
        log("INFO", &line);
        return Ok(Outcome::ok(to_json(&report)));
    }
    let report = groundwork_backup::push_wal(storage, &source, &args.path, &options).await?;
    if report.stored_now {
        log(
            "INFO",
            &format!(
                "archived {} ({} → {} stored)",
                report.record.name,
                HumanBytes(report.record.object.raw_bytes),
                HumanBytes(report.record.object.stored_bytes)
            ),
        );
    } else {
        log(
            "INFO",
            &format!(
                "{} was already archived with the same content",
                report.record.name
            ),
        );
    }
    Ok(Outcome::ok(to_json(&report)))
}
