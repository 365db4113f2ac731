//! Logs, traces and HTTP metrics for Groundwork services, wired the same way in every service.
//!
//! One call, [`init`], installs a `tracing` subscriber that
//! - writes one JSON object per line to stdout in the platform's log format (see [`JsonLayer`]):
//!   `timestamp`, `level`, `service`, `traceId`, `spanId`, `message`, `context`;
//! - gives every `tracing` span an OpenTelemetry span, so log lines carry W3C trace ids in every
//!   environment, and exports those spans over OTLP (gRPC or HTTP/protobuf) when an endpoint is
//!   configured — without ever blocking a request on the collector;
//! - filters by `LOG_LEVEL` or `RUST_LOG`, changeable at run time through a [`LogLevelHandle`].
//!
//! Context crosses process boundaries with the propagators named in `OTEL_PROPAGATORS`: over HTTP
//! with the tower layer in [`http`] (which also records `X-Request-ID` and serves Prometheus
//! metrics), and over RabbitMQ with the header helpers in `amqp`.
//!
//! # Example
//!
//! ```
//! use groundwork_telemetry::TelemetrySettings;
//!
//! # fn main() -> Result<(), groundwork_telemetry::TelemetryError> {
//! let mut settings = TelemetrySettings::default();
//! settings.service_name = Some("billing".into());
//! // In a service: `let telemetry = groundwork_telemetry::init(&config.telemetry)?;`
//! let telemetry = groundwork_telemetry::Telemetry::builder(&settings)
//!     .writer(std::io::sink)
//!     .build()?;
//! tracing::dispatcher::with_default(telemetry.dispatch(), || {
//!     let span = tracing::info_span!("invoice", invoice_id = 42);
//!     let _entered = span.enter();
//!     tracing::info!(lines = 3, "invoice sent");
//! });
//! telemetry.log_level().set("debug")?;
//! # Ok(())
//! # }
//! ```
//!
//! # Settings
//!
//! [`TelemetrySettings`] names each standard variable (`SERVICE_NAME`/`OTEL_SERVICE_NAME`,
//! `LOG_LEVEL`, `RUST_LOG`, `LOG_FORMAT`, `OTEL_EXPORTER_OTLP_ENDPOINT`, `..._PROTOCOL`,
//! `..._HEADERS`, `..._TIMEOUT`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`/`_ARG`,
//! `OTEL_PROPAGATORS`). Embed it in the service's config type; `groundwork-config` loads it.
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `otlp` | yes | span export over OTLP gRPC and HTTP/protobuf |
//! | `http` | yes | [`http::TelemetryLayer`] for axum/tower, outgoing-request injection, `/metrics` |
//! | `amqp` | no  | `amqp::inject` / `amqp::extract` for lapin message headers |
//!
//! # What is exported
//!
//! Spans, and WARN and ERROR events as span events. INFO and lower events are log lines only: they
//! correlate with traces through `traceId`, and keeping them out of spans keeps the event path free
//! of allocation.

mod error;
mod export;
mod json;
mod level;
mod propagation;
mod settings;
mod subscriber;

#[cfg(feature = "amqp")]
pub mod amqp;
#[cfg(feature = "http")]
pub mod http;

pub use error::TelemetryError;
pub use json::JsonLayer;
pub use level::LogLevelHandle;
pub use propagation::{current_context, extract, inject};
pub use settings::{
    LogFormat, OtlpProtocol, ParentBasedRoot, PropagatorChoice, SamplerChoice, TelemetrySettings,
};
pub use subscriber::{Telemetry, TelemetryBuilder, init};
