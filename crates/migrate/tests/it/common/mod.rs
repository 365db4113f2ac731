//! Helpers shared by the integration tests.

#![allow(dead_code, unreachable_pub)] // Each test binary uses a different subset.

use std::path::{Path, PathBuf};

/// The fixture directory `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A temporary directory holding `files`.
pub fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    for (name, sql) in files {
        write(dir.path(), name, sql);
    }
    dir
}

/// Writes one file.
pub fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("write {name}: {e}"));
}

/// Runs the built binary with `args` (and no database URLs from the environment unless given).
pub fn cli(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_groundwork-migrate"));
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("CLICKHOUSE_URL");
    for (k, v) in env {
        command.env(k, v);
    }
    command
        .output()
        .unwrap_or_else(|e| panic!("run groundwork-migrate: {e}"))
}

/// stdout and stderr as text.
pub fn text(output: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
