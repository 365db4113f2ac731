//! A collector whose certificate the configured CA did not sign costs a warning that names the
//! endpoint and the TLS reason, for gRPC and http/protobuf alike. One test per binary: it installs
//! the process-wide subscriber, which receives the exporters' warnings (they are logged from the
//! batch processors' own threads).

mod common;

use std::time::Duration;

use common::Captured;
use common::tls::{Pki, Receiver};
use groundwork_telemetry::{Telemetry, TelemetrySettings};

fn settings(
    endpoint: &str,
    protocol: &str,
    ca: &std::path::Path,
) -> anyhow::Result<TelemetrySettings> {
    let mut settings = common::default_settings();
    settings.service_name = Some("query-engine".into());
    settings.otlp_endpoint = Some(endpoint.parse()?);
    settings.otlp_protocol = Some(protocol.parse()?);
    settings.otlp_timeout = Some(1000);
    settings.otlp_certificate = Some(ca.to_owned());
    Ok(settings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_collector_certificate_is_reported_with_the_endpoint_and_the_reason()
-> anyhow::Result<()> {
    let pki = Pki::new()?;
    let grpc = Receiver::grpc(&pki.server, None).await?;
    let http = Receiver::http(&pki.server, None).await?;
    let captured = Captured::default();
    let installed = Telemetry::builder(&settings(
        &grpc.https_endpoint(),
        "grpc",
        &pki.wrong_ca_file,
    )?)
    .writer(captured.clone())
    .build()?
    .install()?;
    let scoped = Telemetry::builder(&settings(
        &http.https_endpoint(),
        "http/protobuf",
        &pki.wrong_ca_file,
    )?)
    .writer(std::io::sink)
    .build()?;

    tracing::info_span!("sent over grpc").in_scope(|| tracing::info!("probe"));
    tracing::dispatcher::with_default(scoped.dispatch(), || {
        tracing::info_span!("sent over http").in_scope(|| tracing::info!("probe"));
    });
    let flushed = tokio::task::spawn_blocking(move || {
        let results = (installed.force_flush(), scoped.force_flush());
        drop(scoped);
        (installed, results)
    })
    .await?;
    assert!(
        flushed.1.0.is_err() && flushed.1.1.is_err(),
        "{:?}",
        flushed.1
    );

    let warnings: Vec<_> = captured
        .lines()?
        .into_iter()
        .filter(|line| line.get("level").and_then(|l| l.as_str()) == Some("WARN"))
        .collect();
    for (receiver, name) in [(&grpc, "grpc"), (&http, "http/protobuf")] {
        let port = format!(
            ":{}",
            receiver.https_endpoint().rsplit(':').next().unwrap_or("")
        );
        let warning = warnings
            .iter()
            .find(|line| {
                line["context"]["endpoint"]
                    .as_str()
                    .is_some_and(|endpoint| endpoint.contains(&port))
            })
            .ok_or_else(|| anyhow::anyhow!("no warning for {name}: {}", captured.text()))?;
        let message = warning["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("spans dropped"), "{name}: {message}");
        assert!(
            message.contains("invalid peer certificate: UnknownIssuer"),
            "{name}: {message}"
        );
    }
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || flushed.0.shutdown()),
    )
    .await?;
    Ok(())
}
