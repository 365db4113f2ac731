#![doc = include_str!("../README.md")]

mod backend;
mod error;
mod migrator;
pub mod plan;
mod source;
// The splitter serves the backends; the pure core does not need it.
#[cfg(any(feature = "postgres", feature = "clickhouse"))]
mod split;
mod url;

#[cfg(feature = "clickhouse")]
pub mod clickhouse;
#[cfg(feature = "postgres")]
pub mod postgres;

pub use backend::{AppliedMigration, Backend, NewRecord, RecordState, TableName};
pub use error::{BoxError, FailedStatement, MigrateError};
pub use migrator::{Action, MigrateOptions, Migrator, Report, Step};
pub use plan::{DownTarget, MigrationStatus, State};
pub use source::{Migration, MigrationKind, MigrationSet, NO_TRANSACTION_MARKER, Script, checksum};
pub use url::UrlKind;

/// Applies the pending migrations of `dir` to the database of `pool` at service start-up, with
/// default [`MigrateOptions`] (table `schema_migrations`).
///
/// The run takes the PostgreSQL advisory lock on a dedicated connection opened with the pool's
/// options, so replicas starting together apply each migration exactly once: one runs them,
/// the others wait for the lock and then find nothing to do. The lock is released on every
/// path, and the connection is closed before this returns.
#[cfg(feature = "postgres")]
pub async fn migrate_on_startup(
    pool: &sqlx::PgPool,
    dir: impl AsRef<std::path::Path>,
) -> Result<Report, MigrateError> {
    migrate_on_startup_with(pool, Migrator::from_dir(dir)?).await
}

/// Like [`migrate_on_startup`], with a [`Migrator`] you configured (another table, a lock
/// timeout, migrations embedded with [`MigrationSet::from_files`]).
#[cfg(feature = "postgres")]
pub async fn migrate_on_startup_with(
    pool: &sqlx::PgPool,
    migrator: Migrator,
) -> Result<Report, MigrateError> {
    let mut db = postgres::PgBackend::connect_like(pool).await?;
    let report = migrator.up(&mut db, None).await;
    // A failed close cannot hide the run's outcome; the session ends either way.
    let closed = db.close().await;
    let report = report?;
    closed?;
    Ok(report)
}
