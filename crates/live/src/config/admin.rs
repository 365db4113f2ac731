//! Changing `platform_config`: the library behind the `groundwork-live` CLI.
//!
//! Every write says what it expects to find ([`Expect`]): a key that does not exist yet, the
//! revision the writer last read, or — deliberately — anything. Two operators who edit the same
//! value from the same revision cannot silently overwrite each other: the second gets
//! [`AdminError::Conflict`] with the revision that beat them.

use serde::Serialize;
use sqlx::PgPool;

/// `revision, op, new_row, changed_by, changed_at` of a history entry.
type HistoryRow = (
    i64,
    String,
    Option<serde_json::Value>,
    Option<String>,
    String,
);

/// `env, key, value, description, revision, updated_at, updated_by` of an item.
type ItemRow = (
    String,
    String,
    serde_json::Value,
    Option<String>,
    i64,
    Option<String>,
    Option<String>,
);

/// The columns of [`ItemRow`], as a macro so that queries stay `&'static str` (sqlx refuses
/// SQL built at run time unless it is audited).
macro_rules! item_columns {
    () => {
        "env, key, value, description, revision,
         to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), updated_by"
    };
}

/// A change could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The key does not exist in this environment.
    #[error(
        "no config key `{key}` in environment `{env}`; `groundwork-live list --env {env}` shows the existing ones"
    )]
    NotFound {
        /// The environment.
        env: String,
        /// The key.
        key: String,
    },
    /// The write expected the key to be absent, and it exists.
    #[error(
        "config key `{key}` exists already in environment `{env}` at revision {revision}; update it with --if-revision {revision}"
    )]
    Exists {
        /// The environment.
        env: String,
        /// The key.
        key: String,
        /// Its current revision.
        revision: i64,
    },
    /// Someone changed the key since the writer read it: writing would lose their change.
    #[error(
        "config key `{key}` in environment `{env}` is at revision {actual}, not {expected}: it changed since you read it; look at it again (`groundwork-live get {key} --env {env}`) and retry with --if-revision {actual}"
    )]
    Conflict {
        /// The environment.
        env: String,
        /// The key.
        key: String,
        /// The revision the writer expected.
        expected: i64,
        /// The revision in the table.
        actual: i64,
    },
    /// The key does not fit the table.
    #[error("config key must be 1 to 255 characters, got {0}")]
    InvalidKey(usize),
    /// The environment name does not fit the table.
    #[error("environment name must be 1 to 20 characters, got {0}")]
    InvalidEnv(usize),
    /// The key or environment name holds a control character.
    #[error(transparent)]
    ControlCharacter(#[from] crate::ControlCharacter),
    /// The history has no entry with this revision for this key.
    #[error(
        "config key `{key}` in environment `{env}` has no revision {revision}; `groundwork-live history {key} --env {env}` lists them"
    )]
    NoSuchRevision {
        /// The environment.
        env: String,
        /// The key.
        key: String,
        /// The revision asked for.
        revision: i64,
    },
    /// The database refused or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// What a write expects to find: its protection against lost updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The key does not exist: create it, else [`AdminError::Exists`].
    Absent,
    /// The key exists at this revision (the one the writer read): else [`AdminError::Conflict`]
    /// or [`AdminError::NotFound`].
    Revision(i64),
    /// Whatever is there, or nothing: last writer wins. For scripts that own a key outright.
    Any,
}

/// One row of `platform_config`, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigItem {
    /// The environment.
    pub env: String,
    /// The key.
    pub key: String,
    /// The value.
    pub value: serde_json::Value,
    /// What the value is for.
    pub description: Option<String>,
    /// The revision of the last change: pass it as [`Expect::Revision`] to change the value.
    pub revision: i64,
    /// When it last changed, as RFC 3339 UTC.
    pub updated_at: Option<String>,
    /// Who changed it last.
    pub updated_by: Option<String>,
}

fn item_from_row(
    (env, key, value, description, revision, updated_at, updated_by): ItemRow,
) -> ConfigItem {
    ConfigItem {
        env,
        key,
        value,
        description,
        revision,
        updated_at,
        updated_by,
    }
}

/// One entry of a key's history: the row after a change, and who made it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigChange {
    /// The change's revision, increasing across all keys.
    pub revision: i64,
    /// `INSERT`, `UPDATE` or `DELETE`.
    pub op: String,
    /// The value after the change; `None` after a delete.
    pub value: Option<serde_json::Value>,
    /// Who made the change.
    pub changed_by: Option<String>,
    /// When, as RFC 3339 UTC.
    pub changed_at: String,
}

/// A value to write.
#[derive(Debug, Clone, PartialEq)]
pub struct NewValue<'a> {
    /// The environment, e.g. `production`.
    pub env: &'a str,
    /// The key, e.g. `matching.algorithm.weights`.
    pub key: &'a str,
    /// The value.
    pub value: &'a serde_json::Value,
    /// What it is for; `None` keeps the current description.
    pub description: Option<&'a str>,
}

/// Admin operations on the `platform_config` table. Every write records `actor` as the author.
#[derive(Debug, Clone)]
pub struct ConfigAdmin {
    pool: PgPool,
}

impl ConfigAdmin {
    /// Admin operations on the table reached through `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Every key of `env`, by key.
    pub async fn list(&self, env: &str) -> Result<Vec<ConfigItem>, AdminError> {
        crate::name::check_name("environment name", env)?;
        let rows: Vec<ItemRow> = sqlx::query_as(concat!(
            "SELECT ",
            item_columns!(),
            " FROM platform_config WHERE env = $1 ORDER BY key"
        ))
        .bind(env)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(item_from_row).collect())
    }

    /// One key.
    pub async fn get(&self, env: &str, key: &str) -> Result<ConfigItem, AdminError> {
        check_names(env, key)?;
        let row: Option<ItemRow> = sqlx::query_as(concat!(
            "SELECT ",
            item_columns!(),
            " FROM platform_config WHERE env = $1 AND key = $2"
        ))
        .bind(env)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(item_from_row).ok_or_else(|| not_found(env, key))
    }

    /// Writes a value if the key is as `expect` says, and returns the row written.
    pub async fn set(
        &self,
        new: &NewValue<'_>,
        expect: Expect,
        actor: &str,
    ) -> Result<ConfigItem, AdminError> {
        check_names(new.env, new.key)?;
        let sql = match expect {
            Expect::Absent => concat!(
                "INSERT INTO platform_config (env, key, value, description, updated_by)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (env, key) DO NOTHING
                 RETURNING ",
                item_columns!()
            ),
            Expect::Revision(_) => concat!(
                "UPDATE platform_config SET value = $3,
                     description = COALESCE($4, description), updated_by = $5
                 WHERE env = $1 AND key = $2 AND revision = $6
                 RETURNING ",
                item_columns!()
            ),
            Expect::Any => concat!(
                "INSERT INTO platform_config (env, key, value, description, updated_by)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (env, key) DO UPDATE SET value = EXCLUDED.value,
                     description = COALESCE(EXCLUDED.description, platform_config.description),
                     updated_by = EXCLUDED.updated_by
                 RETURNING ",
                item_columns!()
            ),
        };
        let mut query = sqlx::query_as::<_, ItemRow>(sql)
            .bind(new.env)
            .bind(new.key)
            .bind(new.value)
            .bind(new.description)
            .bind(actor);
        if let Expect::Revision(revision) = expect {
            query = query.bind(revision);
        }
        let mut tx = self.begin(actor).await?;
        let written = query.fetch_optional(&mut *tx).await?;
        tx.commit().await?;
        match written {
            Some(row) => Ok(item_from_row(row)),
            None => Err(self.refusal(new.env, new.key, expect).await),
        }
    }

    /// Deletes a key if it is at the revision `expect` says ([`Expect::Absent`] is refused as
    /// a conflict with whatever is there); services fall back to their defaults.
    pub async fn delete(
        &self,
        env: &str,
        key: &str,
        expect: Expect,
        actor: &str,
    ) -> Result<(), AdminError> {
        check_names(env, key)?;
        let revision = match expect {
            Expect::Revision(revision) => Some(revision),
            Expect::Any => None,
            Expect::Absent => return Err(self.refusal(env, key, expect).await),
        };
        let mut tx = self.begin(actor).await?;
        let deleted = sqlx::query(
            "DELETE FROM platform_config
             WHERE env = $1 AND key = $2 AND ($3::BIGINT IS NULL OR revision = $3)",
        )
        .bind(env)
        .bind(key)
        .bind(revision)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        if deleted == 0 {
            return Err(self.refusal(env, key, expect).await);
        }
        Ok(())
    }

    /// The key's changes, newest first.
    pub async fn history(&self, env: &str, key: &str) -> Result<Vec<ConfigChange>, AdminError> {
        check_names(env, key)?;
        let rows: Vec<HistoryRow> = sqlx::query_as(
            "SELECT revision, op, new_row -> 'value', changed_by,
                    to_char(changed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')
             FROM platform_config_history WHERE env = $1 AND key = $2 ORDER BY revision DESC",
        )
        .bind(env)
        .bind(key)
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Err(not_found(env, key));
        }
        Ok(rows
            .into_iter()
            .map(
                |(revision, op, value, changed_by, changed_at)| ConfigChange {
                    revision,
                    op,
                    value,
                    changed_by,
                    changed_at,
                },
            )
            .collect())
    }

    /// Restores the key's value (and description) to what it was right after `revision`,
    /// recreating the key if it was deleted since, if the key is as `expect` says. The rollback
    /// is itself a change, with its own revision and history entry.
    pub async fn rollback(
        &self,
        env: &str,
        key: &str,
        revision: i64,
        expect: Expect,
        actor: &str,
    ) -> Result<ConfigItem, AdminError> {
        check_names(env, key)?;
        let row: Option<(Option<serde_json::Value>, Option<String>)> = sqlx::query_as(
            "SELECT new_row -> 'value', new_row ->> 'description' FROM platform_config_history
             WHERE env = $1 AND key = $2 AND revision = $3",
        )
        .bind(env)
        .bind(key)
        .bind(revision)
        .fetch_optional(&self.pool)
        .await?;
        let Some((Some(value), description)) = row else {
            return Err(AdminError::NoSuchRevision {
                env: env.to_owned(),
                key: key.to_owned(),
                revision,
            });
        };
        let new = NewValue {
            env,
            key,
            value: &value,
            description: description.as_deref(),
        };
        self.set(&new, expect, actor).await
    }

    /// A transaction with `actor` recorded as the author of its writes: the triggers read the
    /// transaction-local `groundwork.actor` setting, which also covers deletes.
    async fn begin(
        &self,
        actor: &str,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, AdminError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT set_config('groundwork.actor', $1, true)")
            .bind(actor)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// Why a write that found nothing to write was refused, from what is in the table now.
    async fn refusal(&self, env: &str, key: &str, expect: Expect) -> AdminError {
        let current: Result<Option<i64>, sqlx::Error> =
            sqlx::query_scalar("SELECT revision FROM platform_config WHERE env = $1 AND key = $2")
                .bind(env)
                .bind(key)
                .fetch_optional(&self.pool)
                .await;
        match (current, expect) {
            (Err(error), _) => AdminError::Database(error),
            (Ok(None), _) => not_found(env, key),
            (Ok(Some(revision)), Expect::Absent | Expect::Any) => AdminError::Exists {
                env: env.to_owned(),
                key: key.to_owned(),
                revision,
            },
            (Ok(Some(actual)), Expect::Revision(expected)) => AdminError::Conflict {
                env: env.to_owned(),
                key: key.to_owned(),
                expected,
                actual,
            },
        }
    }
}

fn not_found(env: &str, key: &str) -> AdminError {
    AdminError::NotFound {
        env: env.to_owned(),
        key: key.to_owned(),
    }
}

/// Refuses a key or environment name the table cannot hold or a person cannot read back.
fn check_names(env: &str, key: &str) -> Result<(), AdminError> {
    crate::name::check_name("config key", key)?;
    crate::name::check_name("environment name", env)?;
    let length = key.chars().count();
    if length == 0 || length > 255 {
        return Err(AdminError::InvalidKey(length));
    }
    let length = env.chars().count();
    if length == 0 || length > 20 {
        return Err(AdminError::InvalidEnv(length));
    }
    Ok(())
}
