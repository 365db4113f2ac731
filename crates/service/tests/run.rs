//! `run_with` as a service's `main` uses it, on a real listener: the settings load with the
//! service's own keys and telemetry's, the started service is served until the stop signal, then
//! its shutdown hooks run. A bad setting is the config's one report. (One test installs the global
//! telemetry, so these tests have a binary of their own.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, Result};
use axum::routing::get;
use groundwork_config::Loader;
use groundwork_health::Health;
use groundwork_service::{
    BoxError, RunError, RunOptions, ServeOptions, Service, ServiceSettings, Shutdown, Startup,
};
use groundwork_telemetry::TelemetrySettings;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Settings {
    #[serde(default)]
    telemetry: TelemetrySettings,
    /// What `GET /greeting` answers.
    greeting: String,
}

impl ServiceSettings for Settings {
    fn telemetry(&self) -> TelemetrySettings {
        self.telemetry.with_service_default("greeter")
    }

    fn listen_address(&self) -> String {
        // Never bound: the tests hand `run_with` a listener.
        "127.0.0.1:1".to_owned()
    }
}

struct Greeter {
    router: axum::Router,
    health: Health,
    stopped: Arc<AtomicBool>,
}

impl Service for Greeter {
    fn router(&self) -> axum::Router {
        self.router.clone()
    }

    fn health(&self) -> &Health {
        &self.health
    }

    fn serve_options(&self) -> ServeOptions {
        ServeOptions {
            drain_delay: std::time::Duration::ZERO,
            ..ServeOptions::default()
        }
    }

    async fn shutdown(self) -> Result<(), BoxError> {
        self.stopped.store(true, Ordering::SeqCst);
        Ok(())
    }
}

/// The status line and body of `GET path`.
async fn get_text(address: std::net::SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split(' ')
        .nth(1)
        .context("no status line")?
        .parse()
        .context("no status code")?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_started_service_is_served_until_the_signal_then_its_hooks_run() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let shutdown = Shutdown::new();
    let stopped = Arc::new(AtomicBool::new(false));
    let mut options = RunOptions::default();
    options.loader = Loader::new()
        .no_dotenv()
        .vars([("GREETING", "hello"), ("LOG_LEVEL", "WARN")]);
    options.listener = Some(listener);
    options.shutdown = Some(shutdown.clone());

    let hooks_ran = Arc::clone(&stopped);
    let service = groundwork_service::run_with(
        options,
        async |settings: Settings, startup: &mut Startup| {
            assert_eq!(startup.log_directives(), "warn");
            let health = Health::builder().service_id("greeter").build()?;
            let greeting = settings.greeting;
            let router = axum::Router::new()
                .route("/greeting", get(move || async move { greeting }))
                .merge(health.router());
            Ok(Greeter {
                router,
                health,
                stopped: hooks_ran,
            })
        },
    );
    let client = async {
        // The listener is bound before `run_with` starts, so connecting waits for the accept loop.
        let greeting = get_text(address, "/greeting").await;
        let health = get_text(address, "/health").await;
        shutdown.trigger();
        (greeting, health)
    };
    let (outcome, (greeting, health)) = tokio::join!(service, client);
    outcome?;
    assert_eq!(greeting?, (200, "hello".to_owned()));
    assert_eq!(health?.0, 200);
    assert!(stopped.load(Ordering::SeqCst), "the shutdown hooks ran");
    Ok(())
}

#[tokio::test]
async fn a_bad_log_level_is_in_the_config_report_before_anything_starts() {
    let mut options = RunOptions::default();
    options.loader = Loader::new()
        .no_dotenv()
        .vars([("GREETING", "hello"), ("LOG_LEVEL", "verbose")]);
    let started = Arc::new(AtomicBool::new(false));
    let outcome = groundwork_service::run_with(
        options,
        async |_settings: Settings, _startup: &mut Startup| -> Result<Greeter, BoxError> {
            started.store(true, Ordering::SeqCst);
            Err("never started".into())
        },
    )
    .await;
    let report = match outcome {
        Err(RunError::Config(report)) => report.to_string(),
        other => format!("not a config report: {other:?}"),
    };
    assert!(report.contains("(env LOG_LEVEL)"), "{report}");
    assert!(!started.load(Ordering::SeqCst), "start is not called");
}
