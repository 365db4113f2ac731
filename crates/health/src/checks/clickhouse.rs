//! ClickHouse through the `clickhouse` client.

use clickhouse::Client;

use crate::check::{CheckResult, Component, ComponentType, HealthCheck};
use crate::output::error_chain;

/// Runs `SELECT 1`. Component name `clickhouse`.
///
/// The check turns the client's schema validation off: validation asks the server for
/// `RowBinaryWithNamesAndTypes`, which ClickHouse before 24 (Debian ships 18.16) does not have,
/// and a one-column `UInt8` needs no validation. The application's own client is not changed.
#[derive(Clone)]
pub struct ClickHouseCheck {
    client: Client,
}

impl ClickHouseCheck {
    /// A check with `client` (its URL, database and credentials).
    pub fn new(client: Client) -> Self {
        Self {
            client: client.with_validation(false),
        }
    }
}

impl std::fmt::Debug for ClickHouseCheck {
    // The client holds credentials; say nothing about it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseCheck").finish_non_exhaustive()
    }
}

impl HealthCheck for ClickHouseCheck {
    fn component(&self) -> Component {
        Component::new("clickhouse", ComponentType::Datastore)
    }

    async fn check(&self) -> CheckResult {
        match self.client.query("SELECT 1").fetch_one::<u8>().await {
            Ok(1) => CheckResult::pass(),
            Ok(other) => CheckResult::fail(format!("`SELECT 1` returned {other}")),
            Err(error) => CheckResult::fail(format!("`SELECT 1` failed: {}", error_chain(&error))),
        }
    }
}
