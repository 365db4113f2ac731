//! The `platform_config` table: its migrations and hot reload through the feed.

use sqlx::PgPool;

use super::{ConfigEntry, ConfigSnapshot, LiveConfig};
use crate::{Feed, FeedError, FeedOptions, Table};

/// The NOTIFY channel the table's trigger announces changes on. The payload is
/// `{"env": .., "key": .., "revision": .., "op": ..}`, never the value.
pub const CHANNEL: &str = "groundwork_platform_config";

/// The migrations that create the `platform_config` table (or upgrade one created from the
/// seed's DDL), its history and its NOTIFY trigger, as `(file name, SQL)` pairs in order. The
/// same files are in the crate's `migrations/` directory for tools that read a directory.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_platform_config.up.sql",
        include_str!("../../migrations/0001_platform_config.up.sql"),
    ),
    (
        "0001_platform_config.down.sql",
        include_str!("../../migrations/0001_platform_config.down.sql"),
    ),
];

/// The directory holding the migrations, for `groundwork-migrate --dir` and similar tools.
pub fn migrations_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations")
}

/// The columns `key, value, revision, description, updated_by` of an entry.
pub(crate) type EntryRow = (
    String,
    serde_json::Value,
    i64,
    Option<String>,
    Option<String>,
);

pub(crate) fn entry_from_row(
    (key, value, revision, description, updated_by): EntryRow,
) -> ConfigEntry {
    ConfigEntry {
        key,
        value,
        revision,
        description,
        updated_by,
    }
}

/// Loads every entry of environment `env`, by key.
pub async fn load_env(pool: &PgPool, env: &str) -> Result<Vec<ConfigEntry>, sqlx::Error> {
    let rows: Vec<EntryRow> = sqlx::query_as(
        "SELECT key, value, revision, description, updated_by FROM platform_config
         WHERE env = $1 ORDER BY key",
    )
    .bind(env)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(entry_from_row).collect())
}

struct ConfigTable {
    env: String,
    /// `platform_config/<env>`: in logs, and in the snapshot file so that one environment's
    /// snapshot is never served to another.
    name: String,
}

impl Table for ConfigTable {
    type Row = ConfigEntry;

    fn name(&self) -> &str {
        &self.name
    }

    fn channel(&self) -> &'static str {
        CHANNEL
    }

    async fn load(&self, pool: &PgPool) -> Result<Vec<ConfigEntry>, sqlx::Error> {
        load_env(pool, &self.env).await
    }
}

/// Live config for environment `env` that follows the `platform_config` table: loaded whole at
/// start, reloaded within milliseconds of any change (including plain SQL), polled as a safety
/// net, kept through database outages, and started from the snapshot file when the database is
/// down at start.
///
/// Keep the returned [`Feed`] alive for as long as the values should follow the table; its
/// status is what a health check reports.
pub async fn watch(
    pool: PgPool,
    env: &str,
    options: FeedOptions,
) -> Result<(LiveConfig, Feed), FeedError> {
    let config = LiveConfig::new(ConfigSnapshot::new(env, []));
    let target = config.clone();
    let table = ConfigTable {
        env: env.to_owned(),
        name: format!("platform_config/{env}"),
    };
    let env = env.to_owned();
    let feed = crate::start(pool, table, options, move |rows: &[ConfigEntry]| {
        target.replace(ConfigSnapshot::new(env.clone(), rows.iter().cloned()));
    })
    .await?;
    Ok((config, feed))
}
