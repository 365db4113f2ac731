//! The service's typed configuration, read once at start-up by groundwork-config.
//!
//! Every key can be set by its upper-case environment variable (`PORT`, `LOG_LEVEL`, ...), in
//! `.env` during development, or in `config/default.toml` and `config/{APP_ENV}.toml`.
//! `.env.example` lists every key; `tests/config.rs` fails when it and this type disagree.

//@if live flags
use std::path::PathBuf;

//@end
//@if postgres redis rabbitmq clickhouse
use groundwork_config::SecretUrl;
//@end
use groundwork_service::EdgeSettings;
use groundwork_telemetry::TelemetrySettings;
use serde::Deserialize;

/// The name in logs, traces and health responses when no name is configured.
pub const SERVICE_NAME: &str = "{{name}}";

/// Configuration of {{name}}.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct Settings {
    /// Logs, traces and their export: `SERVICE_NAME` (default {{name}}), `LOG_LEVEL`,
    /// `LOG_FORMAT`, `OTEL_EXPORTER_OTLP_ENDPOINT`, ...
    #[serde(default)]
    pub telemetry: TelemetrySettings,
    /// Address the HTTP server binds to.
    #[serde(default = "default_host")]
    pub host: String,
    /// Port the HTTP server listens on.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Limits every client is held to: `HTTP_HEADER_READ_TIMEOUT_MS`, `HTTP_IDLE_TIMEOUT_MS`,
    /// `HTTP_REQUEST_TIMEOUT_MS`, `HTTP_MAX_CONCURRENT_REQUESTS`, `HTTP_RETRY_AFTER_SECS`,
    /// `HTTP_MAX_BODY_BYTES`.
    #[serde(default)]
    pub http: EdgeSettings,
    /// How long the listener keeps accepting after readiness turned 503 on shutdown, in
    /// milliseconds.
    #[serde(default = "default_drain_ms")]
    pub shutdown_drain_ms: u64,
    //@if postgres
    /// PostgreSQL connection string.
    #[schemars(example = "postgres://app:app@localhost:5432/app")]
    pub database_url: SecretUrl,
    /// Connections in the PostgreSQL pool.
    #[serde(default = "default_pool_size")]
    #[schemars(range(min = 1, max = 1000))]
    pub database_pool_size: u32,
    //@end
    //@if redis
    /// Redis connection string.
    #[schemars(example = "redis://localhost:6379")]
    pub redis_url: SecretUrl,
    /// TLS for a `rediss://` URL: `REDIS_TLS_CA_CERT`, `REDIS_TLS_CLIENT_CERT`, `REDIS_TLS_CLIENT_KEY`
    /// (PEM, each also as `*_FILE`); the system's roots when unset.
    #[serde(default)]
    pub redis_tls: groundwork_connect::TlsSettings,
    /// Prefix of every Redis key this service writes.
    #[serde(default = "default_redis_key_prefix")]
    pub redis_key_prefix: String,
    //@end
    //@if rabbitmq
    /// RabbitMQ connection string.
    #[schemars(example = "amqp://guest:guest@localhost:5672/%2f")]
    pub rabbitmq_url: SecretUrl,
    /// TLS for an `amqps://` URL: `RABBITMQ_TLS_CA_CERT`, `RABBITMQ_TLS_CLIENT_CERT`,
    /// `RABBITMQ_TLS_CLIENT_KEY` (PEM, each also as `*_FILE`); the system's roots when unset.
    #[serde(default)]
    pub rabbitmq_tls: groundwork_connect::TlsSettings,
    //@end
    //@if clickhouse
    /// ClickHouse HTTP endpoint, `http(s)://[user[:password]@]host:port/database`.
    #[schemars(example = "http://localhost:8123/default")]
    pub clickhouse_url: SecretUrl,
    /// TLS for an `https://` URL: `CLICKHOUSE_TLS_CA_CERT`, `CLICKHOUSE_TLS_CLIENT_CERT`,
    /// `CLICKHOUSE_TLS_CLIENT_KEY` (PEM, each also as `*_FILE`); the system's roots when unset.
    #[serde(default)]
    pub clickhouse_tls: groundwork_connect::TlsSettings,
    //@end
    //@if live flags
    /// The `env` column of `platform_config` this service reads (development, test, staging,
    /// production).
    #[serde(default = "default_config_env")]
    pub config_env: String,
    /// Directory for the config and flag snapshot files that serve a cold start while
    /// PostgreSQL is down; no snapshots when unset.
    #[serde(default)]
    pub snapshot_dir: Option<PathBuf>,
    //@end
}

impl Settings {
    /// The name in logs, traces, health responses and snapshot files: `OTEL_SERVICE_NAME`, else
    /// `SERVICE_NAME`, else `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, else [`SERVICE_NAME`].
    pub fn service_name(&self) -> std::borrow::Cow<'_, str> {
        self.telemetry.service_or(SERVICE_NAME)
    }

    /// The telemetry settings with the service name filled in.
    pub fn telemetry(&self) -> TelemetrySettings {
        self.telemetry.with_service_default(SERVICE_NAME)
    }
}

/// What `groundwork_service::run` reads besides loading the settings.
impl groundwork_service::ServiceSettings for Settings {
    fn telemetry(&self) -> TelemetrySettings {
        Settings::telemetry(self)
    }

    fn listen_address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

fn default_host() -> String {
    "127.0.0.1".to_owned()
}

fn default_port() -> u16 {
    8080
}

fn default_drain_ms() -> u64 {
    500
}
//@if postgres

fn default_pool_size() -> u32 {
    10
}
//@end
//@if redis

fn default_redis_key_prefix() -> String {
    "{{name}}:".to_owned()
}
//@end
//@if live flags

fn default_config_env() -> String {
    "development".to_owned()
}
//@end
