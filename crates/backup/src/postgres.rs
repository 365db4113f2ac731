//! PostgreSQL: `pg_dump -Fc -Z0` into the pipeline, `pg_restore` out of it, and verification
//! by restoring into a scratch database.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection as _};

use crate::manifest::{
    BackupId, BackupKind, BackupManifest, Completed, MANIFEST_FILE, STARTED_FILE, StartedMarker,
    backup_object, rfc3339,
};
use crate::pg_archive::HeadRecorder;
use crate::pipeline::{self, DownloadSpec, Packing, PipelineOptions, Progress};
use crate::process::{ChildGuard, last_secret, program_version, take_secrets};
use crate::storage::Storage;
use crate::storage::percent_decode;
use crate::{BackupError, Identity};

/// Relations outside the system schemas, excluding those that belong to extensions.
pub(crate) const USER_TABLES: &str = r"
    SELECT n.nspname || '.' || c.relname,
           (xpath('/row/c/text()',
                  query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname),
                               false, true, '')))[1]::text::bigint
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\_toast%'
      AND n.nspname NOT LIKE 'pg\_temp%'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d
                      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
    ORDER BY 1";

const USER_RELATIONS: &str = r"
    SELECT count(*)
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\_toast%'
      AND n.nspname NOT LIKE 'pg\_temp%'";

/// How to back up a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresBackupOptions {
    /// Compression, encryption, part size, progress.
    pub pipeline: PipelineOptions,
    /// Count every table's rows in the dump's snapshot and record them in the manifest (what
    /// `verify` compares); costs one sequential scan per table.
    pub row_counts: bool,
    /// The name the backup is filed under; the database name when `None`.
    pub source_name: Option<String>,
    /// The `pg_dump` program.
    pub pg_dump: PathBuf,
    /// Pack the hex text of `bytea` values into bytes before compression (default): on random
    /// or already compressed `bytea` this halves the data for far less CPU than compressing the
    /// text. Off, the stored object is plain zstd (then age), as tools other than Groundwork
    /// read it; on, its manifest entry says `"packing": "pg-bytea-hex-1"`.
    pub pack_bytea_hex: bool,
}

impl Default for PostgresBackupOptions {
    fn default() -> Self {
        Self {
            pipeline: PipelineOptions::default(),
            row_counts: true,
            source_name: None,
            pg_dump: PathBuf::from("pg_dump"),
            pack_bytea_hex: true,
        }
    }
}

/// How to restore a PostgreSQL backup.
#[derive(Debug, Clone)]
pub struct PostgresRestoreOptions {
    /// Private keys for encrypted backups.
    pub identities: Vec<Identity>,
    /// Drop the objects the backup recreates (`pg_restore --clean --if-exists`); without it a
    /// target holding any relation is refused.
    pub clean: bool,
    /// Parallel `pg_restore` jobs. Above 1, the archive is first written (verified and
    /// decrypted) to a local file, because parallel restore needs a seekable archive, and the
    /// restore is not one transaction.
    pub jobs: u32,
    /// Where that local file goes; the system temporary directory when `None`.
    pub staging_dir: Option<PathBuf>,
    /// Skip ownership and privileges (`--no-owner --no-privileges`), for a target whose roles
    /// differ from the source's.
    pub no_owner: bool,
    /// Counters for a progress bar.
    pub progress: Option<Arc<Progress>>,
    /// The `pg_restore` program.
    pub pg_restore: PathBuf,
}

impl Default for PostgresRestoreOptions {
    fn default() -> Self {
        Self {
            identities: Vec::new(),
            clean: false,
            jobs: 1,
            staging_dir: None,
            no_owner: false,
            progress: None,
            pg_restore: PathBuf::from("pg_restore"),
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// The backup restored.
    pub id: BackupId,
    /// The target database.
    pub database: String,
    /// Bytes read from storage.
    pub stored_bytes: u64,
    /// Bytes handed to `pg_restore`.
    pub raw_bytes: u64,
    /// Seconds taken.
    pub duration_seconds: f64,
}

/// One table compared by [`verify_postgres`].
#[derive(Debug, Clone, Serialize)]
pub struct TableCheck {
    /// `schema.table`.
    pub table: String,
    /// Rows recorded in the manifest; `None` for a table the manifest does not list.
    pub expected: Option<i64>,
    /// Rows in the restored copy; `None` for a table missing there.
    pub actual: Option<i64>,
}

/// The result of [`verify_postgres`].
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The backup verified.
    pub id: BackupId,
    /// The source database.
    pub source: String,
    /// Whether it restored and every table's row count matched.
    pub ok: bool,
    /// Tables whose counts differ (or that exist on only one side).
    pub mismatches: Vec<TableCheck>,
    /// Tables compared.
    pub tables: usize,
    /// Rows counted in the restored copy.
    pub rows: i64,
    /// The restore.
    pub restore: RestoreReport,
}

/// Connection settings for child programs (`pg_dump`, `pg_restore`), keeping every secret out
/// of their command line, where `ps` shows it: the URL on the command line has no userinfo
/// password and no secret query parameter (see [`groundwork_config::SECRET_QUERY_PARAMS`]). The
/// password (from `?password=` when given, else from the userinfo) goes into `PGPASSWORD`; libpq
/// reads `sslpassword` from no variable, so it goes into a private service file named by
/// `PGSERVICEFILE`/`PGSERVICE` that lives as long as these settings. Other secret-named
/// parameters are not libpq connection parameters and are dropped.
pub(crate) struct ConnParams {
    url_for_argv: String,
    password: Option<SecretString>,
    service_file: Option<tempfile::NamedTempFile>,
    pub(crate) database: String,
}

impl fmt::Debug for ConnParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnParams")
            .field("url", &self.url_for_argv)
            .finish_non_exhaustive()
    }
}

/// The service name under which the private service file holds `sslpassword`.
const SERVICE_NAME: &str = "groundwork_backup";

impl ConnParams {
    pub(crate) fn parse(url: &str) -> Result<Self, BackupError> {
        let parsed = url::Url::parse(url).map_err(|err| {
            BackupError::config(
                "database url",
                format!("{err}; expected postgres://user:password@host:port/database"),
            )
        })?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(BackupError::config(
                "database url",
                format!(
                    "unsupported scheme {}://; expected postgres://",
                    parsed.scheme()
                ),
            ));
        }
        let database = percent_decode(parsed.path().trim_start_matches('/'));
        if database.is_empty() {
            return Err(BackupError::config(
                "database url",
                "it names no database; expected postgres://user:password@host:port/database",
            ));
        }
        let (url_for_argv, secrets) = take_secrets(&parsed, "database url")?;
        let password = last_secret(&secrets, &["password"]);
        let ssl_password = last_secret(&secrets, &["sslpassword"]);
        let service_file = ssl_password.map(|p| service_file(&p)).transpose()?;
        Ok(Self {
            url_for_argv,
            password,
            service_file,
            database,
        })
    }

    pub(crate) fn apply(&self, command: &mut Command) {
        command.arg(format!("--dbname={}", self.url_for_argv));
        command.arg("--no-password");
        if let Some(password) = &self.password {
            command.env("PGPASSWORD", password.expose_secret());
        }
        if let Some(file) = &self.service_file {
            command.env("PGSERVICEFILE", file.path());
            command.env("PGSERVICE", SERVICE_NAME);
        }
    }
}

/// A service file (readable by the owner only) giving `sslpassword`, which libpq reads from no
/// environment variable.
fn service_file(ssl_password: &SecretString) -> Result<tempfile::NamedTempFile, BackupError> {
    let value = ssl_password.expose_secret();
    // libpq reads a service file line by line and trims the end of each line.
    if value.contains(['\n', '\r']) || value.ends_with(char::is_whitespace) {
        return Err(BackupError::config(
            "database url",
            "its sslpassword ends in whitespace or holds a line break, which pg_dump and \
             pg_restore cannot be given without putting it on their command line",
        ));
    }
    let io_error = |source| BackupError::Io {
        action: "write the libpq service file for sslpassword",
        path: std::env::temp_dir().display().to_string(),
        source,
    };
    let mut file = tempfile::Builder::new()
        .prefix("groundwork-pg-service-")
        .tempfile()
        .map_err(io_error)?;
    write!(file, "[{SERVICE_NAME}]\nsslpassword={value}\n").map_err(io_error)?;
    file.flush().map_err(io_error)?;
    Ok(file)
}

pub(crate) async fn connect(url: &SecretString) -> Result<PgConnection, BackupError> {
    PgConnection::connect(url.expose_secret())
        .await
        .map_err(|err| BackupError::database("connection", err))
}

/// Backs up one database: `pg_dump -Fc -Z0` streamed through zstd (and age) into storage,
/// then the manifest.
///
/// Row counts are taken in an exported snapshot that `pg_dump` then dumps from, so they
/// describe exactly the data in the dump.
pub async fn backup_postgres(
    storage: &Storage,
    database_url: &SecretString,
    options: &PostgresBackupOptions,
) -> Result<BackupManifest, BackupError> {
    backup_postgres_in(storage, database_url, None, options).await
}

/// [`backup_postgres`] on a session the caller has already opened to the same database (say,
/// the connect that showed a command-line tool the server reachable), which then reads the
/// server version, exports the snapshot and counts rows instead of a second connection.
///
/// The session must be idle (no open transaction); it is closed when the backup ends.
pub async fn backup_postgres_with_session(
    storage: &Storage,
    database_url: &SecretString,
    session: PgConnection,
    options: &PostgresBackupOptions,
) -> Result<BackupManifest, BackupError> {
    backup_postgres_in(storage, database_url, Some(session), options).await
}

// One linear sequence (versions, snapshot, marker, dump with counts, manifest) whose order is
// what makes a backup complete only when everything is stored; kept together to show it.
#[allow(clippy::too_many_lines)]
async fn backup_postgres_in(
    storage: &Storage,
    database_url: &SecretString,
    session: Option<PgConnection>,
    options: &PostgresBackupOptions,
) -> Result<BackupManifest, BackupError> {
    let params = ConnParams::parse(database_url.expose_secret())?;
    options.pipeline.validate(storage)?;
    let source = options
        .source_name
        .clone()
        .unwrap_or_else(|| params.database.clone());
    if source.is_empty() || source.contains('/') {
        return Err(BackupError::config(
            "source name",
            "it must be non-empty and contain no '/'",
        ));
    }
    let started = SystemTime::now();
    let clock = Instant::now();
    let id = BackupId::at(started);
    let session = async {
        let mut conn = match session {
            Some(conn) => conn,
            None => connect(database_url).await?,
        };
        let server_version: String = sqlx::query_scalar("SELECT current_setting('server_version')")
            .fetch_one(&mut conn)
            .await
            .map_err(|err| BackupError::database("reading the server version", err))?;
        let snapshot = if options.row_counts {
            Some(export_snapshot(&mut conn).await?)
        } else {
            None
        };
        Ok::<_, BackupError>((conn, server_version, snapshot))
    };
    let (mut conn, server_version, snapshot) = session.await?;

    let marker = StartedMarker {
        id: id.clone(),
        kind: BackupKind::Postgres,
        source: source.clone(),
        started_at: rfc3339(started),
    };
    let marker_path = backup_object(BackupKind::Postgres, &source, &id, STARTED_FILE);
    storage.put_json(&marker_path, &marker).await?;
    tracing::info!(%id, source = %source, location = storage.location(), "backup started");

    let object_name = if options.pipeline.recipients.is_empty() {
        "dump.pgc.zst"
    } else {
        "dump.pgc.zst.age"
    };
    let data_path = backup_object(BackupKind::Postgres, &source, &id, object_name);
    let mut command = Command::new(&options.pg_dump);
    command
        .args(["--format=custom", "--compress=0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    if let Some(snapshot) = &snapshot {
        command.arg(format!("--snapshot={snapshot}"));
    }
    params.apply(&mut command);

    let packing = if options.pack_bytea_hex {
        Packing::ByteaHex
    } else {
        Packing::None
    };
    let upload = pipeline::upload_packed(
        storage,
        &data_path,
        &options.pipeline,
        packing,
        move |sink| run_dump(&mut command, sink),
    );
    // Rows are counted in the same snapshot while pg_dump reads it, instead of before.
    let counts = async {
        if snapshot.is_some() {
            count_rows(&mut conn).await
        } else {
            Ok(BTreeMap::new())
        }
    };
    let (uploaded, counted) = tokio::join!(upload, counts);
    // The snapshot is no longer needed; the connection closing ends the transaction anyway.
    let _ = conn.close().await;
    // A clean failure leaves nothing behind; a killed process leaves the marker, which `prune`
    // removes.
    let (dump_version, object, row_counts) = match (uploaded, counted) {
        (Ok((dump_version, object)), Ok(counts)) => (dump_version, object, counts),
        (Ok(_), Err(err)) => {
            let _ = storage.delete_object(&data_path).await;
            let _ = storage.delete_object(&marker_path).await;
            return Err(err);
        }
        (Err(err), _) => {
            let _ = storage.delete_object(&marker_path).await;
            return Err(err);
        }
    };

    // Read from the archive's header; asked of pg_dump itself only where the header is of a
    // format this version does not know (pg_dump just ran, so it answers).
    let tool_version = if let Some(version) = dump_version {
        version
    } else {
        let pg_dump = options.pg_dump.clone();
        tokio::task::spawn_blocking(move || program_version("pg_dump", &pg_dump))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_else(|| "pg_dump (version not known)".to_owned())
    };
    let manifest = BackupManifest::completed(Completed {
        id: id.clone(),
        kind: BackupKind::Postgres,
        source: source.clone(),
        server_version,
        tool_version,
        started,
        clock,
        objects: vec![object],
        pipeline: &options.pipeline,
        row_counts,
    });
    storage
        .put_json(
            &backup_object(BackupKind::Postgres, &source, &id, MANIFEST_FILE),
            &manifest,
        )
        .await?;
    tracing::info!(%id, source = %source, stored_bytes = manifest.stored_bytes, "backup complete");
    Ok(manifest)
}

/// Runs `pg_dump` into `sink`; the version of `pg_dump` named in the archive's header.
fn run_dump(command: &mut Command, sink: &mut dyn Write) -> Result<Option<String>, BackupError> {
    let mut sink = HeadRecorder::new(sink);
    let mut child = ChildGuard::spawn("pg_dump", command)?;
    let Some(mut stdout) = child.child_mut().and_then(|c| c.stdout.take()) else {
        return Err(BackupError::program(
            "pg_dump",
            "its output was not captured",
        ));
    };
    match pipeline::pump_pipe(&mut stdout, &mut sink) {
        Ok(_) => {
            drop(stdout);
            child.wait_success()?;
            Ok(sink.dump_version())
        }
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => {
            // The upload stopped; its error is reported by the pipeline.
            child.kill();
            Err(BackupError::Pipeline {
                action: "uploading",
                source: err,
            })
        }
        Err(err) => {
            child.kill();
            Err(BackupError::Pipeline {
                action: "reading pg_dump output",
                source: err,
            })
        }
    }
}

/// Opens a repeatable-read transaction on `conn` and exports its snapshot for `pg_dump`; rows
/// are then counted in it. The transaction stays open until `conn` closes.
async fn export_snapshot(conn: &mut PgConnection) -> Result<String, BackupError> {
    sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *conn)
        .await
        .map_err(|err| BackupError::database("starting the snapshot transaction", err))?;
    let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut *conn)
        .await
        .map_err(|err| BackupError::database("exporting a snapshot", err))?;
    Ok(snapshot)
}

async fn count_rows(conn: &mut PgConnection) -> Result<BTreeMap<String, i64>, BackupError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(USER_TABLES)
        .fetch_all(conn)
        .await
        .map_err(|err| BackupError::database("counting rows", err))?;
    Ok(rows.into_iter().collect())
}

/// Restores `manifest`'s backup into the database at `target_url`.
///
/// The stored bytes are hashed while they stream; `pg_restore` runs in a single transaction
/// (unless `jobs > 1`) and never sees the end of the archive before the checksum matched, so a
/// damaged backup leaves the target as it was.
pub async fn restore_postgres(
    storage: &Storage,
    manifest: &BackupManifest,
    target_url: &SecretString,
    options: &PostgresRestoreOptions,
) -> Result<RestoreReport, BackupError> {
    if manifest.kind != BackupKind::Postgres {
        return Err(BackupError::config(
            "backup",
            format!(
                "{} is a {} backup, not a postgres one",
                manifest.id, manifest.kind
            ),
        ));
    }
    let params = ConnParams::parse(target_url.expose_secret())?;
    let clock = Instant::now();
    let mut conn = connect(target_url).await?;
    let relations: i64 = sqlx::query_scalar(USER_RELATIONS)
        .fetch_one(&mut conn)
        .await
        .map_err(|err| BackupError::database("inspecting the target", err))?;
    let _ = conn.close().await;
    if relations > 0 && !options.clean {
        return Err(BackupError::TargetNotEmpty {
            database: params.database.clone(),
            relations,
        });
    }
    let Some(object) = manifest.objects.first().cloned() else {
        return Err(BackupError::InvalidManifest {
            object: manifest.id.to_string(),
            reason: "it lists no data object".into(),
        });
    };
    let spec = DownloadSpec {
        backup: manifest.id.to_string(),
        path: backup_object(
            BackupKind::Postgres,
            &manifest.source,
            &manifest.id,
            &object.name,
        ),
        object: object.clone(),
        recipients: manifest
            .encryption
            .as_ref()
            .map(|_| manifest.recipients_text()),
    };
    let mut command = Command::new(&options.pg_restore);
    command
        .args(["--exit-on-error", "--verbose"])
        .stdout(Stdio::null());
    if options.clean {
        command.args(["--clean", "--if-exists"]);
    }
    if options.no_owner {
        command.args(["--no-owner", "--no-privileges"]);
    }
    params.apply(&mut command);
    tracing::info!(id = %manifest.id, database = %params.database, "restore started");

    let raw_bytes = if options.jobs <= 1 {
        command.arg("--single-transaction").stdin(Stdio::piped());
        pipeline::download(
            storage,
            spec,
            options.identities.clone(),
            options.progress.clone(),
            move |plain| {
                crate::process::feed_child("pg_restore", &mut command, plain, "the backup stream")
            },
        )
        .await?
    } else {
        restore_via_file(storage, spec, options, command).await?
    };
    tracing::info!(id = %manifest.id, database = %params.database, "restore complete");
    Ok(RestoreReport {
        id: manifest.id.clone(),
        database: params.database,
        stored_bytes: object.stored_bytes,
        raw_bytes,
        duration_seconds: clock.elapsed().as_secs_f64(),
    })
}

/// A parallel restore: the verified, decrypted archive goes to a local file first, because
/// `pg_restore --jobs` needs to seek.
async fn restore_via_file(
    storage: &Storage,
    spec: DownloadSpec,
    options: &PostgresRestoreOptions,
    mut command: Command,
) -> Result<u64, BackupError> {
    let staging = match &options.staging_dir {
        Some(dir) => tempfile::Builder::new()
            .prefix("groundwork-restore-")
            .tempfile_in(dir),
        None => tempfile::Builder::new()
            .prefix("groundwork-restore-")
            .tempfile(),
    }
    .map_err(|source| BackupError::Io {
        action: "create restore staging file",
        path: options.staging_dir.as_ref().map_or_else(
            || "the temporary directory".into(),
            |d| d.display().to_string(),
        ),
        source,
    })?;
    let (file, path) = staging.into_parts();
    let raw = pipeline::download(
        storage,
        spec,
        options.identities.clone(),
        options.progress.clone(),
        move |plain| {
            let mut file = std::io::BufWriter::new(file);
            let raw = pipeline::pump(plain, &mut file)
                .and_then(|raw| file.flush().map(|()| raw))
                .map_err(|source| BackupError::Pipeline {
                    action: "writing the restore staging file",
                    source,
                })?;
            Ok(raw)
        },
    )
    .await?;
    command
        .arg(format!("--jobs={}", options.jobs))
        .arg(&path)
        .stdin(Stdio::null());
    tokio::task::spawn_blocking(move || {
        let result = ChildGuard::spawn("pg_restore", &mut command)?.wait_success();
        drop(path);
        result
    })
    .await
    .map_err(|err| BackupError::program("pg_restore", err.to_string()))??;
    Ok(raw)
}

/// Restores `manifest`'s backup into a new scratch database on the server at `server_url`,
/// compares every table's row count with the manifest, drops the scratch database and reports.
pub async fn verify_postgres(
    storage: &Storage,
    manifest: &BackupManifest,
    server_url: &SecretString,
    options: &PostgresRestoreOptions,
) -> Result<VerifyReport, BackupError> {
    let mut server = url::Url::parse(server_url.expose_secret())
        .map_err(|err| BackupError::config("database url", err.to_string()))?;
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    // gw_verify_<id digits>_<pid>_<nanos>: unique, and traceable to the backup.
    let scratch = format!(
        "gw_verify_{}_{}_{nanos:x}",
        manifest.id.as_str().to_lowercase().replace(['.', 'z'], ""),
        std::process::id()
    );
    let mut admin = connect(server_url).await?;
    sqlx::raw_sql(AssertSqlSafe(format!(r#"CREATE DATABASE "{scratch}""#)))
        .execute(&mut admin)
        .await
        .map_err(|err| BackupError::database("creating the scratch database", err))?;
    server.set_path(&format!("/{scratch}"));
    let scratch_url = SecretString::from(server.to_string());
    tracing::info!(id = %manifest.id, scratch = %scratch, "verify: restoring into scratch database");

    let checked = async {
        let restore = restore_postgres(storage, manifest, &scratch_url, options).await?;
        let mut conn = connect(&scratch_url).await?;
        let actual = count_rows(&mut conn).await;
        let _ = conn.close().await;
        Ok::<_, BackupError>((restore, actual?))
    }
    .await;
    let dropped = sqlx::raw_sql(AssertSqlSafe(format!(
        r#"DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)"#
    )))
    .execute(&mut admin)
    .await;
    let _ = admin.close().await;
    let (restore, actual) = checked?;
    dropped.map_err(|err| BackupError::database("dropping the scratch database", err))?;

    let mut mismatches = Vec::new();
    let mut tables: BTreeMap<&str, (Option<i64>, Option<i64>)> = BTreeMap::new();
    for (table, rows) in &manifest.row_counts {
        tables.entry(table).or_default().0 = Some(*rows);
    }
    for (table, rows) in &actual {
        tables.entry(table).or_default().1 = Some(*rows);
    }
    for (table, (expected, found)) in &tables {
        if expected != found {
            mismatches.push(TableCheck {
                table: (*table).to_owned(),
                expected: *expected,
                actual: *found,
            });
        }
    }
    let report = VerifyReport {
        id: manifest.id.clone(),
        source: manifest.source.clone(),
        ok: mismatches.is_empty(),
        mismatches,
        tables: tables.len(),
        rows: actual.values().sum(),
        restore,
    };
    tracing::info!(id = %manifest.id, ok = report.ok, tables = report.tables, "verify finished");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::ConnParams;
    use crate::storage::percent_decode;

    #[test]
    fn the_password_leaves_the_url_for_the_environment() {
        let params =
            ConnParams::parse("postgres://app:s%40cret@db:5432/hotel%20ops?sslmode=require").ok();
        let params = params.as_ref();
        assert_eq!(params.map(|p| p.database.as_str()), Some("hotel ops"));
        let url = params.map(|p| p.url_for_argv.clone()).unwrap_or_default();
        assert!(!url.contains("cret"), "{url}");
        assert!(url.contains("sslmode=require"), "{url}");
        assert!(!format!("{params:?}").contains("cret"));
    }

    #[test]
    fn secret_query_parameters_leave_the_url_for_the_environment_and_a_service_file() {
        let parsed = ConnParams::parse(
            "postgres://app:user1nfo@db:5432/app?sslmode=require&Password=qu3ry&sslpassword=k3y&token=t0k",
        );
        let Ok(params) = parsed else {
            panic!("{parsed:?}");
        };
        assert_eq!(
            params.url_for_argv,
            "postgres://app@db:5432/app?sslmode=require"
        );
        assert_eq!(
            params
                .password
                .as_ref()
                .map(|p| p.expose_secret().to_owned()),
            Some("qu3ry".to_owned())
        );
        let service = params
            .service_file
            .as_ref()
            .map(|file| std::fs::read_to_string(file.path()));
        assert!(
            matches!(&service, Some(Ok(text)) if text == "[groundwork_backup]\nsslpassword=k3y\n"),
            "{service:?}"
        );
        let mut command = std::process::Command::new("pg_dump");
        params.apply(&mut command);
        let argv: Vec<_> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        for secret in ["user1nfo", "qu3ry", "k3y", "t0k"] {
            assert!(!argv.iter().any(|arg| arg.contains(secret)), "{argv:?}");
        }
    }

    #[test]
    fn urls_without_a_database_are_refused() {
        assert!(ConnParams::parse("postgres://db:5432").is_err());
        assert!(ConnParams::parse("mysql://db/app").is_err());
        assert_eq!(percent_decode("a%2Fb%zz"), "a/b%zz");
    }
}
