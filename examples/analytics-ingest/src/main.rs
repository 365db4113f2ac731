//! The analytics-ingest binary: load config, start consuming, serve `/v1/stats` and health until
//! SIGTERM or Ctrl-C, write the last batch, exit.

use std::time::Duration;

use groundwork_config::ExposeSecret;
use groundwork_example_analytics_ingest::Settings;
use groundwork_service::{LogLevelFollower, ServeOptions, Shutdown};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: Settings = groundwork_config::load_or_exit();
    let telemetry_settings = settings.telemetry();
    let telemetry = groundwork_telemetry::init(&telemetry_settings)?;
    let address = format!("{}:{}", settings.host, settings.port);
    let edge = settings.http.clone();

    // The level follows `log.level` in `platform_config` from now on.
    let log_level = LogLevelFollower::start_or_warn(
        settings
            .database_url
            .as_ref()
            .map(ExposeSecret::expose_secret),
        &settings.config_env,
        telemetry.log_level().clone(),
        telemetry_settings.log_directives(),
    )
    .await;

    let shutdown = Shutdown::new();
    shutdown.trigger_on_signal();
    let ingest = groundwork_example_analytics_ingest::start(settings, shutdown.clone()).await?;

    let options = ServeOptions {
        drain_delay: Duration::ZERO,
        ..ingest.serve_options(edge)
    };
    groundwork_service::serve_at(
        &address,
        ingest.router.clone(),
        &ingest.health,
        shutdown,
        options,
    )
    .await?;
    ingest.shutdown().await?;
    tracing::info!("analytics-ingest stopped");
    if let Some(log_level) = log_level {
        log_level.shutdown().await;
    }
    // Flush the last spans (bounded) off the runtime's threads.
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await??;
    Ok(())
}
