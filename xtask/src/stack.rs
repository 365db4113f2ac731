//! `cargo xtask up|down|status|logs|config|flags`: the whole local stack — infrastructure plus the
//! three example services — with one command.
//!
//! `up` brings the infrastructure up through [`crate::infra`], creates the stack's PostgreSQL and
//! ClickHouse databases, builds the services, starts them natively with their output in
//! `<target>/stack/<service>.log` and their PIDs in `<target>/stack/<service>.pid`, seeds the demo
//! data once the gateway has applied its migrations, waits for every `/health/ready`, prints what
//! runs where, and then follows the logs until Ctrl-C (or returns at once with `--detach`).
//!
//! Architecture invariant: `down` only signals processes named by PID files under
//! `<target>/stack/`, and only when the process's command line still names the service's binary;
//! it never looks processes up by name.

#[cfg(test)]
mod compose_check;
mod http;
mod logs;
mod pids;

use std::fmt::Write as _;
use std::fs;
use std::io::IsTerminal as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub(crate) use self::logs::LogsOptions;

/// The PostgreSQL database the stack's services share (created on the infrastructure's server).
const DATABASE: &str = "groundwork_stack";
/// The ClickHouse database of the analytics events.
const CLICKHOUSE_DATABASE: &str = "groundwork_stack";
/// The `platform_config` environment the stack reads and the demo seed writes.
const CONFIG_ENV: &str = "development";
/// Demo data: the five seed flags (all off), the matching weights, the risk threshold.
const SEED_FILE: &str = "examples/demo/seed.sql";

/// One of the stack's services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StackService {
    pub(crate) name: &'static str,
    pub(crate) package: &'static str,
    pub(crate) port: u16,
    /// ANSI colour of its log prefix.
    pub(crate) colour: &'static str,
}

impl StackService {
    /// The binary cargo builds for the package.
    pub(crate) fn binary(self) -> &'static str {
        self.package
    }

    pub(crate) fn url(self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

pub(crate) const SERVICES: [StackService; 3] = [
    StackService {
        name: "api-gateway",
        package: "groundwork-example-api-gateway",
        port: 8080,
        colour: "36",
    },
    StackService {
        name: "order-worker",
        package: "groundwork-example-order-worker",
        port: 8081,
        colour: "35",
    },
    StackService {
        name: "analytics-ingest",
        package: "groundwork-example-analytics-ingest",
        port: 8082,
        colour: "33",
    },
];

/// Where the stack's services run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Provider {
    /// Native processes on this machine (the default; no containers needed)
    Native,
    /// `docker compose` with deploy/compose.yaml, when a Docker engine is reachable
    Docker,
}

/// Options of `cargo xtask up`.
#[derive(Debug, clap::Args)]
pub(crate) struct UpOptions {
    /// Return once everything is ready instead of following the logs
    #[arg(long)]
    pub(crate) detach: bool,
    /// Do not install missing servers; fail instead
    #[arg(long)]
    pub(crate) no_install: bool,
    /// Use the binaries already built instead of running `cargo build` first
    #[arg(long)]
    pub(crate) no_build: bool,
    /// Seconds to wait for every service's /health/ready
    #[arg(long, default_value_t = 60)]
    pub(crate) timeout: u64,
    /// Native processes (default) or Docker compose
    #[arg(long, value_enum, default_value_t = Provider::Native)]
    pub(crate) provider: Provider,
}

/// Options of `cargo xtask down`.
#[derive(Debug, clap::Args)]
pub(crate) struct DownOptions {
    /// Also stop the infrastructure servers that `infra up` started (reused servers are left alone)
    #[arg(long)]
    pub(crate) infra: bool,
}

fn stack_dir() -> Result<PathBuf> {
    Ok(crate::target_dir()?.join("stack"))
}

pub(crate) fn up(options: &UpOptions) -> Result<()> {
    if options.provider == Provider::Docker {
        return docker_up(options);
    }
    let dir = stack_dir()?;
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;

    // Refuse before changing anything: a second stack, or a port someone else holds.
    let running: Vec<String> = SERVICES
        .iter()
        .filter_map(|service| {
            pids::running(&dir, *service).map(|pid| format!("{} (PID {pid})", service.name))
        })
        .collect();
    if !running.is_empty() {
        bail!(
            "the stack is already running: {}; see `cargo xtask status`, or stop it with `cargo xtask down`",
            running.join(", ")
        );
    }
    for service in SERVICES {
        pids::forget(&dir, service);
        if TcpListener::bind(("127.0.0.1", service.port)).is_err() {
            bail!(
                "port {} ({}) is taken by a process `cargo xtask up` did not start; stop it (e.g. find it with `ss -ltnp 'sport = :{}'`) and run `cargo xtask up` again",
                service.port,
                service.name,
                service.port
            );
        }
    }

    crate::infra::run(&crate::infra::InfraCommand::Up {
        no_install: options.no_install,
    })?;
    let infra = read_infra_env()?;
    let database_url = prepare_postgres(&infra)?;
    let clickhouse_url = infra_value(&infra, "CLICKHOUSE_URL")?;
    http::post(
        &clickhouse_url,
        &format!("CREATE DATABASE IF NOT EXISTS {CLICKHOUSE_DATABASE}"),
    )
    .context("cannot create the stack's ClickHouse database")?;

    if !options.no_build {
        build()?;
    }
    let binaries = binaries()?;

    let env = service_env(&infra, &database_url, &clickhouse_url, &dir)?;
    let started = Instant::now();
    let mut launched = Vec::new();
    for (service, binary) in SERVICES.iter().zip(&binaries) {
        match launch(*service, binary, &env, &dir, options.detach) {
            Ok(pid) => launched.push((*service, pid)),
            Err(error) => {
                stop_all(&dir);
                return Err(error);
            }
        }
    }

    let deadline = Instant::now() + Duration::from_secs(options.timeout);
    let result = (|| {
        // The gateway applies the migrations the seed needs; seed as soon as it is ready.
        wait_ready(SERVICES[0], &dir, deadline)?;
        seed(&database_url)?;
        for service in &SERVICES[1..] {
            wait_ready(*service, &dir, deadline)?;
        }
        Ok(())
    })();
    if let Err(error) = result {
        stop_all(&dir);
        return Err(error);
    }

    println!(
        "\nthe stack is ready ({:.1} s after the services were started)\n",
        started.elapsed().as_secs_f64()
    );
    print_status(&dir);
    print_next_steps();
    if options.detach {
        return Ok(());
    }
    println!("\nfollowing the logs; Ctrl-C stops the services\n");
    logs::follow(&dir, &SERVICES, true)?;
    // Every service has exited (Ctrl-C reaches them too, as part of our process group).
    for service in SERVICES {
        pids::forget(&dir, service);
    }
    Ok(())
}

pub(crate) fn down(options: &DownOptions) -> Result<()> {
    let dir = stack_dir()?;
    let mut stopped = 0;
    for service in SERVICES {
        if let Some(pid) = pids::running(&dir, service) {
            println!("stopping {} (PID {pid})", service.name);
            pids::terminate(pid, Duration::from_secs(15))
                .with_context(|| format!("cannot stop {} (PID {pid})", service.name))?;
            stopped += 1;
        }
        pids::forget(&dir, service);
    }
    if stopped == 0 {
        println!("no stack service was running");
    }
    if options.infra {
        crate::infra::run(&crate::infra::InfraCommand::Down)?;
    } else {
        println!(
            "infrastructure left running; `cargo xtask down --infra` stops what `infra up` started"
        );
    }
    Ok(())
}

pub(crate) fn status() -> Result<()> {
    let dir = stack_dir()?;
    print_status(&dir);
    Ok(())
}

pub(crate) fn logs(options: &LogsOptions) -> Result<()> {
    let dir = stack_dir()?;
    let selected: Vec<StackService> = match &options.service {
        None => SERVICES.to_vec(),
        Some(name) => match SERVICES.iter().find(|service| service.name == name) {
            Some(service) => vec![*service],
            None => bail!(
                "no stack service is called {name}; choose one of {}",
                SERVICES.map(|service| service.name).join(", ")
            ),
        },
    };
    logs::show(&dir, &selected, options)
}

/// `cargo xtask config ...`: the `groundwork-live` admin CLI against the stack's database.
///
/// A write (`set`, `delete`, `rollback`) that names no expectation is made with `--force`: on a
/// developer's own stack last-writer-wins is what a quick change means, and the README's
/// `cargo xtask config set log.level '"debug"'` works as printed. `groundwork-live` itself keeps
/// requiring `--if-revision`, `--create` or `--force`.
pub(crate) fn config(args: &[String]) -> Result<()> {
    let args = with_default_expectation(args);
    admin_cli(&["-p", "groundwork-live", "--features", "cli"], &args, &[])
}

/// `args` for `groundwork-live`, with `--force` added to a write that names no expectation.
fn with_default_expectation(args: &[String]) -> Vec<String> {
    let mut args = args.to_vec();
    // The subcommand is the first word that is neither an option nor the value of one of the
    // global options that take a value.
    let mut index = 0;
    while let Some(arg) = args.get(index) {
        if ["--env", "--database-url", "--by"].contains(&arg.as_str()) {
            index += 2;
        } else if arg.starts_with('-') {
            index += 1;
        } else {
            break;
        }
    }
    let Some(command) = args.get(index) else {
        return args;
    };
    if !["set", "delete", "rollback"].contains(&command.as_str()) {
        return args;
    }
    let named = args[index + 1..]
        .iter()
        .take_while(|arg| *arg != "--")
        .any(|arg| {
            ["--force", "--create", "--if-revision", "-h", "--help"].contains(&arg.as_str())
                || arg.starts_with("--if-revision=")
        });
    if !named {
        eprintln!(
            "note: no --if-revision, --create or --force given; writing with --force (last writer wins) on the local stack"
        );
        // Right after the subcommand, so that it stays an option even before a `--`.
        args.insert(index + 1, "--force".to_owned());
    }
    args
}

/// `cargo xtask flags ...`: the `groundwork-flags` admin CLI against the stack's database.
pub(crate) fn flags(args: &[String]) -> Result<()> {
    admin_cli(&["-p", "groundwork-flags"], args, &[])
}

/// `cargo xtask backup ...`: the `groundwork-backup` CLI against the stack's PostgreSQL, Redis and
/// ClickHouse, storing under `target/stack/backups` unless `GROUNDWORK_BACKUP_STORAGE` is set.
pub(crate) fn backup(args: &[String]) -> Result<()> {
    let infra = read_infra_env()?;
    let mut env = Vec::new();
    if std::env::var_os("GROUNDWORK_BACKUP_STORAGE").is_none() {
        let dir = crate::target_dir()?.join("stack").join("backups");
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        env.push((
            "GROUNDWORK_BACKUP_STORAGE",
            format!("file://{}", dir.display()),
        ));
    }
    for key in ["REDIS_URL", "CLICKHOUSE_URL"] {
        if std::env::var_os(key).is_none()
            && let Ok(value) = infra_value(&infra, key)
        {
            env.push((key, value));
        }
    }
    admin_cli(
        &["-p", "groundwork-backup", "--bin", "groundwork-backup"],
        args,
        &env,
    )
}

/// Overrides the database `cargo xtask config|flags|backup` work on (by default the stack's
/// database on the server named in `target/infra/env`).
const ADMIN_DATABASE_VAR: &str = "GROUNDWORK_STACK_DATABASE_URL";

fn admin_cli(package: &[&str], args: &[String], env: &[(&str, String)]) -> Result<()> {
    let database_url = match std::env::var(ADMIN_DATABASE_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => {
            let infra = read_infra_env()?;
            with_database(&infra_value(&infra, "DATABASE_URL")?, DATABASE)?
        }
    };
    let mut command = Command::new(cargo());
    command
        .current_dir(crate::project_root())
        .args(["run", "-q"])
        .args(package)
        .arg("--")
        .args(args)
        .env("DATABASE_URL", database_url)
        .envs(env.iter().map(|(key, value)| (*key, value)));
    if std::env::var_os("APP_ENV").is_none() {
        command.env("APP_ENV", CONFIG_ENV);
    }
    let status = command.status().context("cannot run cargo")?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// `target/infra/env` as key/value pairs.
fn read_infra_env() -> Result<Vec<(String, String)>> {
    let path = crate::target_dir()?.join("infra").join("env");
    let text = fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}; run `cargo xtask infra up` first",
            path.display()
        )
    })?;
    groundwork_config::parse_env_file(&text)
        .with_context(|| format!("cannot use {}", path.display()))
}

fn infra_value(infra: &[(String, String)], key: &str) -> Result<String> {
    infra
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.clone())
        .with_context(|| format!("target/infra/env has no {key}; run `cargo xtask infra up`"))
}

/// `url` with its database (the path) replaced by `database`, query kept.
fn with_database(url: &str, database: &str) -> Result<String> {
    let (scheme, rest) = url.split_once("://").with_context(|| {
        format!(
            "DATABASE_URL {} is not a URL",
            groundwork_config::redact_url(url)
        )
    })?;
    let (authority, query) = match rest.split_once('/') {
        Some((authority, path)) => (authority, path.split_once('?').map(|(_, query)| query)),
        None => match rest.split_once('?') {
            Some((authority, query)) => (authority, Some(query)),
            None => (rest, None),
        },
    };
    let mut out = format!("{scheme}://{authority}/{database}");
    if let Some(query) = query {
        let _ = write!(out, "?{query}");
    }
    Ok(out)
}

/// `psql -X` connected to `url` with no secret on its command line, where `ps` shows it: the URL
/// without its password or secret query parameters, the password in `PGPASSWORD`.
fn psql(url: &str) -> Result<Command> {
    let (url_for_argv, secrets) = groundwork_config::split_url_secrets(url).with_context(|| {
        format!(
            "DATABASE_URL {} is not a URL",
            groundwork_config::redact_url(url)
        )
    })?;
    let mut command = Command::new("psql");
    command
        .arg("-X")
        .arg(format!("--dbname={url_for_argv}"))
        .stdin(Stdio::null());
    if let Some((_, password)) = secrets.iter().rev().find(|(name, _)| name == "password") {
        command.env(
            "PGPASSWORD",
            groundwork_config::ExposeSecret::expose_secret(password),
        );
    }
    Ok(command)
}

/// Creates the stack's database when missing and returns its URL.
fn prepare_postgres(infra: &[(String, String)]) -> Result<String> {
    let server = infra_value(infra, "DATABASE_URL")?;
    let exists = psql(&server)?
        .arg("-tAc")
        .arg(format!(
            "SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"
        ))
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run psql; install postgresql-client")?;
    if !exists.status.success() {
        bail!(
            "cannot query PostgreSQL at {} with psql",
            groundwork_config::redact_url(&server)
        );
    }
    if exists.stdout.trim_ascii() != b"1" {
        let created = psql(&server)?
            .args(["-q", "-c"])
            .arg(format!("CREATE DATABASE {DATABASE}"))
            .status()
            .context("cannot run psql")?;
        if !created.success() {
            bail!(
                "cannot create database {DATABASE} on {}",
                groundwork_config::redact_url(&server)
            );
        }
        println!("created database {DATABASE}");
    }
    with_database(&server, DATABASE)
}

fn seed(database_url: &str) -> Result<()> {
    let file = crate::project_root().join(SEED_FILE);
    let status = psql(database_url)?
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&file)
        .stdout(Stdio::null())
        .status()
        .context("cannot run psql")?;
    if !status.success() {
        bail!("seeding the demo data from {} failed", file.display());
    }
    println!("seeded the demo data ({SEED_FILE})");
    Ok(())
}

fn build() -> Result<()> {
    let mut command = Command::new(cargo());
    command.current_dir(crate::project_root()).arg("build");
    for service in SERVICES {
        command.args(["-p", service.package]);
    }
    println!("building the services (cargo build)");
    let status = command.status().context("cannot run cargo build")?;
    if !status.success() {
        bail!("building the services failed; see cargo's output above");
    }
    Ok(())
}

fn binaries() -> Result<Vec<PathBuf>> {
    let dir = crate::target_dir()?.join("debug");
    SERVICES
        .iter()
        .map(|service| {
            let path = dir.join(service.binary());
            if path.is_file() {
                Ok(path)
            } else {
                bail!(
                    "{} is not built ({} is missing); run `cargo xtask up` without --no-build",
                    service.name,
                    path.display()
                )
            }
        })
        .collect()
}

/// The environment every service gets: the infrastructure's URLs, the stack's databases, and
/// the development settings. Each service reads the keys it knows.
fn service_env(
    infra: &[(String, String)],
    database_url: &str,
    clickhouse_url: &str,
    dir: &Path,
) -> Result<Vec<(String, String)>> {
    Ok(vec![
        ("APP_ENV".into(), "development".into()),
        ("DATABASE_URL".into(), database_url.into()),
        ("REDIS_URL".into(), infra_value(infra, "REDIS_URL")?),
        ("RABBITMQ_URL".into(), infra_value(infra, "RABBITMQ_URL")?),
        ("CLICKHOUSE_URL".into(), clickhouse_url.into()),
        ("CLICKHOUSE_DATABASE".into(), CLICKHOUSE_DATABASE.into()),
        ("CONFIG_ENV".into(), CONFIG_ENV.into()),
        (
            "SNAPSHOT_DIR".into(),
            dir.join("snapshots").display().to_string(),
        ),
    ])
}

fn launch(
    service: StackService,
    binary: &Path,
    env: &[(String, String)],
    dir: &Path,
    detach: bool,
) -> Result<u32> {
    let log = dir.join(format!("{}.log", service.name));
    let stdout =
        fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let stderr = stdout
        .try_clone()
        .with_context(|| format!("cannot open {}", log.display()))?;
    // Attached, the services share our process group, so the terminal's Ctrl-C reaches them and
    // they shut down gracefully; detached, `setsid` puts them in a session of their own so that
    // closing the terminal does not stop them.
    let mut command = if detach {
        let mut command = Command::new("setsid");
        command.arg(binary);
        command
    } else {
        Command::new(binary)
    };
    command
        .current_dir(dir)
        .env("SERVICE_NAME", service.name)
        .env("PORT", service.port.to_string())
        .envs(env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {} ({})", service.name, binary.display()))?;
    let pid = child.id();
    // The child is not waited for here: `down` stops it by PID and `follow` notices its exit.
    drop(child);
    pids::record(dir, service, pid)?;
    Ok(pid)
}

fn wait_ready(service: StackService, dir: &Path, deadline: Instant) -> Result<()> {
    loop {
        if http::get_status(service.port, "/health/ready") == Some(200) {
            return Ok(());
        }
        if pids::running(dir, service).is_none() {
            bail!(
                "{} exited during start-up; its last log lines ({}):\n{}",
                service.name,
                dir.join(format!("{}.log", service.name)).display(),
                last_lines(dir, service)
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "{} did not become ready (GET {}/health/ready); its last log lines ({}):\n{}",
                service.name,
                service.url(),
                dir.join(format!("{}.log", service.name)).display(),
                last_lines(dir, service)
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn last_lines(dir: &Path, service: StackService) -> String {
    let tail = logs::tail(dir, service, 20);
    if tail.trim().is_empty() {
        return "  (the log is empty)".to_owned();
    }
    tail.lines().fold(String::new(), |mut out, line| {
        let _ = writeln!(out, "  {line}");
        out
    })
}

/// Stops every service `up` recorded, after a failed start: nothing is left half-running.
fn stop_all(dir: &Path) {
    for service in SERVICES {
        if let Some(pid) = pids::running(dir, service)
            && let Err(error) = pids::terminate(pid, Duration::from_secs(10))
        {
            eprintln!("cannot stop {} (PID {pid}): {error:#}", service.name);
        }
        pids::forget(dir, service);
    }
    eprintln!("stopped the services started so far; infrastructure left running");
}

fn print_status(dir: &Path) {
    let rows: Vec<[String; 5]> = SERVICES
        .iter()
        .map(|service| {
            let pid = pids::running(dir, *service);
            let health = match (pid, http::get_status(service.port, "/health/ready")) {
                (None, _) => "stopped".to_owned(),
                (Some(_), Some(200)) => "ready".to_owned(),
                (Some(_), Some(code)) => format!("not ready ({code})"),
                (Some(_), None) => "not answering".to_owned(),
            };
            [
                service.name.to_owned(),
                service.url(),
                health,
                pid.map_or_else(|| "-".to_owned(), |pid| pid.to_string()),
                relative(&dir.join(format!("{}.log", service.name))),
            ]
        })
        .collect();
    print!(
        "{}",
        render_table(["SERVICE", "URL", "HEALTH", "PID", "LOG"], &rows)
    );
}

fn relative(path: &Path) -> String {
    path.strip_prefix(crate::project_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn render_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    let header = header.map(str::to_owned);
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

fn print_next_steps() {
    println!(
        r#"
try:
  curl -s localhost:8080/v1/matching/weights
  curl -s 'localhost:8080/v1/features?tenant=tenant-1'
  curl -s -X POST localhost:8080/v1/orders -H 'Idempotency-Key: demo-1' -d '{{"tenant":"tenant-1","amount":120.5}}'
  curl -s localhost:8082/v1/stats
  cargo xtask flags enable risk.auto.reject      # then POST an amount over 10000
  cargo xtask config list
  cargo xtask logs api-gateway
  cargo xtask status
  cargo xtask down"#
    );
}

fn docker_up(options: &UpOptions) -> Result<()> {
    let engine = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !engine.is_ok_and(|status| status.success()) {
        bail!(
            "no Docker engine is reachable (`docker info` failed); run `cargo xtask up` for native processes"
        );
    }
    let mut command = Command::new("docker");
    command.current_dir(crate::project_root()).args([
        "compose",
        "-f",
        "deploy/compose.yaml",
        "up",
        "--build",
        "--wait",
    ]);
    if options.detach {
        command.arg("--detach");
    }
    let status = command.status().context("cannot run docker compose")?;
    if !status.success() {
        bail!("`docker compose up` failed; see its output above");
    }
    Ok(())
}

/// Whether colours suit standard output.
pub(crate) fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

#[cfg(test)]
mod tests {
    use super::{render_table, with_database, with_default_expectation};

    #[test]
    fn a_config_write_without_an_expectation_is_forced() {
        let args = |list: &[&str]| list.iter().map(|&a| a.to_owned()).collect::<Vec<_>>();
        let cases: [(&[&str], &[&str]); 9] = [
            (
                &["set", "log.level", "\"debug\""],
                &["set", "--force", "log.level", "\"debug\""],
            ),
            (
                &["--env", "staging", "set", "k", "1"],
                &["--env", "staging", "set", "--force", "k", "1"],
            ),
            (&["delete", "k"], &["delete", "--force", "k"]),
            (
                &["set", "k", "--", "-1"],
                &["set", "--force", "k", "--", "-1"],
            ),
            (
                &["set", "k", "1", "--create"],
                &["set", "k", "1", "--create"],
            ),
            (
                &["set", "k", "1", "--if-revision", "7"],
                &["set", "k", "1", "--if-revision", "7"],
            ),
            (
                &["set", "k", "1", "--if-revision=7"],
                &["set", "k", "1", "--if-revision=7"],
            ),
            (&["list"], &["list"]),
            (&["get", "set"], &["get", "set"]),
        ];
        for (given, expected) in cases {
            assert_eq!(
                with_default_expectation(&args(given)),
                args(expected),
                "{given:?}"
            );
        }
    }

    #[test]
    fn the_database_of_a_url_is_replaced_and_its_query_kept() -> anyhow::Result<()> {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "stack")?,
            "postgres://postgres@127.0.0.1:5432/stack"
        );
        assert_eq!(
            with_database("postgres://u:p@db/app?sslmode=disable", "stack")?,
            "postgres://u:p@db/stack?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://db:5432", "stack")?,
            "postgres://db:5432/stack"
        );
        assert!(with_database("not a url", "stack").is_err());
        Ok(())
    }

    #[test]
    fn tables_align_columns() {
        let table = render_table(["A", "BB"], &[["xyz".to_owned(), "1".to_owned()]]);
        assert_eq!(table, "A    BB\nxyz  1\n");
    }

    #[test]
    fn psql_gets_no_secret_on_its_command_line() -> anyhow::Result<()> {
        let command = super::psql(
            "postgres://app:u53r1nfo@db:5432/stack?sslmode=disable&password=qu3ry&sslpassword=k3y",
        )?;
        let args: Vec<String> = command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-X",
                "--dbname=postgres://app@db:5432/stack?sslmode=disable"
            ]
        );
        let password = command
            .get_envs()
            .find(|(name, _)| *name == "PGPASSWORD")
            .and_then(|(_, value)| value);
        assert_eq!(password, Some(std::ffi::OsStr::new("qu3ry")));
        Ok(())
    }
}
