//! The `platform_config` table: its migrations and hot reload through the feed.

use sqlx::PgPool;

use super::{ConfigEntry, ConfigSnapshot, LiveConfig};
use crate::{Feed, FeedError, FeedOptions, KeyedTable, Notice, Table, Update};

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

/// Writes [`MIGRATIONS`] into `dir` (created if missing), for `groundwork-migrate --dir` and
/// similar tools that read a directory. The SQL is embedded, so no source checkout is needed.
pub fn write_migrations(dir: &std::path::Path) -> std::io::Result<()> {
    crate::write_migration_files(dir, MIGRATIONS)
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
    // Written by plain SQL (the admin API and the CLI refuse it): served as stored, since a
    // service that reads the key by that exact name still works, and reported on every load.
    if let Err(problem) = crate::name::check_name("config key", &key) {
        tracing::warn!(%problem, revision, "config key is served as stored; rename it");
    }
    ConfigEntry {
        key,
        value,
        revision,
        description,
        updated_by,
    }
}

/// Loads every entry of environment `env`, by key.
///
/// Works through PgBouncer in transaction pooling mode: the statement is unprepared (not
/// cached by name on a server connection other clients share) and runs in a transaction of its
/// own, so that parsing and executing it happen on the same server connection.
pub async fn load_env(pool: &PgPool, env: &str) -> Result<Vec<ConfigEntry>, sqlx::Error> {
    let mut transaction = pool.begin().await?;
    let rows: Vec<EntryRow> = sqlx::query_as(
        "SELECT key, value, revision, description, updated_by FROM platform_config
         WHERE env = $1 ORDER BY key",
    )
    .persistent(false)
    .bind(env)
    .fetch_all(&mut *transaction)
    .await?;
    transaction.commit().await?;
    Ok(rows.into_iter().map(entry_from_row).collect())
}

/// Loads the entries of environment `env` with the given keys; absent keys are left out.
async fn load_keys(
    pool: &PgPool,
    env: &str,
    keys: &[String],
) -> Result<Vec<ConfigEntry>, sqlx::Error> {
    // One key is by far the most common case, and gets its own statement: the unique-index
    // lookup that `key = $2` always gets. Every client runs this on every change. Unprepared and
    // in a transaction of its own, as `load_env`, so that it works through PgBouncer in
    // transaction pooling mode.
    let mut transaction = pool.begin().await?;
    let rows: Vec<EntryRow> = if let [key] = keys {
        sqlx::query_as(
            "SELECT key, value, revision, description, updated_by FROM platform_config
             WHERE env = $1 AND key = $2",
        )
        .persistent(false)
        .bind(env)
        .bind(key)
        .fetch_all(&mut *transaction)
        .await?
    } else {
        sqlx::query_as(
            "SELECT key, value, revision, description, updated_by FROM platform_config
             WHERE env = $1 AND key = ANY($2)",
        )
        .persistent(false)
        .bind(env)
        .bind(keys)
        .fetch_all(&mut *transaction)
        .await?
    };
    transaction.commit().await?;
    Ok(rows.into_iter().map(entry_from_row).collect())
}

/// The trigger's NOTIFY payload.
#[derive(serde::Deserialize)]
struct Payload<'a> {
    #[serde(borrow)]
    env: std::borrow::Cow<'a, str>,
    key: String,
    revision: i64,
    #[serde(borrow)]
    op: std::borrow::Cow<'a, str>,
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

impl KeyedTable for ConfigTable {
    fn notice(&self, payload: &str) -> Notice {
        let Ok(payload) = serde_json::from_str::<Payload<'_>>(payload) else {
            // Not the trigger's payload (an older trigger, or a hand-written NOTIFY): reload.
            return Notice::Reload;
        };
        if payload.env != self.env {
            return Notice::Ignore;
        }
        Notice::Row {
            key: payload.key,
            revision: payload.revision,
            deleted: payload.op == "DELETE",
        }
    }

    fn key(row: &ConfigEntry) -> &str {
        &row.key
    }

    fn revision(row: &ConfigEntry) -> i64 {
        row.revision
    }

    async fn load_keys(
        &self,
        pool: &PgPool,
        keys: &[String],
    ) -> Result<Vec<ConfigEntry>, sqlx::Error> {
        load_keys(pool, &self.env, keys).await
    }
}

/// Live config for environment `env` that follows the `platform_config` table: loaded whole at
/// start; on each change (including plain SQL) only the key the notification names is loaded
/// and swapped in, within milliseconds; reloaded whole after every reconnection and on every
/// poll as a safety net; kept through database outages; and started from the snapshot file when
/// the database is down at start.
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
    let feed = crate::start_keyed(pool, table, options, move |update| match update {
        Update::Reloaded(rows) => {
            target.replace(ConfigSnapshot::new(env.clone(), rows.iter().cloned()));
        }
        Update::Changed { changed, deleted } => target.apply(changed.iter().cloned(), deleted),
    })
    .await?;
    Ok((config, feed))
}
