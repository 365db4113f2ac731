//! PID files under `<target>/stack/`, and stopping what they name.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::StackService;

fn pid_file(dir: &Path, service: StackService) -> PathBuf {
    dir.join(format!("{}.pid", service.name))
}

pub(super) fn record(dir: &Path, service: StackService, pid: u32) -> Result<()> {
    let path = pid_file(dir, service);
    fs::write(&path, format!("{pid}\n")).with_context(|| format!("cannot write {}", path.display()))
}

pub(super) fn forget(dir: &Path, service: StackService) {
    let _ = fs::remove_file(pid_file(dir, service));
}

/// The recorded PID of `service` if that process is alive and still runs the service's binary
/// (a stale PID file must never point us at an unrelated process that reused the PID).
pub(super) fn running(dir: &Path, service: StackService) -> Option<u32> {
    let text = fs::read_to_string(pid_file(dir, service)).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    let alive = alive(pid)
        && fs::read(format!("/proc/{pid}/cmdline")).map_or(true, |cmdline| {
            String::from_utf8_lossy(&cmdline).contains(service.binary())
        });
    alive.then_some(pid)
}

fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie has exited and only waits for its parent to collect it.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) if Path::new("/proc/self").exists() => false,
        Err(_) => signal(pid, "0"),
    }
}

fn signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// SIGTERM (the service drains and runs its shutdown hooks), then SIGKILL after `grace`.
pub(super) fn terminate(pid: u32, grace: Duration) -> Result<()> {
    signal(pid, "TERM");
    if wait_for_exit(pid, grace) {
        return Ok(());
    }
    signal(pid, "KILL");
    if wait_for_exit(pid, Duration::from_secs(5)) {
        return Ok(());
    }
    bail!("process {pid} is still running after SIGTERM and SIGKILL")
}

fn wait_for_exit(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
    true
}
