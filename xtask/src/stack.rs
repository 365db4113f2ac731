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

mod admin;
#[cfg(test)]
mod compose_check;
mod docker;
mod http;
mod launch;
mod logs;
mod pids;
mod postgres;

use std::fs;
use std::io::IsTerminal as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub(crate) use self::admin::{backup, config, flags};
pub(crate) use self::logs::LogsOptions;
use crate::infra_env::InfraEnv;

/// The ClickHouse database of the analytics events.
const CLICKHOUSE_DATABASE: &str = "groundwork_stack";
/// The `platform_config` environment the stack reads and the demo seed writes.
const CONFIG_ENV: &str = "development";

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
        return docker::up(options);
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
        redis_cluster: false,
        redis_sentinel: false,
    })?;
    let infra = InfraEnv::read()?;
    let database_url = postgres::prepare_postgres(&infra)?;
    let clickhouse_url = infra.value("CLICKHOUSE_URL")?;
    http::post(
        &clickhouse_url,
        &format!("CREATE DATABASE IF NOT EXISTS {CLICKHOUSE_DATABASE}"),
    )
    .context("cannot create the stack's ClickHouse database")?;

    if !options.no_build {
        launch::build()?;
    }
    let binaries = launch::binaries()?;

    let env = launch::service_env(&infra, &database_url, &clickhouse_url, &dir)?;
    let started = Instant::now();
    let mut launched = Vec::new();
    for (service, binary) in SERVICES.iter().zip(&binaries) {
        match launch::launch(*service, binary, &env, &dir, options.detach) {
            Ok(pid) => launched.push((*service, pid)),
            Err(error) => {
                launch::stop_all(&dir);
                return Err(error);
            }
        }
    }

    let deadline = Instant::now() + Duration::from_secs(options.timeout);
    let result = (|| {
        // The gateway applies the migrations the seed needs; seed as soon as it is ready.
        launch::wait_ready(SERVICES[0], &dir, deadline)?;
        postgres::seed(&database_url)?;
        for service in &SERVICES[1..] {
            launch::wait_ready(*service, &dir, deadline)?;
        }
        Ok(())
    })();
    if let Err(error) = result {
        launch::stop_all(&dir);
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
    crate::table::print(["SERVICE", "URL", "HEALTH", "PID", "LOG"], &rows);
}

fn relative(path: &Path) -> String {
    path.strip_prefix(crate::project_root())
        .unwrap_or(path)
        .display()
        .to_string()
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

/// Whether colours suit standard output.
pub(crate) fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}
