//! The `platform_config` table: its migrations and hot reload through the feed.

use sqlx::{FromRow as _, PgPool};

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
/// One round trip, and works through PgBouncer in transaction pooling mode: the statement goes
/// in a simple-protocol query (`env` quoted as a literal), which PgBouncer runs on one server
/// connection and which leaves no prepared statement behind.
pub async fn load_env(pool: &PgPool, env: &str) -> Result<Vec<ConfigEntry>, sqlx::Error> {
    let sql = format!(
        "SELECT key, value, revision, description, updated_by FROM platform_config \
         WHERE env = {} ORDER BY key",
        literal(env)?
    );
    fetch_entries(pool, sql).await
}

/// Loads the entries of environment `env` with the given keys; absent keys are left out.
///
/// Every client runs this on every change, so it is one round trip: a simple-protocol query, as
/// [`load_env`]. One key is by far the most common case and gets `key = '...'`, the unique-index
/// lookup; several get `key IN (...)`.
async fn load_keys(
    pool: &PgPool,
    env: &str,
    keys: &[String],
) -> Result<Vec<ConfigEntry>, sqlx::Error> {
    use std::fmt::Write as _;

    let mut sql = format!(
        "SELECT key, value, revision, description, updated_by FROM platform_config \
         WHERE env = {} AND key ",
        literal(env)?
    );
    if let [key] = keys {
        let _ = write!(sql, "= {}", literal(key)?);
    } else {
        sql.push_str("IN (");
        for (i, key) in keys.iter().enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            let _ = write!(sql, "{separator}{}", literal(key)?);
        }
        sql.push(')');
    }
    fetch_entries(pool, sql).await
}

/// Runs `sql` (a query of the [`EntryRow`] columns) with the simple query protocol.
async fn fetch_entries(pool: &PgPool, sql: String) -> Result<Vec<ConfigEntry>, sqlx::Error> {
    let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| Ok(entry_from_row(EntryRow::from_row(row)?)))
        .collect()
}

/// `value` as an SQL string literal: `E'...'` with every `\` and `'` doubled, which reads the
/// same whatever `standard_conforming_strings` is. The connection's encoding is UTF-8 (sqlx
/// sets `client_encoding`), where no byte of a multi-byte character is a quote or a backslash.
/// A NUL cannot be in a PostgreSQL string, so a value holding one is refused (such a key cannot
/// exist; it could only come from a malformed notice).
pub(crate) fn literal(value: &str) -> Result<String, sqlx::Error> {
    if value.contains('\0') {
        return Err(sqlx::Error::Encode(
            "a config key or environment cannot contain a NUL character".into(),
        ));
    }
    let mut quoted = String::with_capacity(value.len() + 3);
    quoted.push_str("E'");
    for c in value.chars() {
        if matches!(c, '\'' | '\\') {
            quoted.push(c);
        }
        quoted.push(c);
    }
    quoted.push('\'');
    Ok(quoted)
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

#[cfg(test)]
mod tests {
    use super::literal;

    #[test]
    fn literals_double_quotes_and_backslashes_and_refuse_nul() -> Result<(), sqlx::Error> {
        assert_eq!(literal("production")?, "E'production'");
        assert_eq!(literal("it's")?, "E'it''s'");
        assert_eq!(literal(r"a\'b")?, r"E'a\\''b'");
        assert_eq!(literal("")?, "E''");
        assert_eq!(literal("ключ.é")?, "E'ключ.é'");
        assert!(literal("a\0b").is_err());
        Ok(())
    }
}
