//! One call for a service's `main`: load the settings, set up telemetry, start the service, serve
//! it until SIGTERM or Ctrl-C, drain, run its shutdown hooks and flush the last spans.

use std::future::Future;

use axum::Router;
use groundwork_config::{ConfigError, Loader};
use groundwork_health::Health;
use groundwork_telemetry::{LogLevelHandle, TelemetryError, TelemetrySettings};
use tokio::net::TcpListener;

use crate::{ServeOptions, Shutdown};

/// An error of the service's own code (its start, a one-off task, its shutdown hooks), boxed.
/// `anyhow::Error` converts into it with `?`, its chain of causes kept.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What [`run`] needs from a service's config type besides loading it.
pub trait ServiceSettings: serde::de::DeserializeOwned + schemars::JsonSchema {
    /// The telemetry settings, with the service's own name filled in as the default
    /// (`TelemetrySettings::with_service_default`).
    fn telemetry(&self) -> TelemetrySettings;

    /// The `host:port` the HTTP server listens on.
    fn listen_address(&self) -> String;
}

/// A started service, as [`run`] serves and stops it.
pub trait Service {
    /// The router to serve: the API, the health endpoints, `/metrics`.
    fn router(&self) -> Router;

    /// The health state; readiness turns 503 when the drain begins.
    fn health(&self) -> &Health;

    /// How the router is served: drain delay, edge limits and counters, telemetry layer.
    fn serve_options(&self) -> ServeOptions;

    /// The shutdown hooks, run once the server has stopped and every in-flight request has been
    /// answered: finish background work, close connections.
    fn shutdown(self) -> impl Future<Output = Result<(), BoxError>>;
}

/// Why [`run_with`] or [`run_task_with`] failed. Each variant shows its cause's message, so an
/// error printed by `main` reads as the cause itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The settings did not load: the one report of every problem, without values.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Telemetry could not be set up from the settings.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// The service's own code failed: its start, the one-off task, or its shutdown hooks.
    #[error(transparent)]
    Service(BoxError),
    /// The listener could not be bound.
    #[error(transparent)]
    Serve(#[from] std::io::Error),
}

/// Where [`run_with`] gets its settings, listener and stop signal. The defaults are what a
/// service's `main` wants: the process environment, `./config/` and `./.env`, the settings'
/// listen address, and SIGTERM or Ctrl-C.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct RunOptions {
    /// The loader the settings come from.
    pub loader: Loader,
    /// A listener already bound (tests bind `127.0.0.1:0`); the settings' listen address when
    /// `None`.
    pub listener: Option<TcpListener>,
    /// The stop signal; a new one that SIGTERM and Ctrl-C fire when `None`.
    pub shutdown: Option<Shutdown>,
}

/// What [`run`] hands the service's start besides its settings: the stop signal for background
/// work and the log level, which the service may have follow a hot-reload config key.
#[derive(Debug)]
pub struct Startup {
    shutdown: Shutdown,
    log_level: LogLevelHandle,
    log_directives: String,
    #[cfg(feature = "live")]
    followers: Vec<LevelFollower>,
    #[cfg(feature = "live")]
    relays: Vec<groundwork_live::Relay>,
}

#[cfg(feature = "live")]
#[derive(Debug)]
enum LevelFollower {
    Task(tokio::task::JoinHandle<()>),
    Feed(crate::LogLevelFollower),
}

impl Startup {
    /// The service's stop signal: it fires on SIGTERM or Ctrl-C (or when the service fires it
    /// itself, e.g. because its broker connection is gone). Background loops stop on it; the server
    /// begins draining.
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// The handle that changes the log filter at run time.
    pub fn log_level(&self) -> &LogLevelHandle {
        &self.log_level
    }

    /// The filter the service started with: `RUST_LOG`, else `LOG_LEVEL`, else `info`.
    pub fn log_directives(&self) -> &str {
        &self.log_directives
    }

    /// The log level follows the `log.level` key of `config` until the service stops; a deleted
    /// key restores [`log_directives`](Self::log_directives).
    #[cfg(feature = "live")]
    pub fn follow_log_level(&mut self, config: &groundwork_live::config::LiveConfig) {
        let task = crate::follow_log_level(
            config,
            crate::LOG_LEVEL_KEY,
            self.log_level.clone(),
            self.log_directives.clone(),
        );
        self.followers.push(LevelFollower::Task(task));
    }

    /// For a service without hot-reload config of its own: the log level follows `log.level` of
    /// environment `env` in the `platform_config` table at `database_url`, on a feed of its own,
    /// until the service stops. Without a URL, or when the table cannot be read, the level stays
    /// as started (the failure is logged as a warning).
    #[cfg(feature = "live")]
    pub async fn follow_log_level_at(&mut self, database_url: Option<&str>, env: &str) {
        let follower = crate::LogLevelFollower::start_or_warn(
            database_url,
            env,
            self.log_level.clone(),
            self.log_directives.clone(),
        )
        .await;
        if let Some(follower) = follower {
            self.followers.push(LevelFollower::Feed(follower));
        }
    }

    /// With `LIVE_RELAY` on ([`LiveSettings::relay`](crate::LiveSettings)), runs a fan-out relay
    /// of `channels` inside this service until it stops, for the database `pool` connects to;
    /// true when one was started. A relay that cannot reach its transport or the database at
    /// first keeps retrying in the background (logged), so this fails only on settings that
    /// cannot work.
    #[cfg(feature = "live")]
    pub fn start_live_relay<S: Into<String>>(
        &mut self,
        settings: &crate::LiveSettings,
        pool: &sqlx::PgPool,
        channels: impl IntoIterator<Item = S>,
    ) -> Result<bool, crate::LiveSettingsError> {
        let relay = settings.start_relay(pool, channels)?;
        let started = relay.is_some();
        self.relays.extend(relay);
        Ok(started)
    }

    #[cfg(feature = "live")]
    async fn stop_following(&mut self) {
        for relay in self.relays.drain(..) {
            relay.shutdown().await;
        }
        for follower in self.followers.drain(..) {
            match follower {
                LevelFollower::Task(task) => task.abort(),
                LevelFollower::Feed(feed) => feed.shutdown().await,
            }
        }
    }

    #[cfg(not(feature = "live"))]
    #[allow(clippy::unused_async)] // The same call as with `live`, which awaits the feeds.
    async fn stop_following(&mut self) {}
}

/// Runs a service from its `main`, in the way mini-redis's `server::run(listener, shutdown)` does:
/// loads the settings `C` (every problem at once on stderr, then exit code 2), sets up telemetry,
/// calls `start` with the settings and the [`Startup`], serves the started service on its listen
/// address until SIGTERM or Ctrl-C, drains ([`serve`](crate::serve)), runs the service's shutdown
/// hooks and flushes the last spans.
///
/// ```no_run
/// # use groundwork_service::{BoxError, ServeOptions, Service, ServiceSettings, Startup};
/// # #[derive(serde::Deserialize, schemars::JsonSchema)]
/// # struct Settings { #[serde(default)] telemetry: groundwork_telemetry::TelemetrySettings }
/// # impl ServiceSettings for Settings {
/// #     fn telemetry(&self) -> groundwork_telemetry::TelemetrySettings {
/// #         self.telemetry.with_service_default("hello")
/// #     }
/// #     fn listen_address(&self) -> String { "127.0.0.1:8080".into() }
/// # }
/// # struct App { router: axum::Router, health: groundwork_health::Health }
/// # impl Service for App {
/// #     fn router(&self) -> axum::Router { self.router.clone() }
/// #     fn health(&self) -> &groundwork_health::Health { &self.health }
/// #     fn serve_options(&self) -> ServeOptions { ServeOptions::default() }
/// #     async fn shutdown(self) -> Result<(), BoxError> { Ok(()) }
/// # }
/// # async fn start(_: Settings) -> Result<App, BoxError> { unimplemented!() }
/// #[tokio::main]
/// async fn main() -> Result<(), groundwork_service::RunError> {
///     groundwork_service::run(async |settings: Settings, _startup: &mut Startup| {
///         start(settings).await
///     })
///     .await
/// }
/// ```
pub async fn run<C, S>(
    start: impl AsyncFnOnce(C, &mut Startup) -> Result<S, BoxError>,
) -> Result<(), RunError>
where
    C: ServiceSettings,
    S: Service,
{
    exit_on_config_error(run_with(RunOptions::default(), start).await)
}

/// [`run`] with the settings, listener and stop signal from `options`: what tests call. A
/// configuration problem is returned, not printed.
pub async fn run_with<C, S>(
    run_options: RunOptions,
    start: impl AsyncFnOnce(C, &mut Startup) -> Result<S, BoxError>,
) -> Result<(), RunError>
where
    C: ServiceSettings,
    S: Service,
{
    let RunOptions {
        loader,
        listener,
        shutdown,
    } = run_options;
    let settings: C = loader.load()?;
    let telemetry_settings = settings.telemetry();
    let telemetry = groundwork_telemetry::init(&telemetry_settings)?;
    let address = settings.listen_address();
    let shutdown = shutdown.unwrap_or_else(|| {
        let shutdown = Shutdown::new();
        shutdown.trigger_on_signal();
        shutdown
    });
    let mut startup = Startup {
        shutdown: shutdown.clone(),
        log_level: telemetry.log_level().clone(),
        log_directives: telemetry_settings.log_directives(),
        #[cfg(feature = "live")]
        followers: Vec::new(),
        #[cfg(feature = "live")]
        relays: Vec::new(),
    };
    let outcome = async {
        let service = start(settings, &mut startup)
            .await
            .map_err(RunError::Service)?;
        let (router, options) = (service.router(), service.serve_options());
        let served = match listener {
            Some(listener) => {
                crate::serve(listener, router, service.health(), shutdown, options).await
            }
            None => crate::serve_at(&address, router, service.health(), shutdown, options).await,
        };
        startup.stop_following().await;
        served?;
        service.shutdown().await.map_err(RunError::Service)?;
        tracing::info!("{} stopped", telemetry_settings.service());
        Ok(())
    }
    .await;
    flush(telemetry).await?;
    outcome
}

/// Loads the settings `C` and sets up telemetry as [`run`] does, runs `task` with the settings and
/// flushes the spans: for a one-off command of a service's binary, such as `api-gateway migrate`.
pub async fn run_task<C>(task: impl AsyncFnOnce(C) -> Result<(), BoxError>) -> Result<(), RunError>
where
    C: ServiceSettings,
{
    exit_on_config_error(run_task_with(Loader::new(), task).await)
}

/// [`run_task`] with the settings from `loader`. A configuration problem is returned, not printed.
pub async fn run_task_with<C>(
    loader: Loader,
    task: impl AsyncFnOnce(C) -> Result<(), BoxError>,
) -> Result<(), RunError>
where
    C: ServiceSettings,
{
    let settings: C = loader.load()?;
    let telemetry = groundwork_telemetry::init(&settings.telemetry())?;
    let outcome = task(settings).await.map_err(RunError::Service);
    flush(telemetry).await?;
    outcome
}

/// Flushes the last spans (bounded by the telemetry's shutdown timeout) off the runtime's
/// threads, which the gRPC exporter needs meanwhile.
async fn flush(telemetry: groundwork_telemetry::Telemetry) -> Result<(), RunError> {
    match tokio::task::spawn_blocking(move || telemetry.shutdown()).await {
        Ok(flushed) => Ok(flushed?),
        Err(error) => Err(RunError::Service(Box::new(error))),
    }
}

/// What `main` does with a configuration problem: the one report on stderr, exit code 2, as
/// `groundwork_config::load_or_exit` does.
fn exit_on_config_error(outcome: Result<(), RunError>) -> Result<(), RunError> {
    if let Err(RunError::Config(report)) = &outcome {
        eprintln!("{report}");
        std::process::exit(2);
    }
    outcome
}
