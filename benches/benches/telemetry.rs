//! Per-event cost of a JSON log line: groundwork-telemetry's layer against tracing-subscriber's
//! `fmt().json()` and the `json-subscriber` crate, in one run.
//!
//! Every subscriber sees the same thing: an INFO event with three fields inside two nested spans,
//! an `info` level filter, the same OpenTelemetry bridge (spans only, so ids exist) and output to
//! `io::sink`. The peers are configured to carry the same information as far as they can:
//! timestamp, level, service, message, event and span fields; `json-subscriber` also prints the
//! OpenTelemetry ids, `fmt().json()` cannot. `groundwork_standard` is groundwork-telemetry on its
//! standard path (`TELEMETRY_BRIDGE=standard`): its `JsonLayer` over tracing-opentelemetry's layer.
//!
//! ```text
//! cargo bench -p groundwork-benches --bench telemetry -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use fake_opentelemetry_collector::FakeCollectorServer;
use groundwork_telemetry::{Telemetry, TelemetrySettings, TracingBridge};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Dispatch, Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Filter, Layer as _, SubscriberExt as _};

/// The bridge filter `groundwork-telemetry` uses: spans, and WARN/ERROR events.
struct SpansAndWarnings;

impl<S> Filter<S> for SpansAndWarnings {
    fn enabled(&self, metadata: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        metadata.is_span() || *metadata.level() <= Level::WARN
    }

    fn callsite_enabled(
        &self,
        metadata: &'static Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if metadata.is_span() || *metadata.level() <= Level::WARN {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }
}

fn ours(bridge: TracingBridge) -> (Dispatch, Telemetry) {
    let mut settings = TelemetrySettings::default();
    settings.service_name = Some("query-engine".into());
    settings.bridge = bridge;
    let telemetry = match Telemetry::builder(&settings).writer(std::io::sink).build() {
        Ok(telemetry) => telemetry,
        Err(error) => panic!("benchmark setup: {error}"),
    };
    (telemetry.dispatch().clone(), telemetry)
}

fn tracing_subscriber_json(provider: &SdkTracerProvider) -> Dispatch {
    let bridge = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("bench"))
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(SpansAndWarnings);
    let formatter = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(true)
        .with_writer(std::io::sink);
    Dispatch::new(
        tracing_subscriber::registry()
            .with(EnvFilter::new("info"))
            .with(bridge)
            .with(formatter),
    )
}

fn json_subscriber(provider: &SdkTracerProvider) -> Dispatch {
    let bridge = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("bench"))
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(SpansAndWarnings);
    let mut formatter = json_subscriber::JsonLayer::new(std::io::sink);
    formatter
        .with_timer("timestamp", tracing_subscriber::fmt::time::SystemTime)
        .with_level("level")
        .with_opentelemetry_ids(true)
        .with_event("context")
        .with_flattened_span_fields("spans");
    formatter.add_static_field("service", serde_json::Value::from("query-engine"));
    Dispatch::new(
        tracing_subscriber::registry()
            .with(EnvFilter::new("info"))
            .with(bridge)
            .with(formatter),
    )
}

fn event_in_two_spans(c: &mut Criterion, name: &str, dispatch: &Dispatch) {
    tracing::dispatcher::with_default(dispatch, || {
        let outer = tracing::info_span!("request", tenant = "acme", requestId = "req-1");
        let _outer = outer.enter();
        let inner = tracing::info_span!("query", supplierCount = 5);
        let _inner = inner.enter();
        c.bench_function(name, |b| {
            b.iter(|| {
                tracing::info!(
                    resultCount = black_box(12),
                    durationMs = black_box(342),
                    cached = black_box(false),
                    "Query completed successfully"
                );
            });
        });
    });
}

fn per_event(c: &mut Criterion) {
    let provider = SdkTracerProvider::builder().build();
    let (dispatch, _telemetry) = ours(TracingBridge::Fast);
    event_in_two_spans(c, "telemetry/info_event/groundwork", &dispatch);
    // The standard path: Groundwork's `JsonLayer` over tracing-opentelemetry's layer.
    let (standard, _standard_telemetry) = ours(TracingBridge::Standard);
    event_in_two_spans(c, "telemetry/info_event/groundwork_standard", &standard);
    event_in_two_spans(
        c,
        "telemetry/info_event/tracing_subscriber_fmt_json",
        &tracing_subscriber_json(&provider),
    );
    event_in_two_spans(
        c,
        "telemetry/info_event/json_subscriber",
        &json_subscriber(&provider),
    );

    tracing::dispatcher::with_default(&dispatch, || {
        let span = tracing::info_span!("request");
        let _entered = span.enter();
        c.bench_function("telemetry/disabled_debug_event/groundwork", |b| {
            b.iter(|| tracing::debug!(value = black_box(1), "not written at info"));
        });
    });
    tracing::dispatcher::with_default(&standard, || {
        let span = tracing::info_span!("request");
        let _entered = span.enter();
        c.bench_function("telemetry/disabled_debug_event/groundwork_standard", |b| {
            b.iter(|| tracing::debug!(value = black_box(1), "not written at info"));
        });
    });
}

/// One request through axum with the telemetry layer: without an exporter, exporting to a running
/// collector (in-process, gRPC), and with the collector down. The request path must not notice
/// the collector: `collector_down` should cost what `collector_up` costs.
fn request_with_collector_down(c: &mut Criterion) {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt as _;

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => panic!("benchmark setup: {error}"),
    };
    let closed_port = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr())
    {
        Ok(addr) => addr.port(),
        Err(error) => panic!("benchmark setup: {error}"),
    };
    let app = Router::new()
        .route("/v1/ping", get(|| async { "pong" }))
        .layer(groundwork_telemetry::http::TelemetryLayer::new());
    let collector = match runtime.block_on(FakeCollectorServer::start()) {
        Ok(collector) => collector,
        Err(error) => panic!("benchmark setup: {error}"),
    };
    // The floor: the same router without the layer and without a subscriber.
    let bare = Router::new().route("/v1/ping", get(|| async { "pong" }));
    c.bench_function("telemetry/request/without_layer", |b| {
        b.iter(|| {
            let request = http::Request::get("/v1/ping").body(Body::empty());
            let Ok(request) = request else { return };
            let _ = black_box(runtime.block_on(bare.clone().oneshot(request)));
        });
    });
    for (name, endpoint, bridge) in [
        ("telemetry/request/no_exporter", None, TracingBridge::Fast),
        (
            "telemetry/request/collector_up",
            Some(collector.endpoint()),
            TracingBridge::Fast,
        ),
        (
            "telemetry/request/collector_down",
            Some(format!("http://127.0.0.1:{closed_port}")),
            TracingBridge::Fast,
        ),
        // The standard path (tracing-opentelemetry's layer) without and with export.
        (
            "telemetry/request/no_exporter_standard",
            None,
            TracingBridge::Standard,
        ),
        (
            "telemetry/request/collector_up_standard",
            Some(collector.endpoint()),
            TracingBridge::Standard,
        ),
    ] {
        let mut settings = TelemetrySettings::default();
        settings.service_name = Some("api-gateway".into());
        settings.otlp_endpoint = match endpoint.map(|endpoint| endpoint.parse()).transpose() {
            Ok(endpoint) => endpoint,
            Err(error) => panic!("benchmark setup: {error}"),
        };
        // The in-process collector speaks gRPC.
        settings.otlp_protocol = Some(groundwork_telemetry::OtlpProtocol::Grpc);
        settings.bridge = bridge;
        let _runtime_context = runtime.enter();
        let telemetry = match Telemetry::builder(&settings).writer(std::io::sink).build() {
            Ok(telemetry) => telemetry,
            Err(error) => panic!("benchmark setup: {error}"),
        };
        tracing::dispatcher::with_default(telemetry.dispatch(), || {
            c.bench_function(name, |b| {
                b.iter(|| {
                    let request = http::Request::get("/v1/ping").body(Body::empty());
                    let Ok(request) = request else { return };
                    let _ = black_box(runtime.block_on(app.clone().oneshot(request)));
                });
            });
        });
    }
    // The share of the access log line: the same request with it switched off.
    let quiet = Router::new()
        .route("/v1/ping", get(|| async { "pong" }))
        .layer(
            groundwork_telemetry::http::TelemetryLayer::new()
                .with_access_log(groundwork_telemetry::http::AccessLog::off()),
        );
    let mut settings = TelemetrySettings::default();
    settings.service_name = Some("api-gateway".into());
    let telemetry = match Telemetry::builder(&settings).writer(std::io::sink).build() {
        Ok(telemetry) => telemetry,
        Err(error) => panic!("benchmark setup: {error}"),
    };
    tracing::dispatcher::with_default(telemetry.dispatch(), || {
        c.bench_function("telemetry/request/no_exporter_no_access_log", |b| {
            b.iter(|| {
                let request = http::Request::get("/v1/ping").body(Body::empty());
                let Ok(request) = request else { return };
                let _ = black_box(runtime.block_on(quiet.clone().oneshot(request)));
            });
        });
    });
}

criterion_group!(benches, per_event, request_with_collector_down);
criterion_main!(benches);
