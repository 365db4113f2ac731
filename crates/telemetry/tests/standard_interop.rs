//! The standard path (`TELEMETRY_BRIDGE=standard`, feature `otel-standard`) with the crates built on
//! tracing-opentelemetry: inside a handler served through `TelemetryLayer`, an outgoing call made
//! through reqwest-middleware with a middleware that reads the trace through `OpenTelemetrySpanExt`
//! (what reqwest-tracing does) carries the request's trace in `traceparent`, and a span started
//! through OpenTelemetry's own API joins the request's trace. On the fast path, the same read gives
//! an empty context, as the README says.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use common::str_at;
use fake_opentelemetry_collector::{ExportedSpan, FakeCollectorServer};
use groundwork_telemetry::http::{HeaderInjector, TelemetryLayer};
use groundwork_telemetry::{Telemetry, TracingBridge};
use opentelemetry::trace::{Span as _, TraceContextExt as _, Tracer as _};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// What reqwest-tracing's middleware does for each request: a client span, and the context read
/// through `OpenTelemetrySpanExt::context` injected with the global propagator. (reqwest-tracing
/// itself supports OpenTelemetry up to 0.32; Groundwork is on 0.33, one version of each crate.)
struct PropagateLikeReqwestTracing;

#[async_trait::async_trait]
impl Middleware for PropagateLikeReqwestTracing {
    async fn handle(
        &self,
        mut request: reqwest::Request,
        extensions: &mut http::Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let span = tracing::info_span!(
            "HTTP request",
            otel.kind = "client",
            otel.name = %format_args!("{}", request.method()),
            http.request.method = request.method().as_str(),
            url.full = request.url().as_str(),
        );
        async move {
            let context = tracing::Span::current().context();
            opentelemetry::global::get_text_map_propagator(|propagator| {
                propagator.inject_context(&context, &mut HeaderInjector(request.headers_mut()));
            });
            next.run(request, extensions).await
        }
        .instrument(span)
        .await
    }
}

#[derive(Clone)]
struct Upstream {
    client: ClientWithMiddleware,
    downstream: String,
}

/// The handler: calls the downstream service, then does work through OpenTelemetry's API.
async fn order(State(upstream): State<Upstream>) -> Result<String, String> {
    let status = upstream
        .client
        .get(&upstream.downstream)
        .send()
        .await
        .map_err(|error| error.to_string())?
        .status();
    let tracer = opentelemetry::global::tracer("inventory-sdk");
    let mut span =
        tracer.start_with_context("inventory lookup", &opentelemetry::Context::current());
    span.end();
    Ok(status.to_string())
}

async fn serve(router: Router) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(format!("http://{address}"))
}

fn span_named<'a>(spans: &'a [ExportedSpan], name: &str) -> anyhow::Result<&'a ExportedSpan> {
    spans.iter().find(|span| span.name == name).ok_or_else(|| {
        let names: Vec<&str> = spans.iter().map(|span| span.name.as_str()).collect();
        anyhow::anyhow!("no span `{name}` among {names:?}")
    })
}

#[test]
fn reqwest_middleware_calls_and_opentelemetry_api_spans_join_the_requests_trace()
-> anyhow::Result<()> {
    let _serial = common::serial();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut collector = FakeCollectorServer::start()
            .await
            .map_err(|error| anyhow::anyhow!("cannot start the collector: {error}"))?;
        let mut settings = common::default_settings();
        settings.bridge = TracingBridge::Standard;
        settings.service_name = Some("api-gateway".into());
        settings.otlp_endpoint = Some(collector.endpoint().parse()?);
        settings.otlp_protocol = Some(groundwork_telemetry::OtlpProtocol::Grpc);
        let captured = common::Captured::default();
        // Installed: the handler runs on the server's tasks, and OpenTelemetry's API reads the
        // global tracer provider.
        let telemetry = Telemetry::builder(&settings)
            .writer(captured.clone())
            .build()?
            .install()?;

        let received: Arc<Mutex<Option<String>>> = Arc::default();
        let seen = Arc::clone(&received);
        let downstream = serve(Router::new().route(
            "/stock",
            get(move |headers: http::HeaderMap| {
                let seen = Arc::clone(&seen);
                async move {
                    let traceparent = headers
                        .get("traceparent")
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_owned);
                    if let Ok(mut slot) = seen.lock() {
                        *slot = traceparent;
                    }
                    "in stock"
                }
            }),
        ))
        .await?;
        let upstream = Upstream {
            client: ClientBuilder::new(reqwest::Client::new())
                .with(PropagateLikeReqwestTracing)
                .build(),
            downstream: format!("{downstream}/stock"),
        };
        let app = Router::new()
            .route("/orders/{id}", get(order))
            .layer(TelemetryLayer::new())
            .with_state(upstream);
        let gateway = serve(app).await?;

        let response = reqwest::Client::new()
            .get(format!("{gateway}/orders/7"))
            .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
            .send()
            .await?;
        assert_eq!(response.status(), 200, "{:?}", response.text().await);

        // The outgoing call carried the request's trace, from the client span.
        let traceparent = received
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the downstream call carried no traceparent"))?;
        assert!(
            traceparent.starts_with(&format!("00-{TRACE_ID}-")) && traceparent.ends_with("-01"),
            "{traceparent}"
        );
        let client_span_id = traceparent.split('-').nth(2).unwrap_or_default().to_owned();
        assert_ne!(client_span_id, CALLER_SPAN);

        let telemetry = tokio::task::spawn_blocking(move || {
            let result = telemetry.force_flush();
            result.map(|()| telemetry)
        })
        .await??;
        let spans = collector.exported_spans(3, Duration::from_secs(5)).await;
        drop(telemetry);

        let server = span_named(&spans, "GET /orders/{id}")?;
        assert_eq!(server.trace_id, TRACE_ID);
        assert_eq!(server.parent_span_id, CALLER_SPAN);
        let client = span_named(&spans, "GET")?;
        assert_eq!(client.trace_id, TRACE_ID);
        assert_eq!(client.span_id, client_span_id);
        assert_eq!(client.parent_span_id, server.span_id);
        // The span started through OpenTelemetry's API with the current context.
        let lookup = span_named(&spans, "inventory lookup")?;
        assert_eq!(lookup.trace_id, TRACE_ID);
        assert_eq!(lookup.parent_span_id, server.span_id);

        // The access line carries the request's ids, read from tracing-opentelemetry's span data.
        let line = captured
            .with_message("request completed")?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("no access line in {}", captured.text()))?;
        assert_eq!(str_at(&line, "traceId"), Some(TRACE_ID));
        assert_eq!(str_at(&line, "spanId"), Some(server.span_id.as_str()));
        Ok(())
    })
}

#[test]
fn on_the_fast_path_open_telemetry_span_ext_reads_an_empty_context() -> anyhow::Result<()> {
    let _serial = common::serial();
    let mut settings = common::settings();
    settings.bridge = TracingBridge::Fast;
    let (telemetry, _captured) = common::telemetry(&settings)?;
    let (read_by_ext, read_by_groundwork) =
        tracing::dispatcher::with_default(telemetry.dispatch(), || {
            let span = tracing::info_span!("handle");
            let _entered = span.enter();
            (
                tracing::Span::current().context(),
                groundwork_telemetry::current_context(),
            )
        });
    assert!(!read_by_ext.span().span_context().is_valid());
    assert!(read_by_groundwork.span().span_context().is_valid());
    Ok(())
}
