//! `cargo xtask config|flags|backup`: the admin CLIs of `groundwork-live`, `groundwork-flags` and
//! `groundwork-backup`, run with cargo against the stack's servers.

use std::fs;
use std::process::Command;

use anyhow::{Context, Result};

use super::{CONFIG_ENV, postgres};
use crate::infra_env::InfraEnv;

/// `cargo xtask config ...`: the `groundwork-live` admin CLI against the stack's database.
///
/// A write (`set`, `delete`, `rollback`) that names no expectation is made with `--force`: on a
/// developer's own stack last-writer-wins is what a quick change means, and the README's
/// `cargo xtask config set log.level '"debug"'` works as printed. `groundwork-live` itself keeps
/// requiring `--if-revision`, `--create` or `--force`.
pub(crate) fn config(args: &[String]) -> Result<()> {
    let args = with_default_expectation(args);
    admin_cli(&["-p", "groundwork-live", "--features", "cli"], &args, &[])
}

/// `args` for `groundwork-live`, with `--force` added to a write that names no expectation.
fn with_default_expectation(args: &[String]) -> Vec<String> {
    let mut args = args.to_vec();
    // The subcommand is the first word that is neither an option nor the value of one of the
    // global options that take a value.
    let mut index = 0;
    while let Some(arg) = args.get(index) {
        if ["--env", "--database-url", "--by"].contains(&arg.as_str()) {
            index += 2;
        } else if arg.starts_with('-') {
            index += 1;
        } else {
            break;
        }
    }
    let Some(command) = args.get(index) else {
        return args;
    };
    if !["set", "delete", "rollback"].contains(&command.as_str()) {
        return args;
    }
    let named = args[index + 1..]
        .iter()
        .take_while(|arg| *arg != "--")
        .any(|arg| {
            ["--force", "--create", "--if-revision", "-h", "--help"].contains(&arg.as_str())
                || arg.starts_with("--if-revision=")
        });
    if !named {
        eprintln!(
            "note: no --if-revision, --create or --force given; writing with --force (last writer wins) on the local stack"
        );
        // Right after the subcommand, so that it stays an option even before a `--`.
        args.insert(index + 1, "--force".to_owned());
    }
    args
}

/// `cargo xtask flags ...`: the `groundwork-flags` admin CLI against the stack's database.
pub(crate) fn flags(args: &[String]) -> Result<()> {
    admin_cli(&["-p", "groundwork-flags"], args, &[])
}

/// `cargo xtask backup ...`: the `groundwork-backup` CLI against the stack's PostgreSQL, Redis and
/// ClickHouse, storing under `target/stack/backups` unless `GROUNDWORK_BACKUP_STORAGE` is set.
pub(crate) fn backup(args: &[String]) -> Result<()> {
    let infra = InfraEnv::read()?;
    let mut env = Vec::new();
    if std::env::var_os("GROUNDWORK_BACKUP_STORAGE").is_none() {
        let dir = crate::target_dir()?.join("stack").join("backups");
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        env.push((
            "GROUNDWORK_BACKUP_STORAGE",
            format!("file://{}", dir.display()),
        ));
    }
    for key in ["REDIS_URL", "CLICKHOUSE_URL"] {
        if std::env::var_os(key).is_none()
            && let Ok(value) = infra.value(key)
        {
            env.push((key, value));
        }
    }
    admin_cli(
        &["-p", "groundwork-backup", "--bin", "groundwork-backup"],
        args,
        &env,
    )
}

/// Overrides the database `cargo xtask config|flags|backup` work on (by default the stack's
/// database on the server named in `target/infra/env`).
const ADMIN_DATABASE_VAR: &str = "GROUNDWORK_STACK_DATABASE_URL";

fn admin_cli(package: &[&str], args: &[String], env: &[(&str, String)]) -> Result<()> {
    let database_url = match std::env::var(ADMIN_DATABASE_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => {
            let infra = InfraEnv::read()?;
            postgres::with_database(&infra.value("DATABASE_URL")?, postgres::DATABASE)?
        }
    };
    let mut command = Command::new(cargo());
    command
        .current_dir(crate::project_root())
        .args(["run", "-q"])
        .args(package)
        .arg("--")
        .args(args)
        .env("DATABASE_URL", database_url)
        .envs(env.iter().map(|(key, value)| (*key, value)));
    if std::env::var_os("APP_ENV").is_none() {
        command.env("APP_ENV", CONFIG_ENV);
    }
    let status = command.status().context("cannot run cargo")?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}

pub(super) fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

#[cfg(test)]
mod tests {
    use super::with_default_expectation;

    #[test]
    fn a_config_write_without_an_expectation_is_forced() {
        let args = |list: &[&str]| list.iter().map(|&a| a.to_owned()).collect::<Vec<_>>();
        let cases: [(&[&str], &[&str]); 9] = [
            (
                &["set", "log.level", "\"debug\""],
                &["set", "--force", "log.level", "\"debug\""],
            ),
            (
                &["--env", "staging", "set", "k", "1"],
                &["--env", "staging", "set", "--force", "k", "1"],
            ),
            (&["delete", "k"], &["delete", "--force", "k"]),
            (
                &["set", "k", "--", "-1"],
                &["set", "--force", "k", "--", "-1"],
            ),
            (
                &["set", "k", "1", "--create"],
                &["set", "k", "1", "--create"],
            ),
            (
                &["set", "k", "1", "--if-revision", "7"],
                &["set", "k", "1", "--if-revision", "7"],
            ),
            (
                &["set", "k", "1", "--if-revision=7"],
                &["set", "k", "1", "--if-revision=7"],
            ),
            (&["list"], &["list"]),
            (&["get", "set"], &["get", "set"]),
        ];
        for (given, expected) in cases {
            assert_eq!(
                with_default_expectation(&args(given)),
                args(expected),
                "{given:?}"
            );
        }
    }
}
