//! The command line: every subcommand's arguments, parsed by clap.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use groundwork_backup::{BackupError, BackupKind, DEFAULT_ZSTD_LEVEL};
use groundwork_cli::{ConnectArgs, OutputArgs, SecretUrlParser};
use groundwork_config::SecretUrl;

/// Streamed, compressed, encrypted and verified backups of PostgreSQL to local or S3 storage.
#[derive(Debug, Parser)]
#[command(name = "groundwork-backup", version)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Args)]
pub(crate) struct Global {
    /// Where backups live: `file:///absolute/dir` or `s3://bucket/prefix`.
    #[arg(long, global = true, env = "GROUNDWORK_BACKUP_STORAGE")]
    pub(crate) storage: Option<String>,
    /// S3-compatible endpoint (R2, `MinIO`, OSS); AWS S3 when unset.
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL")]
    pub(crate) s3_endpoint: Option<String>,
    /// S3 region (`auto` for R2).
    #[arg(long, global = true, env = "AWS_REGION")]
    pub(crate) s3_region: Option<String>,
    /// Allow an http:// endpoint (local test servers only).
    #[arg(long, global = true)]
    pub(crate) s3_allow_http: bool,
    /// Path-style bucket addressing (`MinIO` and most self-hosted services).
    #[arg(long, global = true)]
    pub(crate) s3_path_style: bool,
    /// `--json` (one JSON document on stdout, for cron and monitoring; logs stay on stderr) and
    /// `--no-color`.
    #[command(flatten)]
    pub(crate) output: OutputArgs,
    /// A `NAME=value` file supplying the `GROUNDWORK_BACKUP_*` and `AWS_*` settings that neither
    /// the command line nor the environment gives, e.g. for `archive_command` and
    /// `restore_command`, which run with the server's environment. Keep it readable by its owner
    /// only; secrets may also come from `AWS_SECRET_ACCESS_KEY_FILE`.
    #[arg(long, global = true, env = "GROUNDWORK_BACKUP_ENV_FILE")]
    pub(crate) env_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
pub(crate) enum PostgresCommand {
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
pub(crate) struct BaseBackupArgs {
    /// The cluster to back up (`--database-url`); the user needs the REPLICATION attribute.
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    /// The name the cluster's archive is filed under (the same as wal-push's).
    #[arg(long, env = "GROUNDWORK_BACKUP_SOURCE")]
    pub(crate) source: Option<String>,
    #[command(flatten)]
    pub(crate) pipeline: PipelineArgs,
    /// The `pg_basebackup` program.
    #[arg(long, default_value = "pg_basebackup")]
    pub(crate) pg_basebackup: PathBuf,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["to_time", "to_lsn", "latest"])))]
pub(crate) struct PitrRestoreArgs {
    /// The new data directory; it must be missing or empty.
    #[arg(long)]
    pub(crate) data_dir: PathBuf,
    /// The name the cluster's archive is filed under.
    #[arg(long, env = "GROUNDWORK_BACKUP_SOURCE")]
    pub(crate) source: Option<String>,
    /// Stop before the first transaction committed at or after this time (RFC 3339, e.g.
    /// 2026-12-06T08:30:00Z).
    #[arg(long)]
    pub(crate) to_time: Option<String>,
    /// Stop after this WAL location (e.g. 0/3000148).
    #[arg(long)]
    pub(crate) to_lsn: Option<String>,
    /// Replay every archived WAL file.
    #[arg(long)]
    pub(crate) latest: bool,
    /// age identity file with the private key, for an encrypted archive.
    #[arg(long, env = "GROUNDWORK_BACKUP_IDENTITY_FILE")]
    pub(crate) identity_file: Option<PathBuf>,
    /// Start a throwaway server on the directory (free port, private socket, no archiving), wait
    /// for recovery, count every table's rows, stop it.
    #[arg(long)]
    pub(crate) verify: bool,
    /// The directory of `pg_ctl` (the newest /usr/lib/postgresql/<major>/bin when unset).
    #[arg(long)]
    pub(crate) pg_bin_dir: Option<PathBuf>,
    /// The superuser `--verify` connects as.
    #[arg(long, default_value = "postgres")]
    pub(crate) verify_user: String,
    /// How long `--verify` waits for recovery.
    #[arg(long, default_value = "30min", value_parser = humantime::parse_duration)]
    pub(crate) verify_timeout: Duration,
    /// The `tar` program.
    #[arg(long, default_value = "tar")]
    pub(crate) tar: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct WalPushArgs {
    /// The file to archive (`%p`).
    pub(crate) path: PathBuf,
    /// The name the cluster's archive is filed under.
    #[arg(long, env = "GROUNDWORK_BACKUP_SOURCE")]
    pub(crate) source: Option<String>,
    /// Asynchronous archiving: push other files PostgreSQL marked ready along with this one
    /// and acknowledge them in this local directory, so that their own `wal-push` returns at once.
    #[arg(long, env = "GROUNDWORK_BACKUP_WAL_SPOOL")]
    pub(crate) spool: Option<PathBuf>,
    /// With --spool: the most files one invocation pushes, this one included.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub(crate) spool_batch: u32,
    /// With --spool: how many files are pushed at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub(crate) spool_parallel: u32,
    #[command(flatten)]
    pub(crate) pipeline: PipelineArgs,
}

#[derive(Debug, Args)]
pub(crate) struct WalFetchArgs {
    /// The file name asked for (`%f`).
    pub(crate) name: String,
    /// Where to write it (`%p`).
    pub(crate) path: PathBuf,
    /// The name the cluster's archive is filed under.
    #[arg(long, env = "GROUNDWORK_BACKUP_SOURCE")]
    pub(crate) source: Option<String>,
    /// age identity file with the private key, for an encrypted archive.
    #[arg(long, env = "GROUNDWORK_BACKUP_IDENTITY_FILE")]
    pub(crate) identity_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct PipelineArgs {
    /// zstd level, 1 to 19.
    #[arg(long, default_value_t = DEFAULT_ZSTD_LEVEL)]
    pub(crate) zstd_level: i32,
    /// zstd worker threads (0: compress on the pipeline's compression thread); helps
    /// compressible data at high levels when cores are free.
    #[arg(long, default_value_t = 0)]
    pub(crate) zstd_workers: u32,
    /// age x25519 recipient (age1...) to encrypt to; repeat for several.
    #[arg(
        long = "recipient",
        env = "GROUNDWORK_BACKUP_RECIPIENTS",
        value_delimiter = ','
    )]
    pub(crate) recipients: Vec<String>,
    /// Multipart part size (e.g. 16MiB); every part but the last has exactly this size.
    #[arg(long, default_value = "16MiB", value_parser = parse_size)]
    pub(crate) part_size: usize,
    /// After a successful backup, write Prometheus metrics to this file (atomically), e.g. for
    /// the node exporter's textfile collector.
    #[arg(long)]
    pub(crate) metrics_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct PgBackupArgs {
    /// The database to back up (`--database-url`).
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    #[command(flatten)]
    pub(crate) pipeline: PipelineArgs,
    /// Do not count rows per table (verify then only checks that the backup restores).
    #[arg(long)]
    pub(crate) no_row_counts: bool,
    /// File the backup under this name instead of the database name.
    #[arg(long)]
    pub(crate) source: Option<String>,
    /// The `pg_dump` program.
    #[arg(long, default_value = "pg_dump")]
    pub(crate) pg_dump: PathBuf,
    /// Store the dump as plain zstd (then age), without packing the hex text of `bytea` values
    /// into bytes first: slower on incompressible `bytea`, readable by `age -d | zstd -d`.
    #[arg(long)]
    pub(crate) no_bytea_packing: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ClickHouseCommand {
    /// Export a database into storage.
    Backup(ChBackupArgs),
    /// Restore an export into a database and compare row counts.
    Restore(ChRestoreArgs),
}

/// TLS files for an `https://` ClickHouse URL, named like the services' `*_FILE` variables.
#[derive(Debug, Args)]
pub(crate) struct ChTlsArgs {
    /// PEM file of the CA that signed ClickHouse's certificate; the system's roots when unset.
    #[arg(long = "clickhouse-ca-cert", env = "CLICKHOUSE_TLS_CA_CERT_FILE")]
    pub(crate) ca_cert: Option<PathBuf>,
    /// PEM file of a client certificate, for servers that require one.
    #[arg(
        long = "clickhouse-client-cert",
        env = "CLICKHOUSE_TLS_CLIENT_CERT_FILE"
    )]
    pub(crate) client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[arg(long = "clickhouse-client-key", env = "CLICKHOUSE_TLS_CLIENT_KEY_FILE")]
    pub(crate) client_key: Option<PathBuf>,
}

impl ChTlsArgs {
    pub(crate) fn settings(&self) -> Result<groundwork_connect::TlsSettings, BackupError> {
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
pub(crate) struct ChBackupArgs {
    /// The server's HTTP interface, e.g. `http://user:password@host:8123`.
    #[arg(long, env = "CLICKHOUSE_URL", hide_env_values = true, value_name = "URL", value_parser = SecretUrlParser)]
    pub(crate) clickhouse_url: SecretUrl,
    #[command(flatten)]
    pub(crate) tls: ChTlsArgs,
    /// The database to export.
    #[arg(long)]
    pub(crate) database: String,
    #[command(flatten)]
    pub(crate) pipeline: PipelineArgs,
    /// File the backup under this name instead of the database name.
    #[arg(long)]
    pub(crate) source: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ChRestoreArgs {
    /// The server's HTTP interface.
    #[arg(long, env = "CLICKHOUSE_URL", hide_env_values = true, value_name = "URL", value_parser = SecretUrlParser)]
    pub(crate) clickhouse_url: SecretUrl,
    #[command(flatten)]
    pub(crate) tls: ChTlsArgs,
    /// Which backup (`--source` is required).
    #[command(flatten)]
    pub(crate) select: SelectArgs,
    /// The database to restore into; the source name when unset.
    #[arg(long)]
    pub(crate) database: Option<String>,
    /// Drop the backup's tables first if they exist; without it a non-empty target is refused.
    #[arg(long)]
    pub(crate) clean: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RedisCommand {
    /// Stream the server's RDB snapshot into storage.
    Backup(RedisBackupArgs),
    /// Write a backup's RDB to a file (stop the server first; see the crate docs).
    Restore(RedisRestoreArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RedisBackupArgs {
    /// The server to back up.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, value_name = "URL", value_parser = SecretUrlParser)]
    pub(crate) redis_url: SecretUrl,
    #[command(flatten)]
    pub(crate) pipeline: PipelineArgs,
    /// The name the backup is filed under.
    #[arg(long, default_value = "redis")]
    pub(crate) source: String,
    /// The `redis-cli` program.
    #[arg(long, default_value = "redis-cli")]
    pub(crate) redis_cli: PathBuf,
    /// PEM file of the CA that signed a `rediss://` server's certificate; the system's roots when
    /// unset.
    #[arg(long = "redis-ca-cert", env = "REDIS_TLS_CA_CERT_FILE")]
    pub(crate) ca_cert: Option<PathBuf>,
    /// PEM file of a client certificate, for servers that require one.
    #[arg(long = "redis-client-cert", env = "REDIS_TLS_CLIENT_CERT_FILE")]
    pub(crate) client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[arg(long = "redis-client-key", env = "REDIS_TLS_CLIENT_KEY_FILE")]
    pub(crate) client_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct RedisRestoreArgs {
    /// Which backup (the source name defaults to `redis`).
    #[command(flatten)]
    pub(crate) select: SelectArgs,
    /// The RDB file to write, e.g. /var/lib/redis/dump.rdb.
    #[arg(long)]
    pub(crate) output: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct PgRestoreArgs {
    /// restore: the target database. verify: any database on the server where the scratch
    /// database is created (`--database-url`).
    #[command(flatten)]
    pub(crate) connect: ConnectArgs,
    /// Which backup (the source name defaults to the target database's name).
    #[command(flatten)]
    pub(crate) select: SelectArgs,
    /// Drop the objects the backup recreates; without it a non-empty target is refused.
    #[arg(long)]
    pub(crate) clean: bool,
    /// Parallel `pg_restore` jobs; above 1 the archive is written to a local file first.
    #[arg(long, default_value_t = 1)]
    pub(crate) jobs: u32,
    /// Directory for that local file.
    #[arg(long)]
    pub(crate) staging_dir: Option<PathBuf>,
    /// Skip ownership and privileges (target roles differ from the source's).
    #[arg(long)]
    pub(crate) no_owner: bool,
    /// The `pg_restore` program.
    #[arg(long, default_value = "pg_restore")]
    pub(crate) pg_restore: PathBuf,
}

/// Which backup a restore uses: the newest complete one of a source, or one by id.
#[derive(Debug, Args)]
pub(crate) struct SelectArgs {
    /// The backup's source name, as `list` shows it.
    #[arg(long)]
    pub(crate) source: Option<String>,
    /// The backup id as printed by `list`; the newest complete backup when unset.
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// age identity file with the private key, for encrypted backups.
    #[arg(long, env = "GROUNDWORK_BACKUP_IDENTITY_FILE")]
    pub(crate) identity_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct FilterArgs {
    /// Only this kind.
    #[arg(long, value_enum)]
    pub(crate) kind: Option<KindArg>,
    /// Only this source.
    #[arg(long)]
    pub(crate) source: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
    /// Keep this many complete backups per source (0 keeps only the newest). For base backups,
    /// archived WAL older than the oldest kept one goes too.
    #[arg(long, visible_alias = "keep", default_value_t = 30)]
    pub(crate) keep_last: usize,
    /// Also delete complete backups older than this (e.g. 90d).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) max_age: Option<Duration>,
    /// Delete incomplete backups not written to for this long.
    #[arg(long, default_value = "1day", value_parser = humantime::parse_duration)]
    pub(crate) incomplete_after: Duration,
    /// List what would be deleted, delete nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum KindArg {
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

/// A size such as `16MiB`, `512k` or `100` (bytes), with binary units. No crate in the tree parses
/// sizes (indicatif and humantime only print them), so this stays hand-written.
pub(crate) fn parse_size(text: &str) -> Result<usize, String> {
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
