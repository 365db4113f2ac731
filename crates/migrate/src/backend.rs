//! What a database must offer to be migrated: the [`Backend`] trait and the rows it records.

use std::fmt;
use std::future::Future;
use std::time::{Duration, SystemTime};

use crate::error::MigrateError;
use crate::source::{Migration, Script};

/// The name of the tracking table, checked to be a plain identifier or `schema.table`, so it
/// can be written into SQL unquoted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableName(String);

impl TableName {
    /// The default, `schema_migrations`.
    pub const DEFAULT: &'static str = "schema_migrations";

    /// Checks `name`: one or two `.`-separated parts of ASCII letters, digits and `_`, each not
    /// starting with a digit, at most 63 bytes each.
    pub fn new(name: &str) -> Result<Self, MigrateError> {
        let valid_part = |part: &str| {
            !part.is_empty()
                && part.len() <= 63
                && !part.starts_with(|c: char| c.is_ascii_digit())
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        let parts: Vec<&str> = name.split('.').collect();
        if parts.len() > 2 || !parts.iter().all(|p| valid_part(p)) {
            return Err(MigrateError::InvalidTableName {
                name: name.to_owned(),
            });
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as written in SQL.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The schema (PostgreSQL) or database (ClickHouse) part, if qualified.
    pub fn qualifier(&self) -> Option<&str> {
        self.0.split_once('.').map(|(q, _)| q)
    }

    /// The table part.
    pub fn table(&self) -> &str {
        self.0.split_once('.').map_or(&self.0, |(_, t)| t)
    }
}

impl Default for TableName {
    fn default() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The state of a row in the tracking table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordState {
    /// Applied completely.
    Applied,
    /// Started outside a transaction and not finished: the database may be half-changed.
    Dirty,
    /// Marks a database adopted with `baseline`: versions up to this one are taken as applied.
    Baseline,
}

impl RecordState {
    /// The text stored in the `state` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Dirty => "dirty",
            Self::Baseline => "baseline",
        }
    }

    /// Parses the `state` column.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "applied" => Some(Self::Applied),
            "dirty" => Some(Self::Dirty),
            "baseline" => Some(Self::Baseline),
            _ => None,
        }
    }
}

/// One row of the tracking table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    /// The version.
    pub version: i64,
    /// The migration's name when it was recorded.
    pub name: String,
    /// The script that ran last (the up file, or the down file of a revert that failed).
    pub script: String,
    /// The checksum of the up script when it was applied.
    pub checksum: Vec<u8>,
    /// Applied, dirty or baseline.
    pub state: RecordState,
    /// Statements completed, for scripts run statement by statement.
    pub statements_done: u64,
    /// When the row was last written.
    pub applied_at: SystemTime,
    /// How long the script took.
    pub execution_time: Duration,
}

/// A row to write with [`Backend::record`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord<'a> {
    /// The version.
    pub version: i64,
    /// The migration's name.
    pub name: &'a str,
    /// The script file name.
    pub script: &'a str,
    /// The up script's checksum (empty for a baseline).
    pub checksum: &'a [u8],
    /// The state to record.
    pub state: RecordState,
}

/// A database the [`Migrator`](crate::Migrator) can drive. Implementations keep one session
/// (connection) for the whole run, so that a session-scoped lock covers every step.
///
/// Each method takes the tracking table name, so one database can hold several migration sets.
pub trait Backend: Send {
    /// Takes the migration lock for `table`, waiting at most `timeout`. Backends without locks
    /// document that and return at once.
    fn lock(
        &mut self,
        table: &TableName,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), MigrateError>> + Send;

    /// Releases the lock taken by [`lock`](Self::lock).
    fn unlock(
        &mut self,
        table: &TableName,
    ) -> impl Future<Output = Result<(), MigrateError>> + Send;

    /// Creates the tracking table if it does not exist, and checks that an existing one has the
    /// expected columns.
    fn ensure_table(
        &mut self,
        table: &TableName,
    ) -> impl Future<Output = Result<(), MigrateError>> + Send;

    /// The rows of the tracking table ordered by version; empty when the table does not exist
    /// (so a dry run creates nothing).
    fn applied(
        &mut self,
        table: &TableName,
    ) -> impl Future<Output = Result<Vec<AppliedMigration>, MigrateError>> + Send;

    /// Runs the up script and records the version as applied. In a transaction, both commit
    /// together; without one, the version is recorded as dirty first and stays dirty if a
    /// statement fails.
    fn apply(
        &mut self,
        table: &TableName,
        migration: &Migration,
    ) -> impl Future<Output = Result<Duration, MigrateError>> + Send;

    /// Runs `down` and removes the version's row, with the same transaction and dirty rules as
    /// [`apply`](Self::apply).
    fn revert(
        &mut self,
        table: &TableName,
        migration: &Migration,
        down: &Script,
    ) -> impl Future<Output = Result<Duration, MigrateError>> + Send;

    /// Inserts or replaces the row of `record.version` (used by `force`, `baseline`, `repair`).
    fn record(
        &mut self,
        table: &TableName,
        record: &NewRecord<'_>,
    ) -> impl Future<Output = Result<(), MigrateError>> + Send;

    /// Removes the row of `version` (used by `repair`).
    fn remove(
        &mut self,
        table: &TableName,
        version: i64,
    ) -> impl Future<Output = Result<(), MigrateError>> + Send;
}
