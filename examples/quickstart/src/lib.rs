//! The quickstart service's configuration: the keys every Groundwork service on the platform
//! shares. The workspace's `.env.example` is generated from [`Settings`] by
//! `cargo xtask env-example`.

use groundwork_config::{Secret, SecretUrl};
use serde::{Deserialize, Serialize};

/// Configuration of the quickstart service.
#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
pub struct Settings {
    /// Name of this service in logs and traces.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Port the HTTP server listens on.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Minimum log level.
    #[serde(default)]
    pub log_level: LogLevel,
    /// PostgreSQL connection string.
    #[schemars(example = "postgres://app:app@localhost:5432/app")]
    pub database_url: SecretUrl,
    /// Redis connection string.
    #[schemars(example = "redis://localhost:6379")]
    pub redis_url: SecretUrl,
    /// TLS for a `rediss://` URL: `REDIS_TLS_CA_CERT`, `REDIS_TLS_CLIENT_CERT`, `REDIS_TLS_CLIENT_KEY`
    /// (PEM, each also as `*_FILE`); the system's roots when unset.
    #[serde(default)]
    pub redis_tls: groundwork_connect::TlsSettings,
    /// The Redis deployment behind `redis_url`: one server, a Redis Cluster or Sentinel.
    #[serde(default)]
    pub redis: groundwork_connect::RedisTopologySettings,
    /// RabbitMQ connection string.
    #[schemars(example = "amqp://guest:guest@localhost:5672/%2f")]
    pub rabbitmq_url: SecretUrl,
    /// TLS for an `amqps://` URL: `RABBITMQ_TLS_CA_CERT`, `RABBITMQ_TLS_CLIENT_CERT`,
    /// `RABBITMQ_TLS_CLIENT_KEY` (PEM, each also as `*_FILE`); the system's roots when unset.
    #[serde(default)]
    pub rabbitmq_tls: groundwork_connect::TlsSettings,
    /// ClickHouse HTTP endpoint.
    #[schemars(example = "http://localhost:8123")]
    pub clickhouse_url: SecretUrl,
    /// TLS for an `https://` URL: `CLICKHOUSE_TLS_CA_CERT`, `CLICKHOUSE_TLS_CLIENT_CERT`,
    /// `CLICKHOUSE_TLS_CLIENT_KEY` (PEM, each also as `*_FILE`); the system's roots when unset.
    #[serde(default)]
    pub clickhouse_tls: groundwork_connect::TlsSettings,
    /// OTLP collector endpoint; traces are not exported when unset.
    #[serde(default)]
    #[schemars(extend("x-env" = "OTEL_EXPORTER_OTLP_ENDPOINT"))]
    pub otlp_endpoint: Option<String>,
    /// Signs session tokens (JWT).
    #[schemars(length(min = 32))]
    pub jwt_secret: Secret,
    /// Encrypts sensitive columns at rest.
    #[schemars(length(min = 32))]
    pub encryption_secret: Secret,
}

/// Log levels accepted by `LOG_LEVEL`.
#[derive(
    Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// The production default.
    #[default]
    Info,
    /// Verbose, for debugging.
    Debug,
}

fn default_service_name() -> String {
    "quickstart".to_owned()
}

fn default_port() -> u16 {
    8080
}
