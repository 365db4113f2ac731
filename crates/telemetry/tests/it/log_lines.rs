//! The log line contract, span field flattening, secrets and the HTTP layer, with no collector
//! configured. Every subscriber here filters at `info`: tests whose subscribers change or differ
//! in level live in `levels.rs`, since they would race on `tracing`'s process-wide callsite cache.

use crate::common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use common::{settings, str_at, telemetry};
use groundwork_config::Secret;
use groundwork_telemetry::Telemetry;
use groundwork_telemetry::http::{HttpMetrics, TelemetryLayer};
use http::Request;
use serde_json::Value;
use tower::ServiceExt as _;

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len
        && text
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

#[test]
fn every_line_has_exactly_the_contract_keys_with_their_types() -> anyhow::Result<()> {
    let _serial = common::serial();
    let (telemetry, captured) = telemetry(&settings())?;
    tracing::dispatcher::with_default(telemetry.dispatch(), || {
        tracing::warn!(attempt = 2, "outside any span");
        let outer = tracing::info_span!("request", tenant = "acme", supplierCount = 5);
        let _outer = outer.enter();
        let inner = tracing::info_span!("query", supplierCount = 7, cached = false);
        let _inner = inner.enter();
        tracing::info!(
            resultCount = 12,
            durationMs = 342.5,
            ok = true,
            "Query completed successfully"
        );
    });

    let lines = captured.lines()?;
    assert_eq!(lines.len(), 2, "{}", captured.text());

    let outside = &lines[0];
    let mut keys: Vec<&str> = outside.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["context", "level", "message", "service", "timestamp"],
        "outside a span there are no trace keys at all"
    );
    assert_eq!(str_at(outside, "level"), Some("WARN"));
    assert_eq!(outside["context"]["attempt"], Value::from(2));

    let inside = &lines[1];
    let mut keys: Vec<&str> = inside.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "context",
            "level",
            "message",
            "service",
            "spanId",
            "timestamp",
            "traceId"
        ]
    );
    let timestamp = str_at(inside, "timestamp").unwrap_or_default();
    assert_eq!(
        timestamp.len(),
        "2025-01-15T08:30:15.123Z".len(),
        "{timestamp}"
    );
    assert!(
        timestamp.ends_with('Z') && timestamp.as_bytes()[19] == b'.',
        "{timestamp}"
    );
    assert!(
        humantime::parse_rfc3339(timestamp).is_ok(),
        "{timestamp} is RFC 3339"
    );
    assert_eq!(str_at(inside, "level"), Some("INFO"));
    assert_eq!(str_at(inside, "service"), Some("query-engine"));
    assert_eq!(
        str_at(inside, "message"),
        Some("Query completed successfully")
    );
    assert!(
        is_hex(str_at(inside, "traceId").unwrap_or_default(), 32),
        "{inside:?}"
    );
    assert!(
        is_hex(str_at(inside, "spanId").unwrap_or_default(), 16),
        "{inside:?}"
    );

    let context = inside["context"].as_object().cloned().unwrap_or_default();
    assert_eq!(context["resultCount"], Value::from(12));
    assert_eq!(context["durationMs"], Value::from(342.5));
    assert_eq!(context["ok"], Value::Bool(true));
    assert_eq!(context["cached"], Value::Bool(false));
    assert_eq!(context["tenant"], Value::from("acme"));
    assert_eq!(
        context["supplierCount"],
        Value::from(7),
        "the innermost span wins a name clash"
    );
    assert_eq!(context.len(), 6, "{context:?}");
    Ok(())
}

#[test]
fn nested_spans_share_the_trace_and_each_has_its_own_span_id() -> anyhow::Result<()> {
    let _serial = common::serial();
    let (telemetry, captured) = telemetry(&settings())?;
    tracing::dispatcher::with_default(telemetry.dispatch(), || {
        let outer = tracing::info_span!("outer");
        let _outer = outer.enter();
        tracing::info!("in outer");
        let inner = tracing::info_span!("inner");
        inner.in_scope(|| tracing::info!("in inner"));
    });
    let outer = captured.with_message("in outer")?;
    let inner = captured.with_message("in inner")?;
    assert_eq!(str_at(&outer[0], "traceId"), str_at(&inner[0], "traceId"));
    assert_ne!(str_at(&outer[0], "spanId"), str_at(&inner[0], "spanId"));
    Ok(())
}

#[test]
fn span_fields_recorded_later_appear_in_the_context() -> anyhow::Result<()> {
    let _serial = common::serial();
    let (telemetry, captured) = telemetry(&settings())?;
    tracing::dispatcher::with_default(telemetry.dispatch(), || {
        let span = tracing::info_span!("job", rows = tracing::field::Empty, stage = "load");
        let _entered = span.enter();
        span.record("rows", 1000_u64);
        span.record("stage", "store");
        tracing::info!("recorded");
    });
    let line = &captured.with_message("recorded")?[0];
    assert_eq!(line["context"]["rows"], Value::from(1000));
    assert_eq!(line["context"]["stage"], Value::from("store"));
    Ok(())
}

#[test]
fn secrets_never_reach_the_output() -> anyhow::Result<()> {
    let _serial = common::serial();
    let planted = "pl4nted-s3cret-value";
    let (telemetry, captured) = telemetry(&settings())?;
    tracing::dispatcher::with_default(telemetry.dispatch(), || {
        let secret = Secret::from(planted);
        let span = tracing::info_span!("login", password = ?secret);
        let _entered = span.enter();
        tracing::info!(token = %secret, debug_token = ?secret, "signed in");
        tracing::error!(message = %format_args!("{secret}"), "display in message");
    });
    let text = captured.text();
    assert!(!text.contains(planted), "secret leaked: {text}");
    let line = &captured.with_message("signed in")?[0];
    assert_eq!(line["context"]["token"], Value::from("[REDACTED]"));
    assert_eq!(line["context"]["debug_token"], Value::from("[REDACTED]"));
    assert_eq!(line["context"]["password"], Value::from("[REDACTED]"));
    Ok(())
}

/// sqlx logs a connection URL's parameters it does not know as `warn!(%key, %value, ..)`, so a
/// `?sslpassword=` or `?token=` in `DATABASE_URL` would reach the log with its value.
#[test]
fn the_value_of_a_secret_named_key_is_masked() -> anyhow::Result<()> {
    let _serial = common::serial();
    let planted = "pl4nted-query-s3cret";
    let (telemetry, captured) = telemetry(&settings())?;
    tracing::dispatcher::with_default(telemetry.dispatch(), || {
        for key in ["sslpassword", "Token", "application_name"] {
            tracing::warn!(%key, value = %planted, "ignoring unrecognized connect parameter");
        }
    });
    let lines = captured.with_message("ignoring unrecognized connect parameter")?;
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["context"]["key"], Value::from("sslpassword"));
    assert_eq!(lines[0]["context"]["value"], Value::from("***"));
    assert_eq!(lines[1]["context"]["value"], Value::from("***"));
    assert_eq!(lines[2]["context"]["value"], Value::from(planted));
    Ok(())
}

#[test]
fn strings_that_need_escaping_stay_valid_json() -> anyhow::Result<()> {
    let _serial = common::serial();
    let nasty = "line\nbreak \"quoted\" back\\slash \u{1} 漢字";
    let (telemetry, captured) = telemetry(&settings())?;
    tracing::dispatcher::with_default(telemetry.dispatch(), || {
        tracing::info!(payload = nasty, debug = ?nasty, "{nasty}");
    });
    let line = &captured.lines()?[0];
    assert_eq!(str_at(line, "message"), Some(nasty));
    assert_eq!(line["context"]["payload"], Value::from(nasty));
    Ok(())
}

#[test]
fn invalid_settings_are_refused_with_the_variable_named() {
    let _serial = common::serial();
    let mut bad = settings();
    bad.resource_attributes = Some("team=core,region".into());
    let error = Telemetry::builder(&bad)
        .build()
        .err()
        .map(|e| e.to_string());
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("OTEL_RESOURCE_ATTRIBUTES")),
        "{error:?}"
    );
}

#[test]
fn the_pretty_format_masks_the_value_of_a_secret_named_key_too() -> anyhow::Result<()> {
    let _serial = common::serial();
    let mut settings = settings();
    settings.log_format = groundwork_telemetry::LogFormat::Pretty;
    let (telemetry, captured) = telemetry(&settings)?;
    tracing::dispatcher::with_default(telemetry.dispatch(), || {
        let key = "sslpassword";
        tracing::warn!(%key, value = "pl4nted-s3cret", "ignoring unrecognized connect parameter");
        let key = "application_name";
        tracing::warn!(%key, value = "billing", "ignoring unrecognized connect parameter");
    });
    let text = captured.text();
    assert!(!text.contains("pl4nted-s3cret"), "{text}");
    assert!(text.contains("key=sslpassword value=\"***\""), "{text}");
    assert!(text.contains("value=\"billing\""), "{text}");
    Ok(())
}

#[test]
fn pretty_format_is_human_readable_not_json() -> anyhow::Result<()> {
    let _serial = common::serial();
    let mut settings = settings();
    settings.log_format = groundwork_telemetry::LogFormat::Pretty;
    let (telemetry, captured) = telemetry(&settings)?;
    tracing::dispatcher::with_default(telemetry.dispatch(), || {
        tracing::info!(orders = 3, "pretty line");
    });
    let text = captured.text();
    assert!(
        text.contains("pretty line") && text.contains("orders=3"),
        "{text}"
    );
    assert!(
        serde_json::from_str::<Value>(text.trim()).is_err(),
        "{text}"
    );
    Ok(())
}

fn app(metrics: &HttpMetrics) -> Router {
    Router::new()
        .route(
            "/v1/orders/{id}",
            get(|| async {
                tracing::info!(step = "lookup", "handling order");
                "ok"
            }),
        )
        .route(
            "/v1/fail",
            get(|| async { (http::StatusCode::SERVICE_UNAVAILABLE, "down") }),
        )
        .route(
            "/v1/slow",
            get(|| async {
                let _guard = LogOnDrop;
                std::future::pending::<()>().await;
                "never"
            }),
        )
        .layer(TelemetryLayer::new().with_metrics(metrics.clone()))
        .route("/metrics", metrics.handler())
}

#[test]
fn http_requests_continue_the_callers_trace_and_carry_the_request_id() -> anyhow::Result<()> {
    let _serial = common::serial();
    common::runtime()?.block_on(async {
        let (telemetry, captured) = telemetry(&settings())?;
        let _default = tracing::dispatcher::set_default(telemetry.dispatch());
        let metrics = HttpMetrics::new();
        let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
        let parent_span = "00f067aa0ba902b7";

        let response = app(&metrics)
            .oneshot(
                Request::get("/v1/orders/42")
                    .header("traceparent", format!("00-{trace_id}-{parent_span}-01"))
                    .header("x-request-id", "req-abc-123")
                    .body(Body::empty())?,
            )
            .await?;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok()),
            Some("req-abc-123")
        );

        let line = &captured.with_message("handling order")?[0];
        assert_eq!(str_at(line, "traceId"), Some(trace_id));
        assert_ne!(
            str_at(line, "spanId"),
            Some(parent_span),
            "the server span is a new child span"
        );
        assert_eq!(line["context"]["requestId"], Value::from("req-abc-123"));
        assert_eq!(line["context"]["step"], Value::from("lookup"));
        assert_eq!(
            line["context"]["http.route"],
            Value::from("/v1/orders/{id}")
        );
        assert_eq!(line["context"]["http.request.method"], Value::from("GET"));
        Ok(())
    })
}

#[test]
fn a_request_without_an_id_or_trace_gets_new_ones() -> anyhow::Result<()> {
    let _serial = common::serial();
    common::runtime()?.block_on(async {
        let (telemetry, captured) = telemetry(&settings())?;
        let _default = tracing::dispatcher::set_default(telemetry.dispatch());
        let metrics = HttpMetrics::new();
        let response = app(&metrics)
            .oneshot(
                Request::get("/v1/orders/7")
                    .header("x-request-id", "bad id with spaces")
                    .body(Body::empty())?,
            )
            .await?;
        let echoed = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            is_hex(&echoed, 32),
            "a fresh id replaces an unusable one: {echoed}"
        );
        let line = &captured.with_message("handling order")?[0];
        assert_eq!(line["context"]["requestId"], Value::from(echoed.as_str()));
        assert!(is_hex(str_at(line, "traceId").unwrap_or_default(), 32));
        Ok(())
    })
}

/// Logs when a handler is dropped before it finishes, as a transaction guard would.
struct LogOnDrop;

impl Drop for LogOnDrop {
    fn drop(&mut self) {
        tracing::warn!("request abandoned, rolled back");
    }
}

#[test]
fn a_handler_dropped_mid_request_logs_inside_the_request_span() -> anyhow::Result<()> {
    let _serial = common::serial();
    common::runtime()?.block_on(async {
        let (telemetry, captured) = telemetry(&settings())?;
        let _default = tracing::dispatcher::set_default(telemetry.dispatch());
        let metrics = HttpMetrics::new();
        let request = Request::get("/v1/slow")
            .header("x-request-id", "req-cancelled")
            .body(Body::empty())?;
        // The client goes away: the response future is dropped while the handler waits.
        let outcome =
            tokio::time::timeout(Duration::from_millis(50), app(&metrics).oneshot(request)).await;
        assert!(outcome.is_err(), "the handler never answers");

        let line = &captured.with_message("request abandoned, rolled back")?[0];
        assert!(
            is_hex(str_at(line, "traceId").unwrap_or_default(), 32),
            "{line:?}"
        );
        assert_eq!(line["context"]["requestId"], Value::from("req-cancelled"));
        assert_eq!(line["context"]["http.route"], Value::from("/v1/slow"));
        Ok(())
    })
}

#[test]
fn http_metrics_count_requests_by_semantic_convention_labels() -> anyhow::Result<()> {
    let _serial = common::serial();
    common::runtime()?.block_on(async {
        let metrics = HttpMetrics::new();
        let app = app(&metrics);
        // What `groundwork-service` counts at the edge, on the same page.
        metrics.shed_requests().increment(2);
        metrics.timed_out_requests().increment(1);
        for path in [
            "/v1/orders/1",
            "/v1/orders/2",
            "/v1/fail",
            "/wp-admin.php",
            "/.env",
        ] {
            app.clone()
                .oneshot(Request::get(path).body(Body::empty())?)
                .await?;
        }
        // Methods outside the standard set share one label, so clients cannot create series.
        for method in ["PURGE", "BREW"] {
            app.clone()
                .oneshot(
                    Request::builder()
                        .method(method)
                        .uri("/v1/orders/3")
                        .body(Body::empty())?,
                )
                .await?;
        }
        let response = app
            .oneshot(Request::get("/metrics").body(Body::empty())?)
            .await?;
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
        let text = String::from_utf8(body.to_vec())?;
        assert!(
            text.contains(
                r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="/v1/orders/{id}",http_response_status_code="200"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains("\nhttp_server_shed_requests_total 2\n"), "{text}");
        assert!(text.contains("\nhttp_server_timed_out_requests_total 1\n"), "{text}");
        assert!(
            text.contains(
                r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="/v1/fail",http_response_status_code="503",error_type="503"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"http_server_request_duration_seconds_bucket{http_request_method="GET",http_route="/v1/fail",http_response_status_code="503",error_type="503",le="0.005"}"#),
            "semantic-convention buckets: {text}"
        );
        assert!(
            text.contains(
                r#"http_server_request_duration_seconds_count{http_request_method="_OTHER",http_route="/v1/orders/{id}",http_response_status_code="405"} 2"#
            ),
            "{text}"
        );
        assert!(!text.contains("PURGE") && !text.contains("BREW"), "{text}");
        // Paths no route matched share one series without `http_route`, as OpenTelemetry's HTTP
        // conventions ask (`{http_route=""}` in PromQL): a scan is counted, its paths are not.
        assert!(
            text.contains(
                r#"http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_code="404"} 2"#
            ),
            "{text}"
        );
        assert!(!text.contains("wp-admin") && !text.contains(".env"), "{text}");
        assert!(
            !text.contains("error_type=\"4"),
            "only failures (5xx) have error_type: {text}"
        );
        assert!(text.contains("http_server_active_requests 0"), "{text}");
        assert!(
            !text.contains("route=\"/metrics\""),
            "scrapes are not traffic: {text}"
        );
        Ok(())
    })
}

#[test]
fn duration_buckets_are_configurable_and_checked() -> anyhow::Result<()> {
    let _serial = common::serial();
    common::runtime()?.block_on(async {
        let metrics = HttpMetrics::with_duration_buckets(&[0.001, 0.1, 1.0])?;
        app(&metrics)
            .oneshot(Request::get("/v1/orders/1").body(Body::empty())?)
            .await?;
        let text = metrics.render();
        for le in ["0.001", "0.1", "1", "+Inf"] {
            assert!(
                text.contains(&format!(
                    r#"http_server_request_duration_seconds_bucket{{http_request_method="GET",http_route="/v1/orders/{{id}}",http_response_status_code="200",le="{le}"}}"#
                )),
                "{le}: {text}"
            );
        }
        assert!(!text.contains(r#"le="0.005""#), "{text}");

        let mut settings = settings();
        settings.http_duration_buckets = Some("0.01, 0.5,2".into());
        assert!(HttpMetrics::from_settings(&settings).is_ok());
        for bad in ["0.5,0.1", "fast", "0.1,,1"] {
            settings.http_duration_buckets = Some(bad.into());
            let error = HttpMetrics::from_settings(&settings).err().map(|e| e.to_string());
            assert!(
                error
                    .as_deref()
                    .is_some_and(|e| e.contains("HTTP_SERVER_DURATION_BUCKETS")),
                "{bad:?}: {error:?}"
            );
        }
        Ok(())
    })
}
