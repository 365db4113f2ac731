//! The gateway's idempotency store and Redis health check on a private Redis Cluster and a
//! private Sentinel set-up (started by the test kit from `redis-server`), with the shared
//! PostgreSQL and RabbitMQ.

use std::time::Duration;

use super::gateway::request;
use anyhow::{Context as _, Result, ensure};
use deadpool_redis::redis;
use groundwork_config::Loader;
use groundwork_example_api_gateway::{Gateway, Settings};
use groundwork_service::{ServeOptions, Shutdown};
use groundwork_testkit::{
    SENTINEL_MASTER, TestAmqp, TestDatabase, TestRedisCluster, TestRedisSentinel,
};
use serde_json::Value;
use tokio::task::JoinHandle;

/// How long a failover may take before the test fails.
const FAILOVER_LIMIT: Duration = Duration::from_secs(30);

struct TestGateway {
    address: std::net::SocketAddr,
    gateway: Gateway,
    shutdown: Shutdown,
    server: JoinHandle<std::io::Result<()>>,
    _db: TestDatabase,
    _amqp: TestAmqp,
}

impl TestGateway {
    async fn start(redis: &[(&str, &str)]) -> Result<Self> {
        let db = TestDatabase::create().await?;
        let amqp = TestAmqp::create().await?;
        let exchange = amqp.name("orders");
        let settings: Settings = Loader::new()
            .no_dotenv()
            .vars(
                [
                    ("DATABASE_URL", db.url()),
                    ("RABBITMQ_URL", amqp.url()),
                    ("REDIS_KEY_PREFIX", "gw-test:"),
                    ("ORDERS_EXCHANGE", exchange.as_str()),
                    ("CONFIG_ENV", "test"),
                    ("DATABASE_POOL_SIZE", "4"),
                ]
                .into_iter()
                .chain(redis.iter().copied()),
            )
            .load()?;
        let gateway = groundwork_example_api_gateway::start(settings).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let shutdown = Shutdown::new();
        let router = gateway.router.clone();
        let health = gateway.health.clone();
        let options = ServeOptions {
            drain_delay: Duration::ZERO,
            ..gateway.serve_options()
        };
        let stop = shutdown.clone();
        let server = tokio::spawn(async move {
            groundwork_service::serve(listener, router, &health, stop, options).await
        });
        Ok(Self {
            address,
            gateway,
            shutdown,
            server,
            _db: db,
            _amqp: amqp,
        })
    }

    async fn order(&self, key: &str, tenant: &str) -> Result<(u16, Option<Value>, bool)> {
        let body = format!(r#"{{"tenant":"{tenant}","amount":12.5}}"#);
        let reply = request(
            self.address,
            "POST",
            "/v1/orders",
            &[
                ("Content-Type", "application/json"),
                ("Idempotency-Key", key),
            ],
            &body,
        )
        .await?;
        let replayed = reply.header("idempotent-replayed") == Some("true");
        Ok((
            reply.status,
            serde_json::from_str(&reply.body).ok(),
            replayed,
        ))
    }

    async fn get(&self, path: &str) -> Result<(u16, String)> {
        let reply = request(self.address, "GET", path, &[], "").await?;
        Ok((reply.status, reply.body))
    }

    async fn stop(self) -> Result<()> {
        self.shutdown.trigger();
        self.server.await??;
        self.gateway.shutdown().await;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_spread_over_cluster_slots_replay_their_first_answer() -> Result<()> {
    let cluster = TestRedisCluster::start().await?;
    let nodes = cluster.nodes();
    let url = cluster.url();
    let gateway = TestGateway::start(&[
        ("REDIS_URL", url.as_str()),
        ("REDIS_TOPOLOGY", "cluster"),
        ("REDIS_NODES", nodes.as_str()),
    ])
    .await?;
    let (status, body) = gateway.get("/health/redis").await?;
    assert_eq!(status, 200, "{body}");

    let mut ids = Vec::new();
    for i in 0..30 {
        let (status, body, replayed) = gateway
            .order(&format!("key-{i}"), &format!("tenant-{}", i % 3))
            .await?;
        assert_eq!(status, 201, "{body:?}");
        assert!(!replayed);
        ids.push(body.context("no body")?["id"].clone());
    }
    for (i, id) in ids.iter().enumerate() {
        let (status, body, replayed) = gateway
            .order(&format!("key-{i}"), &format!("tenant-{}", i % 3))
            .await?;
        assert_eq!(status, 201, "{body:?}");
        assert!(replayed, "key-{i} is replayed");
        assert_eq!(
            &body.context("no body")?["id"],
            id,
            "key-{i} replays its own order"
        );
    }
    // The records really are on several masters: the keys spread over the slots.
    let mut holding = 0;
    for master in cluster.master_urls() {
        let mut connection = redis::Client::open(master.as_str())?
            .get_multiplexed_async_connection()
            .await?;
        let keys: u64 = redis::cmd("DBSIZE").query_async(&mut connection).await?;
        if keys > 0 {
            holding += 1;
        }
    }
    assert_eq!(holding, 3, "all three masters hold idempotency records");
    gateway.stop().await
}

/// Orders with an `Idempotency-Key` sent one after the other while the Redis master is killed:
/// some fail with 503 until the sentinels promote the replica, then they succeed again on the
/// same gateway, and readiness is back to 200, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_is_survived_without_a_restart() -> Result<()> {
    let mut setup = TestRedisSentinel::start().await?;
    let url = setup.url();
    let nodes = setup.nodes();
    let gateway = TestGateway::start(&[
        ("REDIS_URL", url.as_str()),
        ("REDIS_TOPOLOGY", "sentinel"),
        ("REDIS_NODES", nodes.as_str()),
        ("REDIS_SENTINEL_MASTER", SENTINEL_MASTER),
    ])
    .await?;
    let (status, body) = gateway.get("/health/redis").await?;
    assert_eq!(status, 200, "{body}");

    let (status, first, _) = gateway.order("before", "tenant-1").await?;
    assert_eq!(status, 201);
    // The replica has the record before the master dies.
    let master = setup.master_port().await?;
    let mut connection = redis::Client::open(format!("redis://127.0.0.1:{master}"))?
        .get_multiplexed_async_connection()
        .await?;
    let replicas: u64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async(&mut connection)
        .await?;
    assert_eq!(replicas, 1);

    let old = setup.kill_master()?;
    let deadline = tokio::time::Instant::now() + FAILOVER_LIMIT;
    let (mut sent, mut failed) = (0_u32, 0_u32);
    loop {
        sent += 1;
        let (status, body, _) = gateway.order(&format!("during-{sent}"), "tenant-1").await?;
        match status {
            201 => break,
            503 => failed += 1,
            other => anyhow::bail!("unexpected {other} during the failover: {body:?}"),
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no order succeeded within {FAILOVER_LIMIT:?} of killing the master ({failed} failed)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(setup.wait_for_new_master(old).await?, old);
    eprintln!(
        "failover: {failed} of {sent} orders failed (503) until the replica was promoted; the \
         next succeeded"
    );
    assert!(
        failed > 0,
        "the first order after the kill cannot reach the dead master"
    );

    // The record written before the failover replays from the promoted replica.
    let (status, again, replayed) = gateway.order("before", "tenant-1").await?;
    assert_eq!(status, 201);
    assert!(replayed);
    assert_eq!(
        again.context("no body")?["id"],
        first.context("no body")?["id"]
    );
    // Readiness follows without a restart (the health cache may hold the last failure briefly).
    let deadline = tokio::time::Instant::now() + FAILOVER_LIMIT;
    loop {
        let (status, body) = gateway.get("/health/ready").await?;
        if status == 200 {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "readiness is still {status} after the failover: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gateway.stop().await
}
