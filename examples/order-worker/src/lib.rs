//! The order-worker example service: turns `order.created` into processed orders and
//! `order.processed` analytics events.
//!
//! - **Queue.** A durable quorum queue bound to the orders exchange for `order.created`, read
//!   with a prefetch limit; deliveries are worked on concurrently up to that limit.
//! - **Ack after the work.** A message is acked only once the order is marked processed and the
//!   analytics event is confirmed by the broker; a crash before that redelivers it.
//! - **Retries, then the dead-letter queue.** A failure (database down, order not found)
//!   is `nack`ed with requeue after a short back-off; after `DELIVERY_LIMIT` deliveries the broker
//!   moves the message to the dead-letter queue. A message that does not decode goes there at once.
//! - **Exactly once per order.** The order's status only moves from `created` to `processed`, in
//!   the same transaction that publishes the event; a redelivered message for a processed order
//!   is acked and sends nothing.
//!
//! The worker serves only the health endpoints, on `PORT`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures_lite::StreamExt as _;
use groundwork_config::{ExposeSecret as _, SecretUrl};
use groundwork_connect::{AmqpLink, AmqpLinkOptions};
use groundwork_health::{Health, PostgresCheck, RabbitMqCheck};
use groundwork_service::amqp::{WorkQueue, declare_exchange, previous_deliveries, run_sessions};
use groundwork_service::{EdgeMetrics, EdgeSettings, ServeOptions, Shutdown};
use groundwork_telemetry::TelemetrySettings;
use groundwork_telemetry::http::{HttpMetrics, TelemetryLayer};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicNackOptions, BasicPublishOptions, BasicRejectOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

/// Routing key consumed.
pub const ORDER_CREATED: &str = "order.created";
/// Routing key of the analytics event sent on for every processed order.
pub const ORDER_PROCESSED: &str = "order.processed";

/// Configuration of the order-worker.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct Settings {
    /// Logs, traces and their export: `SERVICE_NAME` (default order-worker), `LOG_LEVEL`,
    /// `LOG_FORMAT`, `OTEL_EXPORTER_OTLP_ENDPOINT`, ...
    #[serde(default)]
    pub telemetry: TelemetrySettings,
    /// Address the health endpoints bind to.
    #[serde(default = "default_host")]
    pub host: String,
    /// Port of the health endpoints.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Limits every HTTP client is held to: `HTTP_HEADER_READ_TIMEOUT_MS` (10000),
    /// `HTTP_IDLE_TIMEOUT_MS` (5000), `HTTP_REQUEST_TIMEOUT_MS` (30000),
    /// `HTTP_MAX_CONCURRENT_REQUESTS` (256), `HTTP_RETRY_AFTER_SECS` (1), `HTTP_MAX_BODY_BYTES`
    /// (1048576).
    #[serde(default)]
    pub http: groundwork_service::EdgeSettings,
    /// PostgreSQL connection string: the gateway's database, where orders live.
    #[schemars(example = "postgres://app:app@localhost:5432/app")]
    pub database_url: SecretUrl,
    /// The `env` column of `platform_config` whose `log.level` sets this service's log level at
    /// run time (development, test, staging, production).
    #[serde(default = "default_config_env")]
    pub config_env: String,
    /// RabbitMQ connection string.
    #[schemars(example = "amqp://guest:guest@localhost:5672/%2f")]
    pub rabbitmq_url: SecretUrl,
    /// TLS for an `amqps://` URL: `RABBITMQ_TLS_CA_CERT`, `RABBITMQ_TLS_CLIENT_CERT`,
    /// `RABBITMQ_TLS_CLIENT_KEY` (PEM, each also as `*_FILE`); the system's roots when unset.
    #[serde(default)]
    pub rabbitmq_tls: groundwork_connect::TlsSettings,
    /// Topic exchange `order.created` arrives on.
    #[serde(default = "default_orders_exchange")]
    pub orders_exchange: String,
    /// The worker's quorum queue.
    #[serde(default = "default_queue")]
    pub queue: String,
    /// Exchange that receives messages given up on.
    #[serde(default = "default_dead_letter_exchange")]
    pub dead_letter_exchange: String,
    /// Queue where messages given up on wait for a human.
    #[serde(default = "default_dead_letter_queue")]
    pub dead_letter_queue: String,
    /// Deliveries of one message before it is dead-lettered.
    #[serde(default = "default_delivery_limit")]
    #[schemars(range(min = 1, max = 100))]
    pub delivery_limit: u32,
    /// Messages handed to the worker before it acks any: its concurrency.
    #[serde(default = "default_prefetch")]
    #[schemars(range(min = 1, max = 1000))]
    pub prefetch: u16,
    /// Back-off before a failed message is returned to the queue, in milliseconds, multiplied by
    /// the number of earlier deliveries.
    #[serde(default = "default_retry_backoff_ms")]
    pub retry_backoff_ms: u64,
    /// Topic exchange `order.processed` is published to.
    #[serde(default = "default_analytics_exchange")]
    pub analytics_exchange: String,
}

/// The name this service uses when no name is configured.
const SERVICE_NAME: &str = "order-worker";

impl groundwork_service::ServiceSettings for Settings {
    fn telemetry(&self) -> TelemetrySettings {
        Settings::telemetry(self)
    }

    fn listen_address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl Settings {
    /// The name in logs, traces and health responses: `OTEL_SERVICE_NAME`, else
    /// `SERVICE_NAME`, else `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, else `order-worker`.
    pub fn service_name(&self) -> std::borrow::Cow<'_, str> {
        self.telemetry.service_or(SERVICE_NAME)
    }

    /// The telemetry settings with the service name filled in.
    pub fn telemetry(&self) -> TelemetrySettings {
        self.telemetry.with_service_default(SERVICE_NAME)
    }
}

fn default_config_env() -> String {
    "development".to_owned()
}

fn default_host() -> String {
    "127.0.0.1".to_owned()
}
fn default_port() -> u16 {
    8081
}
fn default_orders_exchange() -> String {
    "orders".to_owned()
}
fn default_queue() -> String {
    "order-worker.order-created".to_owned()
}
fn default_dead_letter_exchange() -> String {
    "order-worker.dlx".to_owned()
}
fn default_dead_letter_queue() -> String {
    "order-worker.order-created.dlq".to_owned()
}
fn default_delivery_limit() -> u32 {
    5
}
fn default_prefetch() -> u16 {
    16
}
fn default_retry_backoff_ms() -> u64 {
    200
}
fn default_analytics_exchange() -> String {
    "analytics".to_owned()
}

/// The `order.created` message (JSON), as the api-gateway publishes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderCreated {
    /// The order's id in the `orders` table.
    pub order_id: i64,
    /// The tenant that placed it.
    pub tenant: String,
    /// Its amount.
    pub amount: f64,
}

/// The `order.processed` analytics event (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderProcessed {
    /// The order's id.
    pub order_id: i64,
    /// The tenant that placed it.
    pub tenant: String,
    /// Its amount.
    pub amount: f64,
    /// When it was processed, in seconds since the Unix epoch.
    pub processed_at: i64,
}

/// What the worker has done since it started; follow it with [`Worker::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Orders marked processed (and their events sent).
    pub processed: u64,
    /// Messages for orders already processed: acked, nothing sent.
    pub duplicates: u64,
    /// Failures returned to the queue for another try.
    pub retried: u64,
    /// Messages given up on: undecodable, or failed on their last allowed delivery.
    pub dead_lettered: u64,
}

struct Context {
    queue: String,
    db: PgPool,
    analytics_exchange: String,
    delivery_limit: u32,
    retry_backoff: Duration,
    stats: watch::Sender<WorkerStats>,
}

/// A started worker: consuming until the [`Shutdown`] it was given fires.
pub struct Worker {
    /// The health endpoints and `/metrics`.
    pub router: axum::Router,
    /// The health state.
    pub health: Health,
    /// The metrics behind `/metrics`: process, the PostgreSQL pool, the RabbitMQ connection, and
    /// the answers of the HTTP edge.
    pub metrics: HttpMetrics,
    telemetry: TelemetryLayer,
    /// The edge limits from the settings (`HTTP_*`), for [`groundwork_service::run`].
    edge: EdgeSettings,
    stats: watch::Receiver<WorkerStats>,
    consumer: JoinHandle<anyhow::Result<()>>,
    amqp: AmqpLink,
    db: PgPool,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").finish_non_exhaustive()
    }
}

/// Connects, declares the queues, and starts consuming. The consumer stops taking messages when
/// `shutdown` fires and finishes the ones it holds. If the broker connection is lost, the worker
/// connects again (with back-off), declares and consumes again: the messages it held are
/// redelivered by the broker, and readiness fails until it is back.
pub async fn start(settings: Settings, shutdown: Shutdown) -> anyhow::Result<Worker> {
    // `ACCESS_LOG`, `HTTP_SERVER_DURATION_BUCKETS`, ...: checked before anything is connected.
    let telemetry = TelemetryLayer::from_settings(&settings.telemetry)?;
    let metrics = HttpMetrics::from_settings(&settings.telemetry)?.with_process_metrics();
    let db = PgPoolOptions::new()
        .max_connections(u32::from(settings.prefetch).clamp(2, 32))
        .acquire_timeout(Duration::from_secs(5))
        .connect(settings.database_url.expose_secret())
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {}", settings.database_url))?;
    let amqp = AmqpLink::connect(
        settings.rabbitmq_url.expose_secret(),
        &settings.rabbitmq_tls,
        AmqpLinkOptions::default(),
    )
    .await?;

    let topology = Topology {
        queue: WorkQueue {
            exchange: settings.orders_exchange.clone(),
            routing_key: ORDER_CREATED.to_owned(),
            queue: settings.queue.clone(),
            dead_letter_exchange: settings.dead_letter_exchange.clone(),
            dead_letter_queue: settings.dead_letter_queue.clone(),
            delivery_limit: settings.delivery_limit,
        },
        analytics_exchange: settings.analytics_exchange.clone(),
        prefetch: settings.prefetch,
        consumer_tag: format!("{}-{}", settings.service_name(), std::process::id()),
    };
    // The first session is opened here, so a queue declared with other arguments or a missing
    // permission fails start-up instead of being retried for ever.
    let session = Session::open(&amqp.current(), &topology).await?;

    let health = Health::builder()
        .service_id(settings.service_name().into_owned())
        .version(env!("CARGO_PKG_VERSION"))
        .check(PostgresCheck::new(db.clone()))
        .check(RabbitMqCheck::following(amqp.subscribe()))
        .build()
        .context("building the health checks")?;

    metrics.on_render({
        let (db, amqp) = (db.clone(), amqp.subscribe());
        move || {
            groundwork_telemetry::pools::record_pg_pool("postgres", &db);
            groundwork_telemetry::pools::record_amqp_connection("rabbitmq", &amqp.borrow());
        }
    });
    let (stats, stats_receiver) = watch::channel(WorkerStats::default());
    let context = Arc::new(Context {
        queue: settings.queue.clone(),
        db: db.clone(),
        analytics_exchange: settings.analytics_exchange.clone(),
        delivery_limit: settings.delivery_limit,
        retry_backoff: Duration::from_millis(settings.retry_backoff_ms),
        stats,
    });
    let consumer = tokio::spawn(supervise(
        context,
        amqp.subscribe(),
        topology,
        session,
        shutdown,
    ));
    tracing::info!(queue = %settings.queue, prefetch = settings.prefetch, "consuming");
    Ok(Worker {
        router: health.router().route("/metrics", metrics.handler()),
        health,
        telemetry: telemetry.with_metrics(metrics.clone()),
        metrics,
        edge: settings.http.clone(),
        stats: stats_receiver,
        consumer,
        amqp,
        db,
    })
}

/// What a session declares and consumes.
struct Topology {
    queue: WorkQueue,
    analytics_exchange: String,
    prefetch: u16,
    consumer_tag: String,
}

/// The channels of one broker connection: the consumer's and the confirm-mode publisher's.
struct Session {
    channel: Channel,
    consumer: lapin::Consumer,
    publisher: Channel,
}

impl Session {
    /// Declares the queues and exchanges on `connection` (idempotent) and starts consuming.
    async fn open(connection: &Connection, topology: &Topology) -> anyhow::Result<Self> {
        let (channel, consumer) = topology
            .queue
            .open_consumer(connection, topology.prefetch, &topology.consumer_tag)
            .await
            .with_context(|| format!("cannot consume from {}", topology.queue.queue))?;
        declare_exchange(&channel, &topology.analytics_exchange, ExchangeKind::Topic)
            .await
            .with_context(|| format!("cannot declare exchange {}", topology.analytics_exchange))?;
        let publisher = connection
            .create_channel()
            .await
            .context("cannot open a RabbitMQ channel")?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("cannot enable publisher confirms")?;
        Ok(Self {
            channel,
            consumer,
            publisher,
        })
    }
}

/// Consumes session after session until `shutdown` fires: when a session ends because its
/// channel or connection was lost, waits for the link's connection to be usable and opens a new
/// one on it.
async fn supervise(
    context: Arc<Context>,
    link: watch::Receiver<Arc<Connection>>,
    topology: Topology,
    first: Session,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    run_sessions(
        &link,
        &shutdown,
        &context.queue,
        first,
        |session| {
            consume(
                Arc::clone(&context),
                session,
                &topology.consumer_tag,
                &shutdown,
            )
        },
        |connection| {
            let topology = &topology;
            async move { Session::open(&connection, topology).await }
        },
    )
    .await;
    Ok(())
}

impl Worker {
    /// How `groundwork_service::serve` serves the router: the edge limits `edge`, shed and
    /// timed-out requests counted on `/metrics`, and the edge's own answers (503, 413) counted and
    /// access-logged.
    pub fn serve_options(&self, edge: EdgeSettings) -> ServeOptions {
        ServeOptions {
            edge,
            metrics: EdgeMetrics::from(&self.metrics),
            telemetry: Some(self.telemetry.clone()),
            ..ServeOptions::default()
        }
    }

    /// Counters of what the worker has done; `changed()` wakes on every handled message.
    pub fn stats(&self) -> watch::Receiver<WorkerStats> {
        self.stats.clone()
    }

    /// Waits for the consumer to finish the messages it holds (after the shutdown signal), then
    /// closes the connections. An error says the consumer stopped because the broker went away.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let consumed = self.consumer.await.context("the consumer task panicked");
        if let Err(error) = self.amqp.close("order-worker shutting down").await {
            tracing::debug!(%error, "closing the RabbitMQ connection failed");
        }
        self.db.close().await;
        consumed?
    }
}

/// Consumes one session until `shutdown` fires (`Ok`) or the channel or connection is lost
/// (`Err`), then finishes the messages it holds.
async fn consume(
    context: Arc<Context>,
    session: Session,
    consumer_tag: &str,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let Session {
        channel,
        mut consumer,
        publisher,
    } = session;
    let mut in_flight = tokio::task::JoinSet::new();
    let stopped = shutdown.triggered();
    tokio::pin!(stopped);
    let outcome = loop {
        tokio::select! {
            () = &mut stopped => break Ok(()),
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    // Each message continues the trace of the request that published it.
                    let span = groundwork_telemetry::amqp::consumer_span(
                        &context.queue,
                        delivery.routing_key.as_str(),
                        delivery.properties.headers().as_ref(),
                    );
                    let handled = handle(Arc::clone(&context), publisher.clone(), delivery);
                    in_flight.spawn(handled.instrument(span));
                }
                Some(Err(error)) => {
                    break Err(anyhow::Error::new(error).context("the RabbitMQ consumer failed"));
                }
                None => break Err(anyhow::anyhow!("the broker cancelled the consumer")),
            },
        }
    };
    if outcome.is_ok()
        && let Err(error) = channel
            .basic_cancel(consumer_tag.into(), BasicCancelOptions::default())
            .await
    {
        tracing::warn!(%error, "cancelling the consumer failed");
    }
    // Finish what we hold; anything delivered but not started is returned to the queue when
    // the channel closes.
    while in_flight.join_next().await.is_some() {}
    outcome
}

async fn handle(context: Arc<Context>, publisher: Channel, delivery: Delivery) {
    let event: OrderCreated = match serde_json::from_slice(&delivery.data) {
        Ok(event) => event,
        Err(error) => {
            tracing::warn!(%error, "order.created message does not decode; dead-lettering it");
            settle(&delivery, Settle::Reject).await;
            context.stats.send_modify(|stats| stats.dead_lettered += 1);
            return;
        }
    };
    match process_through_outages(&context, &publisher, &event).await {
        Ok(Outcome::Processed) => {
            settle(&delivery, Settle::Ack).await;
            context.stats.send_modify(|stats| stats.processed += 1);
        }
        Ok(Outcome::AlreadyProcessed) => {
            tracing::info!(
                order_id = event.order_id,
                "order already processed; acking the duplicate"
            );
            settle(&delivery, Settle::Ack).await;
            context.stats.send_modify(|stats| stats.duplicates += 1);
        }
        Err(error) => {
            let earlier = previous_deliveries(&delivery.properties);
            let last = earlier + 1 >= u64::from(context.delivery_limit);
            tracing::warn!(
                order_id = event.order_id,
                delivery = earlier + 1,
                limit = context.delivery_limit,
                error = format!("{error:#}"),
                "processing failed; {}",
                if last {
                    "dead-lettering it"
                } else {
                    "returning it to the queue"
                }
            );
            // Back off a little so a briefly missing dependency is not hammered; the broker
            // counts the delivery and dead-letters the message once the limit is reached.
            let factor = u32::try_from(earlier + 1).unwrap_or(u32::MAX).min(10);
            tokio::time::sleep(context.retry_backoff * factor).await;
            settle(&delivery, Settle::Requeue).await;
            context.stats.send_modify(|stats| {
                if last {
                    stats.dead_lettered += 1;
                } else {
                    stats.retried += 1;
                }
            });
        }
    }
}

enum Outcome {
    Processed,
    AlreadyProcessed,
}

/// How long one message is retried in place while PostgreSQL cannot be reached, before it is
/// returned to the queue like any other failure.
const OUTAGE_PATIENCE: Duration = Duration::from_secs(30);
/// Longest wait between two tries of one message during an outage.
const OUTAGE_MAX_BACKOFF: Duration = Duration::from_secs(2);

/// [`process`], tried again in place while the failure is PostgreSQL being unreachable
/// (restarting, failing over), for up to [`OUTAGE_PATIENCE`]. A message returned to the queue
/// counts towards its delivery limit, so an outage longer than a few back-offs would otherwise
/// send sound orders to the dead-letter queue; held here, it keeps its place and is processed
/// once the database is back.
async fn process_through_outages(
    context: &Context,
    publisher: &Channel,
    event: &OrderCreated,
) -> anyhow::Result<Outcome> {
    let started = tokio::time::Instant::now();
    let mut backoff = context.retry_backoff.max(Duration::from_millis(50));
    loop {
        match process(context, publisher, event).await {
            Err(error) if is_database_outage(&error) && started.elapsed() < OUTAGE_PATIENCE => {
                tracing::warn!(
                    order_id = event.order_id,
                    error = format!("{error:#}"),
                    retry_in = ?backoff,
                    "PostgreSQL unreachable; holding the message and trying again"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(OUTAGE_MAX_BACKOFF);
            }
            other => return other,
        }
    }
}

/// Whether `error` says PostgreSQL could not be reached or went away (connection refused or
/// reset, pool timeout, the server shutting down or starting up), rather than something about
/// this message.
fn is_database_outage(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let Some(error) = cause.downcast_ref::<sqlx::Error>() else {
            return false;
        };
        match error {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(database) => database.code().is_some_and(|code| {
                // 08: connection exception; 57P01-57P03: shutdown, crash, cannot connect now.
                code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03")
            }),
            _ => false,
        }
    })
}

/// Marks the order processed and publishes `order.processed` in one transaction: the status
/// changes only if the broker confirmed the event, and only from `created`, so each order is
/// processed once however often its message arrives. The row is locked first, so two deliveries
/// of one order in flight at once are serialised and the second sees `processed`.
async fn process(
    context: &Context,
    publisher: &Channel,
    event: &OrderCreated,
) -> anyhow::Result<Outcome> {
    let mut tx = context
        .db
        .begin()
        .await
        .context("beginning a transaction")?;
    let row: Option<(String, String, f64)> = sqlx::query_as(
        "SELECT status, tenant, amount::float8 FROM orders WHERE id = $1 FOR UPDATE",
    )
    .bind(event.order_id)
    .fetch_optional(&mut *tx)
    .await
    .context("locking the order")?;
    let Some((status, tenant, amount)) = row else {
        // The gateway publishes through its outbox after the order committed, so this means a
        // database behind the event (a replica lagging, a restore to an earlier point); a retry
        // may find it, and an order that is gone for good ends in the dead-letter queue.
        bail!("order {} does not exist (yet)", event.order_id);
    };
    if status != "created" {
        return Ok(Outcome::AlreadyProcessed);
    }
    let (processed_at,): (i64,) = sqlx::query_as(
        "UPDATE orders SET status = 'processed', processed_at = NOW() WHERE id = $1
         RETURNING extract(epoch FROM processed_at)::bigint",
    )
    .bind(event.order_id)
    .fetch_one(&mut *tx)
    .await
    .context("marking the order processed")?;
    let processed = OrderProcessed {
        order_id: event.order_id,
        tenant,
        amount,
        processed_at,
    };
    publish_order_processed(context, publisher, &processed).await?;
    tx.commit()
        .await
        .context("committing the processed order")?;
    tracing::info!(order_id = event.order_id, "order processed");
    Ok(Outcome::Processed)
}

/// Publishes `order.processed`, carrying the trace context in its headers, and waits for the
/// broker's confirm.
async fn publish_order_processed(
    context: &Context,
    publisher: &Channel,
    event: &OrderProcessed,
) -> anyhow::Result<()> {
    let mut headers = FieldTable::default();
    groundwork_telemetry::amqp::inject_current(&mut headers);
    let properties = BasicProperties::default()
        .with_headers(headers)
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_message_id(event.order_id.to_string().into())
        .with_type(ORDER_PROCESSED.into());
    let confirm = publisher
        .basic_publish(
            context.analytics_exchange.as_str().into(),
            ORDER_PROCESSED.into(),
            BasicPublishOptions::default(),
            &serde_json::to_vec(event)?,
            properties,
        )
        .await
        .context("publishing order.processed")?
        .await
        .context("waiting for the broker to confirm order.processed")?;
    if !confirm.is_ack() {
        bail!("the broker refused order.processed (nack)");
    }
    Ok(())
}

enum Settle {
    Ack,
    Requeue,
    Reject,
}

async fn settle(delivery: &Delivery, how: Settle) {
    let result = match how {
        Settle::Ack => delivery.ack(BasicAckOptions::default()).await,
        Settle::Requeue => {
            delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await
        }
        Settle::Reject => delivery.reject(BasicRejectOptions { requeue: false }).await,
    };
    // A failed ack means the channel is gone; the broker redelivers the message elsewhere.
    if let Err(error) = result {
        tracing::warn!(%error, "settling a delivery failed; the broker will redeliver it");
    }
}

/// What `groundwork_service::run` serves and stops: the router with the edge limits from the
/// settings (`HTTP_*`) and no drain delay, then
/// [`Worker::shutdown`].
impl groundwork_service::Service for Worker {
    fn router(&self) -> axum::Router {
        self.router.clone()
    }

    fn health(&self) -> &Health {
        &self.health
    }

    fn serve_options(&self) -> ServeOptions {
        ServeOptions {
            drain_delay: Duration::ZERO,
            ..Worker::serve_options(self, self.edge.clone())
        }
    }

    async fn shutdown(self) -> Result<(), groundwork_service::BoxError> {
        Ok(Worker::shutdown(self).await?)
    }
}
