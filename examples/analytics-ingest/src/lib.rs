//! The analytics-ingest example service: `order.processed` events into ClickHouse, per-tenant
//! stats out.
//!
//! - **Batches.** Events are buffered and written with one `RowBinary` `INSERT` when the batch is
//!   full (`BATCH_SIZE`) or its oldest event is `BATCH_MAX_WAIT_MS` old, and on shutdown.
//!   ClickHouse wants few large inserts, not many small ones.
//! - **Ack after the insert.** The batch's messages are acked only once ClickHouse has the rows;
//!   a failed insert returns them to the queue (after a back-off) and, past the delivery limit,
//!   to the dead-letter queue. An event that does not decode goes there at once.
//! - **Duplicates.** At-least-once delivery can store an event twice; the table is a
//!   `ReplacingMergeTree` keyed by order, and `GET /v1/stats` counts each order once.
//! - **Old and new servers.** Only types and syntax Debian's ClickHouse 18.16 knows (no
//!   `DateTime64`, `Bool` or server-side parameters), and the client's schema validation is off
//!   because 18.16 lacks `RowBinaryWithNamesAndTypes`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clickhouse::Row;
use futures_lite::StreamExt as _;
use groundwork_config::{ExposeSecret as _, SecretUrl};
use groundwork_connect::{AmqpLink, AmqpLinkOptions};
use groundwork_health::{ClickHouseCheck, Health, RabbitMqCheck};
use groundwork_service::amqp::{WorkQueue, run_sessions};
use groundwork_service::{EdgeMetrics, EdgeSettings, ServeOptions, Shutdown};
use groundwork_telemetry::TelemetrySettings;
use groundwork_telemetry::http::{HttpMetrics, TelemetryLayer};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicNackOptions, BasicRejectOptions};
use lapin::{Channel, Connection};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

/// Routing key consumed.
pub const ORDER_PROCESSED: &str = "order.processed";

/// The ClickHouse table events are written to.
pub const TABLE: &str = "order_events";

/// The table's DDL: types and syntax that ClickHouse 18.16 and current versions both accept.
pub const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS order_events (
    order_id     Int64,
    tenant       String,
    amount       Float64,
    processed_at DateTime
) ENGINE = ReplacingMergeTree() ORDER BY (tenant, order_id)";

/// Configuration of the analytics-ingest.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct Settings {
    /// Logs, traces and their export: `SERVICE_NAME` (default analytics-ingest), `LOG_LEVEL`,
    /// `LOG_FORMAT`, `OTEL_EXPORTER_OTLP_ENDPOINT`, ...
    #[serde(default)]
    pub telemetry: TelemetrySettings,
    /// Address the HTTP server binds to.
    #[serde(default = "default_host")]
    pub host: String,
    /// Port the HTTP server listens on.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Limits every HTTP client is held to: `HTTP_HEADER_READ_TIMEOUT_MS` (10000),
    /// `HTTP_IDLE_TIMEOUT_MS` (5000), `HTTP_REQUEST_TIMEOUT_MS` (30000),
    /// `HTTP_MAX_CONCURRENT_REQUESTS` (256), `HTTP_RETRY_AFTER_SECS` (1), `HTTP_MAX_BODY_BYTES`
    /// (1048576).
    #[serde(default)]
    pub http: groundwork_service::EdgeSettings,
    /// PostgreSQL with the platform's `platform_config`: only to follow `log.level` at run time;
    /// the level stays as started when unset.
    #[serde(default)]
    #[schemars(example = "postgres://app:app@localhost:5432/app")]
    pub database_url: Option<SecretUrl>,
    /// The `env` column of `platform_config` whose `log.level` is followed.
    #[serde(default = "default_config_env")]
    pub config_env: String,
    /// ClickHouse HTTP endpoint, `http://[user[:password]@]host:port`.
    #[schemars(example = "http://localhost:8123")]
    pub clickhouse_url: SecretUrl,
    /// TLS for an `https://` URL: `CLICKHOUSE_TLS_CA_CERT`, `CLICKHOUSE_TLS_CLIENT_CERT`,
    /// `CLICKHOUSE_TLS_CLIENT_KEY` (PEM, each also as `*_FILE`); the system's roots when unset.
    #[serde(default)]
    pub clickhouse_tls: groundwork_connect::TlsSettings,
    /// ClickHouse database holding the events table; must exist.
    #[serde(default = "default_clickhouse_database")]
    pub clickhouse_database: String,
    /// RabbitMQ connection string.
    #[schemars(example = "amqp://guest:guest@localhost:5672/%2f")]
    pub rabbitmq_url: SecretUrl,
    /// TLS for an `amqps://` URL: `RABBITMQ_TLS_CA_CERT`, `RABBITMQ_TLS_CLIENT_CERT`,
    /// `RABBITMQ_TLS_CLIENT_KEY` (PEM, each also as `*_FILE`); the system's roots when unset.
    #[serde(default)]
    pub rabbitmq_tls: groundwork_connect::TlsSettings,
    /// Topic exchange `order.processed` arrives on.
    #[serde(default = "default_analytics_exchange")]
    pub analytics_exchange: String,
    /// The ingest's quorum queue.
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
    /// Events per insert, at most; also the prefetch limit.
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 65535))]
    pub batch_size: u16,
    /// Longest an event waits for its batch to fill, in milliseconds.
    #[serde(default = "default_batch_max_wait_ms")]
    pub batch_max_wait_ms: u64,
    /// Back-off before a failed batch is returned to the queue, in milliseconds.
    #[serde(default = "default_retry_backoff_ms")]
    pub retry_backoff_ms: u64,
}

/// The name this service uses when no name is configured.
const SERVICE_NAME: &str = "analytics-ingest";

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
    /// `SERVICE_NAME`, else `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, else `analytics-ingest`.
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
    8082
}
fn default_clickhouse_database() -> String {
    "default".to_owned()
}
fn default_analytics_exchange() -> String {
    "analytics".to_owned()
}
fn default_queue() -> String {
    "analytics-ingest.order-processed".to_owned()
}
fn default_dead_letter_exchange() -> String {
    "analytics-ingest.dlx".to_owned()
}
fn default_dead_letter_queue() -> String {
    "analytics-ingest.order-processed.dlq".to_owned()
}
fn default_delivery_limit() -> u32 {
    5
}
fn default_batch_size() -> u16 {
    500
}
fn default_batch_max_wait_ms() -> u64 {
    1000
}
fn default_retry_backoff_ms() -> u64 {
    1000
}

/// The `order.processed` event (JSON), as the order-worker publishes it.
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

/// One row of `order_events`, written as `RowBinary` in column order.
#[derive(Debug, Clone, Row, Serialize, Deserialize)]
struct EventRow {
    order_id: i64,
    tenant: String,
    amount: f64,
    /// `DateTime`: seconds since the epoch as a `UInt32`.
    processed_at: u32,
}

/// Orders per tenant, as `GET /v1/stats` answers them.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct TenantStats {
    /// The tenant.
    pub tenant: String,
    /// Distinct orders processed.
    pub orders: u64,
    /// Their total amount.
    pub amount: f64,
}

/// What the ingest has done since it started; follow it with [`Ingest::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Events written to ClickHouse.
    pub rows: u64,
    /// Inserts that succeeded.
    pub batches: u64,
    /// Inserts that failed (their messages were returned to the queue).
    pub failed_batches: u64,
    /// Messages that did not decode and went to the dead-letter queue.
    pub rejected: u64,
}

/// A started ingest: consuming until the [`Shutdown`] it was given fires.
pub struct Ingest {
    /// `GET /v1/stats` and the health endpoints.
    pub router: axum::Router,
    /// The health state.
    pub health: Health,
    /// The metrics behind `/metrics`: HTTP, process and the RabbitMQ connection.
    pub metrics: HttpMetrics,
    telemetry: TelemetryLayer,
    /// The edge limits from the settings (`HTTP_*`), for [`groundwork_service::run`].
    edge: EdgeSettings,
    stats: watch::Receiver<IngestStats>,
    consumer: JoinHandle<anyhow::Result<()>>,
    amqp: AmqpLink,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").finish_non_exhaustive()
    }
}

/// A ClickHouse client for `url` and `database`, with user and password taken out of the URL
/// and schema validation off (ClickHouse 18.16 cannot describe its columns to the client).
pub fn clickhouse_client(
    url: &SecretUrl,
    tls: &groundwork_connect::TlsSettings,
    database: &str,
) -> anyhow::Result<clickhouse::Client> {
    Ok(
        groundwork_connect::clickhouse_client(url.expose_secret(), tls)?
            .with_database(database)
            .with_validation(false),
    )
}

/// `GET /v1/stats` behind the telemetry layer, plus health and `/metrics`, which stay outside it:
/// probes and scrapes are not traffic.
fn app_router(
    clickhouse: clickhouse::Client,
    telemetry: TelemetryLayer,
    health: &Health,
    metrics: &HttpMetrics,
) -> axum::Router {
    axum::Router::new()
        .route("/v1/stats", get(stats_handler))
        .with_state(clickhouse)
        // Inside the layer, so a path no route matches is traced, logged and counted too (the
        // health router's own fallback, merged below, would bypass it).
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"error":"no such path; the API is GET /v1/stats"}"#,
            )
        })
        .layer(telemetry)
        .merge(health.router())
        .route("/metrics", metrics.handler())
}

/// Connects, creates the table, declares the queues, and starts consuming.
pub async fn start(settings: Settings, shutdown: Shutdown) -> anyhow::Result<Ingest> {
    // `ACCESS_LOG`, `ACCESS_LOG_SKIP_PATHS`, ...: checked before anything is connected.
    let telemetry_layer = TelemetryLayer::from_settings(&settings.telemetry)?;
    let metrics = HttpMetrics::from_settings(&settings.telemetry)?.with_process_metrics();
    let clickhouse = clickhouse_client(
        &settings.clickhouse_url,
        &settings.clickhouse_tls,
        &settings.clickhouse_database,
    )?;
    clickhouse
        .query(CREATE_TABLE)
        .execute()
        .await
        .with_context(|| {
            format!(
                "cannot create table {TABLE} in ClickHouse database {} at {}",
                settings.clickhouse_database, settings.clickhouse_url
            )
        })?;

    // Made again whenever it is lost; the consumer then declares and consumes again on it.
    let amqp = AmqpLink::connect(
        settings.rabbitmq_url.expose_secret(),
        &settings.rabbitmq_tls,
        AmqpLinkOptions::default(),
    )
    .await?;
    let topology = Topology {
        queue: WorkQueue {
            exchange: settings.analytics_exchange.clone(),
            routing_key: ORDER_PROCESSED.to_owned(),
            queue: settings.queue.clone(),
            dead_letter_exchange: settings.dead_letter_exchange.clone(),
            dead_letter_queue: settings.dead_letter_queue.clone(),
            delivery_limit: settings.delivery_limit,
        },
        prefetch: settings.batch_size,
        consumer_tag: format!("{}-{}", settings.service_name(), std::process::id()),
    };
    // The first session is opened here, so a queue declared with other arguments or a missing
    // permission fails start-up instead of being retried for ever.
    let session = Session::open(&amqp.current(), &topology).await?;

    let health = Health::builder()
        .service_id(settings.service_name().into_owned())
        .version(env!("CARGO_PKG_VERSION"))
        .check(ClickHouseCheck::new(clickhouse.clone()))
        .check(RabbitMqCheck::following(amqp.subscribe()))
        .build()
        .context("building the health checks")?;

    metrics.on_render({
        let amqp = amqp.subscribe();
        move || groundwork_telemetry::pools::record_amqp_connection("rabbitmq", &amqp.borrow())
    });
    let (stats, stats_receiver) = watch::channel(IngestStats::default());
    let batcher = Batcher {
        queue: settings.queue.clone(),
        clickhouse: clickhouse.clone(),
        batch_size: usize::from(settings.batch_size),
        max_wait: Duration::from_millis(settings.batch_max_wait_ms),
        retry_backoff: Duration::from_millis(settings.retry_backoff_ms),
        stats,
    };
    let consumer = tokio::spawn(supervise(
        batcher,
        amqp.subscribe(),
        topology,
        session,
        shutdown,
    ));
    let telemetry = telemetry_layer.with_metrics(metrics.clone());
    let router = app_router(clickhouse, telemetry.clone(), &health, &metrics);
    tracing::info!(queue = %settings.queue, batch_size = settings.batch_size, "consuming");
    Ok(Ingest {
        router,
        health,
        metrics,
        telemetry,
        edge: settings.http.clone(),
        stats: stats_receiver,
        consumer,
        amqp,
    })
}

impl Ingest {
    /// How `groundwork_service::serve` serves the router: the edge limits `edge`, shed and
    /// timed-out requests counted on `/metrics`, and the edge's own answers (503, 413) traced,
    /// counted and access-logged by the router's telemetry layer.
    pub fn serve_options(&self, edge: EdgeSettings) -> ServeOptions {
        ServeOptions {
            edge,
            metrics: EdgeMetrics::from(&self.metrics),
            telemetry: Some(self.telemetry.clone()),
            ..ServeOptions::default()
        }
    }

    /// Counters of what the ingest has done; `changed()` wakes after every batch.
    pub fn stats(&self) -> watch::Receiver<IngestStats> {
        self.stats.clone()
    }

    /// Waits for the consumer to write what it holds (after the shutdown signal), then closes
    /// the connection. An error says the consumer stopped because the broker went away.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let consumed = self.consumer.await.context("the consumer task panicked");
        if let Err(error) = self.amqp.close("analytics-ingest shutting down").await {
            tracing::debug!(%error, "closing the RabbitMQ connection failed");
        }
        consumed?
    }
}

/// Orders and amount per tenant, each order counted once even if its event was stored twice.
pub async fn tenant_stats(
    clickhouse: &clickhouse::Client,
) -> clickhouse::error::Result<Vec<TenantStats>> {
    clickhouse
        .query(
            "SELECT tenant, count() AS orders, sum(amount) AS amount FROM (
                 SELECT tenant, order_id, any(amount) AS amount FROM order_events
                 GROUP BY tenant, order_id
             ) GROUP BY tenant ORDER BY tenant",
        )
        .fetch_all::<TenantStats>()
        .await
}

/// `GET /v1/stats`: `{"tenants":[{"tenant":..,"orders":..,"amount":..}, ...]}`.
async fn stats_handler(State(clickhouse): State<clickhouse::Client>) -> Response {
    #[derive(Serialize)]
    struct Body {
        tenants: Vec<TenantStats>,
    }
    let (status, body) = match tenant_stats(&clickhouse).await {
        Ok(tenants) => (StatusCode::OK, serde_json::to_vec(&Body { tenants })),
        Err(error) => {
            tracing::error!(%error, "reading stats from ClickHouse failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::to_vec(&serde_json::json!({
                    "error": "cannot read stats from ClickHouse right now; retry later"
                })),
            )
        }
    };
    match body {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// What a session declares and consumes.
struct Topology {
    queue: WorkQueue,
    prefetch: u16,
    consumer_tag: String,
}

/// The consuming channel of one broker connection.
struct Session {
    channel: Channel,
    consumer: lapin::Consumer,
}

impl Session {
    /// Declares the queues (idempotent) on `connection` and starts consuming.
    async fn open(connection: &Connection, topology: &Topology) -> anyhow::Result<Self> {
        let (channel, consumer) = topology
            .queue
            .open_consumer(connection, topology.prefetch, &topology.consumer_tag)
            .await
            .with_context(|| format!("cannot consume from {}", topology.queue.queue))?;
        Ok(Self { channel, consumer })
    }
}

/// Runs the batcher session after session until `shutdown` fires: when a session ends because
/// its channel or connection was lost, waits for the link's connection to be usable and opens a
/// new one on it.
async fn supervise(
    batcher: Batcher,
    link: watch::Receiver<Arc<Connection>>,
    topology: Topology,
    first: Session,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    run_sessions(
        &link,
        &shutdown,
        &batcher.queue,
        first,
        |session| batcher.run(session, &topology.consumer_tag, &shutdown),
        |connection| {
            let topology = &topology;
            async move { Session::open(&connection, topology).await }
        },
    )
    .await;
    Ok(())
}

struct Batcher {
    queue: String,
    clickhouse: clickhouse::Client,
    batch_size: usize,
    max_wait: Duration,
    retry_backoff: Duration,
    stats: watch::Sender<IngestStats>,
}

impl Batcher {
    /// Consumes one session until `shutdown` fires (`Ok`) or the channel or connection is lost
    /// (`Err`), then writes what it holds.
    async fn run(
        &self,
        session: Session,
        consumer_tag: &str,
        shutdown: &Shutdown,
    ) -> anyhow::Result<()> {
        let Session {
            channel,
            mut consumer,
        } = session;
        let mut batch: Vec<(Delivery, EventRow)> = Vec::with_capacity(self.batch_size);
        let mut deadline: Option<tokio::time::Instant> = None;
        let stopped = shutdown.triggered();
        tokio::pin!(stopped);
        let outcome = loop {
            let due = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut stopped => break Ok(()),
                () = due => {
                    self.flush(&mut batch).await;
                    deadline = None;
                }
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => {
                        let Some(row) = self.decode(&delivery).await else { continue };
                        batch.push((delivery, row));
                        if batch.len() == 1 {
                            deadline = Some(tokio::time::Instant::now() + self.max_wait);
                        }
                        if batch.len() >= self.batch_size {
                            self.flush(&mut batch).await;
                            deadline = None;
                        }
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
        // Write what we hold; a failure returns it to the queue. Once the channel is lost its
        // acks fail too and the broker redelivers the batch: the stats count each order once.
        self.flush(&mut batch).await;
        outcome
    }

    async fn decode(&self, delivery: &Delivery) -> Option<EventRow> {
        // The event continues the order's trace: its log lines carry the gateway's trace id.
        let span = groundwork_telemetry::amqp::consumer_span(
            &self.queue,
            delivery.routing_key.as_str(),
            delivery.properties.headers().as_ref(),
        );
        self.decode_in(delivery).instrument(span).await
    }

    async fn decode_in(&self, delivery: &Delivery) -> Option<EventRow> {
        let event = serde_json::from_slice::<OrderProcessed>(&delivery.data)
            .map_err(|error| error.to_string())
            .and_then(|event| {
                let processed_at = u32::try_from(event.processed_at).map_err(|_| {
                    format!(
                        "processed_at {} is outside DateTime's range",
                        event.processed_at
                    )
                })?;
                Ok(EventRow {
                    order_id: event.order_id,
                    tenant: event.tenant,
                    amount: event.amount,
                    processed_at,
                })
            });
        match event {
            Ok(row) => {
                tracing::info!(order_id = row.order_id, tenant = %row.tenant, "analytics event received");
                Some(row)
            }
            Err(error) => {
                tracing::warn!(%error, "order.processed message does not decode; dead-lettering it");
                if let Err(error) = delivery.reject(BasicRejectOptions { requeue: false }).await {
                    tracing::warn!(%error, "rejecting a delivery failed; the broker will redeliver it");
                }
                self.stats.send_modify(|stats| stats.rejected += 1);
                None
            }
        }
    }

    /// Inserts the batch in one `RowBinary` `INSERT`, then acks it (one `multiple` ack up to the
    /// last delivery); on failure, backs off and returns it to the queue.
    async fn flush(&self, batch: &mut Vec<(Delivery, EventRow)>) {
        let Some((last, _)) = batch.last() else {
            return;
        };
        let rows = batch.len() as u64;
        match self.insert_through_outages(batch).await {
            Ok(()) => {
                if let Err(error) = last.ack(BasicAckOptions { multiple: true }).await {
                    tracing::warn!(%error, "acking a batch failed; the broker will redeliver it");
                }
                tracing::info!(rows, "batch written to ClickHouse");
                self.stats.send_modify(|stats| {
                    stats.rows += rows;
                    stats.batches += 1;
                });
            }
            Err(error) => {
                tracing::warn!(
                    rows,
                    error = format!("{error:#}"),
                    "batch insert failed; returning it to the queue"
                );
                tokio::time::sleep(self.retry_backoff).await;
                let options = BasicNackOptions {
                    multiple: true,
                    requeue: true,
                };
                if let Err(error) = last.nack(options).await {
                    tracing::warn!(%error, "returning a batch failed; the broker will redeliver it");
                }
                self.stats.send_modify(|stats| stats.failed_batches += 1);
            }
        }
        batch.clear();
    }

    /// [`Batcher::insert`], tried again in place while ClickHouse cannot be reached (restarting,
    /// failing over), for up to [`OUTAGE_PATIENCE`]. A batch returned to the queue counts towards
    /// its messages' delivery limit, so an outage longer than a few back-offs would otherwise send
    /// sound events to the dead-letter queue; held here, they are written once ClickHouse is back.
    async fn insert_through_outages(&self, batch: &[(Delivery, EventRow)]) -> anyhow::Result<()> {
        let started = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.insert(batch).await {
                Err(error)
                    if is_clickhouse_outage(&error) && started.elapsed() < OUTAGE_PATIENCE =>
                {
                    tracing::warn!(
                        rows = batch.len(),
                        error = format!("{error:#}"),
                        retry_in = ?backoff,
                        "ClickHouse unreachable; holding the batch and trying again"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(OUTAGE_MAX_BACKOFF);
                }
                other => return other,
            }
        }
    }

    async fn insert(&self, batch: &[(Delivery, EventRow)]) -> anyhow::Result<()> {
        let mut insert = self.clickhouse.insert::<EventRow>(TABLE).await?;
        for (_, row) in batch {
            insert.write(row).await?;
        }
        insert.end().await?;
        Ok(())
    }
}

/// How long one batch is retried in place while ClickHouse cannot be reached, before it is
/// returned to the queue like any other failure.
const OUTAGE_PATIENCE: Duration = Duration::from_secs(30);
/// Longest wait between two tries of one batch during an outage.
const OUTAGE_MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Whether `error` says ClickHouse could not be reached (connection refused or reset, a
/// timeout), rather than something about the rows.
fn is_clickhouse_outage(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<clickhouse::error::Error>(),
            Some(clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut)
        )
    })
}

/// What `groundwork_service::run` serves and stops: the router with the edge limits from the
/// settings (`HTTP_*`) and no drain delay, then
/// [`Ingest::shutdown`].
impl groundwork_service::Service for Ingest {
    fn router(&self) -> axum::Router {
        self.router.clone()
    }

    fn health(&self) -> &Health {
        &self.health
    }

    fn serve_options(&self) -> ServeOptions {
        ServeOptions {
            drain_delay: Duration::ZERO,
            ..Ingest::serve_options(self, self.edge.clone())
        }
    }

    async fn shutdown(self) -> Result<(), groundwork_service::BoxError> {
        Ok(Ingest::shutdown(self).await?)
    }
}
