//! The HTTP edge of [`serve`](crate::serve): what a client may cost the service before it is cut
//! off — time to send a request head, silence on a kept-alive connection, time per request, requests
//! at once, body size.
//!
//! Built from hyper's own header-read timeout, tower's concurrency limit, load shedding and
//! timeout, tower-http's body limit and axum's extractor limit; only the idle watchdog of a
//! kept-alive connection and the mapping of the limits' errors to answers are Groundwork's.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody as _};
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use axum::response::IntoResponse as _;
use axum::routing::future::RouteFuture;
use futures_util::future::Either;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tower::{BoxError, Service as _, ServiceBuilder, ServiceExt as _};

/// Limits at the HTTP edge of a service, applied by [`serve`](crate::serve) to every connection
/// and request. Every field has a default; embed it in a service's config type (as `http`, the
/// variables are then `HTTP_HEADER_READ_TIMEOUT_MS`, ...):
///
/// ```
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Settings {
///     #[serde(default)]
///     http: groundwork_service::EdgeSettings,
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(default)]
#[non_exhaustive]
pub struct EdgeSettings {
    /// Milliseconds a client has to send a complete request head (request line and headers),
    /// counted from when the connection waits for it: once accepted, and again after each
    /// response. A slower client's connection is closed without an answer. Default 10000.
    #[schemars(range(min = 1))]
    pub header_read_timeout_ms: u64,
    /// Milliseconds a kept-alive connection may stay silent (nothing received or sent, no
    /// request running) before it is closed. The header-read timeout also runs while a
    /// connection waits for its next request, so only a value below it changes anything.
    /// Default 5000.
    #[schemars(range(min = 1))]
    pub idle_timeout_ms: u64,
    /// Milliseconds a request may take, reading its body included; a slower one is answered 503
    /// and its handler stopped. Default 30000.
    #[schemars(range(min = 1))]
    pub request_timeout_ms: u64,
    /// Requests handled at once. Beyond it a request is answered 503 with `Retry-After` at once
    /// instead of queueing (load shedding). Health probes (`/health`, `/health/...`, `/livez`,
    /// `/readyz`) are not counted and never shed; the request timeout and body limit do not apply
    /// to them either. Default 256.
    #[schemars(range(min = 1))]
    pub max_concurrent_requests: usize,
    /// Seconds in the `Retry-After` header of a shed request. Default 1.
    pub retry_after_secs: u64,
    /// Largest request body in bytes; a larger one is answered 413 (at once when its
    /// `Content-Length` says so), for every route and every way of reading the body. A route may
    /// lower it with axum's `DefaultBodyLimit`. Default 1048576 (1 MiB).
    #[schemars(range(min = 1))]
    pub max_body_bytes: usize,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 5_000,
            request_timeout_ms: 30_000,
            max_concurrent_requests: 256,
            retry_after_secs: 1,
            max_body_bytes: 1024 * 1024,
        }
    }
}

impl EdgeSettings {
    /// The header-read timeout (at least 1 ms).
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms.max(1))
    }

    /// The idle timeout of a kept-alive connection (at least 1 ms).
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms.max(1))
    }

    /// The request timeout (at least 1 ms).
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.max(1))
    }
}

/// Counters [`serve`](crate::serve) increments at the edge; they count nothing by default.
///
/// `groundwork-telemetry`'s `HttpMetrics` provides both, registered on its `/metrics` page.
#[derive(Debug, Clone)]
pub struct EdgeMetrics {
    /// Requests answered 503 because [`EdgeSettings::max_concurrent_requests`] were running.
    pub shed: metrics::Counter,
    /// Requests answered 503 because they ran longer than [`EdgeSettings::request_timeout_ms`].
    pub timed_out: metrics::Counter,
    /// Requests hyper answered itself because they could not be parsed: 400 for a malformed
    /// request line or header, 431 for a head over hyper's buffer, 414 for a URI too long. They
    /// never reach the router or a telemetry layer (there is no method or path to label them with).
    pub malformed: metrics::Counter,
}

impl Default for EdgeMetrics {
    fn default() -> Self {
        Self {
            shed: metrics::Counter::noop(),
            timed_out: metrics::Counter::noop(),
            malformed: metrics::Counter::noop(),
        }
    }
}

#[cfg(feature = "telemetry")]
impl From<&groundwork_telemetry::http::HttpMetrics> for EdgeMetrics {
    /// The counters of `metrics`: `http_server_shed_requests_total`,
    /// `http_server_timed_out_requests_total` and `http_server_malformed_requests_total`.
    fn from(metrics: &groundwork_telemetry::http::HttpMetrics) -> Self {
        Self {
            shed: metrics.shed_requests(),
            timed_out: metrics.timed_out_requests(),
            malformed: metrics.malformed_requests(),
        }
    }
}

/// hyper's HTTP/1 connection settings for `settings`.
pub(crate) fn http1(settings: &EdgeSettings) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    // hyper's header-read timeout needs a timer; without one it is silently off.
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout());
    builder
}

/// The request side of the edge, shared by every connection: `app` behind the body limit, the
/// request timeout, the concurrency limit and load shedding (`limited`), `app` as is for health
/// probes, and what turns the limits' refusals into answers (`answers`).
#[derive(Clone)]
pub(crate) struct Edge<L> {
    app: Router,
    limited: L,
    answers: Arc<ErrorAnswer>,
}

/// The service behind the limits: what [`edge`] wraps `app` in. Its errors are the limits'
/// refusals, which [`ErrorAnswer`] turns into answers.
pub(crate) trait LimitedService:
    tower::Service<
        Request<Incoming>,
        Response = Response<Body>,
        Error = BoxError,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> LimitedService for T where
    T: tower::Service<
            Request<Incoming>,
            Response = Response<Body>,
            Error = BoxError,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// `app` behind the limits of `settings`, counting into `metrics`; with `telemetry`, the edge's
/// own answers pass through it.
pub(crate) fn edge(
    app: Router,
    settings: &EdgeSettings,
    metrics: EdgeMetrics,
    #[cfg(feature = "telemetry")] telemetry: Option<groundwork_telemetry::http::TelemetryLayer>,
) -> Edge<impl LimitedService> {
    let answers = Arc::new(ErrorAnswer {
        metrics,
        retry_after: HeaderValue::from(settings.retry_after_secs),
        max_concurrent_requests: settings.max_concurrent_requests.max(1),
        request_timeout_ms: settings.request_timeout_ms.max(1),
        max_body_bytes: settings.max_body_bytes,
        #[cfg(feature = "telemetry")]
        telemetry,
    });
    let max_body_bytes = settings.max_body_bytes;
    // Cloning a `ConcurrencyLimit` shares its semaphore, so every connection's clone counts
    // against the one limit.
    let limited = ServiceBuilder::new()
        .map_response(
            move |response: Response<tower_http::limit::ResponseBody<Body>>| {
                errors_as_json(response.map(Body::new), max_body_bytes)
            },
        )
        .load_shed()
        .concurrency_limit(settings.max_concurrent_requests.max(1))
        .timeout(settings.request_timeout())
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            settings.max_body_bytes,
        ))
        // Extractors (`Bytes`, `Json`, ...) otherwise stop at axum's own 2 MB.
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .service(app.clone());
    Edge {
        app,
        limited,
        answers,
    }
}

impl<L> std::fmt::Debug for Edge<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge").finish_non_exhaustive()
    }
}

/// Whether `path` is one of `groundwork-health`'s probe endpoints, which bypass the concurrency
/// limit: an overloaded service must still answer its liveness probe, or it gets restarted.
fn is_probe(path: &str) -> bool {
    matches!(path, "/health" | "/livez" | "/readyz") || path.starts_with("/health/")
}

/// Turns the errors of the limits into answers: 503 with `Retry-After` for a shed request, 503
/// for a timed-out one, each counted; 413 for a body declared over the limit. With a telemetry
/// layer, each answer is traced, counted and access-logged through it, since it never reaches the
/// router's own layer.
struct ErrorAnswer {
    metrics: EdgeMetrics,
    retry_after: HeaderValue,
    max_concurrent_requests: usize,
    request_timeout_ms: u64,
    max_body_bytes: usize,
    #[cfg(feature = "telemetry")]
    telemetry: Option<groundwork_telemetry::http::TelemetryLayer>,
}

/// What the telemetry layer needs of a request the edge answers itself, kept before the request
/// goes on: its method and URI, and the headers that carry a trace context or a request id. Every
/// part is reference-counted, so keeping it copies no bytes.
#[cfg(feature = "telemetry")]
struct EdgeRequest {
    started: std::time::Instant,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: [Option<HeaderValue>; 4],
}

#[cfg(feature = "telemetry")]
const EDGE_REQUEST_HEADERS: [&str; 4] = ["traceparent", "tracestate", "baggage", "x-request-id"];

#[cfg(feature = "telemetry")]
impl EdgeRequest {
    fn new<B>(request: &Request<B>) -> Self {
        Self {
            started: std::time::Instant::now(),
            method: request.method().clone(),
            uri: request.uri().clone(),
            headers: EDGE_REQUEST_HEADERS.map(|name| request.headers().get(name).cloned()),
        }
    }

    fn into_request(self) -> Request<()> {
        let mut request = Request::new(());
        *request.method_mut() = self.method;
        *request.uri_mut() = self.uri;
        for (name, value) in EDGE_REQUEST_HEADERS.into_iter().zip(self.headers) {
            if let Some(value) = value {
                request
                    .headers_mut()
                    .insert(axum::http::HeaderName::from_static(name), value);
            }
        }
        request
    }
}

/// A request as far as the edge's own answers need it: its [`EdgeRequest`] with telemetry, nothing
/// without.
#[cfg(feature = "telemetry")]
type Seen = Option<EdgeRequest>;
#[cfg(not(feature = "telemetry"))]
struct Seen;

#[cfg(feature = "telemetry")]
impl ErrorAnswer {
    /// Notes what an answer of the edge to `request` would need.
    fn see<B>(&self, request: &Request<B>) -> Seen {
        self.telemetry.as_ref().map(|_| EdgeRequest::new(request))
    }

    /// Sends `response`, the edge's own answer to the request `seen`, through the telemetry layer.
    async fn send(&self, seen: Seen, response: Response<Body>) -> Response<Body> {
        match (&self.telemetry, seen) {
            (Some(telemetry), Some(seen)) => {
                let started = seen.started;
                telemetry
                    .record_answer(seen.into_request(), started, response)
                    .await
            }
            _ => response,
        }
    }
}

#[cfg(not(feature = "telemetry"))]
impl ErrorAnswer {
    #[expect(clippy::unused_self, reason = "the same call as with telemetry")]
    fn see<B>(&self, _: &Request<B>) -> Seen {
        Seen
    }

    #[expect(clippy::unused_async, reason = "the same call as with telemetry")]
    async fn send(&self, _: Seen, response: Response<Body>) -> Response<Body> {
        response
    }
}

impl ErrorAnswer {
    /// The 413 for a request whose `Content-Length` is over the limit, before its body is read.
    fn declared_too_large<B>(&self, request: &Request<B>) -> Option<Response<Body>> {
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse::<u64>()
            .ok()?;
        (declared > u64::try_from(self.max_body_bytes).unwrap_or(u64::MAX))
            .then(|| too_large(self.max_body_bytes))
    }

    fn answer(&self, error: &BoxError) -> Response<Body> {
        if error.is::<tower::load_shed::error::Overloaded>() {
            self.metrics.shed.increment(1);
            let mut response = json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "the service is handling its limit of {} requests; retry shortly",
                    self.max_concurrent_requests
                ),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, self.retry_after.clone());
            response
        } else if error.is::<tower::timeout::error::Elapsed>() {
            self.metrics.timed_out.increment(1);
            tracing::warn!(timeout_ms = self.request_timeout_ms, "request timed out");
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "the request took longer than {} ms and was stopped",
                    self.request_timeout_ms
                ),
            )
        } else {
            tracing::error!(%error, "request failed at the HTTP edge");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// Error answers as `{"error": ...}`, the shape every Groundwork service answers errors in: the
/// 413 of the body limit, which tower-http's body limit and axum's extractors answer in plain
/// text, and any other 4xx or 5xx that has an empty body and no content type, such as axum's 405
/// for a method a route does not take (its `Allow` header kept) or a router's default 404. Other
/// answers, a 413 that already is JSON and errors with a body of their own pass unchanged.
fn errors_as_json(response: Response<Body>, max_body_bytes: usize) -> Response<Body> {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let content_type = response.headers().get(header::CONTENT_TYPE);
    let replacement = if status == StatusCode::PAYLOAD_TOO_LARGE {
        if content_type.is_some_and(|value| value.as_bytes().starts_with(b"application/json")) {
            return response;
        }
        too_large(max_body_bytes)
    } else if content_type.is_none() && response.body().size_hint().exact() == Some(0) {
        let reason = status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase();
        let message = match response.headers().get(header::ALLOW) {
            Some(allow) if status == StatusCode::METHOD_NOT_ALLOWED => {
                format!(
                    "{reason}; this path takes {}",
                    String::from_utf8_lossy(allow.as_bytes())
                )
            }
            _ => reason,
        };
        json_error(status, &message)
    } else {
        return response;
    };
    let (mut parts, _) = response.into_parts();
    let (json, body) = replacement.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.extend(json.headers);
    Response::from_parts(parts, body)
}

/// 413 `{"error": ...}` naming the body limit.
fn too_large(max_body_bytes: usize) -> Response<Body> {
    json_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the request body is larger than the limit of {max_body_bytes} bytes"),
    )
}

/// `{"error": message}`, the shape Groundwork's services answer errors in.
fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// When a connection last received or sent bytes, and how many of its requests are running:
/// what the idle watchdog of [`serve_connection`] reads.
struct Activity {
    /// The instant milliseconds are counted from.
    epoch: Instant,
    /// Milliseconds from `epoch` to the last byte received or sent.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let elapsed = Instant::now().saturating_duration_since(self.epoch);
        self.last_ms.store(
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// When the connection counts as idle if nothing happens before; `None` when it already is.
    fn idle_at(&self, idle: Duration) -> Option<Instant> {
        let now = Instant::now();
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Some(now + idle);
        }
        let last = self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        let at = last + idle;
        (at > now).then_some(at)
    }
}

/// A connection's socket, noting every byte received or sent in its [`Activity`].
struct TrackedIo<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for TrackedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TrackedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One connection's service: probes straight to the app, everything else through the limits,
/// each request counted as running in the connection's [`Activity`] until it is answered.
struct ConnectionService<L> {
    edge: Edge<L>,
    activity: Arc<Activity>,
}

/// The future of a request through the limits.
type LimitedFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl<L: LimitedService> hyper::service::Service<Request<Incoming>> for ConnectionService<L> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Running<Either<RouteFuture<Infallible>, LimitedFuture>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        self.activity.in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = InFlight(Arc::clone(&self.activity));
        // The router is always ready, so it is called without `poll_ready`, as hyper-util's
        // bridge does through `oneshot`.
        let future = if is_probe(request.uri().path()) {
            Either::Left(self.edge.app.clone().call(request))
        } else {
            let answers = Arc::clone(&self.edge.answers);
            let seen = answers.see(&request);
            if let Some(response) = answers.declared_too_large(&request) {
                Either::Right(
                    Box::pin(async move { Ok(answers.send(seen, response).await) })
                        as LimitedFuture,
                )
            } else {
                // `oneshot` polls readiness first: load shedding decides there.
                let limited = self.edge.limited.clone().oneshot(request);
                Either::Right(Box::pin(async move {
                    let response = match limited.await {
                        Ok(response) => return Ok(response),
                        Err(error) => answers.answer(&error),
                    };
                    Ok(answers.send(seen, response).await)
                }) as LimitedFuture)
            }
        };
        Running {
            future,
            _guard: guard,
        }
    }
}

/// Counts a request as running until dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

pin_project_lite::pin_project! {
    /// A request's future, holding its [`InFlight`] count.
    pub(crate) struct Running<F> {
        #[pin]
        future: F,
        _guard: InFlight,
    }
}

impl<F: Future> Future for Running<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().future.poll(cx)
    }
}

/// Serves one accepted connection until it closes: hyper's HTTP/1 with the header-read timeout,
/// the idle watchdog, and a graceful close (finish the running request, then close) once
/// `stop` turns true.
pub(crate) async fn serve_connection<L: LimitedService>(
    stream: tokio::net::TcpStream,
    http: &hyper::server::conn::http1::Builder,
    edge: Edge<L>,
    idle: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = hyper_util::rt::TokioIo::new(TrackedIo {
        inner: stream,
        activity: Arc::clone(&activity),
    });
    let answers = Arc::clone(&edge.answers);
    let service = ConnectionService {
        edge,
        activity: Arc::clone(&activity),
    };
    let connection = http.serve_connection(io, service).with_upgrades();
    tokio::pin!(connection);
    let watchdog = tokio::time::sleep(idle);
    tokio::pin!(watchdog);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    // hyper answered a request it could not parse (400, 431 or 414) before
                    // closing; an HTTP/2 preface gets no answer.
                    if error.is_parse() && !error.is_parse_version_h2() {
                        answers.metrics.malformed.increment(1);
                    }
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            _ = stop.wait_for(|stop| *stop), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            () = &mut watchdog, if !closing => {
                if let Some(at) = activity.idle_at(idle) {
                    watchdog.as_mut().reset(at);
                } else {
                    tracing::debug!("closing an idle connection");
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
