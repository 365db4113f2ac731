//! OTLP export to `https://` collectors, gRPC and http/protobuf, against in-test receivers over TLS
//! with certificates made by the test: spans arrive when the configured CA signed the collector's
//! certificate (and the client certificate is presented when the collector asks for one); a wrong
//! CA, a missing client certificate or a plain collector behind `https://` delivers nothing and
//! fails the flush within the export timeout.

use crate::common;

use std::time::{Duration, Instant};

use common::tls::{Pki, Receiver};
use groundwork_telemetry::{Telemetry, TelemetrySettings};

const TIMEOUT_MS: u64 = 2000;

fn settings(endpoint: &str, protocol: &str) -> anyhow::Result<TelemetrySettings> {
    let mut settings = common::default_settings();
    settings.service_name = Some("query-engine".into());
    settings.otlp_endpoint = Some(endpoint.parse()?);
    settings.otlp_protocol = Some(protocol.parse()?);
    settings.otlp_timeout = Some(TIMEOUT_MS);
    Ok(settings)
}

/// Records one span named `name` through `telemetry` and flushes on a blocking thread (the gRPC
/// exporter needs the runtime's workers meanwhile); returns the flush result and how long it took.
/// Exports one span named `name` with `settings` and checks that the flush fails within the
/// timeout and that `receiver` got nothing.
async fn assert_nothing_delivered(
    protocol: &str,
    settings: &TelemetrySettings,
    receiver: &mut Receiver,
    name: &'static str,
) -> anyhow::Result<()> {
    let (telemetry, _captured) = common::telemetry(settings)?;
    let (flushed, took) = export_one(telemetry, name).await?;
    assert!(
        flushed.is_err(),
        "{protocol}: the flush reports the failure"
    );
    assert!(
        took < Duration::from_millis(TIMEOUT_MS) * 3,
        "{protocol}: the flush took {took:?}"
    );
    assert_eq!(receiver.received(), Vec::<String>::new(), "{protocol}");
    Ok(())
}

async fn export_one(
    telemetry: Telemetry,
    name: &'static str,
) -> anyhow::Result<(Result<(), String>, Duration)> {
    tracing::dispatcher::with_default(telemetry.dispatch(), || {
        let span = tracing::info_span!("probe", otel.name = name);
        let _entered = span.enter();
        tracing::info!("probing the collector");
    });
    let started = Instant::now();
    let flushed = tokio::task::spawn_blocking(move || {
        let flushed = telemetry.force_flush().map_err(|e| e.to_string());
        drop(telemetry);
        flushed
    })
    .await?;
    Ok((flushed, started.elapsed()))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

#[test]
fn grpc_spans_reach_a_collector_over_mutual_tls_with_the_configured_ca() -> anyhow::Result<()> {
    let _serial = common::serial();
    runtime()?.block_on(async {
        let pki = Pki::new()?;
        let mut receiver = Receiver::grpc(&pki.server, Some(pki.ca.certificate_pem())).await?;
        let mut settings = settings(&receiver.https_endpoint(), "grpc")?;
        settings.otlp_certificate = Some(pki.ca_file.clone());
        settings.otlp_client_certificate = Some(pki.client_certificate_file.clone());
        settings.otlp_client_key = Some(pki.client_key_file.clone());
        let (telemetry, _captured) = common::telemetry(&settings)?;
        let (flushed, _) = export_one(telemetry, "grpc over mtls").await?;
        flushed.map_err(anyhow::Error::msg)?;
        assert_eq!(
            receiver.span_names(1, Duration::from_secs(5)).await,
            ["grpc over mtls"]
        );
        Ok(())
    })
}

#[test]
fn http_protobuf_spans_reach_a_collector_over_mutual_tls_with_the_configured_ca()
-> anyhow::Result<()> {
    let _serial = common::serial();
    runtime()?.block_on(async {
        let pki = Pki::new()?;
        let mut receiver = Receiver::http(&pki.server, Some(pki.ca.certificate_pem())).await?;
        let mut settings = settings(&receiver.https_endpoint(), "http/protobuf")?;
        settings.otlp_certificate = Some(pki.ca_file.clone());
        settings.otlp_client_certificate = Some(pki.client_certificate_file.clone());
        settings.otlp_client_key = Some(pki.client_key_file.clone());
        let (telemetry, _captured) = common::telemetry(&settings)?;
        let (flushed, _) = export_one(telemetry, "http over mtls").await?;
        flushed.map_err(anyhow::Error::msg)?;
        assert_eq!(
            receiver.span_names(1, Duration::from_secs(5)).await,
            ["http over mtls"]
        );
        Ok(())
    })
}

#[test]
fn a_collector_requiring_a_client_certificate_receives_nothing_without_one() -> anyhow::Result<()> {
    let _serial = common::serial();
    runtime()?.block_on(async {
        let pki = Pki::new()?;
        for protocol in ["grpc", "http/protobuf"] {
            let client_ca = Some(pki.ca.certificate_pem());
            let mut receiver = Receiver::tls(protocol, &pki.server, client_ca).await?;
            let mut settings = settings(&receiver.https_endpoint(), protocol)?;
            settings.otlp_certificate = Some(pki.ca_file.clone());
            assert_nothing_delivered(protocol, &settings, &mut receiver, "anonymous").await?;
        }
        Ok(())
    })
}

#[test]
fn http_protobuf_spans_reach_a_collector_over_tls_with_the_configured_ca() -> anyhow::Result<()> {
    let _serial = common::serial();
    runtime()?.block_on(async {
        let pki = Pki::new()?;
        let mut receiver = Receiver::http(&pki.server, None).await?;
        let mut settings = settings(&receiver.https_endpoint(), "http/protobuf")?;
        settings.otlp_certificate = Some(pki.ca_file.clone());
        let (telemetry, _captured) = common::telemetry(&settings)?;
        let (flushed, _) = export_one(telemetry, "http over tls").await?;
        flushed.map_err(anyhow::Error::msg)?;
        assert_eq!(
            receiver.span_names(1, Duration::from_secs(5)).await,
            ["http over tls"]
        );
        Ok(())
    })
}

#[test]
fn a_wrong_ca_delivers_nothing_and_fails_the_flush_within_the_timeout() -> anyhow::Result<()> {
    let _serial = common::serial();
    runtime()?.block_on(async {
        let pki = Pki::new()?;
        for protocol in ["grpc", "http/protobuf"] {
            let mut receiver = Receiver::tls(protocol, &pki.server, None).await?;
            let mut settings = settings(&receiver.https_endpoint(), protocol)?;
            settings.otlp_certificate = Some(pki.wrong_ca_file.clone());
            assert_nothing_delivered(protocol, &settings, &mut receiver, "untrusted").await?;
        }
        Ok(())
    })
}

#[test]
fn a_plain_collector_behind_https_delivers_nothing_and_fails_the_flush_within_the_timeout()
-> anyhow::Result<()> {
    let _serial = common::serial();
    runtime()?.block_on(async {
        let pki = Pki::new()?;
        for protocol in ["grpc", "http/protobuf"] {
            let mut receiver = if protocol == "grpc" {
                Receiver::plain_grpc().await?
            } else {
                Receiver::plain_http().await?
            };
            let mut settings = settings(&receiver.https_endpoint(), protocol)?;
            settings.otlp_certificate = Some(pki.ca_file.clone());
            assert_nothing_delivered(protocol, &settings, &mut receiver, "plain").await?;
        }
        Ok(())
    })
}

#[test]
fn a_client_key_that_does_not_match_its_certificate_stops_start_up() -> anyhow::Result<()> {
    let _serial = common::serial();
    runtime()?.block_on(async {
        let pki = Pki::new()?;
        let other_key = pki.write("other.key", &pki.ca.client("someone-else")?.key_pem)?;
        for protocol in ["grpc", "http/protobuf"] {
            let mut settings = settings("https://localhost:4317", protocol)?;
            settings.otlp_client_certificate = Some(pki.client_certificate_file.clone());
            settings.otlp_client_key = Some(other_key.clone());
            let error = common::telemetry(&settings)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                error.starts_with("OTEL_EXPORTER_OTLP_CLIENT_KEY: ")
                    && error.contains("does not go with the certificate"),
                "{protocol}: {error}"
            );
            assert!(!error.contains("PRIVATE KEY"), "{error}");
        }
        Ok(())
    })
}
