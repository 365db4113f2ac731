//! The one error type of the crate.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A boxed error from a database driver or the file system.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong while loading, planning or running migrations.
///
/// Every message names the file or table involved and, where an operator can act, says how to
/// fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// The migration directory or one of its files could not be read or written.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done, e.g. `read migration directory`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// A file looks like a migration but its version does not fit in an `i64`.
    #[error(
        "migration file {file} has an invalid version ({reason}); name migrations \
         `NNN_name.up.sql` + `NNN_name.down.sql` or `NNN_name.sql`"
    )]
    InvalidFileName {
        /// The file name.
        file: String,
        /// Why the version is invalid.
        reason: String,
    },

    /// Two files claim the same version.
    #[error(
        "migration version {version} is defined twice, by {first} and {second}; \
         give one of them a new number"
    )]
    DuplicateVersion {
        /// The version.
        version: i64,
        /// One file.
        first: String,
        /// The other file.
        second: String,
    },

    /// A `.down.sql` file without its `.up.sql`.
    #[error("{file} has no matching up migration; add {expected} or remove the down file")]
    OrphanDown {
        /// The down file.
        file: String,
        /// The up file that is missing.
        expected: String,
    },

    /// A tracking table name that is not a plain identifier.
    #[error(
        "invalid tracking table name {name:?}; use letters, digits and underscores, \
         optionally qualified as `schema.table`"
    )]
    InvalidTableName {
        /// The rejected name.
        name: String,
    },

    /// A migration name given to `create` that has no usable characters.
    #[error(
        "invalid migration name {name:?}; use letters, digits and underscores, e.g. `create_hotels`"
    )]
    InvalidMigrationName {
        /// The rejected name.
        name: String,
    },

    /// An applied migration whose file changed afterwards.
    #[error(
        "migration {file} was changed after it was applied (checksum differs); restore the file \
         or, if the change is intended, run `groundwork-migrate repair`"
    )]
    Modified {
        /// The version.
        version: i64,
        /// The file that changed.
        file: String,
    },

    /// An applied migration whose file is gone.
    #[error(
        "migration {version} ({name}) was applied but its file is missing from {}; restore the \
         file, or run `groundwork-migrate repair` to forget it", dir.display()
    )]
    Missing {
        /// The version.
        version: i64,
        /// The name recorded when it was applied.
        name: String,
        /// The migration directory.
        dir: PathBuf,
    },

    /// A migration that failed part-way outside a transaction.
    #[error(
        "migration {script} is dirty: it failed after {statements_done} statement(s) and the \
         database may be half-changed; fix the database by hand, then run \
         `groundwork-migrate force {version}` if its changes are now complete, or \
         `groundwork-migrate repair` if you undid them"
    )]
    Dirty {
        /// The version.
        version: i64,
        /// The script that was running (an up or a down file).
        script: String,
        /// How many statements had completed.
        statements_done: u64,
    },

    /// A pending migration numbered below the latest applied one.
    #[error(
        "migration {file} is pending but its version {version} is lower than the latest applied \
         version {latest}; renumber it above {latest}, or pass --allow-out-of-order to apply it \
         anyway"
    )]
    OutOfOrder {
        /// The version.
        version: i64,
        /// The pending file.
        file: String,
        /// The highest applied version.
        latest: i64,
    },

    /// A revert of a migration that has no down script.
    #[error(
        "cannot revert migration {file}: {down_file} is missing; write it, or undo the migration \
         by hand and run `groundwork-migrate force` with the version to keep"
    )]
    MissingDown {
        /// The version.
        version: i64,
        /// The up (or single) file.
        file: String,
        /// The down file that would revert it.
        down_file: String,
    },

    /// A revert of a single-file (irreversible) migration.
    #[error(
        "cannot revert migration {file}: a single .sql file is irreversible; to make it \
         reversible rename it to {up_file} (its checksum does not change) and add {down_file}"
    )]
    Irreversible {
        /// The version.
        version: i64,
        /// The single file.
        file: String,
        /// The name to rename it to.
        up_file: String,
        /// The down file to add.
        down_file: String,
    },

    /// A revert that would cross the baseline.
    #[error(
        "cannot revert below the baseline at version {baseline}: migrations up to it were never \
         run by groundwork-migrate"
    )]
    BelowBaseline {
        /// The baseline version.
        baseline: i64,
    },

    /// `baseline` on a database that already records migrations.
    #[error(
        "cannot baseline: {table} already records {count} migration(s); baseline only adopts a \
         database that has none (use `force` to mark single versions)"
    )]
    NotEmpty {
        /// The tracking table.
        table: String,
        /// How many rows it has.
        count: usize,
    },

    /// A version that has no migration file.
    #[error("there is no migration with version {version} in {}", dir.display())]
    UnknownVersion {
        /// The version asked for.
        version: i64,
        /// The migration directory.
        dir: PathBuf,
    },

    /// A migration script failed.
    #[error("{}", failed_message(script, statement.as_ref(), *left_dirty, source))]
    MigrationFailed {
        /// The version.
        version: i64,
        /// The file that failed.
        script: String,
        /// The statement that failed, when the script ran statement by statement.
        statement: Option<FailedStatement>,
        /// Whether the migration is now recorded as dirty (no transaction could undo it).
        left_dirty: bool,
        /// The database error.
        #[source]
        source: BoxError,
    },

    /// The migration lock could not be taken in time.
    #[error(
        "timed out after {}s waiting for the migration lock on {table} (advisory lock key {key}); \
         another runner holds it: wait for it to finish, or find it with \
         `SELECT pid FROM pg_locks WHERE locktype = 'advisory'`", waited.as_secs()
    )]
    LockTimeout {
        /// The tracking table the lock guards.
        table: String,
        /// The advisory lock key.
        key: i64,
        /// How long the runner waited.
        waited: Duration,
    },

    /// A tracking table that exists but was not created by this crate.
    #[error(
        "table {table} exists but is not a groundwork-migrate tracking table (it lacks the \
         columns {missing}); it may belong to golang-migrate or another tool: pick another name \
         with --table, then adopt the database with `groundwork-migrate baseline <version>`"
    )]
    IncompatibleTable {
        /// The table.
        table: String,
        /// The missing columns, comma separated.
        missing: String,
    },

    /// A database URL that cannot be used.
    #[error("invalid database url {url}: {reason}")]
    InvalidUrl {
        /// The URL with any password masked.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A database operation other than a migration script failed.
    #[error("{context}")]
    Database {
        /// What was being done, naming the table or server.
        context: String,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
}

/// The statement of a script that failed, for scripts run statement by statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedStatement {
    /// 1-based position of the statement in the file.
    pub index: usize,
    /// How many statements the file has.
    pub total: usize,
    /// 1-based line where the statement starts.
    pub line: usize,
    /// The statement text.
    pub sql: String,
}

impl fmt::Display for FailedStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 120;
        let one_line = self.sql.split_whitespace().collect::<Vec<_>>().join(" ");
        let shown = if one_line.chars().count() > MAX {
            let cut: String = one_line.chars().take(MAX).collect();
            format!("{cut}...")
        } else {
            one_line
        };
        write!(
            f,
            "statement {} of {} (line {}: `{shown}`)",
            self.index, self.total, self.line
        )
    }
}

fn failed_message(
    script: &str,
    statement: Option<&FailedStatement>,
    left_dirty: bool,
    source: &BoxError,
) -> String {
    let at = statement.map(|s| format!(" at {s}")).unwrap_or_default();
    let outcome = if left_dirty {
        "it is now recorded as dirty and later runs refuse until you fix the database by hand and \
         run `groundwork-migrate force <version>` (changes complete) or `groundwork-migrate \
         repair` (changes undone)"
    } else {
        "its transaction was rolled back, so the database is unchanged; fix the file and run again"
    };
    format!("migration {script} failed{at}: {source}; {outcome}")
}

#[cfg(any(feature = "postgres", feature = "clickhouse"))]
impl MigrateError {
    pub(crate) fn database(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Database {
            context: context.into(),
            source: source.into(),
        }
    }
}
