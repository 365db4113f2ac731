//! Changing flags: the library behind the `groundwork-flags` CLI.
//!
//! `feature_flags` is a versioned, audited table of `groundwork-live`
//! ([`groundwork_live::versioned`]): every write records its author and lands in the history, and
//! a change can say what it expects to find ([`Expect`]). Two operators who change the same flag
//! from the same revision cannot silently overwrite each other: with
//! [`Expect::Revision`] the second gets [`AdminError::Conflict`] with the revision that beat them.
//!
//! A change is a [`FlagUpdate`]: the columns to write, each `None` when left alone, so a new
//! column of the table is a new field.

use groundwork_live::versioned::{Columns, RowChange, VersionedError, VersionedTable};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::types::Json;

pub use groundwork_live::versioned::Expect;

pub use crate::spec::{parse_rules, parse_variants};

use crate::{Flag, InvalidFlag, Rule, Variant, check_flag_name, check_whitelist};

/// `feature_flags` as a versioned, audited table; rows are read whole as JSON into [`FlagItem`].
const TABLE: VersionedTable = VersionedTable {
    table: "feature_flags",
    history: "feature_flags_history",
    key: &["name"],
    select: "to_jsonb(feature_flags.*)",
    json_columns: &[],
};

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
    /// Someone changed the flag since the writer read it: writing would lose their change.
    #[error(
        "feature flag `{name}` is at revision {actual}, not {expected}: it changed since you read it; look at it again (`groundwork-flags history {name}`) and retry with --if-revision {actual}"
    )]
    Conflict {
        /// The flag.
        name: String,
        /// The revision the writer expected.
        expected: i64,
        /// The revision in the table.
        actual: i64,
    },
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
    /// The database refused or could not be reached; the driver's error is the
    /// [`std::error::Error::source`], which a chain printer shows once.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// Any other failure of the versioned table.
    #[error(transparent)]
    Versioned(VersionedError),
}

impl AdminError {
    /// Whether the write was refused to protect another change ([`AdminError::Conflict`], or
    /// [`AdminError::Exists`] for a create): read the flag again and retry. The CLI exits with 3.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. } | Self::Exists(_))
    }
}

/// One flag with its revision and last author, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagItem {
    /// The flag.
    #[serde(flatten)]
    pub flag: Flag,
    /// The revision of the last change: pass it as [`Expect::Revision`] to change the flag.
    pub revision: i64,
    /// Who changed it last.
    #[serde(default)]
    pub updated_by: Option<String>,
    /// When it last changed, as PostgreSQL writes a timestamp in JSON.
    #[serde(default)]
    pub updated_at: Option<String>,
}

/// A change to a flag: the columns to write, `None` for those left as they are. Build it with
/// `..Default::default()`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FlagUpdate {
    /// The master switch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The rollout percentage, `0..=100`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout_pct: Option<i32>,
    /// The tenant whitelist; `Some(None)` removes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whitelist: Option<Option<Vec<String>>>,
    /// What the flag is for; `Some(None)` removes the description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<Option<String>>,
    /// The variants, weights adding up to 100; an empty list removes them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variants: Option<Vec<Variant>>,
    /// The context rules; an empty list removes them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<Rule>>,
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

/// A row read as JSON.
type ItemRow = (Json<FlagItem>,);

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
        Ok(self.item(name).await?.flag)
    }

    /// One flag with its revision, to change it with [`Expect::Revision`].
    pub async fn item(&self, name: &str) -> Result<FlagItem, AdminError> {
        check_flag_name(name)?;
        let row: Option<ItemRow> = TABLE.get(&self.pool, &[name]).await?;
        row.map(|(Json(item),)| item)
            .ok_or_else(|| AdminError::NotFound(name.to_owned()))
    }

    /// Creates a flag; it starts as given (normally disabled).
    pub async fn create(&self, flag: &Flag, actor: &str) -> Result<(), AdminError> {
        flag.validate()?;
        flag.validate_targeting()?;
        let length = flag.name.chars().count();
        if length == 0 || length > 100 {
            return Err(AdminError::InvalidName(length));
        }
        check_rollout(flag.rollout_pct)?;
        self.write(&flag.name, &columns_of(flag), true, Expect::Absent, actor)
            .await?;
        Ok(())
    }

    /// Changes the columns `update` names if the flag is as `expect` says ([`Expect::Any`]:
    /// at whatever revision; [`Expect::Absent`] is refused), and returns the flag written. Never
    /// creates a flag.
    pub async fn update(
        &self,
        name: &str,
        update: &FlagUpdate,
        expect: Expect,
        actor: &str,
    ) -> Result<FlagItem, AdminError> {
        check_flag_name(name)?;
        if let Some(rollout_pct) = update.rollout_pct {
            check_rollout(rollout_pct)?;
        }
        if let Some(whitelist) = &update.whitelist {
            check_whitelist(whitelist.as_deref().unwrap_or_default())?;
        }
        if update.variants.is_some() || update.rules.is_some() {
            let targeting = Flag {
                variants: update.variants.clone().unwrap_or_default(),
                rules: update.rules.clone().unwrap_or_default(),
                ..Flag::new(name)
            };
            targeting.validate_targeting()?;
        }
        let columns = match serde_json::to_value(update) {
            Ok(serde_json::Value::Object(columns)) => columns,
            // A struct of options always serializes to an object.
            _ => Columns::new(),
        };
        self.write(name, &columns, false, expect, actor).await
    }

    /// Turns a flag on or off for everyone it targets.
    pub async fn set_enabled(
        &self,
        name: &str,
        enabled: bool,
        actor: &str,
    ) -> Result<(), AdminError> {
        let update = FlagUpdate {
            enabled: Some(enabled),
            ..FlagUpdate::default()
        };
        self.update(name, &update, Expect::Any, actor).await?;
        Ok(())
    }

    /// Sets the rollout percentage, `0..=100`.
    pub async fn set_rollout(
        &self,
        name: &str,
        rollout_pct: i32,
        actor: &str,
    ) -> Result<(), AdminError> {
        let update = FlagUpdate {
            rollout_pct: Some(rollout_pct),
            ..FlagUpdate::default()
        };
        self.update(name, &update, Expect::Any, actor).await?;
        Ok(())
    }

    /// Sets the tenant whitelist; `None` removes it. It applies only at 100% rollout.
    pub async fn set_whitelist(
        &self,
        name: &str,
        whitelist: Option<Vec<String>>,
        actor: &str,
    ) -> Result<(), AdminError> {
        let update = FlagUpdate {
            whitelist: Some(whitelist),
            ..FlagUpdate::default()
        };
        self.update(name, &update, Expect::Any, actor).await?;
        Ok(())
    }

    /// Deletes a flag; evaluations of it become off.
    pub async fn delete(&self, name: &str, actor: &str) -> Result<(), AdminError> {
        self.delete_if(name, Expect::Any, actor).await
    }

    /// Deletes a flag if it is at the revision `expect` says ([`Expect::Absent`] is refused as a
    /// conflict with whatever is there).
    pub async fn delete_if(
        &self,
        name: &str,
        expect: Expect,
        actor: &str,
    ) -> Result<(), AdminError> {
        check_flag_name(name)?;
        TABLE
            .delete(&self.pool, &[name], expect, actor)
            .await
            .map_err(|error| admin_error(error, name))
    }

    /// The flag's changes, newest first.
    pub async fn history(&self, name: &str) -> Result<Vec<FlagChange>, AdminError> {
        check_flag_name(name)?;
        let changes = TABLE
            .history(&self.pool, &[name])
            .await
            .map_err(|error| admin_error(error, name))?;
        Ok(changes
            .into_iter()
            .map(|change| FlagChange {
                revision: change.revision,
                op: change.op,
                flag: change.row.and_then(|row| serde_json::from_value(row).ok()),
                changed_by: change.changed_by,
                changed_at: change.changed_at,
            })
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
        Ok(self
            .rollback_if(name, revision, Expect::Any, actor)
            .await?
            .flag)
    }

    /// Like [`FlagAdmin::rollback`], if the flag is as `expect` says: [`Expect::Revision`] for
    /// the revision it is at now (a deleted flag is then not recreated), [`Expect::Any`] for
    /// whatever is there.
    pub async fn rollback_if(
        &self,
        name: &str,
        revision: i64,
        expect: Expect,
        actor: &str,
    ) -> Result<FlagItem, AdminError> {
        check_flag_name(name)?;
        let row = TABLE
            .row_at(&self.pool, &[name], revision)
            .await
            .map_err(|error| admin_error(error, name))?;
        let target: Flag =
            serde_json::from_value(serde_json::Value::Object(row)).map_err(|_| {
                AdminError::NoSuchRevision {
                    name: name.to_owned(),
                    revision,
                }
            })?;
        // The history may predate the checks: restoring must not write what a write refuses.
        target.validate()?;
        target.validate_targeting()?;
        self.write(name, &columns_of(&target), true, expect, actor)
            .await
    }

    /// Writes `columns` of flag `name`; `creates`: the write may insert a missing flag.
    async fn write(
        &self,
        name: &str,
        columns: &Columns,
        creates: bool,
        expect: Expect,
        actor: &str,
    ) -> Result<FlagItem, AdminError> {
        let change = RowChange {
            key: &[name],
            columns,
            creates,
        };
        let row: ItemRow = TABLE
            .write(&self.pool, &change, expect, actor)
            .await
            .map_err(|error| admin_error(error, name))?;
        Ok(row.0.0)
    }
}

/// The columns of `feature_flags` a [`Flag`] is written to (its key, `name`, apart). A column
/// added to the table is written once its name is here and it is a field of `Flag`.
const FLAG_COLUMNS: &[&str] = &[
    "enabled",
    "rollout_pct",
    "whitelist",
    "description",
    "variants",
    "rules",
];

/// Every column of `flag`, none left out: a flag without a description clears the stored one.
fn columns_of(flag: &Flag) -> Columns {
    let mut fields = match serde_json::to_value(flag) {
        Ok(serde_json::Value::Object(fields)) => fields,
        // A flag always serializes to an object.
        _ => Columns::new(),
    };
    FLAG_COLUMNS
        .iter()
        .map(|&column| {
            let value = fields.remove(column).unwrap_or_default();
            (column.to_owned(), value)
        })
        .collect()
}

/// The error of a refused or failed write, naming the flag.
fn admin_error(error: VersionedError, name: &str) -> AdminError {
    let name = name.to_owned();
    match error {
        VersionedError::NotFound => AdminError::NotFound(name),
        VersionedError::Exists { .. } => AdminError::Exists(name),
        VersionedError::Conflict { expected, actual } => AdminError::Conflict {
            name,
            expected,
            actual,
        },
        VersionedError::NoSuchRevision { revision } => {
            AdminError::NoSuchRevision { name, revision }
        }
        VersionedError::Database(error) => AdminError::Database(error),
        other => AdminError::Versioned(other),
    }
}

fn check_rollout(rollout_pct: i32) -> Result<(), AdminError> {
    if (0..=100).contains(&rollout_pct) {
        Ok(())
    } else {
        Err(AdminError::InvalidRollout(rollout_pct))
    }
}
