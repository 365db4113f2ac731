//! `cargo xtask up --provider docker`: the stack as `docker compose` runs it from
//! deploy/compose.yaml.

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::UpOptions;

pub(super) fn up(options: &UpOptions) -> Result<()> {
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
