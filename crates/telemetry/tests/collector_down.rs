//! With the collector unreachable, requests still succeed and the failure is reported once, not once
//! per batch. One test per binary: it installs the process-wide subscriber.

mod common;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use common::Captured;
use groundwork_telemetry::Telemetry;
use groundwork_telemetry::http::TelemetryLayer;
use http::Request;
use tower::ServiceExt as _;

const DROPPED: &str = "spans dropped";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_costs_one_warning_and_no_failed_request() -> anyhow::Result<()> {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut settings = common::default_settings();
    settings.service_name = Some("api-gateway".into());
    settings.otlp_endpoint = Some(format!("http://127.0.0.1:{port}").parse()?);
    settings.otlp_protocol = Some(groundwork_telemetry::OtlpProtocol::Grpc);
    settings.otlp_timeout = Some(500);
    let captured = Captured::default();
    let telemetry = Telemetry::builder(&settings)
        .writer(captured.clone())
        .build()?
        .install()?;

    let app = Router::new()
        .route("/v1/ping", get(|| async { "pong" }))
        .layer(TelemetryLayer::new());
    let mut telemetry = Some(telemetry);
    for round in 0..3 {
        for _ in 0..200 {
            let response = app
                .clone()
                .oneshot(Request::get("/v1/ping").body(Body::empty())?)
                .await?;
            assert_eq!(response.status(), 200, "round {round}");
        }
        // Force an export attempt now rather than waiting for the batch interval.
        let owned = telemetry.take().ok_or_else(|| anyhow::anyhow!("gone"))?;
        let (owned, flushed) = tokio::task::spawn_blocking(move || {
            let flushed = owned.force_flush();
            (owned, flushed)
        })
        .await?;
        assert!(flushed.is_err(), "a flush to a closed port reports failure");
        telemetry = Some(owned);
    }

    let warnings: Vec<_> = captured
        .lines()?
        .into_iter()
        .filter(|line| {
            line.get("message")
                .and_then(|m| m.as_str())
                .is_some_and(|m| m.starts_with(DROPPED))
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{}", captured.text());
    let warning = &warnings[0];
    assert_eq!(warning["level"], "WARN");
    assert!(
        warning["context"]["dropped_spans"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "{warning:?}"
    );

    // Shutdown returns (with or without an error) even though nothing can be delivered; a hang
    // here would hold the test run.
    let owned = telemetry.take().ok_or_else(|| anyhow::anyhow!("gone"))?;
    let _ = tokio::task::spawn_blocking(move || owned.shutdown()).await?;
    Ok(())
}
