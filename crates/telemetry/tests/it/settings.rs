//! `TelemetrySettings` embedded in a service's config type loads through groundwork-config from the
//! standard variable names.

use groundwork_config::Loader;
use std::time::Duration;

use groundwork_telemetry::{
    LogFormat, LogLevel, OtlpCompression, OtlpProtocol, ParentBasedRoot, PropagatorChoice,
    SamplerChoice, SpanExport, TelemetrySettings, TracesExporter, TracesSampler, TracingBridge,
};

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct ServiceSettings {
    /// Port the HTTP server listens on.
    #[serde(default)]
    port: u16,
    #[serde(default)]
    telemetry: TelemetrySettings,
}

#[test]
fn standard_variables_fill_the_embedded_settings() -> anyhow::Result<()> {
    let settings: ServiceSettings = Loader::new()
        .no_dotenv()
        .vars([
            ("PORT", "8080"),
            ("SERVICE_NAME", "api-gateway"),
            ("LOG_LEVEL", "debug"),
            ("LOG_FORMAT", "pretty"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=t0ps3cret"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/otel/ca.pem"),
            (
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                "/etc/otel/client.pem",
            ),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/etc/otel/client.key"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
        ])
        .load()?;
    let telemetry = &settings.telemetry;
    assert_eq!(settings.port, 8080);
    assert_eq!(telemetry.service(), "api-gateway");
    assert_eq!(telemetry.log_directives(), "debug");
    assert_eq!(telemetry.log_format, LogFormat::Pretty);
    assert_eq!(
        telemetry.traces_endpoint().as_deref(),
        Some("http://collector:4317")
    );
    assert_eq!(telemetry.export_timeout().as_millis(), 2500);
    assert_eq!(
        telemetry.otlp_certificate.as_deref(),
        Some(std::path::Path::new("/etc/otel/ca.pem"))
    );
    assert_eq!(
        telemetry.otlp_client_certificate.as_deref(),
        Some(std::path::Path::new("/etc/otel/client.pem"))
    );
    assert_eq!(
        telemetry.otlp_client_key.as_deref(),
        Some(std::path::Path::new("/etc/otel/client.key"))
    );
    assert_eq!(
        telemetry.export_headers()?,
        [("api-key".to_owned(), "t0ps3cret".to_owned())]
    );
    assert!(
        !format!("{settings:?}").contains("t0ps3cret"),
        "headers are secret"
    );
    Ok(())
}

#[test]
fn nothing_set_means_json_logs_at_info_without_export() -> anyhow::Result<()> {
    let settings: ServiceSettings = Loader::new().no_dotenv().vars([("PORT", "1")]).load()?;
    assert_eq!(settings.telemetry.log_format, LogFormat::Json);
    assert_eq!(settings.telemetry.log_directives(), "info");
    assert_eq!(settings.telemetry.traces_endpoint(), None);
    Ok(())
}

#[test]
fn a_bad_log_format_is_reported_with_its_variable() {
    let error = Loader::new()
        .no_dotenv()
        .vars([("LOG_FORMAT", "xml")])
        .load::<ServiceSettings>()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("LOG_FORMAT"), "{error}");
}

#[test]
fn the_bridge_is_fast_unless_telemetry_bridge_asks_for_the_standard_path() -> anyhow::Result<()> {
    let default: ServiceSettings = Loader::new().no_dotenv().vars([("PORT", "1")]).load()?;
    assert_eq!(default.telemetry.bridge, TracingBridge::Fast);
    let standard: ServiceSettings = Loader::new()
        .no_dotenv()
        .vars([("TELEMETRY_BRIDGE", "standard")])
        .load()?;
    assert_eq!(standard.telemetry.bridge, TracingBridge::Standard);
    let error = Loader::new()
        .no_dotenv()
        .vars([("TELEMETRY_BRIDGE", "tracing-opentelemetry")])
        .load::<ServiceSettings>()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("TELEMETRY_BRIDGE"), "{error}");
    Ok(())
}

#[test]
fn the_standard_otel_variables_fill_the_settings() -> anyhow::Result<()> {
    let settings: ServiceSettings = Loader::new()
        .no_dotenv()
        .vars([
            ("SERVICE_NAME", "api-gateway"),
            ("OTEL_SERVICE_NAME", "gateway-eu"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=ignored,team=core"),
            ("OTEL_SDK_DISABLED", "false"),
            ("OTEL_TRACES_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=generic"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "api-key=traces"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "9000"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "4000"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "3000"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "1000"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "100"),
            ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "64"),
            ("OTEL_SPAN_EVENT_COUNT_LIMIT", "32"),
            ("OTEL_SPAN_LINK_COUNT_LIMIT", "16"),
        ])
        .load()?;
    let telemetry = &settings.telemetry;
    assert_eq!(telemetry.service(), "gateway-eu");
    assert_eq!(telemetry.traces_exporter, Some(TracesExporter::Otlp));
    assert_eq!(telemetry.protocol(), OtlpProtocol::HttpProtobuf);
    assert_eq!(
        telemetry.span_export(),
        SpanExport::Otlp("http://collector:4318/v1/traces".into())
    );
    assert_eq!(
        telemetry.export_headers()?,
        [("api-key".to_owned(), "traces".to_owned())]
    );
    assert_eq!(telemetry.export_timeout(), Duration::from_secs(3));
    assert_eq!(telemetry.compression(), OtlpCompression::Gzip);
    let batch = telemetry.batch_settings()?;
    assert_eq!(batch.schedule_delay, Duration::from_millis(200));
    assert_eq!(batch.export_timeout, Duration::from_secs(3));
    assert_eq!(
        (batch.max_queue_size, batch.max_export_batch_size),
        (1000, 100)
    );
    let limits = telemetry.span_limits();
    assert_eq!(
        (limits.attributes, limits.events, limits.links),
        (64, 32, 16)
    );
    Ok(())
}

#[test]
fn the_default_protocol_is_http_protobuf() -> anyhow::Result<()> {
    let settings: ServiceSettings = Loader::new()
        .no_dotenv()
        .vars([("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")])
        .load()?;
    assert_eq!(settings.telemetry.protocol(), OtlpProtocol::HttpProtobuf);
    assert_eq!(
        settings.telemetry.traces_endpoint().as_deref(),
        Some("http://collector:4318/v1/traces")
    );
    Ok(())
}

#[test]
fn sdk_disabled_exports_nothing_whatever_else_is_set() -> anyhow::Result<()> {
    let settings: ServiceSettings = Loader::new()
        .no_dotenv()
        .vars([
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("OTEL_TRACES_EXPORTER", "console"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        ])
        .load()?;
    assert_eq!(settings.telemetry.span_export(), SpanExport::None);
    Ok(())
}

#[test]
fn every_bad_otel_value_is_in_the_one_report() {
    let error = Loader::new()
        .no_dotenv()
        .vars([
            ("OTEL_SDK_DISABLED", "maybe"),
            ("OTEL_TRACES_EXPORTER", "zipkin"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "thrift"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "brotli"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "ten seconds"),
            ("OTEL_BSP_SCHEDULE_DELAY", "0"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "-5"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "lots"),
            ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "-1"),
            ("OTEL_SPAN_EVENT_COUNT_LIMIT", "many"),
            ("OTEL_SPAN_LINK_COUNT_LIMIT", "1.5"),
        ])
        .load::<ServiceSettings>()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    for variable in [
        "OTEL_SDK_DISABLED",
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_COMPRESSION",
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_BSP_SCHEDULE_DELAY",
        "OTEL_BSP_EXPORT_TIMEOUT",
        "OTEL_BSP_MAX_QUEUE_SIZE",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
        "OTEL_SPAN_EVENT_COUNT_LIMIT",
        "OTEL_SPAN_LINK_COUNT_LIMIT",
    ] {
        assert!(
            error.contains(&format!("(env {variable})")),
            "{variable} missing from the report:\n{error}"
        );
    }
    assert!(error.contains("(14 problems)"), "{error}");
    assert!(
        error.contains("otlp") && error.contains("console"),
        "the allowed exporters are listed:\n{error}"
    );
}

/// The report of loading `ServiceSettings` from `vars`, empty when loading succeeds.
fn report(vars: &[(&str, &str)]) -> String {
    Loader::new()
        .no_dotenv()
        .vars(vars.iter().copied())
        .load::<ServiceSettings>()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

#[test]
fn a_bad_level_sampler_or_propagator_is_in_the_one_report_with_its_variable() {
    let bad = [
        ("LOG_LEVEL", "verbose"),
        ("OTEL_TRACES_SAMPLER", "jaeger_remote"),
        ("OTEL_PROPAGATORS", "tracecontext,xray"),
    ];
    for (variable, value) in bad {
        let error = report(&[(variable, value), ("PORT", "8080")]);
        assert!(
            error.contains("(1 problem)") && error.contains(&format!("(env {variable})")),
            "{variable}:\n{error}"
        );
        assert!(
            !error.contains(value),
            "the value is not repeated:\n{error}"
        );
    }
    // All at once, next to a problem of the service's own and a secret that must stay hidden.
    let mut vars = bad.to_vec();
    vars.extend([
        ("PORT", "eighty"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cr3t-header"),
    ]);
    let error = report(&vars);
    assert!(error.contains("(4 problems)"), "{error}");
    for variable in [
        "LOG_LEVEL",
        "OTEL_TRACES_SAMPLER",
        "OTEL_PROPAGATORS",
        "PORT",
    ] {
        assert!(
            error.contains(&format!("(env {variable})")),
            "{variable}:\n{error}"
        );
    }
    assert!(
        error.contains("error, warn, info, debug, trace"),
        "the allowed levels are listed:\n{error}"
    );
    assert!(!error.contains("s3cr3t"), "{error}");
}

#[test]
fn a_bad_filter_endpoint_or_ratio_is_reported_with_its_variable_and_no_secret() {
    for (variable, value) in [
        ("RUST_LOG", "info,sqlx=loudest"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "collector:4318/v1/traces?token=s3cr3t",
        ),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "grpc://s3cr3t@collector"),
        ("OTEL_TRACES_SAMPLER_ARG", "2"),
    ] {
        let error = report(&[(variable, value)]);
        assert!(
            error.contains("(1 problem)") && error.contains(&format!("(env {variable})")),
            "{variable}:\n{error}"
        );
        assert!(
            !error.contains("s3cr3t") && !error.contains("***"),
            "{error}"
        );
    }
}

#[test]
fn a_bad_filter_or_endpoint_is_in_the_one_report_next_to_other_problems() {
    // Each next to a problem the schema finds, the filter and the endpoints are listed with it.
    for (variable, value) in [
        ("RUST_LOG", "info,sqlx=loudest"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "grpc://s3cr3t@collector"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "collector:4318/v1/traces?token=s3cr3t",
        ),
    ] {
        let error = report(&[(variable, value), ("PORT", "eighty")]);
        assert!(
            error.contains("(2 problems)")
                && error.contains(&format!("(env {variable})"))
                && error.contains("(env PORT)"),
            "{variable}:\n{error}"
        );
        assert!(
            !error.contains(value) && !error.contains("loudest") && !error.contains("s3cr3t"),
            "the value is not repeated:\n{error}"
        );
    }
    // All of them at once, with a bad level and port: five problems in one report.
    let error = report(&[
        ("RUST_LOG", "info,sqlx=loudest"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "grpc://s3cr3t@collector"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector:4318"),
        ("LOG_LEVEL", "verbose"),
        ("PORT", "70000"),
    ]);
    assert!(error.contains("(5 problems)"), "{error}");
    for variable in [
        "RUST_LOG",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "LOG_LEVEL",
        "PORT",
    ] {
        assert!(
            error.contains(&format!("(env {variable})")),
            "{variable}:\n{error}"
        );
    }
    assert!(
        error.contains("directive 2 does not parse"),
        "the bad directive is named by position:\n{error}"
    );
    assert!(
        !error.contains("loudest") && !error.contains("s3cr3t") && !error.contains("verbose"),
        "{error}"
    );
}

#[test]
fn levels_samplers_and_propagators_are_read_in_any_case() -> anyhow::Result<()> {
    let settings: ServiceSettings = Loader::new()
        .no_dotenv()
        .vars([
            ("LOG_LEVEL", "DEBUG"),
            ("OTEL_TRACES_SAMPLER", "ParentBased_TraceIdRatio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ("OTEL_PROPAGATORS", "Baggage, none, baggage"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "GRPC"),
        ])
        .load()?;
    let telemetry = &settings.telemetry;
    assert_eq!(telemetry.log_level, Some(LogLevel::Debug));
    assert_eq!(telemetry.log_directives(), "debug");
    assert_eq!(
        telemetry.traces_sampler,
        Some(TracesSampler::ParentBasedTraceIdRatio)
    );
    assert_eq!(
        telemetry.sampler(),
        SamplerChoice::ParentBased(ParentBasedRoot::TraceIdRatio(0.25))
    );
    assert_eq!(telemetry.propagator_list(), [PropagatorChoice::Baggage]);
    assert_eq!(telemetry.protocol(), OtlpProtocol::Grpc);
    Ok(())
}
