//! Physical base backups (`pg_basebackup -Ft -D - -X none` through the pipeline) and
//! point-in-time restores from them and the WAL archive.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path as FsPath, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use crate::catalog::{BackupFilter, list};
use crate::manifest::{
    BackupId, BackupKind, BackupManifest, Completed, MANIFEST_FILE, PhysicalBackup, STARTED_FILE,
    StartedMarker, backup_object, rfc3339,
};
use crate::pipeline::{self, DownloadSpec, PipelineOptions};
use crate::postgres::{ConnParams, USER_TABLES, connect};
use crate::process::{ChildGuard, program_version};
use crate::storage::Storage;
use crate::wal::{Lsn, WalFileKind, WalFileName, check_source, list_wal, missing_segments};
use crate::{BackupError, Identity};

/// The data object of a base backup.
const BASE_OBJECT: &str = "base.tar.zst";

/// How to take a base backup.
#[derive(Debug, Clone)]
pub struct BaseBackupOptions {
    /// Compression, encryption, part size, progress.
    pub pipeline: PipelineOptions,
    /// The name the cluster's backups and WAL archive are filed under (`wal-push --source`).
    pub source: String,
    /// The `pg_basebackup` program.
    pub pg_basebackup: PathBuf,
}

impl BaseBackupOptions {
    /// Defaults for the cluster archived as `source`.
    pub fn new(source: impl Into<String>) -> Self {
        Self {
            pipeline: PipelineOptions::default(),
            source: source.into(),
            pg_basebackup: PathBuf::from("pg_basebackup"),
        }
    }
}

/// Takes a physical base backup of the cluster at `database_url` (a replication connection:
/// the user needs the `REPLICATION` attribute): `pg_basebackup` writes a tar of the data
/// directory, without WAL, which streams through zstd and age into storage; the manifest
/// (start and stop WAL location, timeline, sizes, SHA-256) is written last.
///
/// The cluster must archive its WAL (`archive_mode = on`, `archive_command` running
/// `wal-push`): a base backup restores only with the WAL from its start to its stop location,
/// and `pg_basebackup` waits until that WAL is archived.
pub async fn basebackup_postgres(
    storage: &Storage,
    database_url: &SecretString,
    options: &BaseBackupOptions,
) -> Result<BackupManifest, BackupError> {
    let params = ConnParams::parse(database_url.expose_secret())?;
    options.pipeline.validate(storage)?;
    check_source(&options.source)?;
    let source = options.source.clone();
    let program = options.pg_basebackup.clone();
    let tool_version =
        tokio::task::spawn_blocking(move || program_version("pg_basebackup", &program))
            .await
            .map_err(|err| BackupError::program("pg_basebackup", err.to_string()))??;

    let mut conn = connect(database_url).await?;
    let (server_version, segment_size, archive_mode): (String, i64, String) = sqlx::query_as(
        "SELECT current_setting('server_version'), \
                (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'), \
                current_setting('archive_mode')",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(|err| BackupError::database("reading the server settings", err))?;
    let _ = conn.close().await;
    if archive_mode == "off" {
        return Err(BackupError::config(
            "server",
            "archive_mode is off: a base backup is only restorable with the WAL archive; set \
             archive_mode = on and archive_command to `groundwork-backup ... postgres wal-push %p`",
        ));
    }
    let wal_segment_size = u64::try_from(segment_size).unwrap_or(16 * 1024 * 1024);

    let started = SystemTime::now();
    let clock = Instant::now();
    let id = BackupId::at(started);
    let kind = BackupKind::PostgresBase;
    let marker = StartedMarker {
        id: id.clone(),
        kind,
        source: source.clone(),
        started_at: rfc3339(started),
    };
    let marker_path = backup_object(kind, &source, &id, STARTED_FILE);
    storage.put_json(&marker_path, &marker).await?;
    tracing::info!(%id, source = %source, location = storage.location(), "base backup started");

    let object_name = if options.pipeline.recipients.is_empty() {
        BASE_OBJECT.to_owned()
    } else {
        format!("{BASE_OBJECT}.age")
    };
    let data_path = backup_object(kind, &source, &id, &object_name);
    let mut command = Command::new(&options.pg_basebackup);
    command
        .args([
            "--format=tar",
            "--pgdata=-",
            "--wal-method=none",
            "--checkpoint=fast",
        ])
        .arg(format!("--label=groundwork-backup {id}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    params.apply(&mut command);
    let uploaded = pipeline::upload(storage, &data_path, &options.pipeline, move |sink| {
        run_basebackup(&mut command, sink)
    })
    .await;
    let (tail, object) = match uploaded {
        Ok(done) => done,
        Err(err) => {
            let _ = storage.delete_object(&marker_path).await;
            return Err(err);
        }
    };
    let physical = match backup_positions(&tail, wal_segment_size) {
        Ok(physical) => physical,
        Err(err) => {
            let _ = storage.delete_object(&data_path).await;
            let _ = storage.delete_object(&marker_path).await;
            return Err(err);
        }
    };
    let mut manifest = BackupManifest::completed(Completed {
        id: id.clone(),
        kind,
        source: source.clone(),
        server_version,
        tool_version,
        started,
        clock,
        objects: vec![object],
        pipeline: &options.pipeline,
        row_counts: BTreeMap::new(),
    });
    manifest.physical = Some(physical);
    storage
        .put_json(&backup_object(kind, &source, &id, MANIFEST_FILE), &manifest)
        .await?;
    tracing::info!(%id, source = %source, stored_bytes = manifest.stored_bytes, "base backup complete");
    Ok(manifest)
}

/// The end of the tar stream kept to read the `backup_manifest` entry `pg_basebackup` appends:
/// its `WAL-Ranges` come last, after one line per file.
const TAIL_KEPT: usize = 256 * 1024;

fn run_basebackup(command: &mut Command, sink: &mut dyn Write) -> Result<String, BackupError> {
    let mut child = ChildGuard::spawn("pg_basebackup", command)?;
    let Some(mut stdout) = child.child_mut().and_then(|c| c.stdout.take()) else {
        return Err(BackupError::program(
            "pg_basebackup",
            "its output was not captured",
        ));
    };
    let mut tail = TailWriter {
        inner: sink,
        tail: Vec::with_capacity(2 * TAIL_KEPT),
    };
    match pipeline::pump_pipe(&mut stdout, &mut tail) {
        Ok(_) => {
            drop(stdout);
            child.wait_success()?;
            Ok(String::from_utf8_lossy(&tail.tail).into_owned())
        }
        Err(err) => {
            child.kill();
            Err(BackupError::Pipeline {
                action: "streaming pg_basebackup output",
                source: err,
            })
        }
    }
}

/// Passes bytes through, keeping at least the last [`TAIL_KEPT`] of them.
struct TailWriter<'a> {
    inner: &'a mut dyn Write,
    tail: Vec<u8>,
}

impl Write for TailWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.tail.extend_from_slice(&buf[..n]);
        if self.tail.len() > 2 * TAIL_KEPT {
            let excess = self.tail.len() - TAIL_KEPT;
            self.tail.drain(..excess);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Reads the WAL range from the `backup_manifest` at the end of the tar stream:
/// `"WAL-Ranges": [{ "Timeline": 1, "Start-LSN": "0/3000028", "End-LSN": "0/3000100" }]`.
fn backup_positions(tail: &str, segment_size: u64) -> Result<PhysicalBackup, BackupError> {
    let missing = || {
        BackupError::program(
            "pg_basebackup",
            "its backup_manifest names no WAL range (PostgreSQL 13 or newer writes one unless \
             --no-manifest is given)",
        )
    };
    let ranges = &tail[tail.rfind("\"WAL-Ranges\"").ok_or_else(missing)?..];
    let value_of = |key: &str| -> Option<&str> {
        let start = ranges.find(&format!("\"{key}\""))? + key.len() + 2;
        let rest = ranges[start..].trim_start().strip_prefix(':')?.trim_start();
        let end = rest.find([',', '}'])?;
        Some(rest[..end].trim().trim_matches('"'))
    };
    let timeline: u32 = value_of("Timeline")
        .and_then(|t| t.parse().ok())
        .ok_or_else(missing)?;
    let start_lsn = Lsn::parse(value_of("Start-LSN").ok_or_else(missing)?)?;
    let stop_lsn = Lsn::parse(value_of("End-LSN").ok_or_else(missing)?)?;
    Ok(PhysicalBackup {
        start_lsn: start_lsn.to_string(),
        stop_lsn: stop_lsn.to_string(),
        timeline,
        wal_segment_size: segment_size,
        start_wal_file: start_lsn.segment_name(timeline, segment_size),
        stop_wal_file: stop_lsn.segment_name(timeline, segment_size),
    })
}

/// Where recovery stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryTarget {
    /// Replay every archived WAL file.
    Latest,
    /// Stop before the first transaction that committed at or after this time.
    Time(SystemTime),
    /// Stop after this WAL location.
    Lsn(Lsn),
}

impl RecoveryTarget {
    fn describe(&self) -> String {
        match self {
            Self::Latest => "the end of the archive".into(),
            Self::Time(at) => humantime::format_rfc3339_micros(*at).to_string(),
            Self::Lsn(lsn) => format!("WAL location {lsn}"),
        }
    }
}

/// How to lay out a point-in-time restore.
#[derive(Debug, Clone)]
pub struct PitrRestoreOptions {
    /// The name the cluster's backups and WAL archive are filed under.
    pub source: String,
    /// The new data directory: missing or empty.
    pub data_dir: PathBuf,
    /// Where recovery stops.
    pub target: RecoveryTarget,
    /// Private keys for encrypted backups.
    pub identities: Vec<Identity>,
    /// The `restore_command` the restored server runs: `groundwork-backup ... postgres
    /// wal-fetch %f %p` with the same storage and source. It must hold no secret (it is written
    /// to `postgresql.auto.conf`); give credentials through `--env-file`.
    pub restore_command: String,
    /// The `tar` program.
    pub tar: PathBuf,
}

/// What a point-in-time restore laid out.
#[derive(Debug, Clone, Serialize)]
pub struct PitrRestoreReport {
    /// The base backup restored.
    pub base_backup: BackupId,
    /// Where recovery will stop.
    pub target: String,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The first WAL file recovery replays.
    pub first_wal_file: String,
    /// The newest WAL file archived when the restore was laid out.
    pub newest_wal_file: Option<String>,
    /// Seconds taken to lay out the base backup.
    pub duration_seconds: f64,
}

/// Restores the newest base backup of `options.source` that finished before the target into
/// an empty data directory and writes the recovery settings (`recovery.signal`,
/// `restore_command`, the target, `recovery_target_action = 'promote'`); starting PostgreSQL
/// on the directory then replays the archived WAL up to the target.
///
/// Before anything is written, the archive is checked for a gap between the base backup's start
/// and the target (or the newest archived segment for [`RecoveryTarget::Latest`]): PostgreSQL
/// would end recovery at a missing segment as if the archive ended there.
pub async fn pitr_restore(
    storage: &Storage,
    options: &PitrRestoreOptions,
) -> Result<PitrRestoreReport, BackupError> {
    check_source(&options.source)?;
    let clock = Instant::now();
    check_empty_dir(&options.data_dir)?;
    let base = choose_base(storage, &options.source, &options.target).await?;
    let Some(physical) = base.physical.clone() else {
        return Err(BackupError::InvalidManifest {
            object: base.id.to_string(),
            reason: "a postgres-base manifest without WAL locations".into(),
        });
    };
    let archived = list_wal(storage, &options.source).await?;
    let newest = newest_segment(&archived, physical.timeline);
    let first = WalFileName::parse(&physical.start_wal_file)?;
    let stop = WalFileName::parse(&physical.stop_wal_file)?;
    let needed_to = match &options.target {
        RecoveryTarget::Latest => newest
            .as_ref()
            .and_then(WalFileName::position)
            .max(stop.position()),
        RecoveryTarget::Time(_) => stop.position(),
        RecoveryTarget::Lsn(lsn) => {
            WalFileName::parse(&lsn.segment_name(physical.timeline, physical.wal_segment_size))?
                .position()
                .max(stop.position())
        }
    };
    if let Some(last) = needed_to {
        let missing = missing_segments(&archived, &first, last, physical.wal_segment_size);
        if !missing.is_empty() {
            return Err(BackupError::WalGap {
                missing: missing.join(", "),
                location: storage.location().to_owned(),
                detail: format!(
                    "base backup {} needs every WAL file from {} to reach {}",
                    base.id,
                    first,
                    options.target.describe()
                ),
            });
        }
    }

    crate::local::create_private_dir_all(&options.data_dir).map_err(|source| BackupError::Io {
        action: "create data directory",
        path: options.data_dir.display().to_string(),
        source,
    })?;
    let Some(object) = base.objects.first().cloned() else {
        return Err(BackupError::InvalidManifest {
            object: base.id.to_string(),
            reason: "it lists no data object".into(),
        });
    };
    let spec = DownloadSpec {
        backup: base.id.to_string(),
        path: backup_object(
            BackupKind::PostgresBase,
            &base.source,
            &base.id,
            &object.name,
        ),
        object,
        recipients: base.encryption.as_ref().map(|_| base.recipients_text()),
    };
    let mut command = Command::new(&options.tar);
    command
        .args(["--extract", "--file=-", "--directory"])
        .arg(&options.data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    pipeline::download(
        storage,
        spec,
        options.identities.clone(),
        None,
        move |plain| {
            crate::process::feed_child("tar", &mut command, plain, "the base backup stream")
        },
    )
    .await?;
    write_recovery_settings(options, &base.id)?;
    tracing::info!(id = %base.id, data_dir = %options.data_dir.display(), "point-in-time restore laid out");
    Ok(PitrRestoreReport {
        base_backup: base.id.clone(),
        target: options.target.describe(),
        data_dir: options.data_dir.clone(),
        first_wal_file: first.to_string(),
        newest_wal_file: newest.map(|n| n.to_string()),
        duration_seconds: clock.elapsed().as_secs_f64(),
    })
}

fn check_empty_dir(dir: &FsPath) -> Result<(), BackupError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::config(
                    "data directory",
                    format!(
                        "{} is not empty; restore into a new or empty directory",
                        dir.display()
                    ),
                ));
            }
            Ok(())
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(BackupError::Io {
            action: "read data directory",
            path: dir.display().to_string(),
            source,
        }),
    }
}

/// The newest complete base backup that can reach `target`.
async fn choose_base(
    storage: &Storage,
    source: &str,
    target: &RecoveryTarget,
) -> Result<BackupManifest, BackupError> {
    let filter = BackupFilter {
        kind: Some(BackupKind::PostgresBase),
        source: Some(source.to_owned()),
    };
    let target_unix = match target {
        RecoveryTarget::Time(at) => at
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs_f64()),
        _ => None,
    };
    list(storage, &filter)
        .await?
        .into_iter()
        .rev()
        .filter_map(|entry| entry.manifest)
        .find(|manifest| match target {
            RecoveryTarget::Latest => true,
            RecoveryTarget::Time(_) => manifest
                .finished_unix()
                .zip(target_unix)
                .is_some_and(|(finished, target)| finished <= target),
            RecoveryTarget::Lsn(lsn) => manifest
                .physical
                .as_ref()
                .and_then(|p| Lsn::parse(&p.stop_lsn).ok())
                .is_some_and(|stop| stop <= *lsn),
        })
        .ok_or_else(|| BackupError::NotFound {
            what: format!(
                "base backup of postgres-base/{source} that ended before {}",
                target.describe()
            ),
            location: storage.location().to_owned(),
        })
}

fn newest_segment(archived: &[WalFileName], timeline: u32) -> Option<WalFileName> {
    let timeline = format!("{timeline:08X}");
    archived
        .iter()
        .filter(|n| n.kind() == WalFileKind::Segment && n.timeline() >= timeline.as_str())
        .max_by_key(|n| n.position())
        .cloned()
}

/// `2026-12-06 08:16:20.168526+00`: `recovery_target_time` accepts neither `T` nor `Z`.
fn postgres_timestamp(at: SystemTime) -> String {
    let rfc = humantime::format_rfc3339_micros(at).to_string();
    format!("{}+00", rfc.replacen('T', " ", 1).trim_end_matches('Z'))
}

/// A value for `postgresql.conf`, single-quoted.
fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn write_recovery_settings(
    options: &PitrRestoreOptions,
    base: &BackupId,
) -> Result<(), BackupError> {
    let dir = &options.data_dir;
    let io_err = |path: &FsPath| {
        let path = path.display().to_string();
        move |source| BackupError::Io {
            action: "write recovery settings to",
            path,
            source,
        }
    };
    let mut settings = format!(
        "\n# Added by groundwork-backup pitr-restore from base backup {base} at {}.\n\
         restore_command = {}\n\
         recovery_target_timeline = 'latest'\n",
        rfc3339(SystemTime::now()),
        conf_quote(&options.restore_command)
    );
    match &options.target {
        RecoveryTarget::Latest => {}
        RecoveryTarget::Time(at) => {
            let _ = write!(
                settings,
                "recovery_target_time = {}\nrecovery_target_inclusive = off\n\
                 recovery_target_action = 'promote'\n",
                conf_quote(&postgres_timestamp(*at))
            );
        }
        RecoveryTarget::Lsn(lsn) => {
            let _ = write!(
                settings,
                "recovery_target_lsn = {}\nrecovery_target_action = 'promote'\n",
                conf_quote(&lsn.to_string())
            );
        }
    }
    let auto_conf = dir.join("postgresql.auto.conf");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&auto_conf)
        .map_err(io_err(&auto_conf))?;
    file.write_all(settings.as_bytes())
        .map_err(io_err(&auto_conf))?;
    let _ = std::fs::remove_file(dir.join("standby.signal"));
    let signal = dir.join("recovery.signal");
    std::fs::write(&signal, b"").map_err(io_err(&signal))?;
    Ok(())
}

/// How to check a restored data directory.
#[derive(Debug, Clone)]
pub struct PitrVerifyOptions {
    /// The directory holding `pg_ctl` and `postgres` of the backed-up major version.
    pub bin_dir: PathBuf,
    /// The database superuser to connect as (over a private Unix socket, trusted).
    pub user: String,
    /// How long recovery may take.
    pub timeout: Duration,
}

/// What [`verify_restored_cluster`] found.
#[derive(Debug, Clone, Serialize)]
pub struct PitrVerifyReport {
    /// Rows per table, `database/schema.table`.
    pub row_counts: BTreeMap<String, i64>,
    /// Tables counted.
    pub tables: usize,
    /// Rows counted.
    pub rows: i64,
    /// The timeline the restored cluster runs on after promotion.
    pub timeline: i64,
    /// Seconds from start until recovery finished.
    pub recovery_seconds: f64,
}

/// Starts a throwaway server on the restored `data_dir` (a free port, a private Unix socket,
/// no TCP, no archiving), waits until recovery finished and the server was promoted, counts
/// every table's rows in every database, and stops it. The directory is then an ordinary,
/// promoted cluster.
///
/// A recovery that fails (a damaged or missing WAL file) is reported with the end of the
/// server's log, which names the file.
pub async fn verify_restored_cluster(
    data_dir: &FsPath,
    options: &PitrVerifyOptions,
) -> Result<PitrVerifyReport, BackupError> {
    if running_as_root() {
        return Err(BackupError::config(
            "user",
            "PostgreSQL does not run as root; run pitr-restore --verify as the data directory's \
             owner (e.g. `runuser -u postgres -- groundwork-backup ...`)",
        ));
    }
    let scratch = tempfile::Builder::new()
        .prefix("gw-verify-")
        .tempdir()
        .map_err(|source| BackupError::Io {
            action: "create a directory for the verification server in",
            path: std::env::temp_dir().display().to_string(),
            source,
        })?;
    let hba = scratch.path().join("pg_hba.conf");
    std::fs::write(&hba, "local all all trust\n").map_err(|source| BackupError::Io {
        action: "write",
        path: hba.display().to_string(),
        source,
    })?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| BackupError::Io {
            action: "pick a free port on",
            path: "127.0.0.1".into(),
            source,
        })?;
    let server = VerifyServer {
        data_dir: data_dir.to_owned(),
        bin_dir: options.bin_dir.clone(),
        log: scratch.path().join("server.log"),
        socket_dir: scratch.path().to_owned(),
        port,
    };
    let clock = Instant::now();
    let started = {
        let server = server.clone();
        let hba = hba.clone();
        let timeout = options.timeout;
        tokio::task::spawn_blocking(move || server.start(&hba, timeout))
            .await
            .map_err(|err| BackupError::program("pg_ctl", err.to_string()))?
    };
    if let Err(err) = started {
        return Err(server.failure(&err.to_string()));
    }
    let checked = check_cluster(&server, options, clock).await;
    let stopped = {
        let server = server.clone();
        tokio::task::spawn_blocking(move || server.stop())
            .await
            .map_err(|err| BackupError::program("pg_ctl", err.to_string()))?
    };
    let report = checked?;
    stopped?;
    Ok(report)
}

async fn check_cluster(
    server: &VerifyServer,
    options: &PitrVerifyOptions,
    clock: Instant,
) -> Result<PitrVerifyReport, BackupError> {
    let connect_to = |database: &str| {
        PgConnectOptions::new()
            .socket(&server.socket_dir)
            .port(server.port)
            .username(&options.user)
            .database(database)
    };
    let mut conn = loop {
        match PgConnection::connect_with(&connect_to("postgres")).await {
            Ok(conn) => break conn,
            Err(err) if clock.elapsed() < options.timeout && server.running() => {
                tracing::debug!(error = %err, "verification server not ready");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => return Err(server.failure(&format!("cannot connect: {err}"))),
        }
    };
    loop {
        let recovering: Result<bool, _> = sqlx::query_scalar("SELECT pg_is_in_recovery()")
            .fetch_one(&mut conn)
            .await;
        match recovering {
            Ok(false) => break,
            Ok(true) if clock.elapsed() < options.timeout => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(true) => {
                return Err(server.failure(&format!(
                    "recovery did not finish within {}",
                    humantime::format_duration(options.timeout)
                )));
            }
            Err(err) => return Err(server.failure(&format!("recovery failed: {err}"))),
        }
    }
    let recovery_seconds = clock.elapsed().as_secs_f64();
    let timeline: i64 =
        sqlx::query_scalar("SELECT timeline_id::bigint FROM pg_control_checkpoint()")
            .fetch_one(&mut conn)
            .await
            .map_err(|err| BackupError::database("reading the timeline", err))?;
    let databases: Vec<String> = sqlx::query_scalar(
        "SELECT datname::text FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(|err| BackupError::database("listing databases", err))?;
    let _ = conn.close().await;
    let mut row_counts = BTreeMap::new();
    for database in databases {
        let mut conn = PgConnection::connect_with(&connect_to(&database))
            .await
            .map_err(|err| BackupError::database("connecting to a restored database", err))?;
        let rows: Vec<(String, i64)> = sqlx::query_as(USER_TABLES)
            .fetch_all(&mut conn)
            .await
            .map_err(|err| BackupError::database("counting rows", err))?;
        let _ = conn.close().await;
        for (table, count) in rows {
            row_counts.insert(format!("{database}/{table}"), count);
        }
    }
    Ok(PitrVerifyReport {
        tables: row_counts.len(),
        rows: row_counts.values().sum(),
        row_counts,
        timeline,
        recovery_seconds,
    })
}

/// The throwaway server of [`verify_restored_cluster`].
#[derive(Debug, Clone)]
struct VerifyServer {
    data_dir: PathBuf,
    bin_dir: PathBuf,
    log: PathBuf,
    socket_dir: PathBuf,
    port: u16,
}

impl VerifyServer {
    fn start(&self, hba: &FsPath, timeout: Duration) -> Result<(), BackupError> {
        let options = format!(
            "-p {} -c listen_addresses='' -c unix_socket_directories='{}' -c hba_file='{}' \
             -c archive_mode=off -c hot_standby=off",
            self.port,
            self.socket_dir.display(),
            hba.display()
        );
        // Without hot standby the server accepts connections only once recovery ended, and
        // settings the source passed on its command line (a higher max_connections) cannot
        // stop recovery: PostgreSQL compares them with the primary's only for hot standby.
        let mut command = Command::new(self.bin_dir.join("pg_ctl"));
        command
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t"])
            .arg(timeout.as_secs().max(1).to_string())
            .arg("-o")
            .arg(options)
            .arg("start")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        ChildGuard::spawn("pg_ctl", &mut command)?
            .wait_success()
            .map(drop)
    }

    fn running(&self) -> bool {
        self.data_dir.join("postmaster.pid").exists()
    }

    fn stop(&self) -> Result<(), BackupError> {
        if !self.running() {
            return Ok(());
        }
        let mut command = Command::new(self.bin_dir.join("pg_ctl"));
        command
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "fast", "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        ChildGuard::spawn("pg_ctl", &mut command)?
            .wait_success()
            .map(drop)
    }

    /// An error carrying the end of the server's log, after stopping a server still running.
    fn failure(&self, what: &str) -> BackupError {
        let _ = self.stop();
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        BackupError::program(
            "postgres",
            format!("the restored cluster did not recover: {what}; the end of its log:\n{tail}"),
        )
    }
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The newest installed `/usr/lib/postgresql/<major>/bin`, where Debian and Ubuntu put
/// `pg_ctl`; `None` when there is none.
pub fn default_postgres_bin_dir() -> Option<PathBuf> {
    let root = FsPath::new("/usr/lib/postgresql");
    std::fs::read_dir(root)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .map(|major| root.join(major.to_string()).join("bin"))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::{backup_positions, conf_quote, postgres_timestamp};

    #[test]
    fn recovery_target_times_are_written_as_postgres_reads_them() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_796_544_980_168_526);
        assert_eq!(postgres_timestamp(at), "2026-12-06 08:16:20.168526+00");
    }

    #[test]
    fn the_backup_manifest_gives_the_wal_range() {
        let stderr = "{ \"Path\": \"global/pg_control\", \"Size\": 8192 }\n],\n\
                      \"WAL-Ranges\": [\n\
                      { \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \"End-LSN\": \"0/3000100\" }\n\
                      ],\n\"Manifest-Checksum\": \"78\"}\0\0\0";
        let physical = backup_positions(stderr, 16 * 1024 * 1024).ok();
        let physical = physical.as_ref();
        assert_eq!(physical.map(|p| p.start_lsn.as_str()), Some("0/2000028"));
        assert_eq!(physical.map(|p| p.timeline), Some(1));
        assert_eq!(
            physical.map(|p| p.start_wal_file.as_str()),
            Some("000000010000000000000002")
        );
        assert_eq!(
            physical.map(|p| p.stop_wal_file.as_str()),
            Some("000000010000000000000003")
        );
        assert!(backup_positions("\"Files\": []", 16).is_err());
    }

    #[test]
    fn configuration_values_are_quoted() {
        assert_eq!(conf_quote("a 'b' c"), "'a ''b'' c'");
    }
}
