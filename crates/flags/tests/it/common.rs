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

/// Runs the `groundwork-flags` binary against `database_url` with `--by ops` and `args`.
#[cfg(feature = "cli")]
pub(crate) fn flags_cli(database_url: &str, args: &[&str]) -> Result<std::process::Output> {
    std::process::Command::new(env!("CARGO_BIN_EXE_groundwork-flags"))
        .env("DATABASE_URL", database_url)
        .args(["--by", "ops"])
        .args(args)
        .output()
        .context("running groundwork-flags")
}
