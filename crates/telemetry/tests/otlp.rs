//! Spans exported over OTLP/gRPC to an in-test collector carry the ids the log lines show and the
//! ids the caller sent. One test per binary: it installs the process-wide subscriber.

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use common::{Captured, str_at};
use fake_opentelemetry_collector::FakeCollectorServer;
use groundwork_telemetry::Telemetry;
use groundwork_telemetry::http::TelemetryLayer;
use http::Request;
use tower::ServiceExt as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_spans_log_lines_and_the_incoming_traceparent_share_ids() -> anyhow::Result<()> {
    let mut collector = FakeCollectorServer::start()
        .await
        .map_err(|error| anyhow::anyhow!("cannot start the collector: {error}"))?;
    let mut settings = common::default_settings();
    settings.service_name = Some("api-gateway".into());
    settings.otlp_endpoint = Some(collector.endpoint().parse()?);
    settings.otlp_protocol = Some(groundwork_telemetry::OtlpProtocol::Grpc);
    let captured = Captured::default();
    let telemetry = Telemetry::builder(&settings)
        .writer(captured.clone())
        .build()?
        .install()?;

    let app = Router::new()
        .route(
            "/v1/matching/weights",
            get(|| async {
                let span = tracing::info_span!("load_weights", source = "live-config");
                let _entered = span.enter();
                tracing::info!("weights served");
                "{}"
            }),
        )
        .layer(TelemetryLayer::new());
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let caller_span = "b7ad6b7169203331";
    let response = app
        .oneshot(
            Request::get("/v1/matching/weights")
                .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
                .body(Body::empty())?,
        )
        .await?;
    assert_eq!(response.status(), 200);

    let flushed = tokio::task::spawn_blocking(move || {
        let result = telemetry.force_flush();
        (telemetry, result)
    })
    .await?;
    flushed.1?;
    let spans = collector.exported_spans(2, Duration::from_secs(10)).await;
    let server = spans
        .iter()
        .find(|span| span.name == "GET /v1/matching/weights")
        .ok_or_else(|| anyhow::anyhow!("no server span among {spans:#?}"))?;
    let inner = spans
        .iter()
        .find(|span| span.name == "load_weights")
        .ok_or_else(|| anyhow::anyhow!("no inner span among {spans:#?}"))?;

    assert_eq!(server.trace_id, trace_id);
    assert_eq!(server.parent_span_id, caller_span);
    assert_eq!(server.kind, "SPAN_KIND_SERVER");
    // The collector prints attribute values in their protobuf Debug form.
    let attribute = |key: &str| server.attributes.get(key).cloned().unwrap_or_default();
    assert!(
        attribute("http.request.method").contains("StringValue(\"GET\")"),
        "{:?}",
        server.attributes
    );
    assert!(
        attribute("http.route").contains("StringValue(\"/v1/matching/weights\")"),
        "{:?}",
        server.attributes
    );
    assert!(
        attribute("http.response.status_code").contains("IntValue(200)"),
        "{:?}",
        server.attributes
    );
    assert_eq!(inner.trace_id, trace_id);
    assert_eq!(inner.parent_span_id, server.span_id);

    let line = &captured.with_message("weights served")?[0];
    assert_eq!(str_at(line, "traceId"), Some(trace_id));
    assert_eq!(str_at(line, "spanId"), Some(inner.span_id.as_str()));

    flushed.0.shutdown()?;
    Ok(())
}
