//! The analytics-ingest binary: load config, start consuming, serve `/v1/stats` and health until
//! SIGTERM or Ctrl-C, write the last batch, exit.

use std::time::Duration;

use anyhow::Context as _;
use groundwork_config::ExposeSecret as _;
use groundwork_example_analytics_ingest::Settings;
use groundwork_service::{LogLevelFollower, ServeOptions, Shutdown};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: Settings = groundwork_config::load_or_exit();
    let telemetry_settings = settings.telemetry();
    let telemetry = groundwork_telemetry::init(&telemetry_settings)?;
    let log_level_source = (
        settings
            .database_url
            .as_ref()
            .map(|url| url.expose_secret().to_owned()),
        settings.config_env.clone(),
    );
    let address = format!("{}:{}", settings.host, settings.port);

    let shutdown = Shutdown::new();
    shutdown.trigger_on_signal();
    let ingest = groundwork_example_analytics_ingest::start(settings, shutdown.clone()).await?;
    let log_level = match log_level_source {
        (Some(url), env) => {
            let start_level = telemetry_settings.log_directives()?;
            match LogLevelFollower::start(&url, &env, telemetry.log_level().clone(), start_level)
                .await
            {
                Ok(follower) => Some(follower),
                Err(error) => {
                    tracing::warn!(%error, "the log level stays as started; it will not follow log.level");
                    None
                }
            }
        }
        (None, _) => None,
    };
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .with_context(|| {
            format!("cannot listen on {address}; is another process using the port?")
        })?;
    tracing::info!(%address, "analytics-ingest listening");

    let options = ServeOptions {
        drain_delay: Duration::ZERO,
    };
    groundwork_service::serve(
        listener,
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
