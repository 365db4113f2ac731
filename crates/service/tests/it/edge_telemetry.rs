//! The answers `serve` gives itself — 503 for a shed request and for a timed-out one, 413 for a
//! body declared over the limit — are traced, counted and access-logged through the service's
//! `TelemetryLayer` (`ServeOptions::telemetry`), like every answer of the router, on a real socket.

#![expect(
    clippy::float_cmp,
    reason = "counts and gauges here are small whole numbers, exact in an f64"
)]

use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use axum::routing::{get, post};
use groundwork_health::Health;
use groundwork_service::{EdgeSettings, ServeOptions, Shutdown};
use groundwork_telemetry::http::{HttpMetrics, TelemetryLayer};
use groundwork_telemetry::{Telemetry, TelemetrySettings};
use groundwork_testkit::CapturedOutput;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{Semaphore, mpsc};

/// Sends `request` on a new connection and returns the status and the `X-Request-ID` answered.
async fn send(address: std::net::SocketAddr, request: String) -> Result<(u16, Option<String>)> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .context("no answer within 10 s")??;
    let raw = String::from_utf8_lossy(&raw);
    let status = raw.split(' ').nth(1).context("no status line")?.parse()?;
    let request_id = raw.lines().find_map(|line| {
        line.to_ascii_lowercase()
            .strip_prefix("x-request-id: ")
            .map(str::to_owned)
    });
    Ok((status, request_id))
}

fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n")
}

/// The count of `http_server_request_duration_seconds` with exactly `labels`, 0 when absent.
fn count(page: &str, labels: &str) -> f64 {
    let prefix = format!("http_server_request_duration_seconds_count{{{labels}}} ");
    page.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

// One scenario read top to bottom: the order of the requests is what it checks.
#[expect(clippy::too_many_lines)]
#[test]
fn shed_timed_out_and_declared_oversize_requests_are_counted_and_logged() -> Result<()> {
    let output = CapturedOutput::new();
    let mut settings = TelemetrySettings::default();
    settings.service_name = Some("edge-test".into());
    let telemetry = Telemetry::builder(&settings)
        .writer({
            let output = output.clone();
            move || output.clone()
        })
        .build()?;
    // One thread: the server's tasks run where the subscriber is the default.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _default = tracing::dispatcher::set_default(telemetry.dispatch());
    runtime.block_on(async {
        let metrics = HttpMetrics::new();
        let layer = TelemetryLayer::new().with_metrics(metrics.clone());
        let (entered, mut handler_entered) = mpsc::channel::<()>(1);
        let release = std::sync::Arc::new(Semaphore::new(0));
        let app = axum::Router::new()
            .route(
                "/v1/hold",
                get({
                    let release = std::sync::Arc::clone(&release);
                    move || async move {
                        let _ = entered.send(()).await;
                        let _permit = release.acquire().await;
                        "released"
                    }
                }),
            )
            .route(
                "/v1/never",
                get(|| async {
                    std::future::pending::<()>().await;
                    "never"
                }),
            )
            .route("/v1/upload", post(|body: axum::body::Bytes| async move { body.len().to_string() }))
            .layer(layer.clone());
        let health = Health::builder().service_id("edge-test").build()?;
        let app = app.merge(health.router());
        let mut edge = EdgeSettings::default();
        edge.max_concurrent_requests = 1;
        edge.request_timeout_ms = 1_500;
        edge.max_body_bytes = 1_024;
        let options = ServeOptions {
            drain_delay: Duration::ZERO,
            edge,
            metrics: groundwork_service::EdgeMetrics::from(&metrics),
            telemetry: Some(layer),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let shutdown = Shutdown::new();
        let server = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { groundwork_service::serve(listener, app, &health, shutdown, options).await }
        });

        // One request holds the only slot; the next is shed.
        let held = tokio::spawn(send(address, get_request("/v1/hold")));
        handler_entered.recv().await.context("the held handler never ran")?;
        let (shed, shed_id) = send(
            address,
            "GET /v1/hold HTTP/1.1\r\nHost: edge\r\nConnection: close\r\nX-Request-ID: shed-1\r\n\r\n"
                .to_owned(),
        )
        .await?;
        release.add_permits(1);
        let (held, _) = held.await??;
        let (too_large, too_large_id) = send(
            address,
            "POST /v1/upload HTTP/1.1\r\nHost: edge\r\nConnection: close\r\nContent-Length: 5000\r\n\r\n"
                .to_owned(),
        )
        .await?;
        let (timed_out, _) = send(address, get_request("/v1/never")).await?;
        ensure!(
            (held, shed, too_large, timed_out) == (200, 503, 413, 503),
            "statuses {held}, {shed}, {too_large}, {timed_out}"
        );
        ensure!(shed_id.as_deref() == Some("shed-1"), "shed request id {shed_id:?}");
        ensure!(too_large_id.is_some(), "no X-Request-ID on the 413");

        let page = metrics.render();
        let unrouted_503 = r#"http_request_method="GET",http_response_status_code="503",error_type="503""#;
        ensure!(count(&page, unrouted_503) == 2.0, "shed and timed out not counted:\n{page}");
        ensure!(
            count(&page, r#"http_request_method="POST",http_response_status_code="413""#) == 1.0,
            "declared oversize body not counted:\n{page}"
        );
        ensure!(
            count(&page, r#"http_request_method="GET",http_route="/v1/hold",http_response_status_code="200""#) == 1.0,
            "{page}"
        );

        let completed: Vec<Value> = output
            .text()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line["message"] == "request completed")
            .collect();
        let statuses = |status: u64| {
            completed
                .iter()
                .filter(|line| line["context"]["status"] == status)
                .count()
        };
        ensure!(
            statuses(503) == 2 && statuses(413) == 1 && statuses(200) == 1,
            "access lines: {completed:?}"
        );
        let shed_line = completed
            .iter()
            .find(|line| line["context"]["requestId"] == "shed-1")
            .context("no access line with the shed request's id")?;
        ensure!(shed_line["level"] == "ERROR", "{shed_line}");
        ensure!(shed_line["context"]["method"] == "GET", "{shed_line}");

        shutdown.trigger();
        server.await??;
        Ok(())
    })
}
