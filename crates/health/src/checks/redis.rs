//! Redis through a pool of any topology: one server, a Redis Cluster or Sentinel.

use deadpool_redis::redis;
use groundwork_connect::{RedisConnection, RedisPool, RedisTopology};

use crate::check::{CheckResult, Component, ComponentType, HealthCheck, Status};
use crate::output::error_chain;

/// Checks Redis on a connection from the pool and reports the topology (`redis:topology`:
/// `single`, `cluster` or `sentinel`), the pool's size and its available connections
/// (`redis:connections`, `redis:availableConnections`). Component name `redis`.
///
/// What passes depends on the topology:
///
/// | topology | passes when |
/// |---|---|
/// | `single` | the server answers `PING` |
/// | `cluster` | every master answers `PING` and `CLUSTER INFO` says `cluster_state:ok` (every slot served) |
/// | `sentinel` | the server the sentinels named answers `ROLE` as the master |
#[derive(Debug, Clone)]
pub struct RedisCheck {
    pool: RedisPool,
}

impl RedisCheck {
    /// A check on `pool`: a [`RedisPool`] of any topology, or a deadpool-redis pool to one
    /// server.
    pub fn new(pool: impl Into<RedisPool>) -> Self {
        Self { pool: pool.into() }
    }
}

impl HealthCheck for RedisCheck {
    fn component(&self) -> Component {
        Component::new("redis", ComponentType::Datastore)
    }

    async fn check(&self) -> CheckResult {
        let topology = self.pool.topology();
        let result = match self.pool.get().await {
            Err(error) => {
                CheckResult::fail(format!("cannot get a connection: {}", error_chain(&error)))
            }
            Ok(mut connection) => match topology {
                RedisTopology::Cluster => cluster(&mut connection).await,
                RedisTopology::Sentinel => master(&mut connection).await,
                _ => ping(&mut connection).await,
            },
        };
        let status = self.pool.status();
        result
            .with_observation("topology", topology.as_str(), None)
            .with_observation("connections", status.size, Some("connections"))
            .with_observation(
                "availableConnections",
                status.available,
                Some("connections"),
            )
    }
}

async fn ping(connection: &mut RedisConnection) -> CheckResult {
    match redis::cmd("PING").query_async::<String>(connection).await {
        Ok(reply) if reply == "PONG" => CheckResult::pass(),
        Ok(reply) => CheckResult::fail(format!("`PING` answered {reply:?}")),
        Err(error) => CheckResult::fail(format!("`PING` failed: {}", error_chain(&error))),
    }
}

/// `PING` goes to every master; `CLUSTER INFO` to one node, which knows whether every slot is
/// served.
async fn cluster(connection: &mut RedisConnection) -> CheckResult {
    let pinged = ping(connection).await;
    if pinged.status != Status::Pass {
        return pinged;
    }
    match redis::cmd("CLUSTER")
        .arg("INFO")
        .query_async::<String>(connection)
        .await
    {
        Ok(info) => {
            let state = info
                .lines()
                .find_map(|line| line.trim().strip_prefix("cluster_state:"))
                .unwrap_or("unknown");
            if state == "ok" {
                CheckResult::pass()
            } else {
                CheckResult::fail(format!(
                    "the cluster's state is `{state}`: some hash slots have no reachable master"
                ))
            }
        }
        Err(error) => CheckResult::fail(format!("`CLUSTER INFO` failed: {}", error_chain(&error))),
    }
}

async fn master(connection: &mut RedisConnection) -> CheckResult {
    match redis::cmd("ROLE")
        .query_async::<Vec<redis::Value>>(connection)
        .await
    {
        Ok(role) => match role.first() {
            Some(redis::Value::BulkString(role)) if role.as_slice() == b"master" => {
                CheckResult::pass()
            }
            Some(redis::Value::BulkString(role)) => CheckResult::fail(format!(
                "the server the sentinels named answers `ROLE` as `{}`, not `master` (a failover \
                 is in progress)",
                String::from_utf8_lossy(role)
            )),
            _ => CheckResult::fail("`ROLE` gave an unexpected answer"),
        },
        Err(error) => CheckResult::fail(format!("`ROLE` failed: {}", error_chain(&error))),
    }
}
