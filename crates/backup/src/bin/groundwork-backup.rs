//! `groundwork-backup`: back up, restore, verify, list and prune from cron, Kubernetes or a
//! terminal.
//!
//! Exit codes: 0 success, 1 the operation failed (a dump, upload, restore or verification
//! failed), 2 the command was wrong (bad option, missing key, no such backup).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clap::{Args, Parser, Subcommand, ValueEnum};
use groundwork_backup::{
    BackupError, BackupFilter, BackupId, BackupKind, BackupManifest, BackupStatus,
    ClickHouseBackupOptions, ClickHouseRestoreOptions, DEFAULT_ZSTD_LEVEL, Identity,
    PipelineOptions, PostgresBackupOptions, PostgresRestoreOptions, Progress, Recipient,
    RedisBackupOptions, RedisRestoreOptions, RetentionPolicy, S3Options, Storage,
};
use secrecy::SecretString;
use serde_json::{Value, json};

/// Streamed, compressed, encrypted and verified backups of PostgreSQL to local or S3 storage.
#[derive(Debug, Parser)]
#[command(name = "groundwork-backup", version)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// Where backups live: `file:///absolute/dir` or `s3://bucket/prefix`.
    #[arg(long, global = true, env = "GROUNDWORK_BACKUP_STORAGE")]
    storage: Option<String>,
    /// S3-compatible endpoint (R2, `MinIO`, OSS); AWS S3 when unset.
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL")]
    s3_endpoint: Option<String>,
    /// S3 region (`auto` for R2).
    #[arg(long, global = true, env = "AWS_REGION")]
    s3_region: Option<String>,
    /// Allow an http:// endpoint (local test servers only).
    #[arg(long, global = true)]
    s3_allow_http: bool,
    /// Path-style bucket addressing (`MinIO` and most self-hosted services).
    #[arg(long, global = true)]
    s3_path_style: bool,
    /// Print one JSON document on stdout (for cron and monitoring); logs stay on stderr.
    #[arg(long, global = true)]
    json: bool,
    /// A `NAME=value` file supplying the `GROUNDWORK_BACKUP_*` and `AWS_*` settings that neither
    /// the command line nor the environment gives, e.g. for `archive_command` and
    /// `restore_command`, which run with the server's environment. Keep it readable by its owner
    /// only; secrets may also come from `AWS_SECRET_ACCESS_KEY_FILE`.
    #[arg(long, global = true, env = "GROUNDWORK_BACKUP_ENV_FILE")]
    env_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// PostgreSQL backup, restore and verify.
    Postgres {
        #[command(subcommand)]
        command: PostgresCommand,
    },
    /// Redis RDB backup, and restore to a dump.rdb file.
    Redis {
        #[command(subcommand)]
        command: RedisCommand,
    },
    /// ClickHouse portable export (schema + Native data per table) and restore.
    Clickhouse {
        #[command(subcommand)]
        command: ClickHouseCommand,
    },
    /// List backups (complete and incomplete).
    List(FilterArgs),
    /// Delete backups outside the retention policy, and incomplete ones older than a day.
    Prune(PruneArgs),
    /// Print Prometheus metrics of the newest complete backup of each source.
    Metrics(FilterArgs),
    /// Write a new age identity file (private key) and print its public key (the recipient).
    Keygen {
        /// The identity file to create; it must not exist.
        #[arg(long)]
        output: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum PostgresCommand {
    /// Dump a database into storage.
    Backup(PgBackupArgs),
    /// Restore a backup into a database.
    Restore(PgRestoreArgs),
    /// Restore a backup into a scratch database, compare row counts, drop it.
    Verify(PgRestoreArgs),
    /// Archive one WAL file, for `archive_command = 'groundwork-backup ... wal-push %p'`.
    WalPush(WalPushArgs),
    /// Fetch one archived WAL file, for `restore_command = '... wal-fetch %f %p'`. Exits 1 at once
    /// for a file that is not archived and 128 for any other failure (a damaged file, a wrong
    /// key, unreachable storage), which makes PostgreSQL stop recovery instead of ending it early.
    WalFetch(WalFetchArgs),
    /// Take a physical base backup (`pg_basebackup`) for point-in-time restores.
    Basebackup(BaseBackupArgs),
    /// Lay out the newest suitable base backup in a new data directory with the recovery
    /// settings that replay the WAL archive to a point in time.
    PitrRestore(PitrRestoreArgs),
}

#[derive(Debug, Args)]
struct BaseBackupArgs {
    /// The cluster to back up; the user needs the REPLICATION attribute.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// The name the cluster's archive is filed under (the same as wal-push's).
    #[arg(long, env = "GROUNDWORK_BACKUP_SOURCE")]
    source: Option<String>,
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// The `pg_basebackup` program.
    #[arg(long, default_value = "pg_basebackup")]
    pg_basebackup: PathBuf,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["to_time", "to_lsn", "latest"])))]
struct PitrRestoreArgs {
    /// The new data directory; it must be missing or empty.
    #[arg(long)]
    data_dir: PathBuf,
    /// The name the cluster's archive is filed under.
    #[arg(long, env = "GROUNDWORK_BACKUP_SOURCE")]
    source: Option<String>,
    /// Stop before the first transaction committed at or after this time (RFC 3339, e.g.
    /// 2026-12-06T08:30:00Z).
    #[arg(long)]
    to_time: Option<String>,
    /// Stop after this WAL location (e.g. 0/3000148).
    #[arg(long)]
    to_lsn: Option<String>,
    /// Replay every archived WAL file.
    #[arg(long)]
    latest: bool,
    /// age identity file with the private key, for an encrypted archive.
    #[arg(long, env = "GROUNDWORK_BACKUP_IDENTITY_FILE")]
    identity_file: Option<PathBuf>,
    /// Start a throwaway server on the directory (free port, private socket, no archiving), wait
    /// for recovery, count every table's rows, stop it.
    #[arg(long)]
    verify: bool,
    /// The directory of `pg_ctl` (the newest /usr/lib/postgresql/<major>/bin when unset).
    #[arg(long)]
    pg_bin_dir: Option<PathBuf>,
    /// The superuser `--verify` connects as.
    #[arg(long, default_value = "postgres")]
    verify_user: String,
    /// How long `--verify` waits for recovery.
    #[arg(long, default_value = "30min", value_parser = humantime::parse_duration)]
    verify_timeout: Duration,
    /// The `tar` program.
    #[arg(long, default_value = "tar")]
    tar: PathBuf,
}

#[derive(Debug, Args)]
struct WalPushArgs {
    /// The file to archive (`%p`).
    path: PathBuf,
    /// The name the cluster's archive is filed under.
    #[arg(long, env = "GROUNDWORK_BACKUP_SOURCE")]
    source: Option<String>,
    /// Asynchronous archiving: push other files PostgreSQL marked ready along with this one
    /// and acknowledge them in this local directory, so that their own `wal-push` returns at once.
    #[arg(long, env = "GROUNDWORK_BACKUP_WAL_SPOOL")]
    spool: Option<PathBuf>,
    /// With --spool: the most files one invocation pushes, this one included.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    spool_batch: u32,
    /// With --spool: how many files are pushed at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=32))]
    spool_parallel: u32,
    #[command(flatten)]
    pipeline: PipelineArgs,
}

#[derive(Debug, Args)]
struct WalFetchArgs {
    /// The file name asked for (`%f`).
    name: String,
    /// Where to write it (`%p`).
    path: PathBuf,
    /// The name the cluster's archive is filed under.
    #[arg(long, env = "GROUNDWORK_BACKUP_SOURCE")]
    source: Option<String>,
    /// age identity file with the private key, for an encrypted archive.
    #[arg(long, env = "GROUNDWORK_BACKUP_IDENTITY_FILE")]
    identity_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct PipelineArgs {
    /// zstd level, 1 to 19.
    #[arg(long, default_value_t = DEFAULT_ZSTD_LEVEL)]
    zstd_level: i32,
    /// zstd worker threads (0: compress on the pipeline's compression thread); helps
    /// compressible data at high levels when cores are free.
    #[arg(long, default_value_t = 0)]
    zstd_workers: u32,
    /// age x25519 recipient (age1...) to encrypt to; repeat for several.
    #[arg(
        long = "recipient",
        env = "GROUNDWORK_BACKUP_RECIPIENTS",
        value_delimiter = ','
    )]
    recipients: Vec<String>,
    /// Multipart part size (e.g. 16MiB); every part but the last has exactly this size.
    #[arg(long, default_value = "16MiB", value_parser = parse_size)]
    part_size: usize,
    /// After a successful backup, write Prometheus metrics to this file (atomically), e.g. for
    /// the node exporter's textfile collector.
    #[arg(long)]
    metrics_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct PgBackupArgs {
    /// The database to back up.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// Do not count rows per table (verify then only checks that the backup restores).
    #[arg(long)]
    no_row_counts: bool,
    /// File the backup under this name instead of the database name.
    #[arg(long)]
    source: Option<String>,
    /// The `pg_dump` program.
    #[arg(long, default_value = "pg_dump")]
    pg_dump: PathBuf,
}

#[derive(Debug, Subcommand)]
enum ClickHouseCommand {
    /// Export a database into storage.
    Backup(ChBackupArgs),
    /// Restore an export into a database and compare row counts.
    Restore(ChRestoreArgs),
}

/// TLS files for an `https://` ClickHouse URL, named like the services' `*_FILE` variables.
#[derive(Debug, Args)]
struct ChTlsArgs {
    /// PEM file of the CA that signed ClickHouse's certificate; the system's roots when unset.
    #[arg(long = "clickhouse-ca-cert", env = "CLICKHOUSE_TLS_CA_CERT_FILE")]
    ca_cert: Option<PathBuf>,
    /// PEM file of a client certificate, for servers that require one.
    #[arg(
        long = "clickhouse-client-cert",
        env = "CLICKHOUSE_TLS_CLIENT_CERT_FILE"
    )]
    client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[arg(long = "clickhouse-client-key", env = "CLICKHOUSE_TLS_CLIENT_KEY_FILE")]
    client_key: Option<PathBuf>,
}

impl ChTlsArgs {
    fn settings(&self) -> Result<groundwork_connect::TlsSettings, BackupError> {
        let read = |path: &Option<PathBuf>| {
            path.as_ref()
                .map(|path| {
                    std::fs::read_to_string(path).map_err(|source| BackupError::Config {
                        what: "clickhouse tls",
                        reason: format!("cannot read {}: {source}", path.display()),
                    })
                })
                .transpose()
        };
        Ok(groundwork_connect::TlsSettings {
            ca_cert: read(&self.ca_cert)?,
            client_cert: read(&self.client_cert)?,
            client_key: read(&self.client_key)?.map(Into::into),
        })
    }
}

#[derive(Debug, Args)]
struct ChBackupArgs {
    /// The server's HTTP interface, e.g. `http://user:password@host:8123`.
    #[arg(long, env = "CLICKHOUSE_URL", hide_env_values = true)]
    clickhouse_url: String,
    #[command(flatten)]
    tls: ChTlsArgs,
    /// The database to export.
    #[arg(long)]
    database: String,
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// File the backup under this name instead of the database name.
    #[arg(long)]
    source: Option<String>,
}

#[derive(Debug, Args)]
struct ChRestoreArgs {
    /// The server's HTTP interface.
    #[arg(long, env = "CLICKHOUSE_URL", hide_env_values = true)]
    clickhouse_url: String,
    #[command(flatten)]
    tls: ChTlsArgs,
    /// The backup's source name.
    #[arg(long)]
    source: String,
    /// The backup id as printed by `list`; the newest complete backup when unset.
    #[arg(long)]
    id: Option<String>,
    /// The database to restore into; the source name when unset.
    #[arg(long)]
    database: Option<String>,
    /// age identity file with the private key, for encrypted backups.
    #[arg(long, env = "GROUNDWORK_BACKUP_IDENTITY_FILE")]
    identity_file: Option<PathBuf>,
    /// Drop the backup's tables first if they exist; without it a non-empty target is refused.
    #[arg(long)]
    clean: bool,
}

#[derive(Debug, Subcommand)]
enum RedisCommand {
    /// Stream the server's RDB snapshot into storage.
    Backup(RedisBackupArgs),
    /// Write a backup's RDB to a file (stop the server first; see the crate docs).
    Restore(RedisRestoreArgs),
}

#[derive(Debug, Args)]
struct RedisBackupArgs {
    /// The server to back up.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: String,
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// The name the backup is filed under.
    #[arg(long, default_value = "redis")]
    source: String,
    /// The `redis-cli` program.
    #[arg(long, default_value = "redis-cli")]
    redis_cli: PathBuf,
    /// PEM file of the CA that signed a `rediss://` server's certificate; the system's roots when
    /// unset.
    #[arg(long = "redis-ca-cert", env = "REDIS_TLS_CA_CERT_FILE")]
    ca_cert: Option<PathBuf>,
    /// PEM file of a client certificate, for servers that require one.
    #[arg(long = "redis-client-cert", env = "REDIS_TLS_CLIENT_CERT_FILE")]
    client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[arg(long = "redis-client-key", env = "REDIS_TLS_CLIENT_KEY_FILE")]
    client_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RedisRestoreArgs {
    /// The backup's source name.
    #[arg(long, default_value = "redis")]
    source: String,
    /// The backup id as printed by `list`; the newest complete backup when unset.
    #[arg(long)]
    id: Option<String>,
    /// age identity file with the private key, for encrypted backups.
    #[arg(long, env = "GROUNDWORK_BACKUP_IDENTITY_FILE")]
    identity_file: Option<PathBuf>,
    /// The RDB file to write, e.g. /var/lib/redis/dump.rdb.
    #[arg(long)]
    output: PathBuf,
}

#[derive(Debug, Args)]
struct PgRestoreArgs {
    /// restore: the target database. verify: any database on the server where the scratch
    /// database is created.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// The backup's source name; the target database's name when unset.
    #[arg(long)]
    source: Option<String>,
    /// The backup id as printed by `list`; the newest complete backup when unset.
    #[arg(long)]
    id: Option<String>,
    /// age identity file with the private key, for encrypted backups.
    #[arg(long, env = "GROUNDWORK_BACKUP_IDENTITY_FILE")]
    identity_file: Option<PathBuf>,
    /// Drop the objects the backup recreates; without it a non-empty target is refused.
    #[arg(long)]
    clean: bool,
    /// Parallel `pg_restore` jobs; above 1 the archive is written to a local file first.
    #[arg(long, default_value_t = 1)]
    jobs: u32,
    /// Directory for that local file.
    #[arg(long)]
    staging_dir: Option<PathBuf>,
    /// Skip ownership and privileges (target roles differ from the source's).
    #[arg(long)]
    no_owner: bool,
    /// The `pg_restore` program.
    #[arg(long, default_value = "pg_restore")]
    pg_restore: PathBuf,
}

#[derive(Debug, Args)]
struct FilterArgs {
    /// Only this kind.
    #[arg(long, value_enum)]
    kind: Option<KindArg>,
    /// Only this source.
    #[arg(long)]
    source: Option<String>,
}

#[derive(Debug, Args)]
struct PruneArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// Keep this many complete backups per source (0 keeps only the newest). For base backups,
    /// archived WAL older than the oldest kept one goes too.
    #[arg(long, visible_alias = "keep", default_value_t = 30)]
    keep_last: usize,
    /// Also delete complete backups older than this (e.g. 90d).
    #[arg(long, value_parser = humantime::parse_duration)]
    max_age: Option<Duration>,
    /// Delete incomplete backups not written to for this long.
    #[arg(long, default_value = "1day", value_parser = humantime::parse_duration)]
    incomplete_after: Duration,
    /// List what would be deleted, delete nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KindArg {
    Postgres,
    Redis,
    Clickhouse,
    PostgresBase,
}

impl From<KindArg> for BackupKind {
    fn from(kind: KindArg) -> Self {
        match kind {
            KindArg::Postgres => Self::Postgres,
            KindArg::Redis => Self::Redis,
            KindArg::Clickhouse => Self::ClickHouse,
            KindArg::PostgresBase => Self::PostgresBase,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.global.json;
    let wal_fetch = matches!(
        cli.command,
        Command::Postgres {
            command: PostgresCommand::WalFetch(_)
        }
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            log("ERROR", &format!("cannot start the runtime: {err}"));
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(Outcome { ok, value }) => {
            if json {
                println!("{}", json!({ "ok": ok, "result": value }));
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        // PostgreSQL asks for files that do not exist (the next timeline's history, the segment
        // after the last): a quiet 1 tells it there is none.
        Err(BackupError::WalMissing { .. }) if wal_fetch => ExitCode::from(1),
        Err(err) => {
            let code: u8 = if wal_fetch {
                WAL_FETCH_FATAL
            } else if err.is_usage() {
                2
            } else {
                1
            };
            log("ERROR", &err.to_string());
            if json {
                println!(
                    "{}",
                    json!({ "ok": false, "error": err.to_string(), "exit_code": code })
                );
            }
            ExitCode::from(code)
        }
    }
}

/// Above 125, so PostgreSQL's startup process treats the failure like a missing command and
/// stops, instead of taking it for the end of the archive and ending recovery early.
const WAL_FETCH_FATAL: u8 = 128;

struct Outcome {
    ok: bool,
    value: Value,
}

impl Outcome {
    fn ok(value: Value) -> Self {
        Self { ok: true, value }
    }
}

async fn run(cli: Cli) -> Result<Outcome, BackupError> {
    if let Command::Keygen { output } = &cli.command {
        return keygen(output, cli.global.json);
    }
    let settings = Settings::load(cli.global.env_file.as_deref())?;
    let storage = open_storage(&cli.global, &settings)?;
    match cli.command {
        Command::Postgres { command } => match command {
            PostgresCommand::Backup(args) => pg_backup(&storage, args, cli.global.json).await,
            PostgresCommand::Restore(args) => {
                pg_restore(&storage, args, cli.global.json, false).await
            }
            PostgresCommand::Verify(args) => {
                pg_restore(&storage, args, cli.global.json, true).await
            }
            PostgresCommand::WalPush(args) => wal_push(&storage, args, &settings).await,
            PostgresCommand::WalFetch(args) => wal_fetch(&storage, args, &settings).await,
            PostgresCommand::Basebackup(args) => {
                pg_basebackup(&storage, args, &settings, cli.global.json).await
            }
            PostgresCommand::PitrRestore(args) => {
                pitr_restore(&storage, &cli.global, args, &settings).await
            }
        },
        Command::Redis { command } => match command {
            RedisCommand::Backup(args) => redis_backup(&storage, args, cli.global.json).await,
            RedisCommand::Restore(args) => redis_restore(&storage, args).await,
        },
        Command::Clickhouse { command } => match command {
            ClickHouseCommand::Backup(args) => ch_backup(&storage, args, cli.global.json).await,
            ClickHouseCommand::Restore(args) => ch_restore(&storage, args).await,
        },
        Command::List(args) => {
            let entries = groundwork_backup::list(&storage, &filter(&args)).await?;
            if !cli.global.json {
                print_list(&entries);
            }
            Ok(Outcome::ok(to_json(&entries)))
        }
        Command::Prune(args) => prune(&storage, &args).await,
        Command::Metrics(args) => metrics(&storage, &args, cli.global.json).await,
        Command::Keygen { .. } => Ok(Outcome::ok(Value::Null)),
    }
}

async fn prune(storage: &Storage, args: &PruneArgs) -> Result<Outcome, BackupError> {
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

async fn metrics(storage: &Storage, args: &FilterArgs, json: bool) -> Result<Outcome, BackupError> {
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

fn keygen(output: &std::path::Path, json: bool) -> Result<Outcome, BackupError> {
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

fn print_list(entries: &[groundwork_backup::BackupEntry]) {
    for entry in entries {
        let detail = match (&entry.status, &entry.manifest) {
            (BackupStatus::Complete, Some(m)) => format!(
                "complete  {:>12} stored  {:>12} raw  {}",
                human_bytes(m.stored_bytes),
                human_bytes(m.raw_bytes),
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

/// Settings from `--env-file`, consulted for what neither the command line nor the environment
/// gives.
struct Settings {
    file: std::collections::HashMap<String, String>,
}

impl Settings {
    fn load(path: Option<&std::path::Path>) -> Result<Self, BackupError> {
        let Some(path) = path else {
            return Ok(Self {
                file: std::collections::HashMap::new(),
            });
        };
        let text = std::fs::read_to_string(path).map_err(|source| BackupError::Io {
            action: "read env file",
            path: path.display().to_string(),
            source,
        })?;
        // The reader's errors name a line, never its content.
        let pairs =
            groundwork_config::parse_env_file(&text).map_err(|err| BackupError::Config {
                what: "env file",
                reason: format!("{}: {err}", path.display()),
            })?;
        Ok(Self {
            file: pairs.into_iter().collect(),
        })
    }

    /// A setting from the environment, else from the env file; empty values count as unset.
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name)
            .ok()
            .or_else(|| self.file.get(name).cloned())
            .filter(|v| !v.is_empty())
    }

    /// A secret from `NAME`, else from the file named by `NAME_FILE` (trailing newline removed).
    fn secret(&self, name: &str) -> Result<Option<SecretString>, BackupError> {
        if let Some(value) = self.get(name) {
            return Ok(Some(SecretString::from(value)));
        }
        let Some(file) = self.get(&format!("{name}_FILE")) else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(&file).map_err(|source| BackupError::Io {
            action: "read the secret file named by a _FILE setting",
            path: file.clone(),
            source,
        })?;
        Ok(Some(SecretString::from(
            text.trim_end_matches(['\n', '\r']).to_owned(),
        )))
    }

    fn path(&self, given: Option<&PathBuf>, name: &str) -> Option<PathBuf> {
        given.cloned().or_else(|| self.get(name).map(PathBuf::from))
    }
}

fn open_storage(global: &Global, settings: &Settings) -> Result<Storage, BackupError> {
    let Some(url) = global
        .storage
        .clone()
        .or_else(|| settings.get("GROUNDWORK_BACKUP_STORAGE"))
    else {
        return Err(storage_missing());
    };
    // Binaries read the standard AWS credential variables; the library reads no environment.
    let flag = |given: bool, name: &str| {
        given
            || settings
                .get(name)
                .is_some_and(|v| matches!(v.as_str(), "1" | "true"))
    };
    let s3 = S3Options {
        endpoint: global
            .s3_endpoint
            .clone()
            .or_else(|| settings.get("AWS_ENDPOINT_URL")),
        region: global
            .s3_region
            .clone()
            .or_else(|| settings.get("AWS_REGION")),
        access_key_id: settings.get("AWS_ACCESS_KEY_ID"),
        secret_access_key: settings.secret("AWS_SECRET_ACCESS_KEY")?,
        session_token: settings.secret("AWS_SESSION_TOKEN")?,
        allow_http: flag(global.s3_allow_http, "GROUNDWORK_BACKUP_S3_ALLOW_HTTP"),
        path_style: flag(global.s3_path_style, "GROUNDWORK_BACKUP_S3_PATH_STYLE"),
    };
    Storage::open(&url, &s3)
}

fn source_of(given: Option<&String>, settings: &Settings) -> Result<String, BackupError> {
    given
        .cloned()
        .or_else(|| settings.get("GROUNDWORK_BACKUP_SOURCE"))
        .ok_or_else(|| BackupError::Config {
            what: "source name",
            reason: "pass --source or set GROUNDWORK_BACKUP_SOURCE: the name the cluster's \
                     archive is filed under"
                .into(),
        })
}

fn identities_of(
    given: Option<&PathBuf>,
    settings: &Settings,
) -> Result<Vec<Identity>, BackupError> {
    match settings.path(given, "GROUNDWORK_BACKUP_IDENTITY_FILE") {
        Some(path) => Identity::read_file(&path),
        None => Ok(Vec::new()),
    }
}

async fn wal_push(
    storage: &Storage,
    mut args: WalPushArgs,
    settings: &Settings,
) -> Result<Outcome, BackupError> {
    let source = source_of(args.source.as_ref(), settings)?;
    if let (true, Some(recipients)) = (
        args.pipeline.recipients.is_empty(),
        settings.get("GROUNDWORK_BACKUP_RECIPIENTS"),
    ) {
        args.pipeline.recipients = recipients.split(',').map(str::to_owned).collect();
    }
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
                human_bytes(report.record.object.raw_bytes),
                human_bytes(report.record.object.stored_bytes)
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

async fn pg_basebackup(
    storage: &Storage,
    mut args: BaseBackupArgs,
    settings: &Settings,
    json: bool,
) -> Result<Outcome, BackupError> {
    let source = source_of(args.source.as_ref(), settings)?;
    if let (true, Some(recipients)) = (
        args.pipeline.recipients.is_empty(),
        settings.get("GROUNDWORK_BACKUP_RECIPIENTS"),
    ) {
        args.pipeline.recipients = recipients.split(',').map(str::to_owned).collect();
    }
    let progress = Arc::new(Progress::default());
    let options = groundwork_backup::BaseBackupOptions {
        pipeline: pipeline_options(&args.pipeline, &progress)?,
        source,
        pg_basebackup: args.pg_basebackup.clone(),
    };
    log(
        "INFO",
        &format!("base backup to {} started", storage.location()),
    );
    let reporter = ProgressReporter::start(Arc::clone(&progress), None, json);
    let url = SecretString::from(args.database_url);
    let result = groundwork_backup::basebackup_postgres(storage, &url, &options).await;
    reporter.stop();
    finish_backup(storage, &result?, args.pipeline.metrics_file.as_deref()).await
}

/// A word for `sh`, single-quoted.
fn shell_word(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The `restore_command` that fetches from the storage this command uses. It holds no secret:
/// credentials come from the env file (when one was given) or the server's environment.
fn restore_command(
    global: &Global,
    settings: &Settings,
    source: &str,
    identity_file: Option<&PathBuf>,
) -> Result<String, BackupError> {
    let absolute = |path: &std::path::Path| {
        std::path::absolute(path).map_err(|source| BackupError::Io {
            action: "resolve",
            path: path.display().to_string(),
            source,
        })
    };
    let exe = std::env::current_exe().map_err(|source| BackupError::Io {
        action: "find the groundwork-backup program",
        path: "the running executable".into(),
        source,
    })?;
    let mut words = vec![shell_word(&exe.display().to_string())];
    if let Some(file) = &global.env_file {
        words.push("--env-file".into());
        words.push(shell_word(&absolute(file)?.display().to_string()));
    }
    if let Some(url) = global
        .storage
        .clone()
        .or_else(|| settings.get("GROUNDWORK_BACKUP_STORAGE"))
    {
        words.push("--storage".into());
        words.push(shell_word(&url));
    }
    for (flag, value) in [
        ("--s3-endpoint", global.s3_endpoint.as_ref()),
        ("--s3-region", global.s3_region.as_ref()),
    ] {
        if let Some(value) = value {
            words.push(flag.into());
            words.push(shell_word(value));
        }
    }
    if global.s3_allow_http {
        words.push("--s3-allow-http".into());
    }
    if global.s3_path_style {
        words.push("--s3-path-style".into());
    }
    words.extend(["postgres".into(), "wal-fetch".into(), "--source".into()]);
    words.push(shell_word(source));
    if let Some(file) = identity_file {
        words.push("--identity-file".into());
        words.push(shell_word(&absolute(file)?.display().to_string()));
    }
    words.extend(["%f".into(), "%p".into()]);
    Ok(words.join(" "))
}

async fn pitr_restore(
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

async fn wal_fetch(
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

fn storage_missing() -> BackupError {
    BackupError::Config {
        what: "storage url",
        reason:
            "pass --storage or set GROUNDWORK_BACKUP_STORAGE (file:///dir or s3://bucket/prefix)"
                .into(),
    }
}

fn filter(args: &FilterArgs) -> BackupFilter {
    BackupFilter {
        kind: args.kind.map(Into::into),
        source: args.source.clone(),
    }
}

fn pipeline_options(
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
    metrics_file: Option<&std::path::Path>,
) -> Result<Outcome, BackupError> {
    log(
        "INFO",
        &format!(
            "backup {}/{}/{} complete: {} raw, {} stored, sha256 {}, {:.1}s",
            manifest.kind,
            manifest.source,
            manifest.id,
            human_bytes(manifest.raw_bytes),
            human_bytes(manifest.stored_bytes),
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

async fn pg_backup(
    storage: &Storage,
    args: PgBackupArgs,
    json: bool,
) -> Result<Outcome, BackupError> {
    let progress = Arc::new(Progress::default());
    let options = PostgresBackupOptions {
        pipeline: pipeline_options(&args.pipeline, &progress)?,
        row_counts: !args.no_row_counts,
        source_name: args.source.clone(),
        pg_dump: args.pg_dump.clone(),
    };
    log("INFO", &format!("backup to {} started", storage.location()));
    let reporter = ProgressReporter::start(Arc::clone(&progress), None, json);
    let url = SecretString::from(args.database_url);
    let result = groundwork_backup::backup_postgres(storage, &url, &options).await;
    reporter.stop();
    finish_backup(storage, &result?, args.pipeline.metrics_file.as_deref()).await
}

async fn redis_backup(
    storage: &Storage,
    args: RedisBackupArgs,
    json: bool,
) -> Result<Outcome, BackupError> {
    let progress = Arc::new(Progress::default());
    let options = RedisBackupOptions {
        pipeline: pipeline_options(&args.pipeline, &progress)?,
        source_name: args.source.clone(),
        redis_cli: args.redis_cli.clone(),
        tls: groundwork_backup::RedisTlsFiles {
            ca_cert: args.ca_cert.clone(),
            client_cert: args.client_cert.clone(),
            client_key: args.client_key.clone(),
        },
    };
    log(
        "INFO",
        &format!("redis backup to {} started", storage.location()),
    );
    let reporter = ProgressReporter::start(Arc::clone(&progress), None, json);
    let url = SecretString::from(args.redis_url);
    let result = groundwork_backup::backup_redis(storage, &url, &options).await;
    reporter.stop();
    finish_backup(storage, &result?, args.pipeline.metrics_file.as_deref()).await
}

async fn ch_backup(
    storage: &Storage,
    args: ChBackupArgs,
    json: bool,
) -> Result<Outcome, BackupError> {
    let progress = Arc::new(Progress::default());
    let options = ClickHouseBackupOptions {
        pipeline: pipeline_options(&args.pipeline, &progress)?,
        database: args.database.clone(),
        source_name: args.source.clone(),
        tls: args.tls.settings()?,
    };
    log(
        "INFO",
        &format!("clickhouse export to {} started", storage.location()),
    );
    let reporter = ProgressReporter::start(Arc::clone(&progress), None, json);
    let url = SecretString::from(args.clickhouse_url);
    let result = groundwork_backup::backup_clickhouse(storage, &url, &options).await;
    reporter.stop();
    finish_backup(storage, &result?, args.pipeline.metrics_file.as_deref()).await
}

async fn ch_restore(storage: &Storage, args: ChRestoreArgs) -> Result<Outcome, BackupError> {
    let identities = match &args.identity_file {
        Some(path) => Identity::read_file(path)?,
        None => Vec::new(),
    };
    let manifest = match &args.id {
        Some(id) => {
            let id = BackupId::parse(id)?;
            groundwork_backup::read_manifest(storage, BackupKind::ClickHouse, &args.source, &id)
                .await?
        }
        None => groundwork_backup::latest(storage, BackupKind::ClickHouse, &args.source).await?,
    };
    let options = ClickHouseRestoreOptions {
        identities,
        database: args.database.clone(),
        clean: args.clean,
        progress: None,
        tls: args.tls.settings()?,
    };
    let url = SecretString::from(args.clickhouse_url);
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

async fn redis_restore(storage: &Storage, args: RedisRestoreArgs) -> Result<Outcome, BackupError> {
    let identities = match &args.identity_file {
        Some(path) => Identity::read_file(path)?,
        None => Vec::new(),
    };
    let manifest = match &args.id {
        Some(id) => {
            let id = BackupId::parse(id)?;
            groundwork_backup::read_manifest(storage, BackupKind::Redis, &args.source, &id).await?
        }
        None => groundwork_backup::latest(storage, BackupKind::Redis, &args.source).await?,
    };
    let options = RedisRestoreOptions {
        identities,
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
            human_bytes(report.bytes)
        ),
    );
    Ok(Outcome::ok(to_json(&report)))
}

async fn pg_restore(
    storage: &Storage,
    args: PgRestoreArgs,
    json: bool,
    verify: bool,
) -> Result<Outcome, BackupError> {
    let identities = match &args.identity_file {
        Some(path) => Identity::read_file(path)?,
        None => Vec::new(),
    };
    let source = match &args.source {
        Some(source) => source.clone(),
        None => database_name(&args.database_url)?,
    };
    let manifest = match &args.id {
        Some(id) => {
            let id = BackupId::parse(id)?;
            groundwork_backup::read_manifest(storage, BackupKind::Postgres, &source, &id).await?
        }
        None => groundwork_backup::latest(storage, BackupKind::Postgres, &source).await?,
    };
    let progress = Arc::new(Progress::default());
    let options = PostgresRestoreOptions {
        identities,
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
    let reporter =
        ProgressReporter::start(Arc::clone(&progress), Some(manifest.stored_bytes), json);
    let url = SecretString::from(args.database_url);
    if verify {
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
    } else {
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
        Ok(Outcome::ok(to_json(&report)))
    }
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

fn to_json(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn write_atomically(path: &std::path::Path, text: &str) -> Result<(), BackupError> {
    let tmp = path.with_extension("prom.tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| BackupError::Io {
            action: "write metrics file",
            path: path.display().to_string(),
            source,
        })
}

/// A progress bar on a terminal, plain log lines otherwise.
struct ProgressReporter {
    task: Option<tokio::task::JoinHandle<()>>,
    bar: Option<indicatif::ProgressBar>,
}

impl ProgressReporter {
    fn start(progress: Arc<Progress>, total: Option<u64>, json: bool) -> Self {
        if std::io::stderr().is_terminal() && !json {
            let bar = match total {
                Some(total) => indicatif::ProgressBar::new(total),
                None => indicatif::ProgressBar::new_spinner(),
            };
            let template = if total.is_some() {
                "{elapsed_precise} [{bar:30}] {bytes}/{total_bytes} stored ({bytes_per_sec}) {msg}"
            } else {
                "{elapsed_precise} {spinner} {bytes} stored ({bytes_per_sec}) {msg}"
            };
            if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            let shown = bar.clone();
            let task = tokio::spawn(async move {
                loop {
                    shown.set_position(progress.stored_bytes());
                    shown.set_message(format!("{} raw", human_bytes(progress.raw_bytes())));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
            return Self {
                task: Some(task),
                bar: Some(bar),
            };
        }
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut last_parts = 0;
            let mut last_line = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let parts = progress.parts();
                if parts != last_parts || last_line.elapsed() >= Duration::from_secs(10) {
                    last_parts = parts;
                    last_line = Instant::now();
                    let elapsed = start.elapsed();
                    let millis = elapsed.as_millis().max(1);
                    let rate = u64::try_from(u128::from(progress.raw_bytes()) * 1000 / millis)
                        .unwrap_or(u64::MAX);
                    log(
                        "INFO",
                        &format!(
                            "progress: {} raw, {} stored, {parts} parts, {}/s, {}s elapsed",
                            human_bytes(progress.raw_bytes()),
                            human_bytes(progress.stored_bytes()),
                            human_bytes(rate),
                            elapsed.as_secs(),
                        ),
                    );
                }
            }
        });
        Self {
            task: Some(task),
            bar: None,
        }
    }

    fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

fn log(level: &str, message: &str) {
    let now = humantime::format_rfc3339_millis(SystemTime::now());
    eprintln!("{now} {level} groundwork-backup: {message}");
}

#[allow(clippy::cast_precision_loss)]
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 16MiB"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1024,
        "m" | "mib" | "mb" => 1024 * 1024,
        "g" | "gib" | "gb" => 1024 * 1024 * 1024,
        other => {
            return Err(format!(
                "unknown size unit {other:?}; use B, KiB, MiB or GiB"
            ));
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use groundwork_backup::DEFAULT_PART_SIZE;

    use super::parse_size;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("16MiB"), Ok(DEFAULT_PART_SIZE));
        assert_eq!(parse_size("512k"), Ok(512 * 1024));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("5 parsecs").is_err());
    }
}
