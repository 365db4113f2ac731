#![doc = include_str!("../README.md")]

mod bridge;
mod console;
mod error;
mod export;
mod json;
mod level;
#[cfg(feature = "otlp")]
mod otlp;
mod pretty;
mod propagation;
mod settings;
#[cfg(feature = "otel-standard")]
mod standard;
mod subscriber;
mod timestamp;
#[cfg(feature = "otlp")]
mod tls;

#[cfg(feature = "amqp")]
pub mod amqp;
#[cfg(feature = "http")]
pub mod http;
#[cfg(any(feature = "postgres", feature = "redis", feature = "amqp"))]
pub mod pools;

pub use error::TelemetryError;
pub use json::JsonLayer;
pub use level::LogLevelHandle;
pub use propagation::{current_context, extract, inject, with_remote_parent};
pub use settings::{
    BatchSettings, InvalidSetting, LogDirectives, LogFormat, LogLevel, OtlpCompression,
    OtlpEndpoint, OtlpProtocol, ParentBasedRoot, PropagatorChoice, SamplerChoice, SpanExport,
    SpanLimitSettings, TelemetrySettings, TracesExporter, TracesSampler, TracingBridge,
};
pub use subscriber::{Telemetry, TelemetryBuilder, init};
