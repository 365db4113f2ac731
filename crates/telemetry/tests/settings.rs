//! `TelemetrySettings` embedded in a service's config type loads through groundwork-config from the
//! standard variable names.

use groundwork_config::Loader;
use groundwork_telemetry::{LogFormat, TelemetrySettings, TracingBridge};

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
    assert_eq!(telemetry.log_directives()?, "debug");
    assert_eq!(telemetry.log_format, LogFormat::Pretty);
    assert_eq!(
        telemetry.traces_endpoint()?.as_deref(),
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
    assert_eq!(settings.telemetry.log_directives()?, "info");
    assert_eq!(settings.telemetry.traces_endpoint()?, None);
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
