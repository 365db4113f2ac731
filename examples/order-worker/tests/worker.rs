//! The order-worker against real PostgreSQL and RabbitMQ, each test with its own database and
//! queue names.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use groundwork_config::Loader;
use groundwork_example_order_worker::{OrderProcessed, Settings, Worker, WorkerStats};
use groundwork_service::Shutdown;
use groundwork_testkit::{TestAmqp, TestDatabase};
use lapin::options::BasicGetOptions;
use lapin::types::FieldTable;

struct Fixture {
    db: TestDatabase,
    amqp: TestAmqp,
    orders_exchange: String,
    analytics_queue: String,
    dead_letter_queue: String,
    vars: Vec<(String, String)>,
}

impl Fixture {
    async fn new(delivery_limit: u32) -> Result<Self> {
        let db = TestDatabase::create().await?;
        groundwork_example_api_gateway::migrate(db.pool()).await?;
        let amqp = TestAmqp::create().await?;
        let orders_exchange = amqp.name("orders");
        let analytics_exchange = amqp.name("analytics");
        let dead_letter_queue = amqp.name("order-created.dlq");
        let analytics_queue = amqp.name("analytics-probe");
        let vars = vec![
            ("DATABASE_URL".to_owned(), db.url().to_owned()),
            ("RABBITMQ_URL".to_owned(), amqp.url().to_owned()),
            ("ORDERS_EXCHANGE".to_owned(), orders_exchange.clone()),
            ("QUEUE".to_owned(), amqp.name("order-created")),
            ("DEAD_LETTER_EXCHANGE".to_owned(), amqp.name("dlx")),
            ("DEAD_LETTER_QUEUE".to_owned(), dead_letter_queue.clone()),
            ("ANALYTICS_EXCHANGE".to_owned(), analytics_exchange.clone()),
            ("DELIVERY_LIMIT".to_owned(), delivery_limit.to_string()),
            ("RETRY_BACKOFF_MS".to_owned(), "10".to_owned()),
            ("PREFETCH".to_owned(), "4".to_owned()),
        ];
        let fixture = Self {
            db,
            amqp,
            orders_exchange,
            analytics_queue,
            dead_letter_queue,
            vars,
        };
        // Where the test reads the analytics events the worker sends on.
        let channel = fixture.amqp.connection().create_channel().await?;
        groundwork_service::amqp::declare_exchange(
            &channel,
            &analytics_exchange,
            lapin::ExchangeKind::Topic,
        )
        .await?;
        fixture
            .amqp
            .bind_queue(
                &channel,
                &fixture.analytics_queue,
                &analytics_exchange,
                "order.processed",
            )
            .await?;
        Ok(fixture)
    }

    async fn start_worker(&self) -> Result<(Worker, Shutdown)> {
        let settings: Settings = Loader::new().no_dotenv().vars(self.vars.clone()).load()?;
        let shutdown = Shutdown::new();
        let worker = groundwork_example_order_worker::start(settings, shutdown.clone()).await?;
        Ok((worker, shutdown))
    }

    async fn insert_order(&self, tenant: &str, amount: f64) -> Result<i64> {
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO orders (tenant, amount) VALUES ($1, $2::float8) RETURNING id",
        )
        .bind(tenant)
        .bind(amount)
        .fetch_one(self.db.pool())
        .await?;
        Ok(id)
    }

    async fn publish(&self, body: &[u8]) -> Result<()> {
        Ok(self
            .amqp
            .publish(&self.orders_exchange, "order.created", body)
            .await?)
    }

    async fn publish_order(&self, id: i64, tenant: &str, amount: f64) -> Result<()> {
        let body = serde_json::json!({"order_id": id, "tenant": tenant, "amount": amount});
        self.publish(&serde_json::to_vec(&body)?).await
    }

    async fn drain(&self, queue: &str) -> Result<Vec<Vec<u8>>> {
        let channel = self.amqp.connection().create_channel().await?;
        let mut messages = Vec::new();
        while let Some(message) = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await?
        {
            messages.push(message.delivery.data);
        }
        Ok(messages)
    }

    /// The next message of `queue`, waiting for it: the broker dead-letters asynchronously after
    /// the worker's final `nack`.
    async fn next_message(&self, queue: &str) -> Result<Vec<u8>> {
        use futures_lite::StreamExt as _;
        let channel = self.amqp.connection().create_channel().await?;
        let mut consumer = channel
            .basic_consume(
                queue.into(),
                "".into(),
                lapin::options::BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let next = tokio::time::timeout(Duration::from_secs(15), consumer.next())
            .await
            .with_context(|| format!("timed out waiting for a message on {queue}"))?;
        let delivery = next.context("consumer ended")??;
        channel.close(200, "read".into()).await?;
        Ok(delivery.data)
    }

    async fn status(&self, id: i64) -> Result<String> {
        let (status,): (String,) = sqlx::query_as("SELECT status FROM orders WHERE id = $1")
            .bind(id)
            .fetch_one(self.db.pool())
            .await?;
        Ok(status)
    }
}

/// Waits, without sleeping, until the worker's counters satisfy `check`.
async fn until(
    worker: &Worker,
    what: &str,
    check: impl Fn(&WorkerStats) -> bool,
) -> Result<WorkerStats> {
    let mut stats = worker.stats();
    let waited = tokio::time::timeout(Duration::from_secs(15), stats.wait_for(|s| check(s))).await;
    match waited {
        Ok(Ok(stats)) => Ok(*stats),
        Ok(Err(_)) => bail!("the worker stopped before {what}"),
        Err(_) => bail!(
            "timed out waiting until {what}; counters: {:?}",
            *worker.stats().borrow()
        ),
    }
}

async fn stop(worker: Worker, shutdown: Shutdown) -> Result<()> {
    shutdown.trigger();
    worker.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_processed_once_and_its_event_sent_on() -> Result<()> {
    let fixture = Fixture::new(5).await?;
    let (worker, shutdown) = fixture.start_worker().await?;
    let id = fixture.insert_order("tenant-1", 42.5).await?;
    fixture.publish_order(id, "tenant-1", 42.5).await?;
    until(&worker, "the order is processed", |s| s.processed == 1).await?;
    assert_eq!(fixture.status(id).await?, "processed");

    // The same message again (a redelivery, a duplicate publish): acked, nothing sent.
    fixture.publish_order(id, "tenant-1", 42.5).await?;
    let stats = until(&worker, "the duplicate is acked", |s| s.duplicates == 1).await?;
    assert_eq!(stats.processed, 1);

    let events = fixture.drain(&fixture.analytics_queue).await?;
    assert_eq!(events.len(), 1, "one analytics event per order");
    let event: OrderProcessed = serde_json::from_slice(&events[0])?;
    assert_eq!((event.order_id, event.tenant.as_str()), (id, "tenant-1"));
    assert!((event.amount - 42.5).abs() < 1e-9);
    assert!(event.processed_at > 1_600_000_000);
    stop(worker, shutdown).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_arrives_before_its_order_commits_is_processed_on_retry() -> Result<()> {
    let fixture = Fixture::new(5).await?;
    let (worker, shutdown) = fixture.start_worker().await?;
    // As the gateway does: insert, publish, and only then commit.
    let mut tx = fixture.db.pool().begin().await?;
    let (id,): (i64,) =
        sqlx::query_as("INSERT INTO orders (tenant, amount) VALUES ('tenant-3', 5) RETURNING id")
            .fetch_one(&mut *tx)
            .await?;
    fixture.publish_order(id, "tenant-3", 5.0).await?;
    until(&worker, "the worker has missed the order once", |s| {
        s.retried >= 1
    })
    .await?;
    tx.commit().await?;
    let stats = until(&worker, "the order is processed", |s| s.processed == 1).await?;
    assert_eq!(
        stats.duplicates, 0,
        "an order seen uncommitted must not count as done"
    );
    assert_eq!(fixture.status(id).await?, "processed");
    assert_eq!(fixture.drain(&fixture.analytics_queue).await?.len(), 1);
    stop(worker, shutdown).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_does_not_decode_goes_to_the_dead_letter_queue_at_once() -> Result<()> {
    let fixture = Fixture::new(5).await?;
    let (worker, shutdown) = fixture.start_worker().await?;
    fixture.publish(b"not an order").await?;
    let stats = until(&worker, "the message is dead-lettered", |s| {
        s.dead_lettered == 1
    })
    .await?;
    assert_eq!(stats.retried, 0);
    stop(worker, shutdown).await?;
    let dead = fixture.next_message(&fixture.dead_letter_queue).await?;
    assert_eq!(dead, b"not an order".to_vec());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_message_is_retried_up_to_the_limit_then_dead_lettered() -> Result<()> {
    let fixture = Fixture::new(3).await?;
    let (worker, shutdown) = fixture.start_worker().await?;
    // An order that never exists: every attempt fails.
    fixture.publish_order(987_654_321, "tenant-1", 1.0).await?;
    let stats = until(&worker, "the message is dead-lettered", |s| {
        s.dead_lettered == 1
    })
    .await?;
    assert_eq!(stats.retried, 2, "delivered three times in all");
    stop(worker, shutdown).await?;
    let dead: serde_json::Value =
        serde_json::from_slice(&fixture.next_message(&fixture.dead_letter_queue).await?)?;
    assert_eq!(dead["order_id"], 987_654_321);
    assert!(fixture.drain(&fixture.analytics_queue).await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_wait_while_the_worker_is_down_and_each_is_processed_once_after_restart()
-> Result<()> {
    let fixture = Fixture::new(5).await?;
    // The first start declares the durable queue; then the worker goes away.
    let (worker, shutdown) = fixture.start_worker().await?;
    stop(worker, shutdown).await?;

    let mut ids = Vec::new();
    for amount in [10.0, 20.0, 30.0] {
        let id = fixture.insert_order("tenant-2", amount).await?;
        fixture.publish_order(id, "tenant-2", amount).await?;
        ids.push(id);
    }
    let (worker, shutdown) = fixture.start_worker().await?;
    until(&worker, "the queued orders are processed", |s| {
        s.processed == 3
    })
    .await?;
    stop(worker, shutdown).await?;
    for id in ids {
        assert_eq!(fixture.status(id).await?, "processed");
    }
    assert_eq!(fixture.drain(&fixture.analytics_queue).await?.len(), 3);
    Ok(())
}
