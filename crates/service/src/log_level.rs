//! The log level follows a hot-reload config key, so an operator can turn on debug logging in a
//! running service with one `UPDATE platform_config ...` and turn it off again.

use groundwork_live::config::LiveConfig;
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
