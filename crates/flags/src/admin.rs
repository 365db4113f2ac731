//! Changing flags: the library behind the `groundwork-flags` CLI.

use serde::Serialize;
use sqlx::PgPool;

pub use crate::spec::{parse_rules, parse_variants};

use crate::store::{FlagRow, flag_from_row};
use crate::{Flag, InvalidFlag, check_flag_name, check_whitelist};

/// `revision, op, new_row, changed_by, changed_at` of a history entry.
type HistoryRow = (
    i64,
    String,
    Option<serde_json::Value>,
    Option<String>,
    String,
);

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// A change could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// No flag has this name.
    #[error("no feature flag named `{0}`; `groundwork-flags list` shows the existing ones")]
    NotFound(String),
    /// A flag with this name exists already.
    #[error("feature flag `{0}` exists already")]
    Exists(String),
    /// The rollout is not a percentage.
    #[error("rollout {0} is not a percentage; give a number from 0 to 100")]
    InvalidRollout(i32),
    /// The name does not fit the table.
    #[error("flag name must be 1 to 100 characters, got {0}")]
    InvalidName(usize),
    /// The name or the whitelist holds a character that is refused.
    #[error(transparent)]
    Invalid(#[from] InvalidFlag),
    /// The history has no entry with this revision for this flag.
    #[error(
        "feature flag `{name}` has no revision {revision}; `groundwork-flags history {name}` lists them"
    )]
    NoSuchRevision {
        /// The flag.
        name: String,
        /// The revision asked for.
        revision: i64,
    },
    /// The database refused or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// One entry of a flag's history: the state after a change, and who made it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlagChange {
    /// The change's revision, increasing across all flags.
    pub revision: i64,
    /// `INSERT`, `UPDATE` or `DELETE`.
    pub op: String,
    /// The flag after the change; `None` after a delete.
    pub flag: Option<Flag>,
    /// Who made the change.
    pub changed_by: Option<String>,
    /// When, as RFC 3339 UTC.
    pub changed_at: String,
}

/// Admin operations on the `feature_flags` table. Every write records `actor` as the author.
#[derive(Debug, Clone)]
pub struct FlagAdmin {
    pool: PgPool,
}

impl FlagAdmin {
    /// Admin operations on the table reached through `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Every flag, by name.
    pub async fn list(&self) -> Result<Vec<Flag>, AdminError> {
        Ok(crate::store::load_all(&self.pool).await?)
    }

    /// One flag.
    pub async fn get(&self, name: &str) -> Result<Flag, AdminError> {
        check_flag_name(name)?;
        let row: Option<FlagRow> = sqlx::query_as(
            "SELECT name, enabled, rollout_pct, whitelist, description FROM feature_flags WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(flag_from_row)
            .ok_or_else(|| AdminError::NotFound(name.to_owned()))
    }

    /// Creates a flag; it starts as given (normally disabled).
    pub async fn create(&self, flag: &Flag, actor: &str) -> Result<(), AdminError> {
        flag.validate()?;
        let length = flag.name.chars().count();
        if length == 0 || length > 100 {
            return Err(AdminError::InvalidName(length));
        }
        check_rollout(flag.rollout_pct)?;
        let query = sqlx::query(
            "INSERT INTO feature_flags (name, enabled, rollout_pct, whitelist, description, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&flag.name)
        .bind(flag.enabled)
        .bind(flag.rollout_pct)
        .bind(&flag.whitelist)
        .bind(&flag.description)
        .bind(actor);
        if self.write(actor, query).await? == 0 {
            return Err(AdminError::Exists(flag.name.clone()));
        }
        Ok(())
    }

    /// Turns a flag on or off for everyone it targets.
    pub async fn set_enabled(
        &self,
        name: &str,
        enabled: bool,
        actor: &str,
    ) -> Result<(), AdminError> {
        let sql = "UPDATE feature_flags SET enabled = $3, updated_by = $2 WHERE name = $1";
        self.update(
            name,
            actor,
            sqlx::query(sql).bind(name).bind(actor).bind(enabled),
        )
        .await
    }

    /// Sets the rollout percentage, `0..=100`.
    pub async fn set_rollout(
        &self,
        name: &str,
        rollout_pct: i32,
        actor: &str,
    ) -> Result<(), AdminError> {
        check_rollout(rollout_pct)?;
        let sql = "UPDATE feature_flags SET rollout_pct = $3, updated_by = $2 WHERE name = $1";
        self.update(
            name,
            actor,
            sqlx::query(sql).bind(name).bind(actor).bind(rollout_pct),
        )
        .await
    }

    /// Sets the tenant whitelist; `None` removes it. It applies only at 100% rollout.
    pub async fn set_whitelist(
        &self,
        name: &str,
        whitelist: Option<Vec<String>>,
        actor: &str,
    ) -> Result<(), AdminError> {
        check_whitelist(whitelist.as_deref().unwrap_or_default())?;
        let sql = "UPDATE feature_flags SET whitelist = $3, updated_by = $2 WHERE name = $1";
        self.update(
            name,
            actor,
            sqlx::query(sql).bind(name).bind(actor).bind(whitelist),
        )
        .await
    }

    /// Deletes a flag; evaluations of it become off.
    pub async fn delete(&self, name: &str, actor: &str) -> Result<(), AdminError> {
        check_flag_name(name)?;
        let query = sqlx::query("DELETE FROM feature_flags WHERE name = $1").bind(name);
        if self.write(actor, query).await? == 0 {
            return Err(AdminError::NotFound(name.to_owned()));
        }
        Ok(())
    }

    /// The flag's changes, newest first.
    pub async fn history(&self, name: &str) -> Result<Vec<FlagChange>, AdminError> {
        check_flag_name(name)?;
        let rows: Vec<HistoryRow> = sqlx::query_as(
            "SELECT revision, op, new_row, changed_by,
                    to_char(changed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')
             FROM feature_flags_history WHERE name = $1 ORDER BY revision DESC",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Err(AdminError::NotFound(name.to_owned()));
        }
        Ok(rows
            .into_iter()
            .map(
                |(revision, op, new_row, changed_by, changed_at)| FlagChange {
                    revision,
                    op,
                    flag: new_row.and_then(|row| serde_json::from_value(row).ok()),
                    changed_by,
                    changed_at,
                },
            )
            .collect())
    }

    /// Restores the flag to its state right after `revision`, recreating it if it was deleted
    /// since. The rollback is itself a change, with its own revision and history entry.
    pub async fn rollback(
        &self,
        name: &str,
        revision: i64,
        actor: &str,
    ) -> Result<Flag, AdminError> {
        check_flag_name(name)?;
        let row: Option<(Option<serde_json::Value>,)> = sqlx::query_as(
            "SELECT new_row FROM feature_flags_history WHERE name = $1 AND revision = $2",
        )
        .bind(name)
        .bind(revision)
        .fetch_optional(&self.pool)
        .await?;
        let target: Flag = row
            .and_then(|(new_row,)| new_row)
            .and_then(|value| serde_json::from_value(value).ok())
            .ok_or_else(|| AdminError::NoSuchRevision {
                name: name.to_owned(),
                revision,
            })?;
        // The history may predate the checks: restoring must not write what a write refuses.
        target.validate()?;
        let query = sqlx::query(
            "INSERT INTO feature_flags (name, enabled, rollout_pct, whitelist, description, updated_by)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (name) DO UPDATE SET enabled = EXCLUDED.enabled,
                 rollout_pct = EXCLUDED.rollout_pct, whitelist = EXCLUDED.whitelist,
                 description = EXCLUDED.description, updated_by = EXCLUDED.updated_by",
        )
        .bind(&target.name)
        .bind(target.enabled)
        .bind(target.rollout_pct)
        .bind(&target.whitelist)
        .bind(&target.description)
        .bind(actor);
        self.write(actor, query).await?;
        Ok(target)
    }

    async fn update(&self, name: &str, actor: &str, query: PgQuery<'_>) -> Result<(), AdminError> {
        check_flag_name(name)?;
        if self.write(actor, query).await? == 0 {
            return Err(AdminError::NotFound(name.to_owned()));
        }
        Ok(())
    }

    /// Runs one write with `actor` recorded as its author: the history trigger reads the
    /// transaction-local `groundwork.actor` setting, which also covers deletes and updates that
    /// leave `updated_by` unchanged. Returns the number of rows written.
    async fn write(&self, actor: &str, query: PgQuery<'_>) -> Result<u64, AdminError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT set_config('groundwork.actor', $1, true)")
            .bind(actor)
            .execute(&mut *tx)
            .await?;
        let written = query.execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(written)
    }
}

fn check_rollout(rollout_pct: i32) -> Result<(), AdminError> {
    if (0..=100).contains(&rollout_pct) {
        Ok(())
    } else {
        Err(AdminError::InvalidRollout(rollout_pct))
    }
}
