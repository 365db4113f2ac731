//! Redis: `redis-server` daemonizing itself, without persistence, since tests own their keys.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use super::probe::Probe;
use super::{Spec, commands_log, process};

pub(super) const SPEC: Spec = Spec {
    name: "redis",
    env_var: "REDIS_URL",
    standard_port: Some(6379),
    dedicated_port: 56379,
    probe: Probe::Tcp,
    url: |port| format!("redis://127.0.0.1:{port}"),
    pid_file: "redis.pid",
    server_log: "redis.log",
    process_name: "redis-server",
    start_timeout: Duration::from_secs(20),
};

pub(super) fn missing_packages() -> Vec<&'static str> {
    if process::find_program("redis-server").is_some() {
        Vec::new()
    } else {
        vec!["redis-server"]
    }
}

pub(super) fn start(dir: &Path) -> Result<()> {
    let redis_server =
        process::find_program("redis-server").context("redis-server is not installed")?;
    process::run_logged(
        Command::new(redis_server)
            .args([
                "--daemonize",
                "yes",
                "--port",
                &SPEC.dedicated_port.to_string(),
            ])
            .args(["--bind", "127.0.0.1", "--dir"])
            .arg(dir)
            .arg("--pidfile")
            .arg(dir.join(SPEC.pid_file))
            .arg("--logfile")
            .arg(dir.join(SPEC.server_log))
            .args(["--save", "", "--appendonly", "no"]),
        &commands_log(dir),
    )
}
