//! What a service configures about its telemetry, named after the standard variables.
//!
//! [`TelemetrySettings`] is a plain config struct: embed it in the service's own config type and
//! load that with `groundwork-config`, which reads each field from the variable named in its
//! `x-env` (`SERVICE_NAME`, `LOG_LEVEL`, `OTEL_EXPORTER_OTLP_ENDPOINT`, ...), lists it in
//! `.env.example`, and reports a bad value with its variable and source. This crate never reads the
//! process environment itself.

use std::borrow::Cow;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use groundwork_config::Secret;
use serde::{Deserialize, Serialize};

use crate::TelemetryError;

/// Telemetry configuration, one field per standard variable.
///
/// Every field is optional: the defaults give JSON logs at `info` with trace ids and no export.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(default)]
#[non_exhaustive]
pub struct TelemetrySettings {
    /// Name of this service in logs and traces (the seeds' variable); `OTEL_SERVICE_NAME` wins
    /// when both are set.
    #[schemars(extend("x-env" = "SERVICE_NAME"))]
    pub service_name: Option<String>,
    /// Name of this service in logs and traces (OpenTelemetry's variable); wins over
    /// `SERVICE_NAME` and over `service.name` in `OTEL_RESOURCE_ATTRIBUTES`.
    #[schemars(extend("x-env" = "OTEL_SERVICE_NAME"))]
    pub otel_service_name: Option<String>,
    /// Minimum log level: error, warn, info, debug or trace. `RUST_LOG` directives win when set.
    #[schemars(extend("x-env" = "LOG_LEVEL"))]
    pub log_level: Option<LogLevel>,
    /// Full filter directives, e.g. `info,sqlx=warn,groundwork_live=debug`.
    #[schemars(extend("x-env" = "RUST_LOG"))]
    pub rust_log: Option<LogDirectives>,
    /// Log line format: json (the default) or pretty, a human-readable format for local development.
    #[schemars(extend("x-env" = "LOG_FORMAT"))]
    pub log_format: LogFormat,
    /// OTLP collector endpoint; spans are not exported when this and the traces endpoint are unset.
    #[schemars(extend("x-env" = "OTEL_EXPORTER_OTLP_ENDPOINT"))]
    pub otlp_endpoint: Option<OtlpEndpoint>,
    /// OTLP endpoint for traces only, used as given (no `/v1/traces` is appended).
    #[schemars(extend("x-env" = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))]
    pub otlp_traces_endpoint: Option<OtlpEndpoint>,
    /// OTLP transport: http/protobuf (port 4318, the default, as in the OpenTelemetry
    /// specification) or grpc (port 4317).
    #[schemars(extend("x-env" = "OTEL_EXPORTER_OTLP_PROTOCOL"))]
    pub otlp_protocol: Option<OtlpProtocol>,
    /// OTLP transport for traces; wins over `OTEL_EXPORTER_OTLP_PROTOCOL`.
    #[schemars(extend("x-env" = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))]
    pub otlp_traces_protocol: Option<OtlpProtocol>,
    /// Headers sent with every export, `key1=value1,key2=value2`; often an API key, so secret.
    #[schemars(extend("x-env" = "OTEL_EXPORTER_OTLP_HEADERS"))]
    pub otlp_headers: Option<Secret>,
    /// Headers sent with every trace export, instead of `OTEL_EXPORTER_OTLP_HEADERS`; secret.
    #[schemars(extend("x-env" = "OTEL_EXPORTER_OTLP_TRACES_HEADERS"))]
    pub otlp_traces_headers: Option<Secret>,
    /// PEM file of the CA certificates trusted for an `https://` endpoint, instead of the system's
    /// roots (which are used when this is unset).
    #[schemars(extend("x-env" = "OTEL_EXPORTER_OTLP_CERTIFICATE"))]
    pub otlp_certificate: Option<PathBuf>,
    /// PEM file of the client certificate (chain) presented to an `https://` endpoint that asks for
    /// one (mutual TLS); needs `OTEL_EXPORTER_OTLP_CLIENT_KEY`.
    #[schemars(extend("x-env" = "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"))]
    pub otlp_client_certificate: Option<PathBuf>,
    /// PEM file of the client certificate's private key (mutual TLS); needs
    /// `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`.
    #[schemars(extend("x-env" = "OTEL_EXPORTER_OTLP_CLIENT_KEY"))]
    pub otlp_client_key: Option<PathBuf>,
    /// Export timeout in milliseconds (default 10000).
    #[schemars(range(min = 1))]
    #[schemars(extend("x-env" = "OTEL_EXPORTER_OTLP_TIMEOUT"))]
    pub otlp_timeout: Option<u64>,
    /// Trace export timeout in milliseconds; wins over `OTEL_EXPORTER_OTLP_TIMEOUT`.
    #[schemars(range(min = 1))]
    #[schemars(extend("x-env" = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"))]
    pub otlp_traces_timeout: Option<u64>,
    /// Compression of export requests: gzip or none (the default).
    #[schemars(extend("x-env" = "OTEL_EXPORTER_OTLP_COMPRESSION"))]
    pub otlp_compression: Option<OtlpCompression>,
    /// Compression of trace export requests; wins over `OTEL_EXPORTER_OTLP_COMPRESSION`.
    #[schemars(extend("x-env" = "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"))]
    pub otlp_traces_compression: Option<OtlpCompression>,
    /// `true` turns span export off entirely: no exporter, no batch thread, whatever the other
    /// `OTEL_*` variables say. Log lines are still written, with their trace ids.
    #[schemars(extend("x-env" = "OTEL_SDK_DISABLED"))]
    pub sdk_disabled: Option<bool>,
    /// Where finished spans go: otlp (the default when an OTLP endpoint is set), console (one JSON
    /// line per span on stderr) or none.
    #[schemars(extend("x-env" = "OTEL_TRACES_EXPORTER"))]
    pub traces_exporter: Option<TracesExporter>,
    /// Milliseconds between two exports of the batch processor (default 5000).
    #[schemars(range(min = 1))]
    #[schemars(extend("x-env" = "OTEL_BSP_SCHEDULE_DELAY"))]
    pub bsp_schedule_delay: Option<u64>,
    /// Longest time in milliseconds one export request may take (default 30000); the exporter's
    /// timeout is the smaller of this and the OTLP timeout.
    #[schemars(range(min = 1))]
    #[schemars(extend("x-env" = "OTEL_BSP_EXPORT_TIMEOUT"))]
    pub bsp_export_timeout: Option<u64>,
    /// Finished spans kept waiting for export; more are dropped (default 2048).
    #[schemars(range(min = 1))]
    #[schemars(extend("x-env" = "OTEL_BSP_MAX_QUEUE_SIZE"))]
    pub bsp_max_queue_size: Option<u32>,
    /// Most spans in one export request (default 512); at most `OTEL_BSP_MAX_QUEUE_SIZE`.
    #[schemars(range(min = 1))]
    #[schemars(extend("x-env" = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"))]
    pub bsp_max_export_batch_size: Option<u32>,
    /// Most attributes one exported span keeps; later ones are counted as dropped (default 128).
    #[schemars(extend("x-env" = "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT"))]
    pub span_attribute_count_limit: Option<u32>,
    /// Most events one exported span keeps; later ones are counted as dropped (default 128).
    #[schemars(extend("x-env" = "OTEL_SPAN_EVENT_COUNT_LIMIT"))]
    pub span_event_count_limit: Option<u32>,
    /// Most links one exported span keeps; later ones are counted as dropped (default 128).
    #[schemars(extend("x-env" = "OTEL_SPAN_LINK_COUNT_LIMIT"))]
    pub span_link_count_limit: Option<u32>,
    /// Extra resource attributes, `key1=value1,key2=value2`; a `service.name` here names the service
    /// when neither `OTEL_SERVICE_NAME` nor `SERVICE_NAME` is set.
    #[schemars(extend("x-env" = "OTEL_RESOURCE_ATTRIBUTES"))]
    pub resource_attributes: Option<String>,
    /// Sampler: `always_on`, `always_off`, `traceidratio`, `parentbased_always_on` (the default),
    /// `parentbased_always_off` or `parentbased_traceidratio`.
    #[schemars(extend("x-env" = "OTEL_TRACES_SAMPLER"))]
    pub traces_sampler: Option<TracesSampler>,
    /// The sampler's argument: the ratio between 0 and 1 for the traceidratio samplers (default
    /// 1.0).
    #[schemars(range(min = 0.0, max = 1.0))]
    #[schemars(extend("x-env" = "OTEL_TRACES_SAMPLER_ARG"))]
    pub traces_sampler_arg: Option<f64>,
    /// Propagators for incoming and outgoing context: tracecontext, baggage or none, comma-separated
    /// (default tracecontext,baggage).
    #[schemars(extend("x-env" = "OTEL_PROPAGATORS"))]
    pub propagators: Option<Vec<PropagatorChoice>>,
    /// Whether the HTTP layer writes one access log line per finished request (default true).
    #[schemars(extend("x-env" = "ACCESS_LOG"))]
    pub access_log: Option<bool>,
    /// Request paths that write no access log line, comma-separated; an entry ending in `*` is a
    /// prefix. Default `/livez,/readyz,/health*,/metrics` (probes and scrapes); empty logs every
    /// path.
    #[schemars(extend("x-env" = "ACCESS_LOG_SKIP_PATHS"))]
    pub access_log_skip_paths: Option<String>,
    /// Level of the access log line of a 5xx answer: error (the default), warn or info. Lines of
    /// other answers are info.
    #[schemars(extend("x-env" = "ACCESS_LOG_SERVER_ERROR_LEVEL"))]
    pub access_log_server_error_level: Option<String>,
    /// Upper bounds in seconds of the `http_server_request_duration_seconds` buckets,
    /// comma-separated and increasing. Default OpenTelemetry's
    /// `0.005,0.01,0.025,0.05,0.075,0.1,0.25,0.5,0.75,1,2.5,5,7.5,10`.
    #[schemars(extend("x-env" = "HTTP_SERVER_DURATION_BUCKETS"))]
    pub http_duration_buckets: Option<String>,
    /// How `tracing` spans become OpenTelemetry spans: fast (the default, Groundwork's own bridge)
    /// or standard (tracing-opentelemetry's layer, for crates built on its `OpenTelemetrySpanExt`;
    /// needs groundwork-telemetry's `otel-standard` feature).
    #[schemars(extend("x-env" = "TELEMETRY_BRIDGE"))]
    pub bridge: TracingBridge,
}

/// How `tracing` spans get their OpenTelemetry identity and reach the exporter.
#[derive(
    Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum TracingBridge {
    /// Groundwork's own bridge: ids for every span at a fraction of the cost. Crates that read the
    /// trace through tracing-opentelemetry's `OpenTelemetrySpanExt` get an empty context; use
    /// [`crate::current_context`], [`crate::inject`] and [`crate::with_remote_parent`] instead.
    #[default]
    Fast,
    /// tracing-opentelemetry's `OpenTelemetryLayer`: OpenTelemetry's own context follows the
    /// entered span, so `OpenTelemetrySpanExt` consumers (reqwest-tracing, OpenTelemetry
    /// middlewares) and spans started through OpenTelemetry's API join the trace. Needs the
    /// `otel-standard` feature.
    Standard,
}

/// How log lines are written.
#[derive(
    Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line: the format log pipelines parse.
    #[default]
    Json,
    /// Human-readable, coloured on a terminal; for local development.
    Pretty,
}

/// Where finished spans go (`OTEL_TRACES_EXPORTER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TracesExporter {
    /// OTLP to the configured collector (or the specification's default endpoint when none is).
    Otlp,
    /// One JSON object per span on stderr, for local development.
    Console,
    /// Nowhere.
    None,
}

/// Compression of OTLP export requests (`OTEL_EXPORTER_OTLP_COMPRESSION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum OtlpCompression {
    /// gzip-compressed bodies (`Content-Encoding: gzip` over HTTP, `grpc-encoding: gzip` over gRPC).
    Gzip,
    /// Uncompressed bodies.
    None,
}

/// Where the span pipeline sends finished spans, resolved from the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpanExport {
    /// Spans are not exported: `OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none`, or no
    /// endpoint configured.
    None,
    /// One JSON line per span on stderr.
    Console,
    /// OTLP to this endpoint (the full URL, `/v1/traces` included for http/protobuf).
    Otlp(String),
}

/// The batch span processor's settings (`OTEL_BSP_*`), with the specification's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchSettings {
    /// Time between two exports.
    pub schedule_delay: Duration,
    /// Longest time one export may take.
    pub export_timeout: Duration,
    /// Finished spans kept waiting for export.
    pub max_queue_size: usize,
    /// Most spans in one export.
    pub max_export_batch_size: usize,
}

/// How much one exported span keeps (`OTEL_SPAN_*_COUNT_LIMIT`); what is over a limit is counted
/// as dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpanLimitSettings {
    /// Most attributes.
    pub attributes: u32,
    /// Most events.
    pub events: u32,
    /// Most links.
    pub links: u32,
}

impl Default for SpanLimitSettings {
    fn default() -> Self {
        Self {
            attributes: 128,
            events: 128,
            links: 128,
        }
    }
}

/// The OTLP transport (`OTEL_EXPORTER_OTLP_PROTOCOL`). http/json is not supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[non_exhaustive]
pub enum OtlpProtocol {
    /// HTTP with protobuf bodies, usually on port 4318.
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// gRPC, usually on port 4317.
    #[serde(rename = "grpc")]
    Grpc,
}

impl FromStr for OtlpProtocol {
    type Err = InvalidSetting;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "grpc" => Ok(Self::Grpc),
            "http/protobuf" => Ok(Self::HttpProtobuf),
            _ => Err(InvalidSetting::new(
                "expected http/protobuf or grpc (http/json is not supported)",
            )),
        }
    }
}

/// A setting's text that does not parse. The message says what was expected and never quotes
/// the value, which may be a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct InvalidSetting {
    reason: String,
}

impl InvalidSetting {
    fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// The minimum level of the log lines written (`LOG_LEVEL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Informational lines and above: the default.
    Info,
    /// Debugging detail and above.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The level as a filter directive: `error`, `warn`, `info`, `debug` or `trace`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

impl std::fmt::Display for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogLevel {
    type Err = InvalidSetting;

    /// Parses a level in any case (`DEBUG` is `debug`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let level = match text.trim().to_ascii_lowercase().as_str() {
            "error" => Self::Error,
            "warn" => Self::Warn,
            "info" => Self::Info,
            "debug" => Self::Debug,
            "trace" => Self::Trace,
            _ => {
                return Err(InvalidSetting::new(
                    "expected one of error, warn, info, debug, trace",
                ));
            }
        };
        Ok(level)
    }
}

/// Log filter directives in `RUST_LOG` syntax (`info,sqlx=warn,groundwork_live=debug`), checked
/// when the settings load.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct LogDirectives(String);

impl LogDirectives {
    /// The directives as given, trimmed.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for LogDirectives {
    type Err = InvalidSetting;

    /// Refuses directives the filter parser refuses, naming the position of the first bad one and
    /// never its text (a field filter may hold a value that must not reach a log).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if crate::level::parse_filter(text).is_ok() {
            return Ok(Self(text.trim().to_owned()));
        }
        let expected = "expected a level (error, warn, info, debug, trace) or directives like \
                        `info,sqlx=warn`";
        // The parser reads directives split at commas, so the first one it refuses alone is the
        // one that failed.
        let bad = text
            .split(',')
            .filter(|part| !part.trim().is_empty())
            .enumerate()
            .find_map(|(index, part)| {
                let error = tracing_subscriber::EnvFilter::builder()
                    .parse(part.trim())
                    .err()?;
                let reason = error.to_string();
                // A field filter's message quotes the field's value; say only that it is one.
                let reason = if reason.starts_with("invalid field filter") {
                    "invalid field filter".to_owned()
                } else {
                    reason
                };
                Some(format!("directive {} does not parse ({reason})", index + 1))
            });
        Err(InvalidSetting::new(match bad {
            Some(bad) => format!("{bad}; {expected}"),
            None => format!("the directives do not parse; {expected}"),
        }))
    }
}

impl TryFrom<String> for LogDirectives {
    type Error = InvalidSetting;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<LogDirectives> for String {
    fn from(directives: LogDirectives) -> Self {
        directives.0
    }
}

impl std::fmt::Display for LogDirectives {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An OTLP collector endpoint: an `http://` or `https://` URL, checked when the settings load.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct OtlpEndpoint(String);

impl OtlpEndpoint {
    /// The URL as given, trimmed.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for OtlpEndpoint {
    type Err = InvalidSetting;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.starts_with("http://") || text.starts_with("https://") {
            Ok(Self(text.to_owned()))
        } else {
            // No `scheme://` in the message: reports pass it through a URL redactor.
            Err(InvalidSetting::new(
                "expected a URL whose scheme is http or https, such as the collector's address on \
                 port 4317 (grpc) or 4318 (http/protobuf)",
            ))
        }
    }
}

impl TryFrom<String> for OtlpEndpoint {
    type Error = InvalidSetting;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<OtlpEndpoint> for String {
    fn from(endpoint: OtlpEndpoint) -> Self {
        endpoint.0
    }
}

impl std::fmt::Display for OtlpEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&groundwork_config::redact_url(&self.0))
    }
}

/// The sampler named by `OTEL_TRACES_SAMPLER`, as the OpenTelemetry specification names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[non_exhaustive]
pub enum TracesSampler {
    /// Record every trace.
    #[serde(rename = "always_on")]
    AlwaysOn,
    /// Record no trace.
    #[serde(rename = "always_off")]
    AlwaysOff,
    /// Record the fraction `OTEL_TRACES_SAMPLER_ARG` of traces, chosen by trace id.
    #[serde(rename = "traceidratio")]
    TraceIdRatio,
    /// Follow the caller's decision; record a trace that starts here (the default).
    #[serde(rename = "parentbased_always_on")]
    ParentBasedAlwaysOn,
    /// Follow the caller's decision; record no trace that starts here.
    #[serde(rename = "parentbased_always_off")]
    ParentBasedAlwaysOff,
    /// Follow the caller's decision; record the fraction `OTEL_TRACES_SAMPLER_ARG` of the traces
    /// that start here.
    #[serde(rename = "parentbased_traceidratio")]
    ParentBasedTraceIdRatio,
}

/// The sampler named by `OTEL_TRACES_SAMPLER` with its argument.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum SamplerChoice {
    /// Record every trace.
    AlwaysOn,
    /// Record no trace (ids are still generated, so logs keep their trace ids).
    AlwaysOff,
    /// Record this fraction of traces, chosen by trace id.
    TraceIdRatio(f64),
    /// Follow the caller's decision; for new traces use the inner choice.
    ParentBased(ParentBasedRoot),
}

/// What a parent-based sampler does for a trace that starts here.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum ParentBasedRoot {
    /// Record it.
    AlwaysOn,
    /// Do not record it.
    AlwaysOff,
    /// Record this fraction.
    TraceIdRatio(f64),
}

/// One propagator named in `OTEL_PROPAGATORS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum PropagatorChoice {
    /// W3C `traceparent` and `tracestate`.
    TraceContext,
    /// W3C `baggage`.
    Baggage,
    /// No propagator: `none` alone turns propagation off. It never appears in
    /// [`TelemetrySettings::propagator_list`].
    None,
}

impl TelemetrySettings {
    /// The service name, as the OpenTelemetry specification resolves it: `OTEL_SERVICE_NAME`, else
    /// the seeds' `SERVICE_NAME`, else `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, else
    /// `unknown_service` (the specification's default, so a missing name is visible in every
    /// backend).
    pub fn service(&self) -> Cow<'_, str> {
        self.service_or("unknown_service")
    }

    /// The service name as [`service`](Self::service) finds it, or `default` when none of
    /// `OTEL_SERVICE_NAME`, `SERVICE_NAME` and `service.name` in `OTEL_RESOURCE_ATTRIBUTES` is
    /// set: a service's own name for itself.
    pub fn service_or<'a>(&'a self, default: &'a str) -> Cow<'a, str> {
        if let Some(name) = non_empty(self.otel_service_name.as_deref())
            .or_else(|| non_empty(self.service_name.as_deref()))
        {
            return Cow::Borrowed(name);
        }
        self.resource_service_name()
            .map_or(Cow::Borrowed(default), Cow::Owned)
    }

    /// `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, when set there and not empty. A malformed
    /// list names no service here; [`resource_pairs`](Self::resource_pairs) reports it.
    fn resource_service_name(&self) -> Option<String> {
        let text = non_empty(self.resource_attributes.as_deref())?;
        parse_pairs(text, "OTEL_RESOURCE_ATTRIBUTES", false)
            .ok()?
            .into_iter()
            .rev()
            .find(|(key, value)| key == "service.name" && !value.trim().is_empty())
            .map(|(_, value)| value)
    }

    /// These settings with the service name resolved, `default` when none is configured.
    #[must_use]
    pub fn with_service_default(&self, default: &str) -> Self {
        let mut settings = self.clone();
        settings.service_name = Some(self.service_or(default).into_owned());
        settings
    }

    /// The log filter directives: `RUST_LOG` when set, else `LOG_LEVEL`, else `info`.
    pub fn log_directives(&self) -> String {
        match (&self.rust_log, self.log_level) {
            (Some(directives), _) if !directives.as_str().is_empty() => {
                directives.as_str().to_owned()
            }
            (_, Some(level)) => level.as_str().to_owned(),
            _ => LogLevel::Info.as_str().to_owned(),
        }
    }

    /// Where finished spans go.
    ///
    /// `OTEL_SDK_DISABLED=true` and `OTEL_TRACES_EXPORTER=none` export nothing, whatever else is
    /// set; `console` prints them; `otlp` sends them to the configured endpoint, or to the
    /// specification's default for the protocol (`http://localhost:4318/v1/traces`,
    /// `http://localhost:4317`) when none is set. Without `OTEL_TRACES_EXPORTER`, spans go over
    /// OTLP when an endpoint is set and nowhere otherwise.
    pub fn span_export(&self) -> SpanExport {
        if self.sdk_disabled == Some(true) {
            return SpanExport::None;
        }
        match self.traces_exporter {
            Some(TracesExporter::None) => SpanExport::None,
            Some(TracesExporter::Console) => SpanExport::Console,
            Some(TracesExporter::Otlp) => SpanExport::Otlp(match self.traces_endpoint() {
                Some(endpoint) => endpoint,
                None => match self.protocol() {
                    OtlpProtocol::Grpc => "http://localhost:4317".to_owned(),
                    OtlpProtocol::HttpProtobuf => "http://localhost:4318/v1/traces".to_owned(),
                },
            }),
            None => self
                .traces_endpoint()
                .map_or(SpanExport::None, SpanExport::Otlp),
        }
    }

    /// The configured trace export endpoint, or `None` when neither endpoint variable is set.
    ///
    /// A generic `OTEL_EXPORTER_OTLP_ENDPOINT` gets `/v1/traces` appended for http/protobuf, as the
    /// OpenTelemetry specification asks; the traces-only variable is used as given.
    pub fn traces_endpoint(&self) -> Option<String> {
        if let Some(endpoint) = &self.otlp_traces_endpoint {
            return Some(endpoint.as_str().to_owned());
        }
        let endpoint = self.otlp_endpoint.as_ref()?.as_str();
        Some(match self.protocol() {
            OtlpProtocol::Grpc => endpoint.to_owned(),
            OtlpProtocol::HttpProtobuf => format!("{}/v1/traces", endpoint.trim_end_matches('/')),
        })
    }

    /// The OTLP transport for traces: `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`, else http/protobuf (the specification's default).
    pub fn protocol(&self) -> OtlpProtocol {
        self.otlp_traces_protocol
            .or(self.otlp_protocol)
            .unwrap_or(OtlpProtocol::HttpProtobuf)
    }

    /// The timeout of one export request: `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else
    /// `OTEL_EXPORTER_OTLP_TIMEOUT`, else 10 s (the specification's), and never longer than
    /// `OTEL_BSP_EXPORT_TIMEOUT`.
    pub fn export_timeout(&self) -> Duration {
        let otlp = self
            .otlp_traces_timeout
            .or(self.otlp_timeout)
            .unwrap_or(10_000);
        let batch = self.bsp_export_timeout.unwrap_or(30_000);
        Duration::from_millis(otlp.min(batch))
    }

    /// The export headers as pairs: `OTEL_EXPORTER_OTLP_TRACES_HEADERS` when set (it replaces the
    /// generic list), else `OTEL_EXPORTER_OTLP_HEADERS`. Values are secret: errors name the
    /// variable and the position of the bad entry, never its text.
    pub fn export_headers(&self) -> Result<Vec<(String, String)>, TelemetryError> {
        use secrecy::ExposeSecret as _;
        let (variable, headers) = match (&self.otlp_traces_headers, &self.otlp_headers) {
            (Some(headers), _) => ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", headers),
            (None, Some(headers)) => ("OTEL_EXPORTER_OTLP_HEADERS", headers),
            (None, None) => return Ok(Vec::new()),
        };
        let pairs = parse_pairs(headers.expose_secret(), variable, true)?;
        for (index, (name, value)) in pairs.iter().enumerate() {
            if !name.bytes().all(is_token_byte) {
                return Err(TelemetryError::Setting {
                    variable,
                    reason: format!("entry {}: `{name}` is not a valid header name", index + 1),
                });
            }
            if value
                .bytes()
                .any(|byte| byte.is_ascii_control() && byte != b'\t')
            {
                return Err(TelemetryError::Setting {
                    variable,
                    reason: format!(
                        "entry {}: the value of `{name}` holds a control character",
                        index + 1
                    ),
                });
            }
        }
        Ok(pairs)
    }

    /// The compression of export requests: `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION`, else
    /// `OTEL_EXPORTER_OTLP_COMPRESSION`, else none.
    pub fn compression(&self) -> OtlpCompression {
        self.otlp_traces_compression
            .or(self.otlp_compression)
            .unwrap_or(OtlpCompression::None)
    }

    /// The batch processor's settings, the specification's defaults for what is unset. A batch
    /// larger than the queue is refused (the SDK would shrink it without a word).
    pub fn batch_settings(&self) -> Result<BatchSettings, TelemetryError> {
        let queue = self.bsp_max_queue_size.unwrap_or(2048);
        let batch = self.bsp_max_export_batch_size.unwrap_or(512);
        if batch > queue {
            let reason = if self.bsp_max_export_batch_size.is_some() {
                format!("{batch} is larger than the queue (OTEL_BSP_MAX_QUEUE_SIZE={queue})")
            } else {
                format!(
                    "the default batch of {batch} is larger than the queue \
                     (OTEL_BSP_MAX_QUEUE_SIZE={queue}); set it to {queue} or less"
                )
            };
            return Err(TelemetryError::Setting {
                variable: "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                reason,
            });
        }
        let size = |value: u32| usize::try_from(value).unwrap_or(usize::MAX);
        Ok(BatchSettings {
            schedule_delay: Duration::from_millis(self.bsp_schedule_delay.unwrap_or(5_000)),
            export_timeout: Duration::from_millis(self.bsp_export_timeout.unwrap_or(30_000)),
            max_queue_size: size(queue),
            max_export_batch_size: size(batch),
        })
    }

    /// The span limits, 128 each by default as in the specification.
    pub fn span_limits(&self) -> SpanLimitSettings {
        let default = SpanLimitSettings::default();
        SpanLimitSettings {
            attributes: self
                .span_attribute_count_limit
                .unwrap_or(default.attributes),
            events: self.span_event_count_limit.unwrap_or(default.events),
            links: self.span_link_count_limit.unwrap_or(default.links),
        }
    }

    /// `OTEL_RESOURCE_ATTRIBUTES` as pairs.
    pub fn resource_pairs(&self) -> Result<Vec<(String, String)>, TelemetryError> {
        match non_empty(self.resource_attributes.as_deref()) {
            None => Ok(Vec::new()),
            Some(text) => parse_pairs(text, "OTEL_RESOURCE_ATTRIBUTES", false),
        }
    }

    /// The sampler; `parentbased_always_on` by default, as in the specification. The ratio of
    /// the traceidratio samplers is `OTEL_TRACES_SAMPLER_ARG`, 1.0 when unset.
    pub fn sampler(&self) -> SamplerChoice {
        let ratio = self.traces_sampler_arg.unwrap_or(1.0);
        match self
            .traces_sampler
            .unwrap_or(TracesSampler::ParentBasedAlwaysOn)
        {
            TracesSampler::AlwaysOn => SamplerChoice::AlwaysOn,
            TracesSampler::AlwaysOff => SamplerChoice::AlwaysOff,
            TracesSampler::TraceIdRatio => SamplerChoice::TraceIdRatio(ratio),
            TracesSampler::ParentBasedAlwaysOn => {
                SamplerChoice::ParentBased(ParentBasedRoot::AlwaysOn)
            }
            TracesSampler::ParentBasedAlwaysOff => {
                SamplerChoice::ParentBased(ParentBasedRoot::AlwaysOff)
            }
            TracesSampler::ParentBasedTraceIdRatio => {
                SamplerChoice::ParentBased(ParentBasedRoot::TraceIdRatio(ratio))
            }
        }
    }

    /// The propagators, in order and each once; empty for `none`. `tracecontext,baggage` by
    /// default.
    pub fn propagator_list(&self) -> Vec<PropagatorChoice> {
        let Some(names) = &self.propagators else {
            return vec![PropagatorChoice::TraceContext, PropagatorChoice::Baggage];
        };
        let mut list = Vec::new();
        for &choice in names {
            if choice != PropagatorChoice::None && !list.contains(&choice) {
                list.push(choice);
            }
        }
        list
    }
}

/// A byte allowed in an HTTP header name (RFC 9110's `tchar`).
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

pub(crate) fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|value| !value.is_empty())
}

/// Parses `k1=v1,k2=v2` (values percent-decoded as the specification asks). With `secret`, an error
/// names only the entry's position.
fn parse_pairs(
    text: &str,
    variable: &'static str,
    secret: bool,
) -> Result<Vec<(String, String)>, TelemetryError> {
    let mut pairs = Vec::new();
    for (index, entry) in text.split(',').enumerate() {
        if entry.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = entry.split_once('=') else {
            let reason = if secret {
                format!("entry {} has no `=`; expected key=value pairs", index + 1)
            } else {
                format!(
                    "entry {} (`{}`) has no `=`; expected key=value pairs",
                    index + 1,
                    entry.trim()
                )
            };
            return Err(TelemetryError::Setting { variable, reason });
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(TelemetryError::Setting {
                variable,
                reason: format!("entry {} has an empty key", index + 1),
            });
        }
        let value = percent_encoding::percent_decode_str(value.trim()).decode_utf8_lossy();
        pairs.push((key.to_owned(), value.into_owned()));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TelemetrySettings {
        TelemetrySettings::default()
    }

    #[test]
    fn service_name_follows_the_specification_then_the_seeds() {
        let mut s = settings();
        assert_eq!(s.service(), "unknown_service");
        assert_eq!(s.service_or("api-gateway"), "api-gateway");
        s.resource_attributes =
            Some("deployment.environment=prod,service.name=from%20resource".into());
        assert_eq!(s.service(), "from resource");
        s.service_name = Some("gateway".into());
        assert_eq!(s.service(), "gateway");
        s.otel_service_name = Some("otel-name".into());
        assert_eq!(s.service(), "otel-name");
        assert_eq!(s.with_service_default("x").service(), "otel-name");
        s.otel_service_name = Some("  ".into());
        assert_eq!(s.service(), "gateway");
        s.service_name = None;
        s.resource_attributes = Some("service.name=".into());
        assert_eq!(s.service_or("api-gateway"), "api-gateway");
    }

    #[test]
    fn rust_log_wins_over_log_level_and_bad_levels_are_refused() -> Result<(), InvalidSetting> {
        let mut s = settings();
        assert_eq!(s.log_directives(), "info");
        s.log_level = Some("DEBUG".parse()?);
        assert_eq!(s.log_directives(), "debug");
        s.rust_log = Some("warn,sqlx=error".parse()?);
        assert_eq!(s.log_directives(), "warn,sqlx=error");
        let error = "verbose"
            .parse::<LogLevel>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("error, warn, info, debug, trace"), "{error}");
        let error = "info,sqlx=nonsense-level"
            .parse::<LogDirectives>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.starts_with("directive 2 does not parse"), "{error}");
        assert!(!error.contains("nonsense"), "{error}");
        Ok(())
    }

    #[test]
    fn http_protobuf_appends_the_traces_path_and_grpc_does_not() -> Result<(), InvalidSetting> {
        let mut s = settings();
        assert_eq!(s.traces_endpoint(), None);
        assert_eq!(s.protocol(), OtlpProtocol::HttpProtobuf);
        s.otlp_endpoint = Some("http://collector:4318/".parse()?);
        assert_eq!(
            s.traces_endpoint().as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        s.otlp_protocol = Some("http/protobuf".parse()?);
        assert_eq!(
            s.traces_endpoint().as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        s.otlp_protocol = Some(OtlpProtocol::Grpc);
        assert_eq!(
            s.traces_endpoint().as_deref(),
            Some("http://collector:4318/")
        );
        s.otlp_traces_endpoint = Some("https://traces.example/custom".parse()?);
        assert_eq!(
            s.traces_endpoint().as_deref(),
            Some("https://traces.example/custom")
        );
        assert!("http/json".parse::<OtlpProtocol>().is_err());
        assert!("collector:4317".parse::<OtlpEndpoint>().is_err());
        Ok(())
    }

    #[test]
    fn header_errors_never_quote_the_secret() {
        let mut s = settings();
        s.otlp_headers = Some(Secret::from("api-key=s3cr3t-value,broken-s3cr3t"));
        let error = s
            .export_headers()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("OTEL_EXPORTER_OTLP_HEADERS"), "{error}");
        assert!(error.contains("entry 2"), "{error}");
        assert!(!error.contains("s3cr3t"), "{error}");
        s.otlp_headers = Some(Secret::from("api-key=a%20b, x-team = core"));
        assert_eq!(
            s.export_headers().ok(),
            Some(vec![
                ("api-key".to_owned(), "a b".to_owned()),
                ("x-team".to_owned(), "core".to_owned())
            ])
        );
    }

    #[test]
    fn samplers_and_propagators_follow_the_specification_names() {
        let mut s = settings();
        assert_eq!(
            s.sampler(),
            SamplerChoice::ParentBased(ParentBasedRoot::AlwaysOn)
        );
        s.traces_sampler = Some(TracesSampler::ParentBasedTraceIdRatio);
        s.traces_sampler_arg = Some(0.25);
        assert_eq!(
            s.sampler(),
            SamplerChoice::ParentBased(ParentBasedRoot::TraceIdRatio(0.25))
        );
        s.traces_sampler = Some(TracesSampler::TraceIdRatio);
        s.traces_sampler_arg = None;
        assert_eq!(s.sampler(), SamplerChoice::TraceIdRatio(1.0));

        assert_eq!(
            s.propagator_list(),
            vec![PropagatorChoice::TraceContext, PropagatorChoice::Baggage]
        );
        s.propagators = Some(vec![
            PropagatorChoice::Baggage,
            PropagatorChoice::TraceContext,
            PropagatorChoice::Baggage,
        ]);
        assert_eq!(
            s.propagator_list(),
            vec![PropagatorChoice::Baggage, PropagatorChoice::TraceContext]
        );
        s.propagators = Some(vec![PropagatorChoice::None]);
        assert_eq!(s.propagator_list(), vec![]);
    }

    #[test]
    fn per_signal_variables_win_over_the_generic_ones() -> anyhow::Result<()> {
        let mut s = settings();
        s.otlp_endpoint = Some("http://collector:4317".parse()?);
        s.otlp_protocol = Some(OtlpProtocol::Grpc);
        s.otlp_headers = Some(Secret::from("api-key=generic,x-team=core"));
        s.otlp_timeout = Some(2_000);
        s.otlp_compression = Some(OtlpCompression::None);
        assert_eq!(s.protocol(), OtlpProtocol::Grpc);
        assert_eq!(s.export_timeout(), Duration::from_secs(2));
        assert_eq!(s.compression(), OtlpCompression::None);
        assert_eq!(s.export_headers()?.len(), 2);

        s.otlp_traces_protocol = Some(OtlpProtocol::HttpProtobuf);
        s.otlp_traces_headers = Some(Secret::from("api-key=traces"));
        s.otlp_traces_timeout = Some(1_500);
        s.otlp_traces_compression = Some(OtlpCompression::Gzip);
        assert_eq!(s.protocol(), OtlpProtocol::HttpProtobuf);
        assert_eq!(
            s.traces_endpoint().as_deref(),
            Some("http://collector:4317/v1/traces")
        );
        assert_eq!(s.export_timeout(), Duration::from_millis(1_500));
        assert_eq!(s.compression(), OtlpCompression::Gzip);
        // The traces list replaces the generic one, as the specification's other SDKs do.
        assert_eq!(
            s.export_headers()?,
            [("api-key".to_owned(), "traces".to_owned())]
        );
        // The batch processor's export timeout caps the request timeout.
        s.bsp_export_timeout = Some(700);
        assert_eq!(s.export_timeout(), Duration::from_millis(700));
        Ok(())
    }

    #[test]
    fn bad_header_names_and_values_are_refused_without_quoting_values() {
        let mut s = settings();
        s.otlp_traces_headers = Some(Secret::from("good=1,bad name=s3cr3t"));
        let error = s
            .export_headers()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
                && error.contains("entry 2")
                && error.contains("bad name"),
            "{error}"
        );
        assert!(!error.contains("s3cr3t"), "{error}");
        s.otlp_traces_headers = Some(Secret::from("api-key=s3cr3t%0Avalue"));
        let error = s
            .export_headers()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("control character"), "{error}");
        assert!(!error.contains("s3cr3t"), "{error}");
    }

    #[test]
    fn the_exporter_follows_sdk_disabled_then_traces_exporter_then_the_endpoint()
    -> Result<(), InvalidSetting> {
        let mut s = settings();
        assert_eq!(s.span_export(), SpanExport::None);
        s.traces_exporter = Some(TracesExporter::Otlp);
        assert_eq!(
            s.span_export(),
            SpanExport::Otlp("http://localhost:4318/v1/traces".into())
        );
        s.otlp_protocol = Some(OtlpProtocol::Grpc);
        assert_eq!(
            s.span_export(),
            SpanExport::Otlp("http://localhost:4317".into())
        );
        s.traces_exporter = None;
        s.otlp_endpoint = Some("http://collector:4317".parse()?);
        assert_eq!(
            s.span_export(),
            SpanExport::Otlp("http://collector:4317".into())
        );
        s.traces_exporter = Some(TracesExporter::Console);
        assert_eq!(s.span_export(), SpanExport::Console);
        s.traces_exporter = Some(TracesExporter::None);
        assert_eq!(s.span_export(), SpanExport::None);
        s.traces_exporter = Some(TracesExporter::Otlp);
        s.sdk_disabled = Some(true);
        assert_eq!(s.span_export(), SpanExport::None);
        Ok(())
    }

    #[test]
    fn batch_settings_default_to_the_specification_and_refuse_a_batch_over_the_queue()
    -> Result<(), TelemetryError> {
        let mut s = settings();
        let defaults = s.batch_settings()?;
        assert_eq!(defaults.schedule_delay, Duration::from_secs(5));
        assert_eq!(defaults.export_timeout, Duration::from_secs(30));
        assert_eq!(defaults.max_queue_size, 2048);
        assert_eq!(defaults.max_export_batch_size, 512);
        s.bsp_schedule_delay = Some(200);
        s.bsp_max_queue_size = Some(100);
        s.bsp_max_export_batch_size = Some(100);
        let batch = s.batch_settings()?;
        assert_eq!(batch.schedule_delay, Duration::from_millis(200));
        assert_eq!(batch.max_export_batch_size, 100);
        s.bsp_max_export_batch_size = Some(101);
        let error = s
            .batch_settings()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") && error.contains("101"),
            "{error}"
        );
        s.bsp_max_export_batch_size = None;
        let error = s
            .batch_settings()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("default batch of 512"), "{error}");
        Ok(())
    }

    #[test]
    fn span_limits_default_to_128() {
        let mut s = settings();
        assert_eq!(s.span_limits(), SpanLimitSettings::default());
        s.span_event_count_limit = Some(3);
        s.span_link_count_limit = Some(0);
        let limits = s.span_limits();
        assert_eq!(
            (limits.attributes, limits.events, limits.links),
            (128, 3, 0)
        );
    }
}
