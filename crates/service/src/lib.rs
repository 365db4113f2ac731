#![doc = include_str!("../README.md")]

#[cfg(feature = "amqp")]
pub mod amqp;
mod edge;
pub use edge::{EdgeMetrics, EdgeSettings};
#[cfg(feature = "live")]
mod live;
#[cfg(feature = "live")]
pub use live::{LiveSettings, LiveSettingsError};
#[cfg(feature = "live")]
mod log_level;
#[cfg(feature = "live")]
pub use log_level::{LOG_LEVEL_KEY, LogLevelError, LogLevelFollower, follow_log_level};
#[cfg(feature = "run")]
mod run;
#[cfg(feature = "run")]
pub use run::{
    BoxError, RunError, RunOptions, Service, ServiceSettings, Startup, run, run_task,
    run_task_with, run_with,
};

use std::future::Future;
use std::time::Duration;

use axum::Router;
use groundwork_health::Health;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A stop signal shared by the server and every background loop of a service.
///
/// Cloning is cheap; every clone sees the same signal. Triggering twice is harmless.
#[derive(Debug, Clone)]
pub struct Shutdown {
    sender: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A signal that has not fired yet.
    pub fn new() -> Self {
        let (sender, _) = watch::channel(false);
        Self { sender }
    }

    /// Fires the signal: every [`Shutdown::triggered`] future completes.
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }

    /// Whether the signal has fired.
    pub fn is_triggered(&self) -> bool {
        *self.sender.borrow()
    }

    /// Completes once the signal has fired (at once if it already has).
    pub fn triggered(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut receiver = self.sender.subscribe();
        async move {
            // An error means every sender is gone, which cannot happen while `self` lives; treat
            // it as a shutdown so loops never run on unsupervised.
            let _ = receiver.wait_for(|fired| *fired).await;
        }
    }

    /// Fires the signal on SIGTERM or Ctrl-C, from a spawned task. Call it from within a Tokio
    /// runtime.
    pub fn trigger_on_signal(&self) {
        let shutdown = self.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            shutdown.trigger();
        });
    }
}

/// Completes on SIGTERM (what `docker stop`, Kubernetes and `cargo xtask down` send) or Ctrl-C.
///
/// If a handler cannot be installed, that source is logged and ignored, so the other one still
/// works.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C; only SIGTERM stops the service");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the service");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!(signal = "interrupt", "shutdown requested"),
        () = terminate => tracing::info!(signal = "terminate", "shutdown requested"),
    }
}

/// How [`serve`] shuts down, the limits it holds clients to, and what it counts.
///
/// Build it with `..ServeOptions::default()` so that new options keep their defaults.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How long the listener keeps accepting after readiness turned 503, so that load balancers
    /// see the 503 before connections are refused. Zero in tests; about one probe interval in
    /// production. Default 1 s.
    pub drain_delay: Duration,
    /// Timeouts, the concurrency limit and the body limit; see [`EdgeSettings`] for the defaults.
    pub edge: EdgeSettings,
    /// Counters of shed and timed-out requests; none by default.
    pub metrics: EdgeMetrics,
    /// The telemetry layer of the service's router (`telemetry` feature). The answers `serve`
    /// gives itself — 503 for a request shed at the concurrency limit or stopped by the request
    /// timeout, 413 for a body whose `Content-Length` is over the limit — never reach the router,
    /// so without it they leave no access log line and no `http_server_request_duration_seconds`
    /// count. With it, each passes through the layer: a span, `X-Request-ID`, the histogram
    /// (without `http_route`) and the access log line. None by default.
    #[cfg(feature = "telemetry")]
    pub telemetry: Option<groundwork_telemetry::http::TelemetryLayer>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            drain_delay: Duration::from_secs(1),
            edge: EdgeSettings::default(),
            metrics: EdgeMetrics::default(),
            #[cfg(feature = "telemetry")]
            telemetry: None,
        }
    }
}

/// Binds `address` (`host:port`) and serves `app` on it as [`serve`] does. A port that cannot be
/// bound is an error naming the address.
pub async fn serve_at(
    address: &str,
    app: Router,
    health: &Health,
    shutdown: Shutdown,
    options: ServeOptions,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(address).await.map_err(|error| {
        std::io::Error::new(
            error.kind(),
            format!("cannot listen on {address} ({error}); is another process using the port?"),
        )
    })?;
    tracing::info!(%address, "listening");
    serve(listener, app, health, shutdown, options).await
}

/// Serves `app` over HTTP/1.1 on `listener` until `shutdown` fires, then: marks `health` as
/// shutting down (readiness 503), keeps accepting for the drain delay, stops accepting, and
/// waits for in-flight requests to finish (each connection closes after its running request).
///
/// Every connection and request is held to [`ServeOptions::edge`]: the header-read and idle
/// timeouts close connections of slow or silent clients, the request timeout and the
/// concurrency limit answer 503 (a shed request with `Retry-After`), a body over the limit 413.
///
/// Returns once every connection is closed; the caller then runs its own shutdown hooks.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    health: &Health,
    shutdown: Shutdown,
    options: ServeOptions,
) -> std::io::Result<()> {
    let health = health.clone();
    let drain_delay = options.drain_delay;
    let drain = async move {
        shutdown.triggered().await;
        health.begin_shutdown();
        tracing::info!(
            drain_ms = u64::try_from(drain_delay.as_millis()).unwrap_or(u64::MAX),
            "not ready; draining"
        );
        tokio::time::sleep(drain_delay).await;
    };
    tokio::pin!(drain);

    let http = edge::http1(&options.edge);
    let idle = options.edge.idle_timeout();
    let edge = edge::edge(
        app,
        &options.edge,
        options.metrics,
        #[cfg(feature = "telemetry")]
        options.telemetry,
    );
    // `stop` tells connections to finish; every connection task holds a `closed` receiver, so
    // the sender's `closed()` completes once the last connection is gone.
    let (stop, stopped) = watch::channel(false);
    let (connections, connection) = watch::channel(());
    loop {
        let stream = tokio::select! {
            () = &mut drain => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    accept_failed(&error).await;
                    continue;
                }
            },
        };
        let (http, edge, stopped, connection) = (
            http.clone(),
            edge.clone(),
            stopped.clone(),
            connection.clone(),
        );
        tokio::spawn(async move {
            edge::serve_connection(stream, &http, edge, idle, stopped).await;
            drop(connection);
        });
    }
    drop(listener);
    stop.send_replace(true);
    drop(connection);
    connections.closed().await;
    Ok(())
}

/// After a failed `accept`: a connection that failed before it was accepted is the client's
/// business; anything else (out of file descriptors, ...) is logged and retried after a pause
/// rather than spinning.
async fn accept_failed(error: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "cannot accept a connection; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
