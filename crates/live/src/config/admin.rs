//! Changing `platform_config`: the library behind the `groundwork-live` CLI.
//!
//! Every write says what it expects to find ([`Expect`]): a key that does not exist yet, the
//! revision the writer last read, or — deliberately — anything. Two operators who edit the same
//! value from the same revision cannot silently overwrite each other: the second gets
//! [`AdminError::Conflict`] with the revision that beat them.

use serde::Serialize;
use sqlx::PgPool;

pub use crate::versioned::Expect;
use crate::versioned::{Columns, RowChange, VersionedError, VersionedTable};

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

/// `platform_config` as a versioned, audited table.
const TABLE: VersionedTable = VersionedTable {
    table: "platform_config",
    history: "platform_config_history",
    key: &["env", "key"],
    select: "env, key, value, description, revision,
         to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), updated_by",
    json_columns: &["value"],
};

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
    /// The database refused or could not be reached; the driver's error is the
    /// [`std::error::Error::source`], which a chain printer shows once.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// Any other failure of the versioned table.
    #[error(transparent)]
    Versioned(VersionedError),
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
        let rows: Vec<ItemRow> = TABLE.list(&self.pool, &[env]).await?;
        Ok(rows.into_iter().map(item_from_row).collect())
    }

    /// One key.
    pub async fn get(&self, env: &str, key: &str) -> Result<ConfigItem, AdminError> {
        check_names(env, key)?;
        let row: Option<ItemRow> = TABLE.get(&self.pool, &[env, key]).await?;
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
        let mut columns = Columns::new();
        columns.insert("value".to_owned(), new.value.clone());
        // No description keeps the current one.
        if let Some(description) = new.description {
            columns.insert("description".to_owned(), description.into());
        }
        let change = RowChange {
            key: &[new.env, new.key],
            columns: &columns,
            creates: true,
        };
        let row: ItemRow = TABLE
            .write(&self.pool, &change, expect, actor)
            .await
            .map_err(|error| admin_error(error, new.env, new.key))?;
        Ok(item_from_row(row))
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
        TABLE
            .delete(&self.pool, &[env, key], expect, actor)
            .await
            .map_err(|error| admin_error(error, env, key))
    }

    /// The key's changes, newest first.
    pub async fn history(&self, env: &str, key: &str) -> Result<Vec<ConfigChange>, AdminError> {
        check_names(env, key)?;
        let changes = TABLE
            .history(&self.pool, &[env, key])
            .await
            .map_err(|error| admin_error(error, env, key))?;
        Ok(changes
            .into_iter()
            .map(|change| ConfigChange {
                revision: change.revision,
                op: change.op,
                value: change
                    .row
                    .and_then(|mut row| row.get_mut("value").map(serde_json::Value::take)),
                changed_by: change.changed_by,
                changed_at: change.changed_at,
            })
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
        let mut row = TABLE
            .row_at(&self.pool, &[env, key], revision)
            .await
            .map_err(|error| admin_error(error, env, key))?;
        let value = row.remove("value").unwrap_or_default();
        let description = match row.remove("description") {
            Some(serde_json::Value::String(description)) => Some(description),
            _ => None,
        };
        let new = NewValue {
            env,
            key,
            value: &value,
            description: description.as_deref(),
        };
        self.set(&new, expect, actor).await
    }
}

/// The error of a refused or failed write, naming the key.
fn admin_error(error: VersionedError, env: &str, key: &str) -> AdminError {
    let (env, key) = (env.to_owned(), key.to_owned());
    match error {
        VersionedError::NotFound => AdminError::NotFound { env, key },
        VersionedError::Exists { revision } => AdminError::Exists { env, key, revision },
        VersionedError::Conflict { expected, actual } => AdminError::Conflict {
            env,
            key,
            expected,
            actual,
        },
        VersionedError::NoSuchRevision { revision } => {
            AdminError::NoSuchRevision { env, key, revision }
        }
        VersionedError::Database(error) => AdminError::Database(error),
        other => AdminError::Versioned(other),
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
