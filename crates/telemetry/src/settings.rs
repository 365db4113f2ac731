//! What a service configures about its telemetry, named after the standard variables.
//!
//! [`TelemetrySettings`] is a plain config struct: embed it in the service's own config type and
//! load that with `groundwork-config`, which reads each field from the variable named in its
//! `x-env` (`SERVICE_NAME`, `LOG_LEVEL`, `OTEL_EXPORTER_OTLP_ENDPOINT`, ...), lists it in
//! `.env.example`, and reports a bad value with its variable and source. This crate never reads the
//! process environment itself.

use std::path::PathBuf;
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
    /// Name of this service in logs and traces; `OTEL_SERVICE_NAME` is used when unset.
    #[schemars(extend("x-env" = "SERVICE_NAME"))]
    pub service_name: Option<String>,
    /// Name of this service in traces (OpenTelemetry's variable); `SERVICE_NAME` wins when both are set.
    #[schemars(extend("x-env" = "OTEL_SERVICE_NAME"))]
    pub otel_service_name: Option<String>,
    /// Minimum log level: error, warn, info, debug or trace. `RUST_LOG` directives win when set.
    #[schemars(extend("x-env" = "LOG_LEVEL"))]
    pub log_level: Option<String>,
    /// Full filter directives, e.g. `info,sqlx=warn,groundwork_live=debug`.
    #[schemars(extend("x-env" = "RUST_LOG"))]
    pub rust_log: Option<String>,
    /// Log line format: json (the default) or pretty, a human-readable format for local development.
    #[schemars(extend("x-env" = "LOG_FORMAT"))]
    pub log_format: LogFormat,
    /// OTLP collector endpoint; spans are not exported when this and the traces endpoint are unset.
    #[schemars(extend("x-env" = "OTEL_EXPORTER_OTLP_ENDPOINT"))]
    pub otlp_endpoint: Option<String>,
    /// OTLP endpoint for traces only, used as given (no `/v1/traces` is appended).
    #[schemars(extend("x-env" = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))]
    pub otlp_traces_endpoint: Option<String>,
    /// OTLP transport: grpc (port 4317, the default) or http/protobuf (port 4318).
    #[schemars(extend("x-env" = "OTEL_EXPORTER_OTLP_PROTOCOL"))]
    pub otlp_protocol: Option<String>,
    /// Headers sent with every export, `key1=value1,key2=value2`; often an API key, so secret.
    #[schemars(extend("x-env" = "OTEL_EXPORTER_OTLP_HEADERS"))]
    pub otlp_headers: Option<Secret>,
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
    #[schemars(extend("x-env" = "OTEL_EXPORTER_OTLP_TIMEOUT"))]
    pub otlp_timeout: Option<u64>,
    /// Extra resource attributes, `key1=value1,key2=value2`.
    #[schemars(extend("x-env" = "OTEL_RESOURCE_ATTRIBUTES"))]
    pub resource_attributes: Option<String>,
    /// Sampler: `always_on`, `always_off`, `traceidratio`, `parentbased_always_on` (the default),
    /// `parentbased_always_off` or `parentbased_traceidratio`.
    #[schemars(extend("x-env" = "OTEL_TRACES_SAMPLER"))]
    pub traces_sampler: Option<String>,
    /// The sampler's argument: the ratio for the traceidratio samplers (default 1.0).
    #[schemars(extend("x-env" = "OTEL_TRACES_SAMPLER_ARG"))]
    pub traces_sampler_arg: Option<String>,
    /// Propagators for incoming and outgoing context: tracecontext, baggage or none, comma-separated
    /// (default tracecontext,baggage).
    #[schemars(extend("x-env" = "OTEL_PROPAGATORS"))]
    pub propagators: Option<String>,
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

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OtlpProtocol {
    /// gRPC, usually on port 4317.
    Grpc,
    /// HTTP with protobuf bodies, usually on port 4318.
    HttpProtobuf,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PropagatorChoice {
    /// W3C `traceparent` and `tracestate`.
    TraceContext,
    /// W3C `baggage`.
    Baggage,
}

impl TelemetrySettings {
    /// The service name: `SERVICE_NAME`, else `OTEL_SERVICE_NAME`, else `unknown_service` (the
    /// OpenTelemetry default, so a missing name is visible in every backend).
    pub fn service(&self) -> &str {
        self.service_or("unknown_service")
    }

    /// The service name as [`service`](Self::service) finds it, or `default` when neither
    /// `SERVICE_NAME` nor `OTEL_SERVICE_NAME` is set: a service's own name for itself.
    pub fn service_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.service_name
            .as_deref()
            .or(self.otel_service_name.as_deref())
            .filter(|name| !name.trim().is_empty())
            .unwrap_or(default)
    }

    /// These settings with the service name resolved, `default` when none is configured.
    #[must_use]
    pub fn with_service_default(&self, default: &str) -> Self {
        let mut settings = self.clone();
        settings.service_name = Some(self.service_or(default).to_owned());
        settings
    }

    /// The log filter directives: `RUST_LOG` when set, else `LOG_LEVEL`, else `info`.
    pub fn log_directives(&self) -> Result<String, TelemetryError> {
        if let Some(directives) = non_empty(self.rust_log.as_deref()) {
            return Ok(directives.to_owned());
        }
        match non_empty(self.log_level.as_deref()) {
            None => Ok("info".to_owned()),
            Some(level) => {
                let level = level.to_ascii_lowercase();
                if ["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
                    Ok(level)
                } else {
                    Err(TelemetryError::setting(
                        "LOG_LEVEL",
                        "expected one of error, warn, info, debug, trace",
                    ))
                }
            }
        }
    }

    /// The trace export endpoint, or `None` when spans are not exported.
    ///
    /// A generic `OTEL_EXPORTER_OTLP_ENDPOINT` gets `/v1/traces` appended for http/protobuf, as the
    /// OpenTelemetry specification asks; the traces-only variable is used as given.
    pub fn traces_endpoint(&self) -> Result<Option<String>, TelemetryError> {
        if let Some(endpoint) = non_empty(self.otlp_traces_endpoint.as_deref()) {
            check_endpoint("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint)?;
            return Ok(Some(endpoint.to_owned()));
        }
        let Some(endpoint) = non_empty(self.otlp_endpoint.as_deref()) else {
            return Ok(None);
        };
        check_endpoint("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)?;
        Ok(Some(match self.protocol()? {
            OtlpProtocol::Grpc => endpoint.to_owned(),
            OtlpProtocol::HttpProtobuf => format!("{}/v1/traces", endpoint.trim_end_matches('/')),
        }))
    }

    /// The OTLP transport; gRPC unless `OTEL_EXPORTER_OTLP_PROTOCOL` says otherwise, because the
    /// platform's collectors listen on 4317.
    pub fn protocol(&self) -> Result<OtlpProtocol, TelemetryError> {
        match non_empty(self.otlp_protocol.as_deref()) {
            None | Some("grpc") => Ok(OtlpProtocol::Grpc),
            Some("http/protobuf") => Ok(OtlpProtocol::HttpProtobuf),
            Some(_) => Err(TelemetryError::setting(
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                "expected grpc or http/protobuf (http/json is not supported)",
            )),
        }
    }

    /// The export timeout (default 10 s, the specification's).
    pub fn export_timeout(&self) -> Duration {
        Duration::from_millis(self.otlp_timeout.unwrap_or(10_000))
    }

    /// The export headers as pairs. Values are secret: errors name the variable and the position of
    /// the bad entry, never its text.
    pub fn export_headers(&self) -> Result<Vec<(String, String)>, TelemetryError> {
        use secrecy::ExposeSecret as _;
        let Some(headers) = &self.otlp_headers else {
            return Ok(Vec::new());
        };
        parse_pairs(headers.expose_secret(), "OTEL_EXPORTER_OTLP_HEADERS", true)
    }

    /// `OTEL_RESOURCE_ATTRIBUTES` as pairs.
    pub fn resource_pairs(&self) -> Result<Vec<(String, String)>, TelemetryError> {
        match non_empty(self.resource_attributes.as_deref()) {
            None => Ok(Vec::new()),
            Some(text) => parse_pairs(text, "OTEL_RESOURCE_ATTRIBUTES", false),
        }
    }

    /// The sampler; `parentbased_always_on` by default, as in the specification.
    pub fn sampler(&self) -> Result<SamplerChoice, TelemetryError> {
        let ratio = || -> Result<f64, TelemetryError> {
            match non_empty(self.traces_sampler_arg.as_deref()) {
                None => Ok(1.0),
                Some(arg) => arg
                    .parse::<f64>()
                    .ok()
                    .filter(|ratio| (0.0..=1.0).contains(ratio))
                    .ok_or_else(|| {
                        TelemetryError::setting(
                            "OTEL_TRACES_SAMPLER_ARG",
                            "expected a ratio between 0 and 1, e.g. 0.25",
                        )
                    }),
            }
        };
        Ok(match non_empty(self.traces_sampler.as_deref()) {
            None | Some("parentbased_always_on") => {
                SamplerChoice::ParentBased(ParentBasedRoot::AlwaysOn)
            }
            Some("always_on") => SamplerChoice::AlwaysOn,
            Some("always_off") => SamplerChoice::AlwaysOff,
            Some("traceidratio") => SamplerChoice::TraceIdRatio(ratio()?),
            Some("parentbased_always_off") => {
                SamplerChoice::ParentBased(ParentBasedRoot::AlwaysOff)
            }
            Some("parentbased_traceidratio") => {
                SamplerChoice::ParentBased(ParentBasedRoot::TraceIdRatio(ratio()?))
            }
            Some(_) => {
                return Err(TelemetryError::setting(
                    "OTEL_TRACES_SAMPLER",
                    "expected always_on, always_off, traceidratio, parentbased_always_on, \
                     parentbased_always_off or parentbased_traceidratio",
                ));
            }
        })
    }

    /// The propagators, in order; empty for `none`. `tracecontext,baggage` by default.
    pub fn propagator_list(&self) -> Result<Vec<PropagatorChoice>, TelemetryError> {
        let Some(text) = non_empty(self.propagators.as_deref()) else {
            return Ok(vec![
                PropagatorChoice::TraceContext,
                PropagatorChoice::Baggage,
            ]);
        };
        let mut list = Vec::new();
        for name in text
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
        {
            let choice = match name {
                "tracecontext" => PropagatorChoice::TraceContext,
                "baggage" => PropagatorChoice::Baggage,
                "none" => continue,
                _ => {
                    return Err(TelemetryError::Setting {
                        variable: "OTEL_PROPAGATORS",
                        reason: format!(
                            "unsupported propagator `{name}`; Groundwork supports tracecontext, baggage and none"
                        ),
                    });
                }
            };
            if !list.contains(&choice) {
                list.push(choice);
            }
        }
        Ok(list)
    }
}

pub(crate) fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|value| !value.is_empty())
}

fn check_endpoint(variable: &'static str, endpoint: &str) -> Result<(), TelemetryError> {
    if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        Ok(())
    } else {
        Err(TelemetryError::setting(
            variable,
            "expected an http:// or https:// URL, e.g. http://localhost:4317",
        ))
    }
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
        pairs.push((key.to_owned(), percent_decode(value.trim())));
    }
    Ok(pairs)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == b'%' && index + 2 < bytes.len() {
            let hex = |b: u8| char::from(b).to_digit(16);
            if let (Some(high), Some(low)) = (hex(bytes[index + 1]), hex(bytes[index + 2])) {
                // Two hex digits are at most 255.
                out.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                index += 3;
                continue;
            }
        }
        out.push(byte);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TelemetrySettings {
        TelemetrySettings::default()
    }

    #[test]
    fn service_name_prefers_service_name_then_otel_service_name() {
        let mut s = settings();
        assert_eq!(s.service(), "unknown_service");
        s.otel_service_name = Some("otel-name".into());
        assert_eq!(s.service(), "otel-name");
        s.service_name = Some("gateway".into());
        assert_eq!(s.service(), "gateway");
    }

    #[test]
    fn rust_log_wins_over_log_level_and_bad_levels_are_named() {
        let mut s = settings();
        assert_eq!(s.log_directives().ok().as_deref(), Some("info"));
        s.log_level = Some("DEBUG".into());
        assert_eq!(s.log_directives().ok().as_deref(), Some("debug"));
        s.rust_log = Some("warn,sqlx=error".into());
        assert_eq!(s.log_directives().ok().as_deref(), Some("warn,sqlx=error"));
        s.rust_log = None;
        s.log_level = Some("verbose".into());
        let error = s
            .log_directives()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("LOG_LEVEL"), "{error}");
    }

    #[test]
    fn http_protobuf_appends_the_traces_path_and_grpc_does_not() {
        let mut s = settings();
        assert_eq!(s.traces_endpoint().ok(), Some(None));
        s.otlp_endpoint = Some("http://collector:4318/".into());
        s.otlp_protocol = Some("http/protobuf".into());
        assert_eq!(
            s.traces_endpoint().ok().flatten().as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        s.otlp_protocol = Some("grpc".into());
        assert_eq!(
            s.traces_endpoint().ok().flatten().as_deref(),
            Some("http://collector:4318/")
        );
        s.otlp_traces_endpoint = Some("https://traces.example/custom".into());
        assert_eq!(
            s.traces_endpoint().ok().flatten().as_deref(),
            Some("https://traces.example/custom")
        );
        s.otlp_protocol = Some("http/json".into());
        s.otlp_traces_endpoint = None;
        assert!(s.traces_endpoint().is_err());
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
            s.sampler().ok(),
            Some(SamplerChoice::ParentBased(ParentBasedRoot::AlwaysOn))
        );
        s.traces_sampler = Some("parentbased_traceidratio".into());
        s.traces_sampler_arg = Some("0.25".into());
        assert_eq!(
            s.sampler().ok(),
            Some(SamplerChoice::ParentBased(ParentBasedRoot::TraceIdRatio(
                0.25
            )))
        );
        s.traces_sampler_arg = Some("2".into());
        assert!(s.sampler().is_err());
        s.traces_sampler = Some("jaeger_remote".into());
        assert!(s.sampler().is_err());

        assert_eq!(
            s.propagator_list().ok(),
            Some(vec![
                PropagatorChoice::TraceContext,
                PropagatorChoice::Baggage
            ])
        );
        s.propagators = Some("baggage, tracecontext".into());
        assert_eq!(
            s.propagator_list().ok(),
            Some(vec![
                PropagatorChoice::Baggage,
                PropagatorChoice::TraceContext
            ])
        );
        s.propagators = Some("none".into());
        assert_eq!(s.propagator_list().ok(), Some(vec![]));
        s.propagators = Some("tracecontext,b3".into());
        let error = s
            .propagator_list()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("b3") && error.contains("OTEL_PROPAGATORS"),
            "{error}"
        );
    }
}
