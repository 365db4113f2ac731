//! The analytics-ingest against real ClickHouse (Debian's 18.16 locally) and RabbitMQ, each test
//! with its own ClickHouse database and queue names.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use futures_lite::StreamExt as _;
use groundwork_config::Loader;
use groundwork_example_analytics_ingest::{Ingest, IngestStats, Settings};
use groundwork_service::{ServeOptions, Shutdown};
use groundwork_testkit::{TestAmqp, TestClickHouse, http_request};
use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use serde_json::{Value, json};

struct Fixture {
    _clickhouse: TestClickHouse,
    amqp: TestAmqp,
    exchange: String,
    dead_letter_queue: String,
    ingest: Ingest,
    shutdown: Shutdown,
    address: std::net::SocketAddr,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Fixture {
    async fn start(batch_size: u16) -> Result<Self> {
        let clickhouse = TestClickHouse::create().await?;
        let amqp = TestAmqp::create().await?;
        let exchange = amqp.name("analytics");
        let dead_letter_queue = amqp.name("order-processed.dlq");
        let settings: Settings = Loader::new()
            .no_dotenv()
            .vars([
                ("CLICKHOUSE_URL", clickhouse.url()),
                ("CLICKHOUSE_DATABASE", clickhouse.database()),
                ("RABBITMQ_URL", amqp.url()),
                ("ANALYTICS_EXCHANGE", exchange.as_str()),
                ("QUEUE", amqp.name("order-processed").as_str()),
                ("DEAD_LETTER_EXCHANGE", amqp.name("dlx").as_str()),
                ("DEAD_LETTER_QUEUE", dead_letter_queue.as_str()),
                ("BATCH_SIZE", batch_size.to_string().as_str()),
                ("BATCH_MAX_WAIT_MS", "200"),
                ("RETRY_BACKOFF_MS", "10"),
            ])
            .load()?;
        let shutdown = Shutdown::new();
        let ingest = groundwork_example_analytics_ingest::start(settings, shutdown.clone()).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (router, health, stop) = (
            ingest.router.clone(),
            ingest.health.clone(),
            shutdown.clone(),
        );
        let server = tokio::spawn(async move {
            let options = ServeOptions {
                drain_delay: Duration::ZERO,
                ..ServeOptions::default()
            };
            groundwork_service::serve(listener, router, &health, stop, options).await
        });
        Ok(Self {
            _clickhouse: clickhouse,
            amqp,
            exchange,
            dead_letter_queue,
            ingest,
            shutdown,
            address,
            server,
        })
    }

    async fn publish(&self, body: &[u8]) -> Result<()> {
        Ok(self
            .amqp
            .publish(&self.exchange, "order.processed", body)
            .await?)
    }

    async fn publish_event(&self, order_id: i64, tenant: &str, amount: f64) -> Result<()> {
        let event = json!({"order_id": order_id, "tenant": tenant, "amount": amount, "processed_at": 1_763_700_000});
        self.publish(&serde_json::to_vec(&event)?).await
    }

    /// Waits, without sleeping, until the ingest's counters satisfy `check`.
    async fn until(&self, what: &str, check: impl Fn(&IngestStats) -> bool) -> Result<IngestStats> {
        let mut stats = self.ingest.stats();
        match tokio::time::timeout(Duration::from_secs(15), stats.wait_for(|s| check(s))).await {
            Ok(Ok(stats)) => Ok(*stats),
            Ok(Err(_)) => bail!("the ingest stopped before {what}"),
            Err(_) => bail!(
                "timed out waiting until {what}; counters: {:?}",
                *self.ingest.stats().borrow()
            ),
        }
    }

    async fn get(&self, path: &str) -> Result<(u16, String)> {
        Ok(http_request(self.address, &format!("GET {path}"), None, &[]).await?)
    }

    async fn stop(self) -> Result<()> {
        self.shutdown.trigger();
        self.server.await??;
        self.ingest.shutdown().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_written_in_batches_and_each_order_is_counted_once() -> Result<()> {
    let fixture = Fixture::start(3).await?;
    let (status, body) = fixture.get("/health/ready").await?;
    assert_eq!(status, 200, "{body}");

    fixture.publish_event(1, "tenant-a", 10.0).await?;
    fixture.publish_event(2, "tenant-a", 5.5).await?;
    fixture.publish_event(3, "tenant-b", 7.0).await?;
    // A redelivered event: stored twice, counted once.
    fixture.publish_event(1, "tenant-a", 10.0).await?;
    // Three fill a batch; the fourth is written when its batch is old enough.
    let counters = fixture
        .until("four events are written", |s| s.rows == 4)
        .await?;
    assert!(
        counters.batches >= 2,
        "four events in batches of at most three: {counters:?}"
    );

    let (status, body) = fixture.get("/v1/stats").await?;
    assert_eq!(status, 200, "{body}");
    let served: Value = serde_json::from_str(&body)?;
    assert_eq!(
        served,
        json!({"tenants":[
            {"tenant":"tenant-a","orders":2,"amount":15.5},
            {"tenant":"tenant-b","orders":1,"amount":7.0}
        ]})
    );
    fixture.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_does_not_decode_is_dead_lettered_and_the_rest_are_written() -> Result<()> {
    let fixture = Fixture::start(2).await?;
    fixture.publish(b"{\"order_id\":\"x\"}").await?;
    fixture.publish_event(7, "tenant-c", 1.0).await?;
    fixture.publish_event(8, "tenant-c", 2.0).await?;
    let stats = fixture
        .until("the bad event is rejected and the good ones written", |s| {
            s.rejected == 1 && s.rows == 2
        })
        .await?;
    assert_eq!(stats.failed_batches, 0);

    let channel = fixture.amqp.connection().create_channel().await?;
    let mut consumer = channel
        .basic_consume(
            fixture.dead_letter_queue.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let dead = tokio::time::timeout(Duration::from_secs(15), consumer.next())
        .await
        .context("timed out waiting for the dead-lettered event")?
        .context("consumer ended")??;
    assert_eq!(dead.data, b"{\"order_id\":\"x\"}".to_vec());
    channel.close(200, "read".into()).await?;
    fixture.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_are_empty_before_any_event() -> Result<()> {
    let fixture = Fixture::start(10).await?;
    let (status, body) = fixture.get("/v1/stats").await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body)?,
        json!({"tenants": []})
    );
    fixture.stop().await
}
