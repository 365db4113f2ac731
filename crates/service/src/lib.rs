#![doc = include_str!("../README.md")]

#[cfg(feature = "amqp")]
pub mod amqp;
#[cfg(feature = "live")]
mod log_level;
#[cfg(feature = "live")]
pub use log_level::{LOG_LEVEL_KEY, LogLevelError, LogLevelFollower, follow_log_level};

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

/// How [`serve`] shuts down.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// How long the listener keeps accepting after readiness turned 503, so that load balancers
    /// see the 503 before connections are refused. Zero in tests; about one probe interval in
    /// production.
    pub drain_delay: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            drain_delay: Duration::from_secs(1),
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

/// Serves `app` on `listener` until `shutdown` fires, then: marks `health` as shutting down
/// (readiness 503), keeps accepting for the drain delay, stops accepting and waits for in-flight
/// requests to finish.
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
    let drain = async move {
        shutdown.triggered().await;
        health.begin_shutdown();
        tracing::info!(
            drain_ms = u64::try_from(options.drain_delay.as_millis()).unwrap_or(u64::MAX),
            "not ready; draining"
        );
        tokio::time::sleep(options.drain_delay).await;
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(drain)
        .await
}
