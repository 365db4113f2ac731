//! `groundwork-backup`: back up, restore, verify, list and prune from cron, Kubernetes or a
//! terminal.
//!
//! Exit codes are groundwork-cli's, shared by every Groundwork tool: 0 success, 1 the operation
//! failed (a dump, upload, restore or verification failed), 2 the command was wrong (bad option,
//! missing key, no such backup). `postgres wal-fetch` answers PostgreSQL's `restore_command`
//! protocol instead: 1 for a file that is not archived, 128 for any other failure.

mod args;
mod backup;
mod catalog;
mod progress;
mod restore;
mod settings;

use std::process::ExitCode;
use std::time::SystemTime;

use groundwork_backup::{
    BackupError, BaseBackupOptions, ClickHouseBackupOptions, PostgresBackupOptions,
    RedisBackupOptions, Storage,
};
use groundwork_cli::{ConnectArgs, Exit};
use groundwork_config::ExposeSecret as _;
use serde_json::{Value, json};
use sqlx::postgres::PgConnection;

use crate::args::{Cli, ClickHouseCommand, Command, PostgresCommand, RedisCommand};
use crate::backup::{Job, recipients_from_settings, run_backup};
use crate::settings::{Settings, open_storage, source_of};

fn main() -> ExitCode {
    let cli = match groundwork_cli::parse::<Cli>() {
        Ok((cli, _color)) => cli,
        Err(code) => return code,
    };
    let json = cli.global.output.json;
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
            return Exit::Failed.into();
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(Outcome { ok, value }) => {
            if json {
                println!("{}", json!({ "ok": ok, "result": value }));
            }
            if ok {
                Exit::Success.into()
            } else {
                Exit::Failed.into()
            }
        }
        // PostgreSQL asks for files that do not exist (the next timeline's history, the segment
        // after the last): a quiet 1 tells it there is none.
        Err(BackupError::WalMissing { .. }) if wal_fetch => Exit::Failed.into(),
        Err(err) => {
            let code: u8 = if wal_fetch {
                WAL_FETCH_FATAL
            } else if err.is_usage() {
                Exit::Usage.code()
            } else {
                Exit::Failed.code()
            };
            // The error and each of its causes, once.
            let message = groundwork_cli::chain(&err);
            log("ERROR", &message);
            if json {
                println!(
                    "{}",
                    json!({ "ok": false, "error": message, "exit_code": code })
                );
            }
            ExitCode::from(code)
        }
    }
}

/// Above 125, so PostgreSQL's startup process treats the failure like a missing command and
/// stops, instead of taking it for the end of the archive and ending recovery early.
const WAL_FETCH_FATAL: u8 = 128;

/// What a command did: whether it succeeded, and its result for `--json`.
pub(crate) struct Outcome {
    pub(crate) ok: bool,
    pub(crate) value: Value,
}

impl Outcome {
    pub(crate) fn ok(value: Value) -> Self {
        Self { ok: true, value }
    }
}

async fn run(cli: Cli) -> Result<Outcome, BackupError> {
    let output = cli.global.output;
    if let Command::Keygen { output: file } = &cli.command {
        return catalog::keygen(file, output.json);
    }
    let settings = Settings::load(cli.global.env_file.as_deref())?;
    let storage = open_storage(&cli.global, &settings)?;
    match cli.command {
        Command::Postgres { command } => postgres(&storage, &cli.global, command, &settings).await,
        Command::Redis { command } => match command {
            RedisCommand::Backup(args) => {
                let url = args.redis_url.expose_secret().to_owned();
                run_backup(&storage, &url, &args.pipeline, output, |pipeline| {
                    Ok(Job::Redis(RedisBackupOptions {
                        pipeline,
                        source_name: args.source.clone(),
                        redis_cli: args.redis_cli.clone(),
                        tls: groundwork_backup::RedisTlsFiles {
                            ca_cert: args.ca_cert.clone(),
                            client_cert: args.client_cert.clone(),
                            client_key: args.client_key.clone(),
                        },
                    }))
                })
                .await
            }
            RedisCommand::Restore(args) => restore::redis_restore(&storage, args, &settings).await,
        },
        Command::Clickhouse { command } => match command {
            ClickHouseCommand::Backup(args) => {
                let url = args.clickhouse_url.expose_secret().to_owned();
                run_backup(&storage, &url, &args.pipeline, output, |pipeline| {
                    Ok(Job::ClickHouse(ClickHouseBackupOptions {
                        pipeline,
                        database: args.database.clone(),
                        source_name: args.source.clone(),
                        tls: args.tls.settings()?,
                    }))
                })
                .await
            }
            ClickHouseCommand::Restore(args) => {
                restore::ch_restore(&storage, args, &settings).await
            }
        },
        Command::List(args) => {
            let entries = groundwork_backup::list(&storage, &catalog::filter(&args)).await?;
            if !output.json {
                catalog::print_list(&entries);
            }
            Ok(Outcome::ok(to_json(&entries)))
        }
        Command::Prune(args) => catalog::prune(&storage, &args).await,
        Command::Metrics(args) => catalog::metrics(&storage, &args, output.json).await,
        Command::Keygen { .. } => Ok(Outcome::ok(Value::Null)),
    }
}

async fn postgres(
    storage: &Storage,
    global: &args::Global,
    command: PostgresCommand,
    settings: &Settings,
) -> Result<Outcome, BackupError> {
    let output = global.output;
    match command {
        PostgresCommand::Backup(args) => {
            let (url, session) = reachable_database(&args.connect).await?;
            run_backup(storage, &url, &args.pipeline, output, |pipeline| {
                Ok(Job::Postgres(
                    PostgresBackupOptions {
                        pipeline,
                        row_counts: !args.no_row_counts,
                        source_name: args.source.clone(),
                        pg_dump: args.pg_dump.clone(),
                        pack_bytea_hex: !args.no_bytea_packing,
                    },
                    session,
                ))
            })
            .await
        }
        PostgresCommand::Restore(args) => {
            restore::pg_restore(storage, args, settings, output, false).await
        }
        PostgresCommand::Verify(args) => {
            restore::pg_restore(storage, args, settings, output, true).await
        }
        PostgresCommand::WalPush(args) => backup::wal_push(storage, args, settings).await,
        PostgresCommand::WalFetch(args) => restore::wal_fetch(storage, args, settings).await,
        PostgresCommand::Basebackup(mut args) => {
            let source = source_of(args.source.as_ref(), settings)?;
            recipients_from_settings(&mut args.pipeline, settings);
            // A replication user may be allowed no ordinary session, so no connect is tried
            // first: pg_basebackup reports an unreachable server itself.
            let url = args
                .connect
                .url()
                .map_err(|f| restore::usage(&f))?
                .expose_secret()
                .to_owned();
            run_backup(storage, &url, &args.pipeline, output, |pipeline| {
                Ok(Job::Base(BaseBackupOptions {
                    pipeline,
                    source,
                    pg_basebackup: args.pg_basebackup.clone(),
                }))
            })
            .await
        }
        PostgresCommand::PitrRestore(args) => {
            restore::pitr_restore(storage, global, args, settings).await
        }
    }
}

/// The URL of `connect` and the session of a first connect that showed the database reachable
/// (an unreachable one fails within `--connect-timeout`, naming the server and the cause). The
/// backup goes on in that session rather than opening a second one: on a server with TLS the
/// second connect (a TLS handshake) cost 0.07–0.1 s before `pg_dump` started.
async fn reachable_database(connect: &ConnectArgs) -> Result<(String, PgConnection), BackupError> {
    let url = connect.url().map_err(|f| restore::usage(&f))?;
    let session = connect
        .connect_postgres()
        .await
        .map_err(|f| restore::unreachable(&f))?;
    Ok((url.expose_secret().to_owned(), session))
}

pub(crate) fn to_json(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

pub(crate) fn log(level: &str, message: &str) {
    let now = humantime::format_rfc3339_millis(SystemTime::now());
    eprintln!("{now} {level} groundwork-backup: {message}");
}
