//! Groundwork's development tasks, run as `cargo xtask <task>` (the alias lives in `.cargo/config.toml`).
//!
//! Modelled on rust-analyzer's xtask: one module per task, plain functions, and as few dependencies as
//! possible (`anyhow`, `clap` and std), because every developer builds this crate before anything else.
//!
//! To add a task, add a variant to [`Task`] with its arguments, a module that owns the work, and a line
//! in `main`'s `match`.

mod env_example;
mod infra;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    about = "Groundwork's development tasks"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Start, stop or inspect the local servers the integration tests talk to
    #[command(subcommand)]
    Infra(infra::InfraCommand),
    /// Bring up the local stack; today the infrastructure only (same as `infra up`)
    Up {
        /// Do not install missing packages; fail instead
        #[arg(long)]
        no_install: bool,
    },
    /// Write `.env.example` from the quickstart's config type, or check it is up to date
    EnvExample {
        /// Fail instead of writing when the file is stale (CI)
        #[arg(long)]
        check: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.task {
        Task::Infra(command) => infra::run(&command),
        Task::Up { no_install } => infra::run(&infra::InfraCommand::Up { no_install }),
        Task::EnvExample { check } => env_example::run(&project_root(), check),
    }
}

/// The workspace root: the parent of this crate's directory.
pub(crate) fn project_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    // xtask always sits one level below the root; falling back to its own directory keeps this total.
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// The workspace target directory: `CARGO_TARGET_DIR` if set (relative to the working directory, as
/// cargo reads it), else `<root>/target`.
pub(crate) fn target_dir() -> Result<PathBuf> {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => std::path::absolute(&dir)
            .with_context(|| format!("cannot resolve CARGO_TARGET_DIR={}", dir.display())),
        _ => Ok(project_root().join("target")),
    }
}
