//! The gateway's typed configuration, read once at start-up by `groundwork-config`.

use std::path::PathBuf;

use groundwork_config::SecretUrl;
use groundwork_service::EdgeSettings;
use groundwork_telemetry::TelemetrySettings;
use serde::Deserialize;

/// Configuration of the api-gateway. Every key can be set by its upper-case environment variable
/// (`DATABASE_URL`, `PORT`, ...), in `.env` during development, or in `config/*.toml`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct Settings {
    /// Logs, traces and their export: `SERVICE_NAME` (default api-gateway), `LOG_LEVEL`,
    /// `LOG_FORMAT`, `OTEL_EXPORTER_OTLP_ENDPOINT`, ...
    #[serde(default)]
    pub telemetry: TelemetrySettings,
    /// Address the HTTP server binds to.
    #[serde(default = "default_host")]
    pub host: String,
    /// Port the HTTP server listens on.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Limits every client is held to: `HTTP_HEADER_READ_TIMEOUT_MS` (10000),
    /// `HTTP_IDLE_TIMEOUT_MS` (5000), `HTTP_REQUEST_TIMEOUT_MS` (30000),
    /// `HTTP_MAX_CONCURRENT_REQUESTS` (256), `HTTP_RETRY_AFTER_SECS` (1), `HTTP_MAX_BODY_BYTES`
    /// (1048576).
    #[serde(default)]
    pub http: EdgeSettings,
    /// PostgreSQL connection string: `orders`, `platform_config` and `feature_flags` live here.
    #[schemars(example = "postgres://app:app@localhost:5432/app")]
    pub database_url: SecretUrl,
    /// Connections in the PostgreSQL pool.
    #[serde(default = "default_pool_size")]
    #[schemars(range(min = 1, max = 1000))]
    pub database_pool_size: u32,
    /// Redis connection string; idempotency keys are kept here. With `REDIS_TOPOLOGY=cluster` a
    /// seed node, with `sentinel` a sentinel; the scheme, user, password and database apply to
    /// every node.
    #[schemars(example = "redis://localhost:6379")]
    pub redis_url: SecretUrl,
    /// TLS for a `rediss://` URL: `REDIS_TLS_CA_CERT`, `REDIS_TLS_CLIENT_CERT`, `REDIS_TLS_CLIENT_KEY`
    /// (PEM, each also as `*_FILE`); the system's roots when unset.
    #[serde(default)]
    pub redis_tls: groundwork_connect::TlsSettings,
    /// The Redis deployment behind `redis_url`: `REDIS_TOPOLOGY` (`single`, `cluster` or
    /// `sentinel`), `REDIS_NODES` (more seed nodes or sentinels, `host:port,...`),
    /// `REDIS_SENTINEL_MASTER` (default `mymaster`), `REDIS_SENTINEL_PASSWORD`.
    #[serde(default)]
    pub redis: groundwork_connect::RedisTopologySettings,
    /// Prefix of every Redis key this service writes.
    #[serde(default = "default_redis_key_prefix")]
    pub redis_key_prefix: String,
    /// How long an `Idempotency-Key` is remembered, in seconds.
    #[serde(default = "default_idempotency_ttl_secs")]
    #[schemars(range(min = 1))]
    pub idempotency_ttl_secs: u64,
    /// RabbitMQ connection string.
    #[schemars(example = "amqp://guest:guest@localhost:5672/%2f")]
    pub rabbitmq_url: SecretUrl,
    /// TLS for an `amqps://` URL: `RABBITMQ_TLS_CA_CERT`, `RABBITMQ_TLS_CLIENT_CERT`,
    /// `RABBITMQ_TLS_CLIENT_KEY` (PEM, each also as `*_FILE`); the system's roots when unset.
    #[serde(default)]
    pub rabbitmq_tls: groundwork_connect::TlsSettings,
    /// Topic exchange `order.created` is published to.
    #[serde(default = "default_orders_exchange")]
    pub orders_exchange: String,
    /// The `env` column of `platform_config` this service reads (development, test, staging,
    /// production).
    #[serde(default = "default_config_env")]
    pub config_env: String,
    /// Directory for the config and flag snapshot files that serve a cold start while
    /// PostgreSQL is down; no snapshots when unset.
    #[serde(default)]
    pub snapshot_dir: Option<PathBuf>,
    /// How long the listener keeps accepting after readiness turned 503 on shutdown, in
    /// milliseconds.
    #[serde(default = "default_drain_ms")]
    pub shutdown_drain_ms: u64,
}

fn default_host() -> String {
    "127.0.0.1".to_owned()
}

fn default_port() -> u16 {
    8080
}

fn default_pool_size() -> u32 {
    10
}

fn default_redis_key_prefix() -> String {
    "api-gateway:".to_owned()
}

fn default_idempotency_ttl_secs() -> u64 {
    24 * 60 * 60
}

fn default_orders_exchange() -> String {
    "orders".to_owned()
}

fn default_config_env() -> String {
    "development".to_owned()
}

fn default_drain_ms() -> u64 {
    500
}

/// The name this service uses when no name is configured.
const SERVICE_NAME: &str = "api-gateway";

impl Settings {
    /// The name in logs, traces, health responses and snapshot files: `OTEL_SERVICE_NAME`, else
    /// `SERVICE_NAME`, else `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, else `api-gateway`.
    pub fn service_name(&self) -> std::borrow::Cow<'_, str> {
        self.telemetry.service_or(SERVICE_NAME)
    }

    /// The telemetry settings with the service name filled in.
    pub fn telemetry(&self) -> TelemetrySettings {
        self.telemetry.with_service_default(SERVICE_NAME)
    }
}

impl groundwork_service::ServiceSettings for Settings {
    fn telemetry(&self) -> TelemetrySettings {
        Settings::telemetry(self)
    }

    fn listen_address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}
