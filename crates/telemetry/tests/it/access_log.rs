//! The access log of `TelemetryLayer`: one line per finished request, inside the request's span.
//! Every subscriber here filters at `info` (see `log_lines.rs` for why).

use crate::common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use common::{settings, str_at, telemetry};
use groundwork_telemetry::TelemetrySettings;
use groundwork_telemetry::http::{AccessLog, TelemetryLayer};
use http::Request;
use serde_json::{Map, Value};
use tower::ServiceExt as _;

type Line = Map<String, Value>;

fn app(layer: TelemetryLayer) -> Router {
    Router::new()
        .route("/v1/orders/{id}", get(|| async { "order" }))
        .route(
            "/v1/orders",
            post(|body: String| async move {
                serde_json::from_str::<Value>(&body)
                    .map(|_| "created")
                    .map_err(|_| (http::StatusCode::BAD_REQUEST, "the body is not JSON"))
            }),
        )
        .route(
            "/v1/fail",
            get(|| async { (http::StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .route("/livez", get(|| async { "ok" }))
        .route("/health/ready", get(|| async { "ok" }))
        .route(
            "/v1/slow",
            get(|| async {
                std::future::pending::<()>().await;
                "never"
            }),
        )
        .layer(layer)
}

/// Sends each request through `app(layer)` with `settings`' telemetry; the access lines written.
fn access_lines(
    settings: &TelemetrySettings,
    layer: TelemetryLayer,
    requests: Vec<Request<Body>>,
) -> anyhow::Result<(Vec<Line>, Vec<Line>)> {
    let _serial = common::serial();
    common::runtime()?.block_on(async {
        let (telemetry, captured) = telemetry(settings)?;
        let _default = tracing::dispatcher::set_default(telemetry.dispatch());
        let app = app(layer);
        for request in requests {
            app.clone().oneshot(request).await?;
        }
        Ok((
            captured.with_message("request completed")?,
            captured.with_message("request cancelled")?,
        ))
    })
}

fn get_request(path: &str, request_id: &str) -> anyhow::Result<Request<Body>> {
    Ok(Request::get(path)
        .header("x-request-id", request_id)
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(Body::empty())?)
}

fn assert_ids(line: &Line, request_id: &str) {
    assert_eq!(
        str_at(line, "traceId"),
        Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        "{line:?}"
    );
    assert_eq!(str_at(line, "spanId").map(str::len), Some(16), "{line:?}");
    assert_eq!(
        line["context"]["requestId"],
        Value::from(request_id),
        "{line:?}"
    );
}

#[test]
fn a_200_a_400_and_an_unknown_path_each_write_one_access_line() -> anyhow::Result<()> {
    let bad_body = Request::post("/v1/orders")
        .header("x-request-id", "req-400")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .header("content-type", "application/json")
        .body(Body::from("{not json"))?;
    let (lines, cancelled) = access_lines(
        &settings(),
        TelemetryLayer::new(),
        vec![
            get_request("/v1/orders/42", "req-200")?,
            bad_body,
            get_request("/wp-admin.php", "req-404")?,
        ],
    )?;
    assert!(cancelled.is_empty(), "{cancelled:?}");
    assert_eq!(lines.len(), 3, "{lines:?}");

    let ok = &lines[0];
    assert_ids(ok, "req-200");
    assert_eq!(str_at(ok, "level"), Some("INFO"));
    let context = &ok["context"];
    assert_eq!(context["method"], Value::from("GET"));
    assert_eq!(context["route"], Value::from("/v1/orders/{id}"));
    assert_eq!(context["status"], Value::from(200));
    assert_eq!(context["bytes"], Value::from(5), "\"order\" is 5 bytes");
    let duration = context["durationMs"].as_f64();
    assert!(
        duration.is_some_and(|ms| (0.0..10_000.0).contains(&ms)),
        "{context:?}"
    );

    let bad = &lines[1];
    assert_ids(bad, "req-400");
    assert_eq!(str_at(bad, "level"), Some("INFO"));
    assert_eq!(bad["context"]["method"], Value::from("POST"));
    assert_eq!(bad["context"]["route"], Value::from("/v1/orders"));
    assert_eq!(bad["context"]["status"], Value::from(400));

    let unknown = &lines[2];
    assert_ids(unknown, "req-404");
    assert_eq!(unknown["context"]["status"], Value::from(404));
    assert_eq!(
        unknown["context"]["route"],
        Value::Null,
        "an unmatched path has no route: {unknown:?}"
    );
    assert_eq!(
        unknown["context"]["url.path"],
        Value::from("/wp-admin.php"),
        "{unknown:?}"
    );
    Ok(())
}

#[test]
fn a_5xx_answer_is_logged_at_error_or_at_the_configured_level() -> anyhow::Result<()> {
    let (lines, _) = access_lines(
        &settings(),
        TelemetryLayer::new(),
        vec![get_request("/v1/fail", "req-503")?],
    )?;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_ids(&lines[0], "req-503");
    assert_eq!(str_at(&lines[0], "level"), Some("ERROR"));
    assert_eq!(lines[0]["context"]["status"], Value::from(503));

    let mut settings = settings();
    settings.access_log_server_error_level = Some("warn".into());
    let layer = TelemetryLayer::new().with_access_log(AccessLog::from_settings(&settings)?);
    let (lines, _) = access_lines(&settings, layer, vec![get_request("/v1/fail", "req-503")?])?;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(str_at(&lines[0], "level"), Some("WARN"));
    Ok(())
}

#[test]
fn probes_and_scrapes_are_skipped_by_default_and_the_list_is_configurable() -> anyhow::Result<()> {
    let (lines, _) = access_lines(
        &settings(),
        TelemetryLayer::new(),
        vec![
            get_request("/livez", "req-live")?,
            get_request("/health/ready", "req-ready")?,
            get_request("/v1/orders/1", "req-order")?,
        ],
    )?;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["context"]["requestId"], Value::from("req-order"));

    let mut settings = settings();
    settings.access_log_skip_paths = Some("/v1/orders/*".into());
    let layer = TelemetryLayer::new().with_access_log(AccessLog::from_settings(&settings)?);
    let (lines, _) = access_lines(
        &settings,
        layer,
        vec![
            get_request("/livez", "req-live")?,
            get_request("/v1/orders/1", "req-order")?,
        ],
    )?;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["context"]["requestId"], Value::from("req-live"));
    Ok(())
}

#[test]
fn the_access_log_can_be_switched_off() -> anyhow::Result<()> {
    let mut settings = settings();
    settings.access_log = Some(false);
    let layer = TelemetryLayer::new().with_access_log(AccessLog::from_settings(&settings)?);
    let (lines, cancelled) = access_lines(
        &settings,
        layer,
        vec![
            get_request("/v1/orders/1", "req-1")?,
            get_request("/v1/fail", "req-2")?,
        ],
    )?;
    assert!(lines.is_empty() && cancelled.is_empty(), "{lines:?}");
    Ok(())
}

#[test]
fn a_bad_access_log_setting_is_refused_with_its_variable() {
    let mut settings = settings();
    settings.access_log_server_error_level = Some("loud".into());
    let error = AccessLog::from_settings(&settings)
        .err()
        .map(|e| e.to_string());
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("ACCESS_LOG_SERVER_ERROR_LEVEL")),
        "{error:?}"
    );
}

#[test]
fn a_request_whose_client_goes_away_is_logged_as_cancelled() -> anyhow::Result<()> {
    let _serial = common::serial();
    common::runtime()?.block_on(async {
        let (telemetry, captured) = telemetry(&settings())?;
        let _default = tracing::dispatcher::set_default(telemetry.dispatch());
        let request = get_request("/v1/slow", "req-gone")?;
        // The client goes away: the response future is dropped while the handler waits.
        let outcome = tokio::time::timeout(
            Duration::from_millis(20),
            app(TelemetryLayer::new()).oneshot(request),
        )
        .await;
        assert!(outcome.is_err(), "the handler never answers");

        assert!(captured.with_message("request completed")?.is_empty());
        let lines = captured.with_message("request cancelled")?;
        assert_eq!(lines.len(), 1, "{}", captured.text());
        let line = &lines[0];
        assert_ids(line, "req-gone");
        assert_eq!(str_at(line, "level"), Some("INFO"));
        assert_eq!(line["context"]["route"], Value::from("/v1/slow"));
        assert_eq!(line["context"]["method"], Value::from("GET"));
        assert_eq!(line["context"]["status"], Value::Null, "{line:?}");
        assert!(
            line["context"]["durationMs"]
                .as_f64()
                .is_some_and(|ms| ms >= 15.0),
            "{line:?}"
        );
        Ok(())
    })
}
