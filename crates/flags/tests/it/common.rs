//! Set-up shared by the tests against a real PostgreSQL.

use anyhow::{Context as _, Result};
use groundwork_flags::store;
use groundwork_testkit::TestDatabase;

/// A fresh database with the flags migrations applied.
pub(crate) async fn migrated() -> Result<TestDatabase> {
    let db = TestDatabase::create().await?;
    store::migrate(db.pool())
        .await
        .context("applying the flags migrations")?;
    Ok(db)
}
