//! The log level follows a hot-reload config key, so an operator can turn on debug logging in a
//! running service with one `UPDATE platform_config ...` and turn it off again.

use groundwork_live::config::LiveConfig;
use groundwork_live::{Feed, FeedError, FeedOptions};
use groundwork_telemetry::LogLevelHandle;

/// The config key services read their log level from.
pub const LOG_LEVEL_KEY: &str = "log.level";

/// Applies the value of `key` (a JSON string: a level such as `"debug"` or directives such as
/// `"info,sqlx=warn"`) to the log filter now and on every change, until the returned task is
/// aborted. A deleted key restores `fallback` (the directives the service started with); a value
/// that is not a string or does not parse keeps the current level and logs a warning naming the
/// key and revision.
pub fn follow_log_level(
    config: &LiveConfig,
    key: &str,
    level: LogLevelHandle,
    fallback: String,
) -> tokio::task::JoinHandle<()> {
    let mut changes = config.watch(key);
    let key = key.to_owned();
    if let Some(entry) = config.snapshot().entry(&key) {
        apply(&level, &key, entry.revision, &entry.value);
    }
    tokio::spawn(async move {
        loop {
            match changes.changed().await {
                Some(entry) => apply(&level, &key, entry.revision, &entry.value),
                None => {
                    if level.set(&fallback).is_ok() {
                        tracing::info!(key = %key, level = %fallback, "log level key deleted; back to the start-up level");
                    }
                }
            }
        }
    })
}

fn apply(level: &LogLevelHandle, key: &str, revision: i64, value: &serde_json::Value) {
    let Some(directives) = value.as_str() else {
        tracing::warn!(
            key,
            revision,
            "log level not changed: the value must be a JSON string such as \"debug\""
        );
        return;
    };
    match level.set(directives) {
        Ok(()) => tracing::info!(key, revision, level = directives, "log level changed"),
        Err(error) => tracing::warn!(key, revision, %error, "log level not changed"),
    }
}

/// A service without hot-reload config of its own following `log.level` anyway: the config
/// feed and the task applying the level. Stop it with [`LogLevelFollower::shutdown`].
#[derive(Debug)]
pub struct LogLevelFollower {
    feed: Feed,
    task: tokio::task::JoinHandle<()>,
}

impl LogLevelFollower {
    /// Follows `log.level` of environment `env` in the `platform_config` table at `database_url`
    /// on a pool of its own (at most two connections: the listener and loads). Fails when the
    /// table cannot be read, e.g. before the service that owns it has migrated the database.
    pub async fn start(
        database_url: &str,
        env: &str,
        level: LogLevelHandle,
        fallback: String,
    ) -> Result<Self, LogLevelError> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect_lazy(database_url)
            .map_err(|_| LogLevelError::InvalidUrl)?;
        let (config, feed) =
            groundwork_live::config::watch(pool, env, FeedOptions::default()).await?;
        let task = follow_log_level(&config, LOG_LEVEL_KEY, level, fallback);
        Ok(Self { feed, task })
    }

    /// [`start`](Self::start) when `database_url` is given; a failure is logged as a warning and
    /// the level stays as started: a log level is not worth refusing to start over.
    pub async fn start_or_warn(
        database_url: Option<&str>,
        env: &str,
        level: LogLevelHandle,
        fallback: String,
    ) -> Option<Self> {
        let database_url = database_url?;
        match Self::start(database_url, env, level, fallback).await {
            Ok(follower) => Some(follower),
            Err(error) => {
                tracing::warn!(%error, "the log level stays as started; it will not follow log.level");
                None
            }
        }
    }

    /// Stops following: the level stays where it is.
    pub async fn shutdown(self) {
        self.task.abort();
        self.feed.shutdown().await;
    }
}

/// Why [`LogLevelFollower::start`] could not follow the level.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogLevelError {
    /// The database URL does not parse (it is not quoted: it may hold a password).
    #[error("the database URL for the log level is not a valid PostgreSQL URL")]
    InvalidUrl,
    /// `platform_config` could not be loaded.
    #[error(transparent)]
    Feed(#[from] FeedError),
}
