//! `groundwork-migrate`: the operator's command line over the library.
//!
//! The connection arguments (`--database-url`, `--connect-timeout`), `--json` and the exit codes
//! (0 done, 1 failed, 2 usage) are groundwork-cli's, shared by every Groundwork tool.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Parser, Subcommand};
use groundwork_cli::{ConnectArgs, Failure, OutputArgs, SecretUrlParser};
use groundwork_config::{ExposeSecret as _, SecretUrl};
use groundwork_migrate::{
    Backend, DownTarget, MigrateOptions, MigrationSet, Migrator, Report, TableName, UrlKind,
};

/// Apply, revert and inspect SQL migrations (PostgreSQL, ClickHouse).
#[derive(Debug, Parser)]
#[command(name = "groundwork-migrate", version)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// Directory holding the migration files.
    #[arg(long, global = true, default_value = "migrations")]
    dir: PathBuf,
    /// The database: postgres://, http(s):// or clickhouse://
    #[command(flatten)]
    connect: ConnectArgs,
    /// ClickHouse URL, used when neither --database-url nor `DATABASE_URL` is given
    #[arg(
        long,
        global = true,
        env = "CLICKHOUSE_URL",
        hide_env_values = true,
        value_name = "URL",
        value_parser = SecretUrlParser
    )]
    clickhouse_url: Option<SecretUrl>,
    #[command(flatten)]
    output: OutputArgs,
    /// Tracking table.
    #[arg(long, global = true, default_value = TableName::DEFAULT)]
    table: String,
    /// Seconds to wait for another runner's lock.
    #[arg(long, global = true, default_value_t = 300)]
    lock_timeout: u64,
    /// Apply pending versions lower than the latest applied one.
    #[arg(long, global = true)]
    allow_out_of_order: bool,
    /// Print what would run, change nothing.
    #[arg(long, global = true)]
    dry_run: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply pending migrations.
    Up {
        /// Stop after this version.
        #[arg(long)]
        to: Option<i64>,
    },
    /// Revert applied migrations, newest first (one by default).
    Down {
        /// How many to revert.
        #[arg(long, conflicts_with = "to")]
        steps: Option<u32>,
        /// Revert every applied version above this one.
        #[arg(long)]
        to: Option<i64>,
    },
    /// Show every version with its state.
    Status,
    /// Write the next `NNN_name.up.sql` and `NNN_name.down.sql`.
    Create {
        /// Name of the migration, e.g. `create_hotels`.
        name: String,
    },
    /// Report every problem that would stop `up` (only the files, without a database URL).
    Validate,
    /// Record a version as applied and clear its dirty state, without running it.
    Force {
        /// The version.
        version: i64,
    },
    /// Adopt an existing database: versions up to V count as applied.
    Baseline {
        /// The version the database is at.
        version: i64,
    },
    /// Accept changed checksums; forget dirty and missing versions.
    Repair,
}

fn main() -> ExitCode {
    groundwork_cli::main(run)
}

fn usage(message: String) -> Failure {
    Failure::usage(anyhow::Error::msg(message))
}

/// Whether a script holds nothing but blanks and `--` comments: applying it changes nothing,
/// which is rarely what its author meant.
fn is_empty_script(sql: &str) -> bool {
    sql.lines()
        .map(str::trim)
        .all(|line| line.is_empty() || line.starts_with("--"))
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let global = &cli.global;
    let table = TableName::new(&global.table).map_err(Failure::usage)?;
    if let Command::Create { name } = &cli.command {
        let set = if global.dir.exists() {
            MigrationSet::load(&global.dir)?
        } else {
            MigrationSet {
                dir: global.dir.clone(),
                ..MigrationSet::default()
            }
        };
        for path in set.create(name)? {
            println!("created {}", path.display());
        }
        return Ok(());
    }
    let set = MigrationSet::load(&global.dir)?;
    for file in &set.ignored {
        eprintln!(
            "note: {file} in {} is not a migration (names look like NNN_name.up.sql); skipped",
            global.dir.display()
        );
    }
    for migration in &set.migrations {
        let scripts = std::iter::once(&migration.up).chain(migration.down.as_ref());
        for script in scripts.filter(|script| is_empty_script(&script.sql)) {
            eprintln!(
                "warning: {} in {} is empty (nothing but blanks and comments): running it changes nothing",
                script.file_name,
                global.dir.display()
            );
        }
    }
    let mut options = MigrateOptions::default();
    options.table = table;
    options.lock_timeout = Duration::from_secs(global.lock_timeout);
    options.allow_out_of_order = global.allow_out_of_order;
    options.dry_run = global.dry_run;
    let migrator = Migrator::new(set).with_options(options);

    let Some(url) = global
        .connect
        .database_url
        .as_ref()
        .or(global.clickhouse_url.as_ref())
    else {
        if matches!(cli.command, Command::Validate) {
            println!(
                "{} migration(s) in {} are well formed (no database url: not compared with a database)",
                migrator.migrations().migrations.len(),
                global.dir.display()
            );
            return Ok(());
        }
        return Err(usage(
            "no database url: pass --database-url or set DATABASE_URL (PostgreSQL) or CLICKHOUSE_URL".to_owned(),
        ));
    };
    let out = global.output;
    match UrlKind::of(url.expose_secret()) {
        #[cfg(feature = "postgres")]
        Some(UrlKind::Postgres) => {
            let connect = ConnectArgs {
                database_url: Some(url.clone()),
                connect_timeout: global.connect.connect_timeout,
            };
            let conn = connect.connect_postgres().await?;
            let mut db = groundwork_migrate::postgres::PgBackend::from_connection(conn);
            let result = execute(&migrator, &mut db, &cli.command, out).await;
            // The run's outcome matters more than a failed close; the session ends either way.
            let _ = db.close().await;
            result
        }
        #[cfg(feature = "clickhouse")]
        Some(UrlKind::ClickHouse) => {
            let mut db =
                groundwork_migrate::clickhouse::ClickHouseBackend::from_url(url.expose_secret())?;
            execute(&migrator, &mut db, &cli.command, out).await
        }
        #[cfg(not(all(feature = "postgres", feature = "clickhouse")))]
        Some(kind) => Err(usage(format!(
            "{url} needs the `{}` feature, which this binary was built without",
            if kind == UrlKind::Postgres {
                "postgres"
            } else {
                "clickhouse"
            }
        ))),
        None => Err(usage(format!(
            "unsupported database url {url}: use postgres://, http(s):// or clickhouse://"
        ))),
    }
}

async fn execute<B: Backend>(
    migrator: &Migrator,
    db: &mut B,
    command: &Command,
    out: OutputArgs,
) -> Result<(), Failure> {
    let width = migrator.migrations().version_width;
    match command {
        Command::Up { to } => {
            print_report(&migrator.up(db, *to).await?, "up to date: nothing to apply");
        }
        Command::Down { steps, to } => {
            let target = match (steps, to) {
                (_, Some(version)) => DownTarget::To(*version),
                (steps, None) => DownTarget::Steps(steps.unwrap_or(1)),
            };
            print_report(&migrator.down(db, target).await?, "nothing to revert");
        }
        Command::Status => {
            let rows = migrator.status(db).await?;
            let json: Vec<serde_json::Value> = rows
                .iter()
                .map(|row| {
                    serde_json::json!({
                        "version": row.version,
                        "name": row.name,
                        "file": row.file,
                        "state": row.state.as_str(),
                        "applied_at": row.applied_at.map(|at| format_utc(at, Style::Rfc3339)),
                        "execution_ms": row.execution_time.map(|d| d.as_millis()),
                    })
                })
                .collect();
            out.emit(&json, |_| print_status(&rows, width))?;
        }
        Command::Validate => {
            let problems = migrator.validate(db).await?;
            if !problems.is_empty() {
                let list: Vec<String> = problems.iter().map(|p| format!("- {p}")).collect();
                return Err(Failure::failed(anyhow::Error::msg(format!(
                    "{} problem(s):\n{}",
                    problems.len(),
                    list.join("\n")
                ))));
            }
            println!(
                "ok: {} migration(s), no problems",
                migrator.migrations().migrations.len()
            );
        }
        Command::Force { version } => print_report(&migrator.force(db, *version).await?, ""),
        Command::Baseline { version } => print_report(&migrator.baseline(db, *version).await?, ""),
        Command::Repair => print_report(&migrator.repair(db).await?, "nothing to repair"),
        Command::Create { .. } => {}
    }
    Ok(())
}

fn print_status(rows: &[groundwork_migrate::MigrationStatus], width: usize) {
    let name_width = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    let version_width = rows
        .iter()
        .map(|r| r.version.to_string().len())
        .max()
        .unwrap_or(7)
        .max(width)
        .max(7);
    println!(
        "{:<version_width$}  {:<name_width$}  {:<8}  APPLIED AT",
        "VERSION", "NAME", "STATE"
    );
    for row in rows {
        let at = row
            .applied_at
            .map(|at| format_utc(at, Style::Human))
            .unwrap_or_default();
        println!(
            "{:0>width$}{}  {:<name_width$}  {:<8}  {at}",
            row.version,
            " ".repeat(version_width.saturating_sub(row.version.to_string().len().max(width))),
            row.name,
            row.state.as_str(),
        );
    }
}

fn print_report(report: &Report, nothing: &str) {
    if report.steps.is_empty() && !nothing.is_empty() {
        println!("{nothing}");
    }
    for step in &report.steps {
        let verb = match step.action {
            groundwork_migrate::Action::Apply => "apply",
            groundwork_migrate::Action::Revert => "revert",
            groundwork_migrate::Action::Force => "force",
            groundwork_migrate::Action::Baseline => "baseline",
            groundwork_migrate::Action::UpdateChecksum => "update checksum of",
            groundwork_migrate::Action::RemoveRecord => "forget",
            _ => "run",
        };
        if report.dry_run {
            println!("-- would {verb} {} (version {})", step.file, step.version);
            if let Some(sql) = &step.sql {
                println!("{}", sql.trim_end());
            }
        } else {
            println!("{verb} {} ({} ms)", step.file, step.elapsed.as_millis());
        }
    }
}

/// How a time is written.
#[derive(Clone, Copy)]
enum Style {
    /// `YYYY-MM-DD HH:MM:SS UTC`, for people.
    Human,
    /// `YYYY-MM-DDTHH:MM:SSZ`, for `--json`.
    Rfc3339,
}

/// A UTC time in `style`, without a date library.
fn format_utc(at: SystemTime, style: Style) -> String {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
    match style {
        Style::Human => {
            format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02} UTC")
        }
        Style::Rfc3339 => {
            format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
        }
    }
}
