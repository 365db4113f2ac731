//! The `postgres` service: a throwaway cluster made by `initdb` and run by `pg_ctl` from Debian's versioned
//! binary directory (`/usr/lib/postgresql/<version>/bin`, which is not on `PATH`).
//!
//! `initdb` refuses to run as root, so as root both run as the `postgres` user, which must own the
//! cluster's directory. The cluster trusts every local connection: it holds nothing but test data.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use super::probe::Probe;
use super::{Spec, commands_log, process};

pub(super) const SPEC: Spec = Spec {
    name: "postgres",
    env_var: "DATABASE_URL",
    standard_port: Some(5432),
    dedicated_port: 55432,
    probe: Probe::Postgres,
    url: |port| format!("postgres://postgres@127.0.0.1:{port}/postgres"),
    pid_file: "data/postmaster.pid",
    server_log: "postgres.log",
    process_name: "postgres",
    start_timeout: Duration::from_mins(1),
};

const USER: &str = "postgres";

/// The `bin` directory of the newest installed Postgres.
fn bin_dir() -> Option<PathBuf> {
    let versions = fs::read_dir("/usr/lib/postgresql").ok()?;
    versions
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            process::is_executable(&bin.join("pg_ctl")).then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
}

pub(super) fn missing_packages() -> Vec<&'static str> {
    if bin_dir().is_some() {
        Vec::new()
    } else {
        vec!["postgresql"]
    }
}

pub(super) fn start(dir: &Path) -> Result<()> {
    let bin = bin_dir().context("PostgreSQL is not installed under /usr/lib/postgresql")?;
    let log = commands_log(dir);
    let data = dir.join("data");
    let sockets = dir.join("sock");
    fs::create_dir_all(&sockets).with_context(|| format!("cannot create {}", sockets.display()))?;
    process::chown(USER, dir, &log)?;
    process::ensure_writable_by(USER, dir)?;

    if !data.join("PG_VERSION").exists() {
        process::run_logged(
            process::as_user(USER, bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ]),
            &log,
        )?;
    }
    // pg_ctl hands these options to the server through a shell, hence the quoting.
    let server_options = format!(
        "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
        SPEC.dedicated_port,
        process::sh_quote(&sockets.to_string_lossy())
    );
    process::run_logged(
        process::as_user(USER, bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join(SPEC.server_log))
            .args(["-w", "-t", "60", "-o", &server_options, "start"]),
        &log,
    )
}

pub(super) fn stop(dir: &Path) -> Result<()> {
    let bin = bin_dir().context("PostgreSQL is not installed under /usr/lib/postgresql")?;
    process::run_logged(
        process::as_user(USER, bin.join("pg_ctl"))
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-m", "fast", "-w", "stop"]),
        &commands_log(dir),
    )
}
