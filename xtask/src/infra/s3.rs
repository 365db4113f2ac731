//! S3: moto's standalone server, from a virtualenv of our own because Debian does not package moto.
//!
//! moto does not daemonize, so xtask launches it in the background itself, writes its PID file, and
//! lets it outlive xtask.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use super::probe::Probe;
use super::{Spec, process};

pub(super) const SPEC: Spec = Spec {
    name: "s3",
    env_var: "S3_ENDPOINT",
    // moto's own default, 5000, is not a port anyone expects S3 on.
    standard_port: None,
    // 9000, S3's usual local port (MinIO), is ClickHouse's native port.
    dedicated_port: 59000,
    probe: Probe::AnyHttp,
    url: |port| format!("http://127.0.0.1:{port}"),
    pid_file: "moto.pid",
    server_log: "moto.log",
    process_name: "moto_server",
    start_timeout: Duration::from_mins(1),
};

pub(super) fn venv_dir(dir: &Path) -> PathBuf {
    dir.join("venv")
}

fn moto_server(dir: &Path) -> PathBuf {
    venv_dir(dir).join("bin/moto_server")
}

pub(super) fn moto_installed(dir: &Path) -> bool {
    process::is_executable(&moto_server(dir))
}

/// Debian packages needed to create the virtualenv: Debian's python3 lacks `venv` and `ensurepip`
/// until python3-venv is installed.
pub(super) fn missing_packages() -> Vec<&'static str> {
    let can_make_venv = Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if can_make_venv {
        Vec::new()
    } else {
        vec!["python3", "python3-venv"]
    }
}

pub(super) fn install_moto(dir: &Path, log: &Path) -> Result<()> {
    let venv = venv_dir(dir);
    process::run_printed(Command::new("python3").args(["-m", "venv"]).arg(&venv), log)?;
    process::run_printed(
        Command::new(venv.join("bin/pip")).args(["install", "moto[server]"]),
        log,
    )
}

// moto must keep running after xtask exits, so its `Child` is deliberately never waited for: once
// xtask exits, the kernel hands moto to init, which reaps it when it ends.
pub(super) fn start(dir: &Path) -> Result<()> {
    let log = dir.join(SPEC.server_log);
    let (stdout, stderr) = process::open_log(&log)?;
    let mut moto = Command::new(moto_server(dir));
    moto.args(["-H", "127.0.0.1", "-p", &SPEC.dedicated_port.to_string()]);
    let child = process::without_inherited_fds(&moto)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        // A process group of its own keeps a Ctrl-C meant for xtask (or cargo) from reaching moto.
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot run {}", moto_server(dir).display()))?;
    let pid_file = dir.join(SPEC.pid_file);
    fs::write(&pid_file, format!("{}\n", child.id()))
        .with_context(|| format!("cannot write {}", pid_file.display()))
}
