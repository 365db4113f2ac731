//! PostgreSQL through an sqlx pool.

use sqlx::PgPool;

use crate::check::{CheckResult, Component, ComponentType, HealthCheck};
use crate::output::error_chain;

/// Runs `SELECT 1` on a connection from the pool and reports the pool's size and idle connections
/// (`database:connections`, `database:idleConnections`). Component name `database`, the path the
/// seeds probe (`/health/database`).
///
/// The query waits for a free connection like any other: a pool exhausted by the service's own
/// load fails the check at its timeout, which is the truth about whether it can serve.
#[derive(Debug, Clone)]
pub struct PostgresCheck {
    pool: PgPool,
}

impl PostgresCheck {
    /// A check on `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

impl HealthCheck for PostgresCheck {
    fn component(&self) -> Component {
        Component::new("database", ComponentType::Datastore)
    }

    async fn check(&self) -> CheckResult {
        let result = match sqlx::query_scalar::<_, i32>("SELECT 1")
            .fetch_one(&self.pool)
            .await
        {
            Ok(1) => CheckResult::pass(),
            Ok(other) => CheckResult::fail(format!("`SELECT 1` returned {other}")),
            Err(error) => CheckResult::fail(format!("`SELECT 1` failed: {}", error_chain(&error))),
        };
        result
            .with_observation("connections", self.pool.size(), Some("connections"))
            .with_observation("idleConnections", self.pool.num_idle(), Some("connections"))
    }
}
