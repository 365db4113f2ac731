//! The three example services together, in-process, against real PostgreSQL, Redis, RabbitMQ
//! and ClickHouse: an order posted to the gateway is processed by the worker, reaches ClickHouse
//! through the ingest, and shows in `/v1/stats` — once, even when the client retries.

use std::time::Duration;

use anyhow::{Result, bail};
use groundwork_config::Loader;
use groundwork_service::{ServeOptions, Shutdown};
use groundwork_testkit::{TestAmqp, TestClickHouse, TestDatabase, TestRedis, http_request};
use serde_json::{Value, json};

fn serve(
    router: axum::Router,
    health: groundwork_health::Health,
    listener: tokio::net::TcpListener,
    shutdown: Shutdown,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    tokio::spawn(async move {
        let options = ServeOptions {
            drain_delay: Duration::ZERO,
            ..ServeOptions::default()
        };
        groundwork_service::serve(listener, router, &health, shutdown, options).await
    })
}

fn worker_settings(
    db: &TestDatabase,
    amqp: &TestAmqp,
    orders: &str,
    analytics: &str,
) -> Result<groundwork_example_order_worker::Settings> {
    Ok(Loader::new()
        .no_dotenv()
        .vars([
            ("DATABASE_URL", db.url()),
            ("RABBITMQ_URL", amqp.url()),
            ("ORDERS_EXCHANGE", orders),
            ("QUEUE", amqp.name("order-created").as_str()),
            ("DEAD_LETTER_EXCHANGE", amqp.name("worker-dlx").as_str()),
            ("DEAD_LETTER_QUEUE", amqp.name("order-created.dlq").as_str()),
            ("ANALYTICS_EXCHANGE", analytics),
        ])
        .load()?)
}

fn ingest_settings(
    clickhouse: &TestClickHouse,
    amqp: &TestAmqp,
    analytics: &str,
) -> Result<groundwork_example_analytics_ingest::Settings> {
    Ok(Loader::new()
        .no_dotenv()
        .vars([
            ("CLICKHOUSE_URL", clickhouse.url()),
            ("CLICKHOUSE_DATABASE", clickhouse.database()),
            ("RABBITMQ_URL", amqp.url()),
            ("ANALYTICS_EXCHANGE", analytics),
            ("QUEUE", amqp.name("order-processed").as_str()),
            ("DEAD_LETTER_EXCHANGE", amqp.name("ingest-dlx").as_str()),
            (
                "DEAD_LETTER_QUEUE",
                amqp.name("order-processed.dlq").as_str(),
            ),
            ("BATCH_MAX_WAIT_MS", "100"),
        ])
        .load()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_flows_from_the_gateway_through_the_worker_into_clickhouse_stats() -> Result<()> {
    let db = TestDatabase::create().await?;
    let redis = TestRedis::create().await?;
    let amqp = TestAmqp::create().await?;
    let clickhouse = TestClickHouse::create().await?;
    let orders = amqp.name("orders");
    let analytics = amqp.name("analytics");
    let shutdown = Shutdown::new();

    // The worker first: it declares the queue the gateway's events go to.
    groundwork_example_api_gateway::migrate(db.pool()).await?;
    let worker = worker_settings(&db, &amqp, &orders, &analytics)?;
    let worker = groundwork_example_order_worker::start(worker, shutdown.clone()).await?;

    let ingest = ingest_settings(&clickhouse, &amqp, &analytics)?;
    let ingest = groundwork_example_analytics_ingest::start(ingest, shutdown.clone()).await?;

    let gateway: groundwork_example_api_gateway::Settings = Loader::new()
        .no_dotenv()
        .vars([
            ("DATABASE_URL", db.url()),
            ("REDIS_URL", redis.url()),
            ("REDIS_KEY_PREFIX", redis.prefix()),
            ("RABBITMQ_URL", amqp.url()),
            ("ORDERS_EXCHANGE", orders.as_str()),
            ("CONFIG_ENV", "test"),
        ])
        .load()?;
    let gateway = groundwork_example_api_gateway::start(gateway).await?;

    let gateway_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let gateway_address = gateway_listener.local_addr()?;
    let ingest_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let ingest_address = ingest_listener.local_addr()?;
    let servers = [
        serve(
            gateway.router.clone(),
            gateway.health.clone(),
            gateway_listener,
            shutdown.clone(),
        ),
        serve(
            ingest.router.clone(),
            ingest.health.clone(),
            ingest_listener,
            shutdown.clone(),
        ),
    ];

    let post = async |key: &str, body: &str| {
        http_request(
            gateway_address,
            "POST /v1/orders",
            Some(body),
            &[("Idempotency-Key", key)],
        )
        .await
    };
    let (status, first) = post("a-1", r#"{"tenant":"tenant-a","amount":10}"#).await?;
    assert_eq!(status, 201, "{first}");
    // The client retries after a timeout: same key, same answer, no second order.
    let (status, retried) = post("a-1", r#"{"tenant":"tenant-a","amount":10}"#).await?;
    assert_eq!((status, &retried), (201, &first));
    let (status, body) = post("b-1", r#"{"tenant":"tenant-b","amount":20.5}"#).await?;
    assert_eq!(status, 201, "{body}");

    let mut written = ingest.stats();
    let waited =
        tokio::time::timeout(Duration::from_secs(20), written.wait_for(|s| s.rows >= 2)).await;
    if waited.is_err() {
        bail!(
            "the orders did not reach ClickHouse; worker {:?}, ingest {:?}",
            *worker.stats().borrow(),
            *ingest.stats().borrow()
        );
    }

    let (status, body) = http_request(ingest_address, "GET /v1/stats", None, &[]).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body)?,
        json!({"tenants":[
            {"tenant":"tenant-a","orders":1,"amount":10.0},
            {"tenant":"tenant-b","orders":1,"amount":20.5}
        ]})
    );
    let (processed,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM orders WHERE status = 'processed'")
            .fetch_one(db.pool())
            .await?;
    assert_eq!(processed, 2);

    shutdown.trigger();
    for server in servers {
        server.await??;
    }
    gateway.shutdown().await;
    worker.shutdown().await?;
    ingest.shutdown().await?;
    Ok(())
}
