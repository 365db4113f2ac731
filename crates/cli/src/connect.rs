//! `--database-url` and `--connect-timeout`, and a connect that names its cause.

use std::ffi::OsStr;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use groundwork_config::{ExposeSecret as _, SecretUrl};
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use crate::Failure;

/// The connect timeout when `--connect-timeout` is not given, in seconds.
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u64 = 5;

/// Where the database is: `--database-url` (or `DATABASE_URL`) and `--connect-timeout`.
///
/// Both are global options, given before or after the subcommand. The URL is a [`SecretUrl`]:
/// help never shows the environment's value, and errors and `Debug` output show it with the
/// password masked.
#[derive(Debug, Clone, Args)]
// The tool's own description stays its help text: this struct's documentation is for Rust users.
#[command(about = None, long_about = None)]
pub struct ConnectArgs {
    /// Database URL, e.g. `postgres://app:password@db:5432/app`
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        global = true,
        value_name = "URL",
        value_parser = SecretUrlParser
    )]
    pub database_url: Option<SecretUrl>,
    /// Seconds to wait for the database to answer a connect
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = DEFAULT_CONNECT_TIMEOUT_SECS)]
    pub connect_timeout: u64,
}

impl ConnectArgs {
    /// The URL, or a usage failure (exit code 2) saying how to give one.
    pub fn url(&self) -> Result<&SecretUrl, Failure> {
        self.database_url.as_ref().ok_or_else(|| {
            Failure::usage(anyhow!(
                "no database URL: pass --database-url or set DATABASE_URL"
            ))
        })
    }

    /// `--connect-timeout` as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout)
    }

    /// The URL's PostgreSQL connect options; a URL sqlx cannot read is a usage failure.
    pub fn postgres_options(&self) -> Result<PgConnectOptions, Failure> {
        let url = self.url()?;
        url.expose_secret()
            .parse::<PgConnectOptions>()
            .map_err(|error| {
                Failure::usage(anyhow::Error::new(error).context(format!(
                    "--database-url / DATABASE_URL {url} is not a PostgreSQL URL"
                )))
            })
    }

    /// One PostgreSQL connection, or within `--connect-timeout` a failure naming the server and
    /// the cause (refused, unknown host, authentication, no answer).
    pub async fn connect_postgres(&self) -> Result<PgConnection, Failure> {
        let options = self.postgres_options()?;
        let url = self.url()?;
        let timeout = self.timeout();
        match tokio::time::timeout(timeout, PgConnection::connect_with(&options)).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(Failure::failed(
                anyhow::Error::new(error)
                    .context(format!("cannot connect to the database at {url}")),
            )),
            Err(_) => Err(Failure::failed(anyhow!(
                "cannot connect to the database at {url}: no answer within {} s \
                 (--connect-timeout)",
                timeout.as_secs()
            ))),
        }
    }

    /// A pool of one connection for a command-line tool, after a first connect has proved the
    /// database reachable (so an unreachable one fails at once with its cause, not after the
    /// pool's acquire timeout with "pool timed out").
    pub async fn postgres_pool(&self) -> Result<PgPool, Failure> {
        let probe = self.connect_postgres().await?;
        // The probe has done its job; how its session ends does not matter.
        let _ = probe.close().await;
        Ok(PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(self.timeout())
            .connect_lazy_with(self.postgres_options()?))
    }
}

/// A clap value parser for URLs that may hold a password: the value becomes a [`SecretUrl`], and
/// a value that is not a URL is refused without being repeated.
#[derive(Debug, Clone, Copy, Default)]
pub struct SecretUrlParser;

impl TypedValueParser for SecretUrlParser {
    type Value = SecretUrl;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<SecretUrl, clap::Error> {
        let name = arg.map_or_else(|| "the URL".to_owned(), |arg| format!("'{arg}'"));
        let refuse = |reason: String| {
            let mut cmd = cmd.clone();
            clap::Error::raw(
                ErrorKind::ValueValidation,
                format!("invalid value for {name}: {reason} (the value is not shown: it may hold a password)"),
            )
            .format(&mut cmd)
        };
        let Some(text) = value.to_str() else {
            return Err(refuse("not UTF-8".to_owned()));
        };
        if text.is_empty() {
            return Err(refuse("empty".to_owned()));
        }
        text.parse::<SecretUrl>()
            .map_err(|error| refuse(error.to_string()))
    }
}
