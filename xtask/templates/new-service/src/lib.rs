//! {{name}}: a service composed from Groundwork's crates.
//!
//! | Endpoint | What it does |
//! |---|---|
//! | `GET /v1/hello?tenant=T` | a greeting for tenant `T`, logged with the request's trace id |
//@if postgres
//! | `POST /v1/visits?tenant=T` | counts a visit of tenant `T` in PostgreSQL, answers the total |
//@end
//! | `/health`, `/livez`, `/health/status`, ... | readiness, liveness and details (groundwork-health) |
//! | `/metrics` | Prometheus HTTP metrics (groundwork-telemetry) |
//!
//! [`start`] does the start-up work and returns an [`App`] whose router `main` serves on `PORT`.

mod http;
mod settings;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
//@if postgres redis rabbitmq clickhouse
use groundwork_config::ExposeSecret as _;
//@end
//@if redis
use groundwork_connect::RedisOptions;
//@end
//@if flags
use groundwork_flags::Flags;
//@end
use groundwork_health::Health;
//@if live flags
use groundwork_health::{CheckOptions, ConfigFreshnessCheck};
//@end
//@if postgres
use groundwork_health::PostgresCheck;
//@end
//@if redis
use groundwork_health::RedisCheck;
//@end
//@if rabbitmq
use groundwork_health::RabbitMqCheck;
//@end
//@if clickhouse
use groundwork_health::ClickHouseCheck;
//@end
//@if live
use groundwork_live::config::LiveConfig;
//@end
//@if live flags
use groundwork_live::{Feed, FeedOptions};
//@end
//@if postgres
use groundwork_migrate::{MigrationSet, Migrator};
//@end
//@if live
use groundwork_migrate::{MigrateOptions, TableName};
//@end
use groundwork_telemetry::http::{HttpMetrics, TelemetryLayer};
//@if postgres redis rabbitmq
use groundwork_telemetry::pools;
//@end
//@if rabbitmq
use lapin::{Connection, ConnectionProperties};
//@end
//@if postgres
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
//@end

pub use settings::{SERVICE_NAME, Settings};

//@if postgres
/// The service's own migrations, tracked in `schema_migrations`. Embedded, so the binary needs
/// no `migrations/` directory where it runs.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_visits.up.sql",
        include_str!("../migrations/0001_visits.up.sql"),
    ),
    (
        "0001_visits.down.sql",
        include_str!("../migrations/0001_visits.down.sql"),
    ),
];

//@end
//@if live
/// Tracking table of `groundwork-live`'s `platform_config` migrations in this service's database.
pub const LIVE_MIGRATIONS_TABLE: &str = "groundwork_live_migrations";

/// Hot-reload config key (`platform_config`) holding the greeting, a JSON string.
pub const GREETING_KEY: &str = "{{name}}.greeting";

//@end
/// The greeting while nothing else is configured.
pub const DEFAULT_GREETING: &str = "hello";

//@if flags
/// Feature flag that turns the greeting to upper case, per tenant.
pub const SHOUT_FLAG: &str = "{{name}}.shout";

//@end
//@if rabbitmq
/// Time allowed for one connection to RabbitMQ (TCP, TLS, AMQP handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

//@end
/// Everything the handlers share.
#[derive(Clone)]
pub(crate) struct AppState {
    //@if postgres
    pub(crate) db: PgPool,
    //@end
    //@if redis
    /// Keys are written under `settings.redis_key_prefix`.
    pub(crate) redis: deadpool_redis::Pool,
    //@end
    //@if rabbitmq
    pub(crate) amqp: Arc<Connection>,
    //@end
    //@if clickhouse
    #[allow(dead_code, reason = "ready for the handlers you add")]
    pub(crate) clickhouse: clickhouse::Client,
    //@end
    //@if live
    pub(crate) config: LiveConfig,
    //@end
    //@if flags
    pub(crate) flags: Flags,
    //@end
    #[allow(dead_code, reason = "ready for the handlers you add")]
    pub(crate) settings: Arc<Settings>,
}

/// A started service: connections open, migrations applied, config and flags followed.
pub struct App {
    /// The API, health endpoints and `/metrics`.
    pub router: axum::Router,
    /// The health state; `groundwork_service::serve` turns readiness off on shutdown.
    pub health: Health,
    //@if live
    /// The hot-reload config.
    pub config: LiveConfig,
    //@end
    //@if flags
    /// The feature flags.
    pub flags: Flags,
    //@end
    metrics: HttpMetrics,
    /// The router's telemetry layer, which also sees the answers `serve` gives itself.
    telemetry: TelemetryLayer,
    settings: Arc<Settings>,
    //@if postgres
    db: PgPool,
    //@end
    //@if rabbitmq
    amqp: Arc<Connection>,
    //@end
    //@if live
    config_feed: Feed,
    //@end
    //@if flags
    flags_feed: Feed,
    //@end
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

//@if postgres
/// Applies every migration the service's database needs, each set under its own advisory lock,
/// so replicas starting together apply them once.
pub async fn migrate(db: &PgPool) -> anyhow::Result<()> {
    let own = Migrator::new(MigrationSet::from_files(MIGRATIONS.iter().copied())?);
    groundwork_migrate::migrate_on_startup_with(db, own)
        .await
        .context("applying the service's migrations")?;
    //@if live
    let mut options = MigrateOptions::default();
    options.table = TableName::new(LIVE_MIGRATIONS_TABLE)?;
    let live = Migrator::new(MigrationSet::from_files(
        groundwork_live::config::MIGRATIONS.iter().copied(),
    )?)
    .with_options(options);
    groundwork_migrate::migrate_on_startup_with(db, live)
        .await
        .context("applying groundwork-live's migrations (platform_config)")?;
    //@end
    //@if flags
    groundwork_flags::store::migrate(db)
        .await
        .context("applying groundwork-flags' migrations (feature_flags)")?;
    //@end
    Ok(())
}

//@end
/// Connects to every dependency, applies migrations, starts following config and flags, and
/// builds the router. Fails with a message naming what could not be reached.
//@unless postgres redis rabbitmq
#[allow(
    clippy::unused_async,
    reason = "async like every service's start-up; connecting to a server awaits"
)]
//@end
pub async fn start(settings: Settings) -> anyhow::Result<App> {
    let settings = Arc::new(settings);
    // `ACCESS_LOG`, `ACCESS_LOG_SKIP_PATHS`, ...: checked before anything is connected.
    let telemetry_layer = TelemetryLayer::from_settings(&settings.telemetry)?;
    let metrics = HttpMetrics::from_settings(&settings.telemetry)?.with_process_metrics();
    //@if postgres
    let db = PgPoolOptions::new()
        .max_connections(settings.database_pool_size)
        .acquire_timeout(Duration::from_secs(5))
        .connect(settings.database_url.expose_secret())
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {}", settings.database_url))?;
    migrate(&db).await?;
    //@end
    //@if live flags

    let feed_options = |name: &str| {
        let options = FeedOptions::default();
        match &settings.snapshot_dir {
            Some(dir) => {
                options.snapshot_path(dir.join(format!("{}.{name}.json", settings.service_name())))
            }
            None => options,
        }
    };
    //@end
    //@if live
    let (config, config_feed) =
        groundwork_live::config::watch(db.clone(), &settings.config_env, feed_options("config"))
            .await
            .context("loading hot-reload config from platform_config")?;
    //@end
    //@if flags
    let (flags, flags_feed) = groundwork_flags::store::watch(db.clone(), feed_options("flags"))
        .await
        .context("loading feature flags from feature_flags")?;
    //@end
    //@if redis

    // The pool takes one connection before it returns, so a wrong URL, password or certificate
    // fails start-up, not the first request.
    let redis = groundwork_connect::redis_pool(
        settings.redis_url.expose_secret(),
        &settings.redis_tls,
        &RedisOptions::default(),
    )
    .await?;
    //@end
    //@if rabbitmq

    let amqp = Arc::new(
        groundwork_connect::amqp_connect(
            settings.rabbitmq_url.expose_secret(),
            &settings.rabbitmq_tls,
            ConnectionProperties::default(),
            CONNECT_TIMEOUT,
        )
        .await?,
    );
    //@end
    //@if clickhouse

    // User, password and database come from the URL. Validation off: older servers (Debian's
    // 18.16) cannot describe their columns to the client.
    let clickhouse =
        groundwork_connect::clickhouse_client(settings.clickhouse_url.expose_secret(), &settings.clickhouse_tls)?
            .with_validation(false);
    //@end

    //@if live flags
    let poll = FeedOptions::default().poll_interval;
    //@end
    let health = Health::builder()
        .service_id(settings.service_name().into_owned())
        .version(env!("CARGO_PKG_VERSION"))
        //@if postgres
        .check(PostgresCheck::new(db.clone()))
        //@end
        //@if redis
        .check(RedisCheck::new(redis.clone()))
        //@end
        //@if rabbitmq
        .check(RabbitMqCheck::new(Arc::clone(&amqp)))
        //@end
        //@if clickhouse
        .check(ClickHouseCheck::new(clickhouse.clone()))
        //@end
        //@if live
        .check_with(
            ConfigFreshnessCheck::new(config_feed.statuses(), poll),
            CheckOptions::default().non_critical(),
        )
        //@end
        //@if flags
        .check_with(
            ConfigFreshnessCheck::new(flags_feed.statuses(), poll),
            CheckOptions::default().non_critical().name("flags"),
        )
        //@end
        .build()
        .context("building the health checks")?;

    let state = AppState {
        //@if postgres
        db: db.clone(),
        //@end
        //@if redis
        redis,
        //@end
        //@if rabbitmq
        amqp: Arc::clone(&amqp),
        //@end
        //@if clickhouse
        clickhouse,
        //@end
        //@if live
        config: config.clone(),
        //@end
        //@if flags
        flags: flags.clone(),
        //@end
        settings: Arc::clone(&settings),
    };
    //@if postgres redis rabbitmq
    observe(
        &metrics,
        &state,
        //@if live
        &config_feed,
        //@end
        //@if flags
        &flags_feed,
        //@end
    );
    //@end
    let telemetry = telemetry_layer.with_metrics(metrics.clone());
    let router = http::router(state)
        // Inside the layer, so a path no route matches is traced, logged and counted too.
        .fallback(|| async { http::error(axum::http::StatusCode::NOT_FOUND, "no such path") })
        .layer(telemetry.clone())
        // Probes and scrapes stay outside the layer: they are not traffic.
        .merge(health.router())
        .route("/metrics", metrics.handler());
    Ok(App {
        router,
        health,
        //@if live
        config,
        //@end
        //@if flags
        flags,
        //@end
        metrics,
        telemetry,
        settings,
        //@if postgres
        db,
        //@end
        //@if rabbitmq
        amqp,
        //@end
        //@if live
        config_feed,
        //@end
        //@if flags
        flags_feed,
        //@end
    })
}

//@if postgres redis rabbitmq
/// Puts the gauges of the service's connections and feeds on its `/metrics` page, read at every
/// scrape.
fn observe(
    metrics: &HttpMetrics,
    state: &AppState,
    //@if live
    config_feed: &Feed,
    //@end
    //@if flags
    flags_feed: &Feed,
    //@end
) {
    let state = state.clone();
    //@if live
    let config_statuses = config_feed.statuses();
    //@end
    //@if flags
    let flags_statuses = flags_feed.statuses();
    //@end
    metrics.on_render(move || {
        //@if postgres
        pools::record_pg_pool("postgres", &state.db);
        //@end
        //@if redis
        pools::record_redis_pool("redis", &state.redis);
        //@end
        //@if rabbitmq
        pools::record_amqp_connection("rabbitmq", &state.amqp);
        //@end
        //@if live
        groundwork_live::record_feed_status("config", &config_statuses.borrow());
        //@end
        //@if flags
        groundwork_live::record_feed_status("flags", &flags_statuses.borrow());
        //@end
    });
}

//@end
impl App {
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

    /// The shutdown hooks, run after the server has stopped: stop following config and flags,
    /// close connections.
    //@unless postgres rabbitmq
    #[allow(
        clippy::unused_async,
        reason = "async like every service's shutdown; closing a connection awaits"
    )]
    //@end
    pub async fn shutdown(self) {
        //@if live
        self.config_feed.shutdown().await;
        //@end
        //@if flags
        self.flags_feed.shutdown().await;
        //@end
        //@if rabbitmq
        if let Err(error) = self
            .amqp
            .close(200, "{{name}} shutting down".into())
            .await
        {
            tracing::warn!(%error, "closing the RabbitMQ connection failed");
        }
        //@end
        //@if postgres
        self.db.close().await;
        //@end
    }
}

/// What `groundwork_service::run` serves and stops.
impl groundwork_service::Service for App {
    fn router(&self) -> axum::Router {
        self.router.clone()
    }

    fn health(&self) -> &Health {
        &self.health
    }

    fn serve_options(&self) -> groundwork_service::ServeOptions {
        App::serve_options(self)
    }

    async fn shutdown(self) -> Result<(), groundwork_service::BoxError> {
        App::shutdown(self).await;
        Ok(())
    }
}
