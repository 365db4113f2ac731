//! A versioned, audited table: the one admin layer under `platform_config` and
//! `groundwork-flags`' `feature_flags`.
//!
//! Such a table has a unique key (one or more text columns), a `revision` that a trigger takes
//! from a sequence on every change, an `updated_by` column, and a history table
//! (`<table>_history`: the key columns, `op`, `old_row`, `new_row`, `revision`, `changed_by`,
//! `changed_at`) that the same triggers fill and that names the change on a NOTIFY channel.
//! [`VersionedTable`] describes one; its methods write rows with their author
//! ([`begin`] sets the transaction-local `groundwork.actor` the triggers read), protect against
//! lost updates ([`Expect`]), read the history and the row as it was after a revision (for
//! rollbacks). `file` is the other source of such rows: a JSON or TOML file, reloaded when it
//! changes ([`FileSource`]).
//!
//! Rows are written from a map of column names to JSON values, so a typed row with serde fields
//! (`#[serde(skip_serializing_if = "Option::is_none")]` for the columns a change leaves alone)
//! is written without per-column SQL, and a new column is a new field.
//!
//! [`VersionedDdl`] writes the SQL of a new versioned table: the table, its revision sequence,
//! its history table and the triggers, as `platform_config`'s and `feature_flags`' migrations
//! write them out by hand (their deployed migrations stay as they are).

mod ddl;
mod file;

use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgPool};

pub use ddl::VersionedDdl;
pub use file::{
    FileDocument, FileError, FileFormat, FileKind, FileSource, FileTarget, NonFiniteNumber,
    read_document,
};

/// Columns to write: name → value, as JSON. Columns not named keep their value (or, on insert,
/// their default).
pub type Columns = serde_json::Map<String, serde_json::Value>;

/// What a write expects to find: its protection against lost updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The row does not exist: create it, else [`VersionedError::Exists`].
    Absent,
    /// The row exists at this revision (the one the writer read): else
    /// [`VersionedError::Conflict`] or [`VersionedError::NotFound`].
    Revision(i64),
    /// Whatever is there, or nothing: last writer wins. For scripts that own a row outright.
    Any,
}

/// A write or read of a [`VersionedTable`] failed. The variants carry no key: the crate that
/// owns the table names the row in its own error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VersionedError {
    /// No row has the key.
    #[error("no such row")]
    NotFound,
    /// The write expected no row, and one exists.
    #[error("the row exists already at revision {revision}")]
    Exists {
        /// Its current revision.
        revision: i64,
    },
    /// The row changed since the writer read it: writing would lose that change.
    #[error("the row is at revision {actual}, not {expected}")]
    Conflict {
        /// The revision the writer expected.
        expected: i64,
        /// The revision in the table.
        actual: i64,
    },
    /// The history has no row state at this revision for the key.
    #[error("the history has no revision {revision} of the row")]
    NoSuchRevision {
        /// The revision asked for.
        revision: i64,
    },
    /// A column name is not a plain lower-case SQL identifier (a mistake in the calling code).
    #[error("`{0}` is not a column name Groundwork writes (lower-case letters, digits, `_`)")]
    Column(String),
    /// The database refused or could not be reached; the driver's error is the
    /// [`std::error::Error::source`], which a chain printer shows once.
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

/// One entry of a row's history: the row after a change, and who made it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// The change's revision, increasing across the whole table.
    pub revision: i64,
    /// `INSERT`, `UPDATE` or `DELETE`.
    pub op: String,
    /// The row after the change, every column as JSON; `None` after a delete.
    pub row: Option<serde_json::Value>,
    /// Who made the change.
    pub changed_by: Option<String>,
    /// When, as RFC 3339 UTC.
    pub changed_at: String,
}

/// `revision, op, new_row, changed_by, changed_at` of a history entry.
type HistoryRow = (
    i64,
    String,
    Option<serde_json::Value>,
    Option<String>,
    String,
);

/// A versioned, audited table (see the module documentation). Every name is SQL written into
/// queries as is: give only constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionedTable {
    /// The table, e.g. `feature_flags`.
    pub table: &'static str,
    /// Its history table, e.g. `feature_flags_history`.
    pub history: &'static str,
    /// The columns of the unique key, in the order key values are given, e.g. `["env", "key"]`.
    pub key: &'static [&'static str],
    /// The select list a row is read as (by the methods' `R`), e.g. `name, enabled`.
    pub select: &'static str,
    /// Columns of type `json`/`jsonb`, written as the JSON given (a JSON `null` stays a JSON
    /// value instead of becoming SQL `NULL`).
    pub json_columns: &'static [&'static str],
}

/// A change of one row: its key, the columns to write, and whether the write may create it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowChange<'a> {
    /// The values of the key columns, in [`VersionedTable::key`]'s order.
    pub key: &'a [&'a str],
    /// The columns to write; the others keep their value (or, on insert, their default).
    pub columns: &'a Columns,
    /// Whether [`Expect::Any`] and [`Expect::Absent`] may insert a missing row; when false the
    /// write only ever changes an existing row and [`Expect::Absent`] is refused.
    pub creates: bool,
}

/// A transaction with `actor` recorded as the author of its writes: the triggers of a versioned
/// table read the transaction-local `groundwork.actor` setting, which also covers deletes and
/// plain updates that leave `updated_by` unchanged.
pub async fn begin(
    pool: &PgPool,
    actor: &str,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT set_config('groundwork.actor', $1, true)")
        .bind(actor)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// The SQL to change a row, by what the write expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Statement {
    Insert,
    Upsert,
    Update { at_revision: bool },
}

impl VersionedTable {
    /// `k1 = $first AND k2 = $first+1 ...`.
    fn key_match(&self, first: usize) -> String {
        self.key
            .iter()
            .enumerate()
            .map(|(i, column)| format!("{column} = ${}", first + i))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// One row by key.
    pub async fn get<R>(&self, pool: &PgPool, key: &[&str]) -> Result<Option<R>, sqlx::Error>
    where
        R: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
    {
        let sql = format!(
            "SELECT {} FROM {} WHERE {}",
            self.select,
            self.table,
            self.key_match(1)
        );
        let mut query = sqlx::query_as::<_, R>(AssertSqlSafe(sql));
        for value in key {
            query = query.bind(*value);
        }
        query.fetch_optional(pool).await
    }

    /// Every row whose first key columns equal `prefix` (all rows for an empty prefix), ordered
    /// by key.
    pub async fn list<R>(&self, pool: &PgPool, prefix: &[&str]) -> Result<Vec<R>, sqlx::Error>
    where
        R: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
    {
        let condition = self
            .key
            .iter()
            .zip(prefix)
            .enumerate()
            .map(|(i, (column, _))| format!("{column} = ${}", i + 1))
            .collect::<Vec<_>>();
        let condition = if condition.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", condition.join(" AND "))
        };
        let sql = format!(
            "SELECT {} FROM {}{condition} ORDER BY {}",
            self.select,
            self.table,
            self.key.join(", ")
        );
        let mut query = sqlx::query_as::<_, R>(AssertSqlSafe(sql));
        for value in prefix {
            query = query.bind(*value);
        }
        query.fetch_all(pool).await
    }

    /// Writes the columns of `change` if the row is as `expect` says, with `actor` as the
    /// author, and returns the row written: [`Expect::Absent`] inserts, [`Expect::Revision`]
    /// updates the row at that revision, [`Expect::Any`] updates the row at whatever revision
    /// or, if [`RowChange::creates`], inserts it when missing.
    pub async fn write<R>(
        &self,
        pool: &PgPool,
        change: &RowChange<'_>,
        expect: Expect,
        actor: &str,
    ) -> Result<R, VersionedError>
    where
        R: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
    {
        let statement = match expect {
            Expect::Absent if change.creates => Statement::Insert,
            Expect::Absent => return Err(self.refusal(pool, change.key, expect).await),
            Expect::Revision(_) => Statement::Update { at_revision: true },
            Expect::Any if change.creates => Statement::Upsert,
            Expect::Any => Statement::Update { at_revision: false },
        };
        self.change(pool, change.key, change.columns, statement, expect, actor)
            .await
    }

    async fn change<R>(
        &self,
        pool: &PgPool,
        key: &[&str],
        columns: &Columns,
        statement: Statement,
        expect: Expect,
        actor: &str,
    ) -> Result<R, VersionedError>
    where
        R: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
    {
        let mut row = columns.clone();
        for (column, value) in self.key.iter().zip(key) {
            row.insert((*column).to_owned(), serde_json::Value::from(*value));
        }
        row.insert("updated_by".to_owned(), serde_json::Value::from(actor));
        if let Some(bad) = row.keys().find(|name| !is_identifier(name)) {
            return Err(VersionedError::Column(bad.clone()));
        }
        // The values come from one JSON parameter ($1): `jsonb_populate_record` types each
        // column as the table declares it; JSON columns are taken as given.
        let names: Vec<&str> = row.keys().map(String::as_str).collect();
        // A `SELECT` of `columns` from the parameter.
        let select_given = |columns: &[&str]| {
            let values: Vec<String> = columns
                .iter()
                .map(|&name| {
                    if self.json_columns.contains(&name) {
                        format!("$1::jsonb -> '{name}'")
                    } else {
                        format!("given.{name}")
                    }
                })
                .collect();
            format!(
                "SELECT {} FROM jsonb_populate_record(NULL::{}, $1::jsonb) AS given",
                values.join(", "),
                self.table
            )
        };
        let source = select_given(&names);
        let keys = self.key.join(", ");
        let changed: Vec<&str> = names
            .iter()
            .copied()
            .filter(|name| !self.key.contains(name))
            .collect();
        let list = names.join(", ");
        let sql = match statement {
            Statement::Insert => format!(
                "INSERT INTO {table} ({list}) {source} ON CONFLICT ({keys}) DO NOTHING RETURNING {select}",
                table = self.table,
                select = self.select
            ),
            Statement::Upsert => format!(
                "INSERT INTO {table} ({list}) {source} ON CONFLICT ({keys}) DO UPDATE SET {set} RETURNING {select}",
                table = self.table,
                set = changed
                    .iter()
                    .map(|name| format!("{name} = EXCLUDED.{name}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                select = self.select
            ),
            Statement::Update { at_revision } => {
                let changed_list = changed.join(", ");
                let changed_source = select_given(&changed);
                let revision = if at_revision {
                    format!(" AND revision = ${}", 2 + self.key.len())
                } else {
                    String::new()
                };
                format!(
                    "UPDATE {table} SET ({changed_list}) = ({changed_source}) WHERE {matched}{revision} RETURNING {select}",
                    table = self.table,
                    matched = self.key_match(2),
                    select = self.select
                )
            }
        };
        let mut query =
            sqlx::query_as::<_, R>(AssertSqlSafe(sql)).bind(serde_json::Value::Object(row));
        if let Statement::Update { .. } = statement {
            for value in key {
                query = query.bind(*value);
            }
            if let Expect::Revision(revision) = expect {
                query = query.bind(revision);
            }
        }
        let mut tx = begin(pool, actor).await?;
        let written = query.fetch_optional(&mut *tx).await?;
        tx.commit().await?;
        match written {
            Some(row) => Ok(row),
            None => Err(self.refusal(pool, key, expect).await),
        }
    }

    /// Deletes the row `key` if it is at the revision `expect` says ([`Expect::Absent`] is
    /// refused as a conflict with whatever is there), with `actor` as the author.
    pub async fn delete(
        &self,
        pool: &PgPool,
        key: &[&str],
        expect: Expect,
        actor: &str,
    ) -> Result<(), VersionedError> {
        let revision = match expect {
            Expect::Revision(revision) => Some(revision),
            Expect::Any => None,
            Expect::Absent => return Err(self.refusal(pool, key, expect).await),
        };
        let at = 1 + self.key.len();
        let sql = format!(
            "DELETE FROM {} WHERE {} AND (${at}::BIGINT IS NULL OR revision = ${at})",
            self.table,
            self.key_match(1)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for value in key {
            query = query.bind(*value);
        }
        let mut tx = begin(pool, actor).await?;
        let deleted = query
            .bind(revision)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        if deleted == 0 {
            return Err(self.refusal(pool, key, expect).await);
        }
        Ok(())
    }

    /// The row's changes, newest first; [`VersionedError::NotFound`] when it has none.
    pub async fn history(
        &self,
        pool: &PgPool,
        key: &[&str],
    ) -> Result<Vec<Change>, VersionedError> {
        let sql = format!(
            "SELECT revision, op, new_row, changed_by,
                    to_char(changed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')
             FROM {} WHERE {} ORDER BY revision DESC",
            self.history,
            self.key_match(1)
        );
        let mut query = sqlx::query_as::<_, HistoryRow>(AssertSqlSafe(sql));
        for value in key {
            query = query.bind(*value);
        }
        let rows = query.fetch_all(pool).await?;
        if rows.is_empty() {
            return Err(VersionedError::NotFound);
        }
        Ok(rows
            .into_iter()
            .map(|(revision, op, row, changed_by, changed_at)| Change {
                revision,
                op,
                row,
                changed_by,
                changed_at,
            })
            .collect())
    }

    /// The row `key` as it was right after `revision`, every column as JSON, for a rollback
    /// (write the columns to restore with [`VersionedTable::write`]).
    /// [`VersionedError::NoSuchRevision`] when the history has no such entry, or the change
    /// deleted the row.
    pub async fn row_at(
        &self,
        pool: &PgPool,
        key: &[&str],
        revision: i64,
    ) -> Result<Columns, VersionedError> {
        let at = 1 + self.key.len();
        let sql = format!(
            "SELECT new_row FROM {} WHERE {} AND revision = ${at}",
            self.history,
            self.key_match(1)
        );
        let mut query = sqlx::query_scalar::<_, Option<serde_json::Value>>(AssertSqlSafe(sql));
        for value in key {
            query = query.bind(*value);
        }
        match query.bind(revision).fetch_optional(pool).await? {
            Some(Some(serde_json::Value::Object(row))) => Ok(row),
            _ => Err(VersionedError::NoSuchRevision { revision }),
        }
    }

    /// Why a write that found nothing to write was refused, from what is in the table now.
    async fn refusal(&self, pool: &PgPool, key: &[&str], expect: Expect) -> VersionedError {
        let sql = format!(
            "SELECT revision FROM {} WHERE {}",
            self.table,
            self.key_match(1)
        );
        let mut query = sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql));
        for value in key {
            query = query.bind(*value);
        }
        match (query.fetch_optional(pool).await, expect) {
            (Err(error), _) => VersionedError::Database(error),
            (Ok(None), _) => VersionedError::NotFound,
            (Ok(Some(revision)), Expect::Absent | Expect::Any) => {
                VersionedError::Exists { revision }
            }
            (Ok(Some(actual)), Expect::Revision(expected)) => {
                VersionedError::Conflict { expected, actual }
            }
        }
    }
}

/// A plain lower-case SQL identifier: safe to write into a query unquoted.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_lowercase() || first == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::is_identifier;

    #[test]
    fn only_plain_lower_case_identifiers_are_column_names() {
        for good in ["name", "rollout_pct", "_x1"] {
            assert!(is_identifier(good), "{good}");
        }
        for bad in ["", "1a", "Name", "a b", "a;drop", "a\"", "é"] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }
}
