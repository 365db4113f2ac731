//! PID files under `<target>/stack/`, and stopping what they name.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::infra::process::process_runs;
pub(super) use crate::infra::process::terminate;

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
    process_runs(pid, service.binary()).then_some(pid)
}
