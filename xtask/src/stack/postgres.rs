//! The stack's PostgreSQL database: creating it on the infrastructure's server and seeding the
//! demo data, with `psql`.

use std::fmt::Write as _;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::infra_env::InfraEnv;

/// The PostgreSQL database the stack's services share (created on the infrastructure's server).
pub(super) const DATABASE: &str = "groundwork_stack";
/// Demo data: the five seed flags (all off), the matching weights, the risk threshold.
const SEED_FILE: &str = "examples/demo/seed.sql";

/// `url` with its database (the path) replaced by `database`, query kept.
pub(super) fn with_database(url: &str, database: &str) -> Result<String> {
    let (scheme, rest) = url.split_once("://").with_context(|| {
        format!(
            "DATABASE_URL {} is not a URL",
            groundwork_config::redact_url(url)
        )
    })?;
    let (authority, query) = match rest.split_once('/') {
        Some((authority, path)) => (authority, path.split_once('?').map(|(_, query)| query)),
        None => match rest.split_once('?') {
            Some((authority, query)) => (authority, Some(query)),
            None => (rest, None),
        },
    };
    let mut out = format!("{scheme}://{authority}/{database}");
    if let Some(query) = query {
        let _ = write!(out, "?{query}");
    }
    Ok(out)
}

/// `psql -X` connected to `url` with no secret on its command line, where `ps` shows it: the URL
/// without its password or secret query parameters, the password in `PGPASSWORD`.
fn psql(url: &str) -> Result<Command> {
    let (url_for_argv, secrets) = groundwork_config::split_url_secrets(url).with_context(|| {
        format!(
            "DATABASE_URL {} is not a URL",
            groundwork_config::redact_url(url)
        )
    })?;
    let mut command = Command::new("psql");
    command
        .arg("-X")
        .arg(format!("--dbname={url_for_argv}"))
        .stdin(Stdio::null());
    if let Some((_, password)) = secrets.iter().rev().find(|(name, _)| name == "password") {
        command.env(
            "PGPASSWORD",
            groundwork_config::ExposeSecret::expose_secret(password),
        );
    }
    Ok(command)
}

/// Creates the stack's database when missing and returns its URL.
pub(super) fn prepare_postgres(infra: &InfraEnv) -> Result<String> {
    let server = infra.value("DATABASE_URL")?;
    let exists = psql(&server)?
        .arg("-tAc")
        .arg(format!(
            "SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"
        ))
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run psql; install postgresql-client")?;
    if !exists.status.success() {
        bail!(
            "cannot query PostgreSQL at {} with psql",
            groundwork_config::redact_url(&server)
        );
    }
    if exists.stdout.trim_ascii() != b"1" {
        let created = psql(&server)?
            .args(["-q", "-c"])
            .arg(format!("CREATE DATABASE {DATABASE}"))
            .status()
            .context("cannot run psql")?;
        if !created.success() {
            bail!(
                "cannot create database {DATABASE} on {}",
                groundwork_config::redact_url(&server)
            );
        }
        println!("created database {DATABASE}");
    }
    with_database(&server, DATABASE)
}

pub(super) fn seed(database_url: &str) -> Result<()> {
    let file = crate::project_root().join(SEED_FILE);
    let status = psql(database_url)?
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&file)
        .stdout(Stdio::null())
        .status()
        .context("cannot run psql")?;
    if !status.success() {
        bail!("seeding the demo data from {} failed", file.display());
    }
    println!("seeded the demo data ({SEED_FILE})");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_of_a_url_is_replaced_and_its_query_kept() -> anyhow::Result<()> {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "stack")?,
            "postgres://postgres@127.0.0.1:5432/stack"
        );
        assert_eq!(
            with_database("postgres://u:p@db/app?sslmode=disable", "stack")?,
            "postgres://u:p@db/stack?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://db:5432", "stack")?,
            "postgres://db:5432/stack"
        );
        assert!(with_database("not a url", "stack").is_err());
        Ok(())
    }

    #[test]
    fn psql_gets_no_secret_on_its_command_line() -> anyhow::Result<()> {
        let command = super::psql(
            "postgres://app:u53r1nfo@db:5432/stack?sslmode=disable&password=qu3ry&sslpassword=k3y",
        )?;
        let args: Vec<String> = command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-X",
                "--dbname=postgres://app@db:5432/stack?sslmode=disable"
            ]
        );
        let password = command
            .get_envs()
            .find(|(name, _)| *name == "PGPASSWORD")
            .and_then(|(_, value)| value);
        assert_eq!(password, Some(std::ffi::OsStr::new("qu3ry")));
        Ok(())
    }
}
