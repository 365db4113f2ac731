//! Redis through a deadpool-redis pool.

use deadpool_redis::Pool;
use deadpool_redis::redis;

use crate::check::{CheckResult, Component, ComponentType, HealthCheck};
use crate::output::error_chain;

/// Sends `PING` on a connection from the pool and reports the pool's size and available
/// connections (`redis:connections`, `redis:availableConnections`). Component name `redis`.
#[derive(Debug, Clone)]
pub struct RedisCheck {
    pool: Pool,
}

impl RedisCheck {
    /// A check on `pool`.
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

impl HealthCheck for RedisCheck {
    fn component(&self) -> Component {
        Component::new("redis", ComponentType::Datastore)
    }

    async fn check(&self) -> CheckResult {
        let result = match self.pool.get().await {
            Err(error) => {
                CheckResult::fail(format!("cannot get a connection: {}", error_chain(&error)))
            }
            Ok(mut connection) => {
                match redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
                {
                    Ok(reply) if reply == "PONG" => CheckResult::pass(),
                    Ok(reply) => CheckResult::fail(format!("`PING` answered {reply:?}")),
                    Err(error) => {
                        CheckResult::fail(format!("`PING` failed: {}", error_chain(&error)))
                    }
                }
            }
        };
        let status = self.pool.status();
        result
            .with_observation("connections", status.size, Some("connections"))
            .with_observation(
                "availableConnections",
                status.available,
                Some("connections"),
            )
    }
}
