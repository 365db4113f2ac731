//! Set-up shared by the tests against a real PostgreSQL.

use anyhow::{Context as _, Result};
use groundwork_live::config;
use groundwork_testkit::TestDatabase;

/// A fresh database with the `platform_config` table (migration 0001) applied.
pub(crate) async fn migrated() -> Result<TestDatabase> {
    let db = TestDatabase::create().await?;
    let (_, up) = config::MIGRATIONS[0];
    sqlx::raw_sql(up)
        .execute(db.pool())
        .await
        .context("applying 0001 up")?;
    Ok(db)
}
