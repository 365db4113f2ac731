//! The `feature_flags` table: its migrations and hot reload through `groundwork-live`.

use sqlx::{FromRow as _, PgPool};

use crate::{Flag, FlagSet, Flags};

/// The NOTIFY channel the table's trigger announces changes on.
pub const CHANNEL: &str = "groundwork_feature_flags";

/// The migrations that create the `feature_flags` table, its history and its NOTIFY trigger, as
/// `(file name, SQL)` pairs in order. The same files are in the crate's `migrations/` directory
/// for migration tools that read a directory.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_feature_flags.up.sql",
        include_str!("../migrations/0001_feature_flags.up.sql"),
    ),
    (
        "0001_feature_flags.down.sql",
        include_str!("../migrations/0001_feature_flags.down.sql"),
    ),
    (
        "0002_variants_rules.up.sql",
        include_str!("../migrations/0002_variants_rules.up.sql"),
    ),
    (
        "0002_variants_rules.down.sql",
        include_str!("../migrations/0002_variants_rules.down.sql"),
    ),
];

/// The tracking table of this crate's migrations, separate from the application's
/// `schema_migrations` so both sets share one database without interfering.
pub const MIGRATIONS_TABLE: &str = "groundwork_flags_migrations";

/// Applies the pending `feature_flags` migrations under `groundwork-migrate`'s advisory lock, so
/// replicas starting together apply them exactly once. Call it at start-up before [`watch`].
pub async fn migrate(
    pool: &PgPool,
) -> Result<groundwork_migrate::Report, groundwork_migrate::MigrateError> {
    let set = groundwork_migrate::MigrationSet::from_files(MIGRATIONS.iter().copied())?;
    let mut options = groundwork_migrate::MigrateOptions::default();
    options.table = groundwork_migrate::TableName::new(MIGRATIONS_TABLE)?;
    let migrator = groundwork_migrate::Migrator::new(set).with_options(options);
    groundwork_migrate::migrate_on_startup_with(pool, migrator).await
}

/// Writes [`MIGRATIONS`] into `dir` (created if missing), for `groundwork-migrate --dir` and
/// similar tools that read a directory. The SQL is embedded, so no source checkout is needed.
pub fn write_migrations(dir: &std::path::Path) -> std::io::Result<()> {
    groundwork_live::write_migration_files(dir, MIGRATIONS)
}

/// The columns `name, enabled, rollout_pct, whitelist, description` of a flag.
pub(crate) type FlagRow = (String, bool, i32, Option<Vec<String>>, Option<String>);

pub(crate) fn flag_from_row((name, enabled, rollout_pct, whitelist, description): FlagRow) -> Flag {
    Flag {
        name,
        enabled,
        rollout_pct,
        whitelist,
        description,
        ..Flag::new(String::new())
    }
}

/// The columns of [`FlagRow`] and `variants, rules` (JSONB, NULL in the seed's rows).
type FullRow = (
    String,
    bool,
    i32,
    Option<Vec<String>>,
    Option<String>,
    Option<serde_json::Value>,
    Option<serde_json::Value>,
);

/// [`FullRow`] as `load_all` reads it, the whitelist as a JSON array.
type TextRow = (
    String,
    bool,
    i32,
    Option<serde_json::Value>,
    Option<String>,
    Option<serde_json::Value>,
    Option<serde_json::Value>,
);

/// A flag whose variants or rules cannot be served: the load fails, so a running service keeps
/// its last good set and reports the feed as stale with this message.
#[derive(Debug, thiserror::Error)]
#[error("{0}; the last good flags stay in use until the row is corrected")]
struct RefusedRow(String);

fn flag_from_full_row(
    (name, enabled, rollout_pct, whitelist, description, variants, rules): FullRow,
) -> Result<Flag, RefusedRow> {
    let mut flag = flag_from_row((name, enabled, rollout_pct, whitelist, description));
    if let Some(variants) = variants {
        flag.variants = serde_json::from_value(variants).map_err(|e| {
            RefusedRow(format!(
                "flag {:?}: column variants does not hold variants: {e}",
                flag.name
            ))
        })?;
    }
    if let Some(rules) = rules {
        flag.rules = serde_json::from_value(rules).map_err(|e| {
            RefusedRow(format!(
                "flag {:?}: column rules does not hold rules: {e}",
                flag.name
            ))
        })?;
    }
    flag.validate_targeting()
        .map_err(|problem| RefusedRow(problem.to_string()))?;
    Ok(flag)
}

/// Loads every flag from the table. Fails — naming the flag and the field — when a row's
/// variants or rules are invalid ([`Flag::validate_targeting`]): only plain SQL can write such a
/// row, and a running service keeps its last good flags rather than serve it.
pub async fn load_all(pool: &PgPool) -> Result<Vec<Flag>, sqlx::Error> {
    // One simple-protocol query: one round trip, and it works through PgBouncer in transaction
    // pooling mode, since no prepared statement outlives it. Every instance runs it on every
    // change.
    // The whitelist comes as JSON: the text form of an array would need PostgreSQL's array
    // quoting undone (a tenant named `NULL`, or holding quotes or backslashes).
    let rows = sqlx::raw_sql(
        "SELECT name, enabled, rollout_pct, to_jsonb(whitelist), description, variants, rules \
         FROM feature_flags ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let (name, enabled, rollout_pct, whitelist, description, variants, rules) =
                TextRow::from_row(row)?;
            let whitelist = whitelist
                .map(serde_json::from_value::<Vec<String>>)
                .transpose()
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            let row = (
                name,
                enabled,
                rollout_pct,
                whitelist,
                description,
                variants,
                rules,
            );
            flag_from_full_row(row).map_err(|e| sqlx::Error::Decode(Box::new(e)))
        })
        .collect()
}

struct FlagTable;

impl groundwork_live::Table for FlagTable {
    type Row = Flag;

    fn name(&self) -> &'static str {
        "feature_flags"
    }

    fn channel(&self) -> &'static str {
        CHANNEL
    }

    async fn load(&self, pool: &PgPool) -> Result<Vec<Flag>, sqlx::Error> {
        load_all(pool).await
    }
}

/// Live flags that follow the `feature_flags` table: loaded at start, reloaded within
/// milliseconds of any change (including plain SQL), polled as a safety net, kept through
/// database outages, and started from the snapshot file when the database is down at start.
///
/// Keep the returned [`groundwork_live::Feed`] alive for as long as the flags should follow the
/// table; its status is what a health check reports.
pub async fn watch(
    pool: PgPool,
    options: groundwork_live::FeedOptions,
) -> Result<(Flags, groundwork_live::Feed), groundwork_live::FeedError> {
    let flags = Flags::default();
    let target = flags.clone();
    let feed = groundwork_live::start(pool, FlagTable, options, move |rows: &[Flag]| {
        target.replace(FlagSet::new(rows.iter().cloned()));
    })
    .await?;
    Ok((flags, feed))
}
