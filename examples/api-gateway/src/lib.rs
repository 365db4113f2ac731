//! The api-gateway example service: the platform's HTTP front door.
//!
//! It composes Groundwork's crates the way a real service would: typed config with secrets
//! (`groundwork-config`), migrations at start-up under the lock (`groundwork-migrate`), the
//! hot-reload config centre (`groundwork-live`), feature flags (`groundwork-flags`), health
//! endpoints (`groundwork-health`) and graceful shutdown (`groundwork-service`).
//!
//! | Endpoint | What it does |
//! |---|---|
//! | `GET /v1/matching/weights` | the current value of config key `matching.algorithm.weights` |
//! | `GET /v1/features?tenant=T` | `{"tenant":T,"flags":{name: bool, ...}}` for every known flag |
//! | `POST /v1/orders` | stores an order and its `order.created` event in one transaction, answers 201 with the id |
//! | `/health`, `/health/ready`, `/livez`, ... | see `groundwork-health` |
//!
//! Tenants follow one rule wherever they are taken: 1 to [`MAX_TENANT_CHARS`] characters, no
//! control characters, no whitespace at either end; anything else is a 400.
//!
//! Events go out through a transactional outbox (`groundwork-outbox`): the order and its event
//! commit together, and the relay the gateway runs publishes the event after the commit, so a
//! consumer never sees an event before its order, nor one for an order that was not stored.
//!
//! [`start`] does the start-up work and returns a [`Gateway`] whose router can be served; the
//! binary serves it on `PORT`, tests on `127.0.0.1:0`.

mod http;
mod orders;
mod settings;
mod tenant;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use groundwork_config::ExposeSecret as _;
use groundwork_connect::{AmqpLink, AmqpLinkOptions, RedisOptions, RedisPool};
use groundwork_flags::Flags;
use groundwork_health::{
    CheckOptions, ConfigFreshnessCheck, Health, PostgresCheck, RabbitMqCheck, RedisCheck,
};
use groundwork_live::config::{LiveConfig, Setting};
use groundwork_live::{Feed, FeedOptions};
use groundwork_migrate::{MigrateOptions, MigrationSet, Migrator, TableName};
use groundwork_outbox::{Broker, Relay, RelayOptions, RelayStats};
use groundwork_telemetry::http::{HttpMetrics, TelemetryLayer};
use groundwork_telemetry::pools;
use lapin::options::ExchangeDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ExchangeKind};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// Time allowed for one connection to RabbitMQ (TCP, TLS, AMQP handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub use orders::{ORDER_CREATED, OrderCreated};
pub use settings::Settings;
pub use tenant::MAX_TENANT_CHARS;

/// The gateway's own migrations (the `orders` table), tracked in `schema_migrations`.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_orders.up.sql",
        include_str!("../migrations/0001_orders.up.sql"),
    ),
    (
        "0001_orders.down.sql",
        include_str!("../migrations/0001_orders.down.sql"),
    ),
];

/// Tracking table of `groundwork-live`'s `platform_config` migrations in the gateway's database.
pub const LIVE_MIGRATIONS_TABLE: &str = "groundwork_live_migrations";

/// Config key read by `GET /v1/matching/weights`.
pub const WEIGHTS_KEY: &str = "matching.algorithm.weights";
/// Flag that turns risk rejection on per tenant.
pub const RISK_FLAG: &str = "risk.auto.reject";
/// Config key holding the amount above which a flagged tenant's orders are rejected.
pub const RISK_THRESHOLD_KEY: &str = "risk.auto.reject.threshold";
/// Threshold used while [`RISK_THRESHOLD_KEY`] is absent or does not decode as a number.
pub const DEFAULT_RISK_THRESHOLD: f64 = 10_000.0;

/// Everything the handlers share.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) db: PgPool,
    pub(crate) redis: RedisPool,
    pub(crate) config: LiveConfig,
    pub(crate) flags: Flags,
    pub(crate) risk_threshold: Setting<f64>,
    pub(crate) settings: Arc<Settings>,
}

/// A started gateway: connections open, migrations applied, config and flags followed.
pub struct Gateway {
    /// The API and health endpoints.
    pub router: axum::Router,
    /// The health state; `groundwork_service::serve` turns readiness off on shutdown.
    pub health: Health,
    /// The live config, for tests and admin code.
    pub config: LiveConfig,
    /// The live flags.
    pub flags: Flags,
    /// The HTTP metrics behind `/metrics`.
    pub metrics: HttpMetrics,
    /// The router's telemetry layer, which also sees the answers `serve` gives itself.
    telemetry: TelemetryLayer,
    settings: Arc<Settings>,
    db: PgPool,
    amqp: AmqpLink,
    config_feed: Feed,
    flags_feed: Feed,
    outbox: Relay,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").finish_non_exhaustive()
    }
}

/// Applies every migration the gateway's database needs, each set under its own advisory lock:
/// the `orders` table, `platform_config` (hot-reload config), `feature_flags` and the outbox
/// (`groundwork_outbox`).
pub async fn migrate(db: &PgPool) -> anyhow::Result<()> {
    let orders = Migrator::new(MigrationSet::from_files(MIGRATIONS.iter().copied())?);
    groundwork_migrate::migrate_on_startup_with(db, orders)
        .await
        .context("applying the gateway's migrations (orders)")?;

    let mut options = MigrateOptions::default();
    options.table = TableName::new(LIVE_MIGRATIONS_TABLE)?;
    let live = Migrator::new(MigrationSet::from_files(
        groundwork_live::config::MIGRATIONS.iter().copied(),
    )?)
    .with_options(options);
    groundwork_migrate::migrate_on_startup_with(db, live)
        .await
        .context("applying groundwork-live's migrations (platform_config)")?;

    groundwork_flags::store::migrate(db)
        .await
        .context("applying groundwork-flags' migrations (feature_flags)")?;
    groundwork_outbox::migrate(db)
        .await
        .context("applying groundwork-outbox's migrations (groundwork_outbox)")?;
    Ok(())
}

/// Applies the gateway's migrations on a small pool of its own and returns: `api-gateway migrate`,
/// for a deploy step that runs before the new version serves (an init container or a Job).
pub async fn migrate_database(settings: &Settings) -> anyhow::Result<()> {
    let db = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .connect(settings.database_url.expose_secret())
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {}", settings.database_url))?;
    migrate(&db).await?;
    db.close().await;
    tracing::info!("api-gateway migrations applied");
    Ok(())
}

/// Connects to PostgreSQL, Redis and RabbitMQ, applies migrations, starts following config and
/// flags, and builds the router. Fails with a message naming what could not be reached.
pub async fn start(settings: Settings) -> anyhow::Result<Gateway> {
    let settings = Arc::new(settings);
    // `ACCESS_LOG`, `ACCESS_LOG_SKIP_PATHS`, ...: checked before anything is connected.
    let telemetry_layer = TelemetryLayer::from_settings(&settings.telemetry)?;
    let metrics = HttpMetrics::from_settings(&settings.telemetry)?.with_process_metrics();
    let db = PgPoolOptions::new()
        .max_connections(settings.database_pool_size)
        .acquire_timeout(Duration::from_secs(5))
        .connect(settings.database_url.expose_secret())
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {}", settings.database_url))?;
    migrate(&db).await?;

    let feed_options = |name: &str| {
        let options = FeedOptions::default();
        match &settings.snapshot_dir {
            Some(dir) => {
                options.snapshot_path(dir.join(format!("{}.{name}.json", settings.service_name())))
            }
            None => options,
        }
    };
    let (config, config_feed) =
        groundwork_live::config::watch(db.clone(), &settings.config_env, feed_options("config"))
            .await
            .context("loading hot-reload config from platform_config")?;
    let (flags, flags_feed) = groundwork_flags::store::watch(db.clone(), feed_options("flags"))
        .await
        .context("loading feature flags from feature_flags")?;

    // The pool takes one connection before it returns, so a wrong URL, password or certificate
    // fails start-up, not the first order. `REDIS_TOPOLOGY` picks one server, a Redis Cluster or
    // Sentinel; the handlers use the pool the same way for each.
    let redis = groundwork_connect::redis_topology_pool(
        settings.redis_url.expose_secret(),
        &settings.redis_tls,
        &settings.redis,
        &RedisOptions::default(),
    )
    .await?;

    // Made again whenever it is lost, so readiness comes back without a restart once the broker
    // is reachable; the outbox relay keeps a connection of its own the same way.
    let mut link_options = AmqpLinkOptions::default();
    link_options.connect_timeout = CONNECT_TIMEOUT;
    let amqp = AmqpLink::connect(
        settings.rabbitmq_url.expose_secret(),
        &settings.rabbitmq_tls,
        link_options,
    )
    .await?;
    let outbox = start_outbox(&settings, &db, &amqp.current()).await?;

    let poll = FeedOptions::default().poll_interval;
    let health = Health::builder()
        .service_id(settings.service_name().into_owned())
        .version(env!("CARGO_PKG_VERSION"))
        .check(PostgresCheck::new(db.clone()))
        .check(RedisCheck::new(redis.clone()))
        .check(RabbitMqCheck::following(amqp.subscribe()))
        .check_with(
            ConfigFreshnessCheck::new(config_feed.statuses(), poll),
            CheckOptions::default().non_critical(),
        )
        .check_with(
            ConfigFreshnessCheck::new(flags_feed.statuses(), poll),
            CheckOptions::default().non_critical().name("flags"),
        )
        .build()
        .context("building the health checks")?;

    observe(
        &metrics,
        &db,
        &redis,
        &amqp,
        &[&config_feed, &flags_feed],
        &outbox,
    );
    let state = AppState {
        db,
        redis,
        risk_threshold: config.setting(RISK_THRESHOLD_KEY, DEFAULT_RISK_THRESHOLD),
        config,
        flags,
        settings,
    };
    Ok(Gateway::assemble(
        state,
        telemetry_layer,
        metrics,
        health,
        amqp,
        [config_feed, flags_feed],
        outbox,
    ))
}

/// Declares the orders exchange (it exists before the first order is accepted) and starts the
/// outbox relay that publishes `order.created` after each order's commit, on a broker connection of
/// its own. With several replicas, each runs a relay and they share the outbox.
async fn start_outbox(
    settings: &Settings,
    db: &PgPool,
    amqp: &Connection,
) -> anyhow::Result<Relay> {
    let setup = amqp
        .create_channel()
        .await
        .context("cannot open a RabbitMQ channel")?;
    setup
        .exchange_declare(
            settings.orders_exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("cannot declare exchange {}", settings.orders_exchange))?;
    if let Err(error) = setup.close(200, "exchange declared".into()).await {
        tracing::debug!(%error, "closing the set-up channel failed");
    }
    let mut broker = Broker::new(settings.rabbitmq_url.clone());
    broker.tls = settings.rabbitmq_tls.clone();
    Ok(Relay::start(
        db.clone(),
        broker,
        RelayOptions::default().name("orders"),
    ))
}

/// Puts the gauges of the gateway's connections, feeds and outbox on its `/metrics` page, read at
/// every scrape: the PostgreSQL and Redis pools, the RabbitMQ connection, the freshness of the
/// config and flag feeds, and the outbox relay's counters and backlog.
fn observe(
    metrics: &HttpMetrics,
    db: &PgPool,
    redis: &RedisPool,
    amqp: &AmqpLink,
    [config_feed, flags_feed]: &[&Feed; 2],
    outbox: &Relay,
) {
    let (db, redis, amqp) = (db.clone(), redis.clone(), amqp.subscribe());
    let (config, flags) = (config_feed.statuses(), flags_feed.statuses());
    let outbox = outbox.stats();
    metrics.on_render(move || {
        pools::record_pg_pool("postgres", &db);
        pools::record_redis_status("redis", redis.status());
        pools::record_amqp_connection("rabbitmq", &amqp.borrow());
        groundwork_live::record_feed_status("config", &config.borrow());
        groundwork_live::record_feed_status("flags", &flags.borrow());
        groundwork_outbox::record_relay_metrics("orders", &outbox.borrow());
    });
}

/// The API behind the telemetry layer (traces, request ids, HTTP metrics, access log), plus health
/// and `/metrics`, which stay outside it: probes and scrapes are not traffic.
fn app_router(
    state: AppState,
    layer: TelemetryLayer,
    health: &Health,
    metrics: &HttpMetrics,
) -> axum::Router {
    http::router(state)
        // Inside the layer, so a path no route matches is traced, logged and counted too (the
        // health router's own fallback, merged below, would bypass it).
        .fallback(|| async {
            http::error(
                axum::http::StatusCode::NOT_FOUND,
                "no such path; see the API in the README",
            )
        })
        .layer(layer.with_metrics(metrics.clone()))
        .merge(health.router())
        .route("/metrics", metrics.handler())
}

impl Gateway {
    /// The router over `state`, and the gateway that owns it all.
    fn assemble(
        state: AppState,
        telemetry_layer: TelemetryLayer,
        metrics: HttpMetrics,
        health: Health,
        amqp: AmqpLink,
        [config_feed, flags_feed]: [Feed; 2],
        outbox: Relay,
    ) -> Self {
        let (config, flags, db) = (state.config.clone(), state.flags.clone(), state.db.clone());
        let settings = Arc::clone(&state.settings);
        let telemetry = telemetry_layer.with_metrics(metrics.clone());
        let router = app_router(state, telemetry.clone(), &health, &metrics);
        Self {
            router,
            health,
            config,
            flags,
            metrics,
            telemetry,
            settings,
            db,
            amqp,
            config_feed,
            flags_feed,
            outbox,
        }
    }

    /// How `groundwork_service::serve` serves the router: the drain delay and edge limits from
    /// the settings (`SHUTDOWN_DRAIN_MS`, `HTTP_*`), shed and timed-out requests counted on
    /// `/metrics`, and the edge's own answers (503, 413) traced, counted and access-logged by the
    /// router's telemetry layer.
    pub fn serve_options(&self) -> groundwork_service::ServeOptions {
        groundwork_service::ServeOptions {
            drain_delay: Duration::from_millis(self.settings.shutdown_drain_ms),
            edge: self.settings.http.clone(),
            metrics: groundwork_service::EdgeMetrics::from(&self.metrics),
            telemetry: Some(self.telemetry.clone()),
        }
    }

    /// The feed following `platform_config`; its `generations()` tick on every reload.
    pub fn config_feed(&self) -> &Feed {
        &self.config_feed
    }

    /// The feed following `feature_flags`; its `generations()` tick on every reload.
    pub fn flags_feed(&self) -> &Feed {
        &self.flags_feed
    }

    /// What the outbox relay has done: events published, refused and waiting.
    pub fn outbox_stats(&self) -> tokio::sync::watch::Receiver<RelayStats> {
        self.outbox.stats()
    }

    /// The shutdown hooks, run after the server has stopped: publish the events of the orders
    /// already answered (bounded; what is left stays in the outbox for the next start or another
    /// replica), stop following config and flags, close the RabbitMQ connection and the pool.
    pub async fn shutdown(self) {
        self.outbox.shutdown().await;
        self.config_feed.shutdown().await;
        self.flags_feed.shutdown().await;
        if let Err(error) = self.amqp.close("api-gateway shutting down").await {
            tracing::warn!(%error, "closing the RabbitMQ connection failed");
        }
        self.db.close().await;
    }
}

/// What `groundwork_service::run` serves and stops.
impl groundwork_service::Service for Gateway {
    fn router(&self) -> axum::Router {
        self.router.clone()
    }

    fn health(&self) -> &Health {
        &self.health
    }

    fn serve_options(&self) -> groundwork_service::ServeOptions {
        Gateway::serve_options(self)
    }

    async fn shutdown(self) -> Result<(), groundwork_service::BoxError> {
        Gateway::shutdown(self).await;
        Ok(())
    }
}
