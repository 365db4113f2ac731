//! HTTP: server spans that continue the caller's trace, `X-Request-ID`, Prometheus metrics, and
//! context injection for outgoing requests.
//!
//! ```
//! use axum::{Router, routing::get};
//! use groundwork_telemetry::http::{HttpMetrics, TelemetryLayer};
//!
//! let metrics = HttpMetrics::new();
//! let app: Router = Router::new()
//!     .route("/v1/orders/{id}", get(|| async { "order" }))
//!     .layer(TelemetryLayer::new().with_metrics(metrics.clone()))
//!     // Mounted after the layer, so scrapes are not counted as traffic.
//!     .route("/metrics", metrics.handler());
//! ```
//!
//! Add the layer with `Router::layer` so it runs after routing: the span and the metrics are then
//! named by the matched route (`/v1/orders/{id}`), not the raw path, which keeps label cardinality
//! bounded.
//!
//! A path no route matches goes through the layer only while the router's fallback is layered.
//! Merging another router after the layer (`.merge(health.router())`) replaces a default fallback
//! with the merged router's unlayered one, and unknown paths then leave no line, span or count:
//! give the layered router its own `.fallback(...)` (a JSON 404) before the layer, as the example
//! services do.
//!
//! Each finished request writes one access log line (message `request completed`, target
//! [`ACCESS_LOG_TARGET`]) inside the request's span, so it carries `traceId`, `spanId` and
//! `requestId`:
//!
//! ```text
//! {"timestamp":"…","level":"INFO","service":"api-gateway","traceId":"…","spanId":"…",
//!  "message":"request completed","context":{"method":"GET","route":"/v1/orders/{id}",
//!  "status":200,"durationMs":0.412,"bytes":17,"requestId":"…","http.route":"/v1/orders/{id}",…}}
//! ```
//!
//! The duration is counted until the response head is ready; `bytes` is the body's size when it
//! is known then (absent for a streamed body); `route` is absent for a path no route matched. A
//! request whose future is dropped first (the client went away, or a timeout stopped it) writes
//! `request cancelled` instead, without `status`. [`AccessLog`] configures it.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::MatchedPath;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response};
use metrics::{Counter, Gauge, Histogram, Key, Label, Recorder as _};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry_sdk::trace::{IdGenerator as _, RandomIdGenerator};
use tracing::Instrument as _;
use tracing::field::Empty;
use tracing::instrument::Instrumented;

/// The request id header nginx and the platform's gateways set.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request duration histogram, named as Prometheus sees OpenTelemetry's
/// `http.server.request.duration`.
pub const REQUEST_DURATION: &str = "http_server_request_duration_seconds";
/// Requests being served right now.
pub const ACTIVE_REQUESTS: &str = "http_server_active_requests";
/// Requests answered 503 at once because the service was at its concurrency limit (load shedding
/// by `groundwork-service`'s `serve`).
pub const SHED_REQUESTS: &str = "http_server_shed_requests_total";
/// Requests answered 503 because they ran longer than the request timeout of `serve`.
pub const TIMED_OUT_REQUESTS: &str = "http_server_timed_out_requests_total";
/// Requests `serve`'s HTTP parser answered itself (400, 431, 414) because they could not be
/// parsed; they have no method or path to be counted by.
pub const MALFORMED_REQUESTS: &str = "http_server_malformed_requests_total";

/// OpenTelemetry's advisory buckets for `http.server.request.duration`, in seconds.
const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The target of the access log lines, for filter directives such as
/// `RUST_LOG=info,groundwork_telemetry::access=warn`.
pub const ACCESS_LOG_TARGET: &str = "groundwork_telemetry::access";

/// Paths the access log skips unless configured otherwise: health probes and scrapes, which
/// arrive every few seconds.
pub const DEFAULT_ACCESS_LOG_SKIP_PATHS: &str = "/livez,/readyz,/health*,/metrics";

/// The longest incoming `X-Request-ID` that is kept; longer or non-printable ids are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The request id of the current request, in the request's extensions for handlers to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The id as sent in `X-Request-ID`.
    pub fn as_str(&self) -> &str {
        // Only printable ASCII is ever kept or generated, which `to_str` accepts.
        self.0.to_str().unwrap_or_default()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Prometheus metrics for HTTP servers: a duration histogram, the number of requests in flight,
/// and counters of requests shed or timed out at the edge. Cheap to clone; clones share one
/// registry.
///
/// The histogram's labels are OpenTelemetry's HTTP attributes as Prometheus names them:
/// `http_request_method` (`_OTHER` for a non-standard method), `http_route` (the matched route;
/// absent for a path no route matched, so a scan is counted in one series and its paths create
/// none: `{http_route=""}` selects it), `http_response_status_code`, and `error_type` (the status
/// code) on 5xx answers.
#[derive(Clone)]
pub struct HttpMetrics(Arc<MetricsInner>);

struct MetricsInner {
    recorder: Arc<PrometheusRecorder>,
    active: Gauge,
    shed: Counter,
    timed_out: Counter,
    malformed: Counter,
    /// Histograms by route, then method and status: registering one per request would build its
    /// labels and hash them every time.
    durations: RwLock<DurationsByRoute>,
    /// What [`HttpMetrics::on_render`] added: run before every render, with the registry as the
    /// thread's `metrics` recorder.
    collectors: RwLock<Vec<Collector>>,
}

/// A function that sets gauges through the `metrics` facade when the page is rendered.
type Collector = Box<dyn Fn() + Send + Sync>;

impl fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpMetrics").finish_non_exhaustive()
    }
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpMetrics {
    /// A fresh registry with the HTTP server metrics, with OpenTelemetry's advisory duration
    /// buckets.
    pub fn new() -> Self {
        Self::build(&DURATION_BUCKETS)
    }

    /// A fresh registry whose duration histogram has the bucket upper bounds `buckets`, in
    /// seconds; they must be increasing, and there must be at least one.
    pub fn with_duration_buckets(buckets: &[f64]) -> Result<Self, crate::TelemetryError> {
        if buckets.is_empty()
            || buckets.iter().any(|bound| !bound.is_finite())
            || buckets.windows(2).any(|pair| pair[0] >= pair[1])
        {
            return Err(crate::TelemetryError::setting(
                "HTTP_SERVER_DURATION_BUCKETS",
                "expected increasing numbers of seconds, comma-separated, e.g. 0.01,0.1,1",
            ));
        }
        Ok(Self::build(buckets))
    }

    /// A fresh registry with the buckets of `HTTP_SERVER_DURATION_BUCKETS`, OpenTelemetry's when
    /// it is unset.
    pub fn from_settings(
        settings: &crate::TelemetrySettings,
    ) -> Result<Self, crate::TelemetryError> {
        let Some(text) = crate::settings::non_empty(settings.http_duration_buckets.as_deref())
        else {
            return Ok(Self::new());
        };
        let buckets = text
            .split(',')
            .map(|bound| bound.trim().parse::<f64>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| {
                crate::TelemetryError::setting(
                    "HTTP_SERVER_DURATION_BUCKETS",
                    "expected increasing numbers of seconds, comma-separated, e.g. 0.01,0.1,1",
                )
            })?;
        Self::with_duration_buckets(&buckets)
    }

    fn build(buckets: &[f64]) -> Self {
        // Setting buckets only fails for an empty bucket list, which callers rule out.
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.to_owned()), buckets)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = Arc::new(builder.build_recorder());
        // Help text for every family: `promtool check metrics` refuses a page without it.
        recorder.describe_histogram(
            REQUEST_DURATION.into(),
            Some(metrics::Unit::Seconds),
            "Duration of HTTP server requests, until the response head.".into(),
        );
        recorder.describe_gauge(
            ACTIVE_REQUESTS.into(),
            None,
            "HTTP server requests being served.".into(),
        );
        recorder.describe_counter(
            SHED_REQUESTS.into(),
            None,
            "Requests answered 503 at once because the concurrency limit was reached.".into(),
        );
        recorder.describe_counter(
            MALFORMED_REQUESTS.into(),
            None,
            "Requests answered 400, 431 or 414 by the HTTP parser because they could not be parsed."
                .into(),
        );
        recorder.describe_counter(
            TIMED_OUT_REQUESTS.into(),
            None,
            "Requests answered 503 because they ran longer than the request timeout.".into(),
        );
        let active = recorder.register_gauge(&Key::from_name(ACTIVE_REQUESTS), &METADATA);
        // Registered up front, so the page shows them at 0 before the first overload.
        let shed = recorder.register_counter(&Key::from_name(SHED_REQUESTS), &METADATA);
        let timed_out = recorder.register_counter(&Key::from_name(TIMED_OUT_REQUESTS), &METADATA);
        let malformed = recorder.register_counter(&Key::from_name(MALFORMED_REQUESTS), &METADATA);
        Self(Arc::new(MetricsInner {
            recorder,
            active,
            shed,
            timed_out,
            malformed,
            durations: RwLock::default(),
            collectors: RwLock::default(),
        }))
    }

    /// Runs `collect` every time the page is rendered, before it is rendered, with this registry as
    /// the calling thread's `metrics` recorder: `metrics::gauge!(...)` and friends inside it land
    /// on this page even when another recorder is the global one. For values read when scraped,
    /// such as the connection-pool gauges of the `pools` module.
    pub fn on_render(&self, collect: impl Fn() + Send + Sync + 'static) {
        if let Ok(mut collectors) = self.0.collectors.write() {
            collectors.push(Box::new(collect));
        }
    }

    /// Adds the process metrics of `metrics-process` to the page, read from the operating system
    /// at every render: `process_cpu_seconds_total`, `process_resident_memory_bytes`,
    /// `process_virtual_memory_bytes`, `process_virtual_memory_max_bytes`, `process_open_fds`,
    /// `process_max_fds`, `process_start_time_seconds` and `process_threads`, named as the
    /// Prometheus client libraries name them.
    #[cfg(feature = "process")]
    #[must_use]
    pub fn with_process_metrics(self) -> Self {
        let collector = metrics_process::Collector::default();
        metrics::with_local_recorder(&*self.0.recorder, || collector.describe());
        self.on_render(move || collector.collect());
        self
    }

    /// Makes this registry the process-wide `metrics` recorder, so the service's own
    /// `metrics::counter!` and friends appear on the same `/metrics` page. Returns `false` when
    /// another recorder was installed first.
    pub fn install_global(&self) -> bool {
        metrics::set_global_recorder(Arc::clone(&self.0.recorder)).is_ok()
    }

    /// The counter of requests shed at the concurrency limit ([`SHED_REQUESTS`]), for
    /// `groundwork_service::EdgeMetrics::shed`.
    pub fn shed_requests(&self) -> Counter {
        self.0.shed.clone()
    }

    /// The counter of requests stopped by the request timeout ([`TIMED_OUT_REQUESTS`]), for
    /// `groundwork_service::EdgeMetrics::timed_out`.
    pub fn timed_out_requests(&self) -> Counter {
        self.0.timed_out.clone()
    }

    /// The counter of requests the HTTP parser refused ([`MALFORMED_REQUESTS`]), for
    /// `groundwork_service::EdgeMetrics::malformed`.
    pub fn malformed_requests(&self) -> Counter {
        self.0.malformed.clone()
    }

    /// The Prometheus text exposition of every metric in the registry.
    pub fn render(&self) -> String {
        if let Ok(collectors) = self.0.collectors.read()
            && !collectors.is_empty()
        {
            metrics::with_local_recorder(&*self.0.recorder, || {
                for collect in collectors.iter() {
                    collect();
                }
            });
        }
        self.0.recorder.handle().render()
    }

    /// A handler serving [`render`](Self::render) as `text/plain; version=0.0.4`; mount it where
    /// the service wants it, usually `/metrics`.
    pub fn handler<S>(&self) -> axum::routing::MethodRouter<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let metrics = self.clone();
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.render(),
                )
            }
        })
    }

    fn duration(&self, method: &Method, route: &str, status: u16) -> Histogram {
        let method = method_label(method);
        let lookup = |map: &DurationsByRoute| {
            map.get(route)?
                .iter()
                .find(|(m, s, _)| *m == method && *s == status)
                .map(|(_, _, histogram)| histogram.clone())
        };
        if let Some(histogram) = self.0.durations.read().ok().as_deref().and_then(lookup) {
            return histogram;
        }
        // Only on the first request of a route, method and status: the labels are built once.
        let mut labels = Vec::with_capacity(4);
        labels.push(Label::new("http_request_method", method));
        if !route.is_empty() {
            labels.push(Label::new("http_route", route.to_owned()));
        }
        labels.push(Label::new("http_response_status_code", status.to_string()));
        // OpenTelemetry's `error.type` for a server: the status code of a 5xx answer.
        if status >= 500 {
            labels.push(Label::new("error_type", status.to_string()));
        }
        let histogram = self
            .0
            .recorder
            .register_histogram(&Key::from_parts(REQUEST_DURATION, labels), &METADATA);
        if let Ok(mut map) = self.0.durations.write() {
            map.entry(route.into())
                .or_default()
                .push((method, status, histogram.clone()));
        }
        histogram
    }
}

/// The method as a metric label: the standard methods by name, any other as `_OTHER`, as
/// OpenTelemetry's HTTP conventions ask, so a client inventing methods cannot create series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}

/// Duration histograms by route, then by method and status.
///
/// Hashed with foldhash: route strings are short and chosen by the service, not by callers, so the
/// map needs no protection against crafted collisions and `SipHash` would be most of a lookup's
/// cost.
type DurationsByRoute =
    HashMap<Box<str>, Vec<(&'static str, u16, Histogram)>, foldhash::fast::RandomState>;

static METADATA: metrics::Metadata<'static> =
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// What the access log of [`TelemetryLayer`] writes: on or off, the paths it skips, and the level
/// of a 5xx answer's line. The default is on, skipping [`DEFAULT_ACCESS_LOG_SKIP_PATHS`], with
/// 5xx lines at ERROR and the others at INFO.
#[derive(Debug, Clone)]
pub struct AccessLog {
    enabled: bool,
    /// Exact paths, and prefixes (an entry that ended in `*`).
    skip: Arc<[SkipPath]>,
    server_error_level: tracing::Level,
}

#[derive(Debug)]
enum SkipPath {
    Exact(Box<str>),
    Prefix(Box<str>),
}

impl Default for AccessLog {
    fn default() -> Self {
        Self {
            enabled: true,
            skip: parse_skip_paths(DEFAULT_ACCESS_LOG_SKIP_PATHS),
            server_error_level: tracing::Level::ERROR,
        }
    }
}

impl AccessLog {
    /// No access log at all.
    pub fn off() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// The access log `settings` describe: `ACCESS_LOG`, `ACCESS_LOG_SKIP_PATHS` and
    /// `ACCESS_LOG_SERVER_ERROR_LEVEL`, each with its default when unset.
    pub fn from_settings(
        settings: &crate::TelemetrySettings,
    ) -> Result<Self, crate::TelemetryError> {
        let mut access = Self {
            enabled: settings.access_log.unwrap_or(true),
            ..Self::default()
        };
        if let Some(paths) = &settings.access_log_skip_paths {
            access = access.skip_paths(paths);
        }
        if let Some(level) =
            crate::settings::non_empty(settings.access_log_server_error_level.as_deref())
        {
            access.server_error_level = match level.to_ascii_lowercase().as_str() {
                "error" => tracing::Level::ERROR,
                "warn" => tracing::Level::WARN,
                "info" => tracing::Level::INFO,
                _ => {
                    return Err(crate::TelemetryError::setting(
                        "ACCESS_LOG_SERVER_ERROR_LEVEL",
                        "expected one of error, warn, info",
                    ));
                }
            };
        }
        Ok(access)
    }

    /// Skips the comma-separated `paths` instead of the current list; an entry ending in `*` is a
    /// prefix (`/health*` skips `/health` and `/health/ready`). An empty list logs every path.
    #[must_use]
    pub fn skip_paths(mut self, paths: &str) -> Self {
        self.skip = parse_skip_paths(paths);
        self
    }

    /// The level of the line of a 5xx answer (default ERROR).
    #[must_use]
    pub fn server_error_level(mut self, level: tracing::Level) -> Self {
        self.server_error_level = level;
        self
    }

    /// Whether a request for `path` writes a line.
    fn logs(&self, path: &str) -> bool {
        self.enabled
            && !self.skip.iter().any(|skip| match skip {
                SkipPath::Exact(exact) => path == &**exact,
                SkipPath::Prefix(prefix) => path.starts_with(&**prefix),
            })
    }
}

fn parse_skip_paths(paths: &str) -> Arc<[SkipPath]> {
    paths
        .split(',')
        .map(str::trim)
        .filter(|path| !path.is_empty())
        .map(|path| match path.strip_suffix('*') {
            Some(prefix) => SkipPath::Prefix(prefix.into()),
            None => SkipPath::Exact(path.into()),
        })
        .collect()
}

/// The tower layer: one server span per request, continuing the caller's trace.
///
/// For each request it
/// - extracts `traceparent`/`tracestate` with the configured propagators, so the server span is a
///   child of the caller's span (or the root of a new trace);
/// - takes `X-Request-ID` or generates one, records it as `requestId` on the span (so every log
///   line of the request carries it), puts a [`RequestId`] in the request's extensions and echoes
///   the header in the response;
/// - names the span `{method} {route}` with OpenTelemetry's HTTP attributes
///   (`http.request.method`, `http.route`, `url.path`, `http.response.status_code`); 5xx responses
///   mark the span as an error;
/// - with [`with_metrics`](Self::with_metrics), records the duration histogram and in-flight gauge;
/// - writes the access log line (see [the module docs](self)) as [`AccessLog`] says.
#[derive(Debug, Clone, Default)]
pub struct TelemetryLayer {
    metrics: Option<HttpMetrics>,
    access_log: AccessLog,
}

impl TelemetryLayer {
    /// A layer with tracing, request ids and the default access log, without metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// A layer whose access log follows `settings` (see [`AccessLog::from_settings`]).
    pub fn from_settings(
        settings: &crate::TelemetrySettings,
    ) -> Result<Self, crate::TelemetryError> {
        Ok(Self::new().with_access_log(AccessLog::from_settings(settings)?))
    }

    /// Writes the access log as `access_log` says.
    #[must_use]
    pub fn with_access_log(mut self, access_log: AccessLog) -> Self {
        self.access_log = access_log;
        self
    }

    /// Also records HTTP server metrics into `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: HttpMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Passes `response`, an answer given in front of the router for `request` (received at
    /// `started`), through the layer as if a handler had given it: a server span continuing the
    /// caller's trace, `X-Request-ID` taken or made and echoed, the duration histogram (without
    /// `http_route`: no route was matched) and the access log line. For answers that never reach
    /// the router, such as `groundwork-service`'s 503 of load shedding or of the request timeout
    /// and its 413 for a declared body over the limit.
    pub async fn record_answer<B>(
        &self,
        request: Request<()>,
        started: Instant,
        response: Response<B>,
    ) -> Response<B>
    where
        B: axum::body::HttpBody + Default,
    {
        let mut service = tower::Layer::layer(self, Answered(Some(response)));
        match service.call_at(request, started).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

/// The inner service of [`TelemetryLayer::record_answer`]: answers its one request with the
/// response it holds.
struct Answered<B>(Option<Response<B>>);

impl<B: Default> Answered<B> {
    fn take(&mut self) -> Response<B> {
        self.0.take().unwrap_or_default()
    }
}

impl<ReqBody, B: Default> tower::Service<Request<ReqBody>> for Answered<B> {
    type Response = Response<B>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Response<B>, std::convert::Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<ReqBody>) -> Self::Future {
        std::future::ready(Ok(self.take()))
    }
}

impl<S> tower::Layer<S> for TelemetryLayer {
    type Service = TelemetryService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TelemetryService {
            inner,
            metrics: self.metrics.clone(),
            access_log: self.access_log.clone(),
        }
    }
}

/// The service [`TelemetryLayer`] wraps around a handler or router.
#[derive(Debug, Clone)]
pub struct TelemetryService<S> {
    inner: S,
    metrics: Option<HttpMetrics>,
    access_log: AccessLog,
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for TelemetryService<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: axum::body::HttpBody,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = TelemetryFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        self.call_at(request, Instant::now())
    }
}

impl<S> TelemetryService<S> {
    /// [`tower::Service::call`] for a request received at `started`.
    fn call_at<ReqBody, ResBody>(
        &mut self,
        mut request: Request<ReqBody>,
        started: Instant,
    ) -> TelemetryFuture<S::Future>
    where
        S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
    {
        let method = request.method().clone();
        // An `Arc<str>` inside: cloning it copies no bytes.
        let route = request.extensions().get::<MatchedPath>().cloned();
        let (request_id, generated) = request_id(request.headers());
        let caller = caller_context(request.headers());
        let route_str = route.as_ref().map(MatchedPath::as_str);
        // Plain `&str` values, not `%` (Display), where a value is needed as text anyway: both layers
        // record them without formatting. The span name is formatted only by an exporting bridge.
        let span = crate::bridge::with_remote_parent(&caller, || {
            tracing::info_span!(
                "http.server.request",
                otel.name = %SpanName(&method, route_str),
                otel.kind = "server",
                otel.status_code = Empty,
                http.request.method = method.as_str(),
                http.route = route_str,
                url.path = request.uri().path(),
                http.response.status_code = Empty,
                requestId = request_id.as_str(),
            )
        });

        if generated {
            // A generated id replaces whatever unusable id came in, so what handlers forward is
            // what the logs and the response carry.
            request
                .headers_mut()
                .insert(REQUEST_ID, request_id.0.clone());
        }
        let header = request_id.0.clone();
        request.extensions_mut().insert(request_id);

        let access_log = self
            .access_log
            .logs(request.uri().path())
            .then_some(self.access_log.server_error_level);
        let metrics = self.metrics.clone().map(|metrics| {
            metrics.0.active.increment(1.0);
            ActiveRequest(metrics)
        });
        TelemetryFuture {
            inner: self.inner.call(request).instrument(span),
            done: Some(Done {
                started,
                method,
                route,
                header,
                metrics,
                access_log,
            }),
        }
    }
}

/// `{method} {route}`, the server span's name, formatted only when a span is exported.
struct SpanName<'a>(&'a Method, Option<&'a str>);

impl fmt::Display for SpanName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())?;
        if let Some(route) = self.1 {
            f.write_str(" ")?;
            f.write_str(route)?;
        }
        Ok(())
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`TelemetryService`]: polls the inner service inside the request's
    /// span (and drops it inside the span, so a cancelled handler's last lines keep their ids),
    /// then records the status, the metrics, the access log line and the echoed `X-Request-ID`.
    pub struct TelemetryFuture<F> {
        #[pin]
        inner: Instrumented<F>,
        done: Option<Done>,
    }

    impl<F> PinnedDrop for TelemetryFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // Still there: the future is dropped before the response was ready.
            if let Some(done) = this.done.take()
                && done.access_log.is_some()
            {
                tracing::info!(
                    target: ACCESS_LOG_TARGET,
                    parent: this.inner.span(),
                    method = done.method.as_str(),
                    route = done.route.as_ref().map(MatchedPath::as_str),
                    durationMs = duration_ms(done.started),
                    "request cancelled"
                );
            }
        }
    }
}

impl<F> fmt::Debug for TelemetryFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryFuture")
            .field("span", self.inner.span())
            .finish_non_exhaustive()
    }
}

/// What the response needs once the inner future is ready.
struct Done {
    started: Instant,
    method: Method,
    route: Option<MatchedPath>,
    header: HeaderValue,
    metrics: Option<ActiveRequest>,
    /// The level of a 5xx line when the request writes an access log line.
    access_log: Option<tracing::Level>,
}

/// Milliseconds since `started`, to the microsecond.
fn duration_ms(started: Instant) -> f64 {
    // Exact in an f64 for any duration a request takes (below 2^53 µs, 285 years).
    #[expect(clippy::cast_precision_loss, reason = "exact below 2^53 microseconds")]
    let micros = started.elapsed().as_micros() as f64;
    micros / 1000.0
}

/// Writes the access log line at `level` as an event of `span`: naming the parent costs less than
/// entering the span (every layer's enter and exit) for one event.
macro_rules! access_line {
    ($level:expr, $span:expr, $($fields:tt)*) => {
        match $level {
            tracing::Level::ERROR => tracing::error!(target: ACCESS_LOG_TARGET, parent: $span, $($fields)*),
            tracing::Level::WARN => tracing::warn!(target: ACCESS_LOG_TARGET, parent: $span, $($fields)*),
            _ => tracing::info!(target: ACCESS_LOG_TARGET, parent: $span, $($fields)*),
        }
    };
}

impl<F, ResBody, E> Future for TelemetryFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: axum::body::HttpBody,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let result = std::task::ready!(this.inner.as_mut().poll(cx));
        let span = this.inner.span();
        let Some(done) = this.done.take() else {
            return Poll::Ready(result);
        };
        let status = match &result {
            Ok(response) => response.status().as_u16(),
            Err(_) => 500,
        };
        // As i64: OpenTelemetry has no unsigned integers.
        span.record("http.response.status_code", i64::from(status));
        if status >= 500 {
            span.record("otel.status_code", "ERROR");
        }
        if let Some(active) = &done.metrics {
            active
                .0
                .duration(
                    &done.method,
                    done.route.as_ref().map_or("", MatchedPath::as_str),
                    status,
                )
                .record(done.started.elapsed().as_secs_f64());
        }
        if let Some(server_error_level) = done.access_log {
            let level = if status >= 500 {
                server_error_level
            } else {
                tracing::Level::INFO
            };
            let bytes = result
                .as_ref()
                .ok()
                .and_then(|response| response.body().size_hint().exact());
            access_line!(
                level,
                span,
                method = done.method.as_str(),
                route = done.route.as_ref().map(MatchedPath::as_str),
                status,
                durationMs = duration_ms(done.started),
                bytes,
                "request completed"
            );
        }
        Poll::Ready(result.map(|mut response| {
            response.headers_mut().insert(REQUEST_ID, done.header);
            response
        }))
    }
}

/// Decrements the in-flight gauge when the request ends, also when its future is dropped.
struct ActiveRequest(HttpMetrics);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.0.active.decrement(1.0);
    }
}

/// The caller's trace context; most requests carry none, and those skip the propagators.
fn caller_context(headers: &HeaderMap) -> opentelemetry::Context {
    if headers.contains_key("traceparent") || headers.contains_key("baggage") {
        crate::extract(&HeaderExtractor(headers))
    } else {
        opentelemetry::Context::new()
    }
}

/// The incoming `X-Request-ID` when it is usable, else a new one (and `true`).
fn request_id(headers: &HeaderMap) -> (RequestId, bool) {
    let incoming = headers.get(REQUEST_ID).filter(|value| {
        let id = value.as_bytes();
        !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.iter().all(u8::is_ascii_graphic)
    });
    if let Some(id) = incoming {
        return (RequestId(id.clone()), false);
    }
    // 32 lowercase hex digits, like a trace id.
    let id = u128::from_be_bytes(RandomIdGenerator::default().new_trace_id().to_bytes());
    let mut hex = [0_u8; 32];
    for (index, digit) in hex.iter_mut().enumerate() {
        let nibble = (id >> (4 * (31 - index))) & 0xf;
        *digit = b"0123456789abcdef"[usize::try_from(nibble).unwrap_or(0)];
    }
    // Shared from the start, so that the copies for the request, the response and the extension
    // are reference counts. Hex digits are always a valid header value.
    let value = HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(hex))
        .unwrap_or(HeaderValue::from_static("0"));
    (RequestId(value), true)
}

/// Writes the current span's context into outgoing request headers (`traceparent`, `tracestate`),
/// so the next service continues this trace.
pub fn inject_current(headers: &mut HeaderMap) {
    crate::inject(&crate::current_context(), &mut HeaderInjector(headers));
}

/// Reads context from HTTP headers, for [`crate::extract`].
#[derive(Debug)]
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// Writes context into HTTP headers, for [`crate::inject`].
#[derive(Debug)]
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}
