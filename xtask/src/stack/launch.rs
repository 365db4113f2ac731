//! Building the stack's services, starting them as native processes with their output in
//! `<target>/stack/<service>.log`, waiting for them to be ready, and stopping them after a failed
//! start.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{CLICKHOUSE_DATABASE, CONFIG_ENV, SERVICES, StackService, admin, http, logs, pids};
use crate::infra_env::InfraEnv;

pub(super) fn build() -> Result<()> {
    let mut command = Command::new(admin::cargo());
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

pub(super) fn binaries() -> Result<Vec<PathBuf>> {
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
pub(super) fn service_env(
    infra: &InfraEnv,
    database_url: &str,
    clickhouse_url: &str,
    dir: &Path,
) -> Result<Vec<(String, String)>> {
    Ok(vec![
        ("APP_ENV".into(), "development".into()),
        ("DATABASE_URL".into(), database_url.into()),
        ("REDIS_URL".into(), infra.value("REDIS_URL")?),
        ("RABBITMQ_URL".into(), infra.value("RABBITMQ_URL")?),
        ("CLICKHOUSE_URL".into(), clickhouse_url.into()),
        ("CLICKHOUSE_DATABASE".into(), CLICKHOUSE_DATABASE.into()),
        ("CONFIG_ENV".into(), CONFIG_ENV.into()),
        (
            "SNAPSHOT_DIR".into(),
            dir.join("snapshots").display().to_string(),
        ),
    ])
}

pub(super) fn launch(
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

pub(super) fn wait_ready(service: StackService, dir: &Path, deadline: Instant) -> Result<()> {
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
pub(super) fn stop_all(dir: &Path) {
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
