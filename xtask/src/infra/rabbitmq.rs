//! The `rabbitmq` service: a node of its own (`gw@localhost`) with its own Erlang port mapper, so that it neither
//! clashes with nor joins a `rabbitmq-server` that already runs on the machine.
//!
//! All settings travel in an `env.sh` that every `rabbitmq-server`/`rabbitmqctl` call sources; `HOME`
//! is the service directory so that the node and `rabbitmqctl` share an Erlang cookie that differs
//! from the system node's.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use super::probe::Probe;
use super::{Spec, commands_log, process};

pub(super) const SPEC: Spec = Spec {
    name: "rabbitmq",
    env_var: "RABBITMQ_URL",
    standard_port: Some(5672),
    dedicated_port: 55672,
    probe: Probe::Tcp,
    url: |port| format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
    pid_file: "rabbit.pid",
    server_log: "log",
    process_name: "rabbit",
    start_timeout: Duration::from_secs(90),
};

const USER: &str = "rabbitmq";
const BIN_DIR: &str = "/usr/lib/rabbitmq/bin";
const DIST_PORT: u16 = 55673;
const EPMD_PORT: u16 = 54369;

pub(super) fn missing_packages() -> Vec<&'static str> {
    if process::is_executable(&Path::new(BIN_DIR).join("rabbitmq-server")) {
        Vec::new()
    } else {
        vec!["rabbitmq-server"]
    }
}

pub(super) fn start(dir: &Path) -> Result<()> {
    let log = commands_log(dir);
    let env_file = write_config(dir)?;
    process::chown(USER, dir, &log)?;
    process::ensure_writable_by(USER, dir)?;
    let pid_file = dir.join(SPEC.pid_file);
    run_with_env(
        &env_file,
        &format!("{BIN_DIR}/rabbitmq-server -detached"),
        &log,
    )?;
    // `-detached` returns at once; `wait` returns when the node has booted its applications.
    run_with_env(
        &env_file,
        &format!(
            "{BIN_DIR}/rabbitmqctl wait --timeout 60 {}",
            process::sh_quote(&pid_file.to_string_lossy())
        ),
        &log,
    )
}

pub(super) fn stop(dir: &Path) -> Result<()> {
    let log = commands_log(dir);
    let env_file = dir.join("env.sh");
    let pid_file = dir.join(SPEC.pid_file);
    run_with_env(
        &env_file,
        &format!(
            "{BIN_DIR}/rabbitmqctl stop {}",
            process::sh_quote(&pid_file.to_string_lossy())
        ),
        &log,
    )?;
    // The node started a port mapper of its own on EPMD_PORT, which outlives the node.
    if process::find_program("epmd").is_some()
        && let Err(error) = run_with_env(&env_file, "epmd -kill", &log)
    {
        eprintln!("note: could not stop rabbitmq's epmd on port {EPMD_PORT}: {error:#}");
    }
    Ok(())
}

/// Writes `env.sh`, an empty `rabbitmq.conf` and an empty plugin list; returns the path of `env.sh`.
fn write_config(dir: &Path) -> Result<PathBuf> {
    let quoted = |path: PathBuf| process::sh_quote(&path.to_string_lossy());
    let settings = [
        ("HOME", process::sh_quote(&dir.to_string_lossy())),
        ("RABBITMQ_NODENAME", "gw@localhost".to_owned()),
        ("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1".to_owned()),
        ("RABBITMQ_NODE_PORT", SPEC.dedicated_port.to_string()),
        ("RABBITMQ_DIST_PORT", DIST_PORT.to_string()),
        ("ERL_EPMD_ADDRESS", "127.0.0.1".to_owned()),
        ("ERL_EPMD_PORT", EPMD_PORT.to_string()),
        ("RABBITMQ_MNESIA_BASE", quoted(dir.join("mnesia"))),
        ("RABBITMQ_LOG_BASE", quoted(dir.join(SPEC.server_log))),
        ("RABBITMQ_PID_FILE", quoted(dir.join(SPEC.pid_file))),
        (
            "RABBITMQ_ENABLED_PLUGINS_FILE",
            quoted(dir.join("enabled_plugins")),
        ),
        // RabbitMQ appends `.conf` itself.
        ("RABBITMQ_CONFIG_FILE", quoted(dir.join("rabbitmq"))),
    ];
    let exports = settings
        .into_iter()
        .map(|(key, value)| format!("export {key}={value}\n"));
    let env: String = std::iter::once("# Written by `cargo xtask infra up`.\n".to_owned())
        .chain(exports)
        .collect();
    let files = [
        ("env.sh", env.as_str()),
        ("rabbitmq.conf", ""),
        ("enabled_plugins", "[].\n"),
    ];
    for (name, contents) in files {
        let path = dir.join(name);
        fs::write(&path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(dir.join("env.sh"))
}

fn run_with_env(env_file: &Path, command: &str, log: &Path) -> Result<()> {
    let script = format!(
        ". {}; {command}",
        process::sh_quote(&env_file.to_string_lossy())
    );
    process::run_logged(process::as_user(USER, "sh").arg("-c").arg(script), log)
}
