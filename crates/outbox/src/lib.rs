#![doc = include_str!("../README.md")]

mod error;
mod message;
mod metrics;
mod relay;

pub use error::OutboxError;
pub use message::{OutboxMessage, enqueue};
pub use metrics::{
    OUTBOX_BACKLOG, OUTBOX_BROKER_CONNECTED, OUTBOX_FAILURES, OUTBOX_OLDEST_AGE, OUTBOX_PUBLISHED,
    OUTBOX_REFUSED, record_relay_metrics,
};
pub use relay::{Broker, Relay, RelayOptions, RelayStats};

use sqlx::PgPool;

/// The outbox table.
pub const TABLE: &str = "groundwork_outbox";

/// The NOTIFY channel the table's trigger announces committed inserts on.
pub const CHANNEL: &str = "groundwork_outbox";

/// The migrations that create the outbox table and its NOTIFY trigger, as `(file name, SQL)`
/// pairs in order. The same files are in the crate's `migrations/` directory for migration tools
/// that read a directory (`groundwork_live::write_migration_files` writes these out).
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_outbox.up.sql",
        include_str!("../migrations/0001_outbox.up.sql"),
    ),
    (
        "0001_outbox.down.sql",
        include_str!("../migrations/0001_outbox.down.sql"),
    ),
];

/// The tracking table of this crate's migrations, separate from the application's
/// `schema_migrations` so both sets share one database without interfering.
pub const MIGRATIONS_TABLE: &str = "groundwork_outbox_migrations";

/// Applies the pending outbox migrations under `groundwork-migrate`'s advisory lock, so replicas
/// starting together apply them exactly once. Call it at start-up, before the first [`enqueue`].
pub async fn migrate(pool: &PgPool) -> Result<groundwork_migrate::Report, OutboxError> {
    let set = groundwork_migrate::MigrationSet::from_files(MIGRATIONS.iter().copied())?;
    let mut options = groundwork_migrate::MigrateOptions::default();
    options.table = groundwork_migrate::TableName::new(MIGRATIONS_TABLE)?;
    let migrator = groundwork_migrate::Migrator::new(set).with_options(options);
    Ok(groundwork_migrate::migrate_on_startup_with(pool, migrator).await?)
}
