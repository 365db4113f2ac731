//! Groundwork's development tasks, run as `cargo xtask <task>` (the alias lives in `.cargo/config.toml`).
//!
//! Modelled on rust-analyzer's xtask: one module per task, plain functions, and as few dependencies as
//! possible (`anyhow`, `clap` and std), because every developer builds this crate before anything else.
//!
//! To add a task, add a variant to [`Task`] with its arguments, a module that owns the work, and a line
//! in `main`'s `match`.

mod env_example;
mod infra;
mod infra_env;
mod new_service;
mod stack;
mod table;

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
    /// Bring up the whole local stack: infrastructure, demo data and the three example services
    Up(stack::UpOptions),
    /// Stop the services `up` started (by PID)
    Down(stack::DownOptions),
    /// Show each service's URL, health, PID and log file
    Status,
    /// Show (or follow) the services' logs
    Logs(stack::LogsOptions),
    /// Hot-reload config of the stack: the `groundwork-live` admin CLI (`config list`, `config set KEY VALUE`, ...);
    /// a `set`, `delete` or `rollback` without `--if-revision`, `--create` or `--force` is made with `--force`.
    /// `GROUNDWORK_STACK_DATABASE_URL` points `config`, `flags` and `backup` at another database.
    Config {
        /// Arguments for `groundwork-live`, e.g. `list` or `set log.level '"debug"'`
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Feature flags of the stack: the `groundwork-flags` admin CLI (`flags list`, `flags enable NAME`, ...)
    Flags {
        /// Arguments for `groundwork-flags`, e.g. `list` or `enable risk.auto.reject`
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Backups of the stack: the `groundwork-backup` CLI against the stack's servers, storing in
    /// `target/stack/backups` unless `GROUNDWORK_BACKUP_STORAGE` says otherwise
    Backup {
        /// Arguments for `groundwork-backup`, e.g. `postgres backup` or `list`
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Start a new service in its own directory outside this repository, composing Groundwork's
    /// crates: `cargo xtask new-service orders --with postgres,live,flags`
    NewService(new_service::NewServiceOptions),
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
        Task::Up(options) => stack::up(&options),
        Task::Down(options) => stack::down(&options),
        Task::Status => stack::status(),
        Task::Logs(options) => stack::logs(&options),
        Task::Config { args } => stack::config(&args),
        Task::Flags { args } => stack::flags(&args),
        Task::Backup { args } => stack::backup(&args),
        Task::EnvExample { check } => env_example::run(&project_root(), check),
        Task::NewService(options) => new_service::run(&project_root(), &options),
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
