//! The order-worker binary: load config, start consuming, serve health until SIGTERM or Ctrl-C,
//! finish the messages in hand, exit.

use std::time::Duration;

use anyhow::Context as _;
use groundwork_config::ExposeSecret as _;
use groundwork_example_order_worker::Settings;
use groundwork_service::{LogLevelFollower, ServeOptions, Shutdown};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: Settings = groundwork_config::load_or_exit();
    let telemetry_settings = settings.telemetry();
    let telemetry = groundwork_telemetry::init(&telemetry_settings)?;
    let log_level_source = (
        Some(settings.database_url.expose_secret().to_owned()),
        settings.config_env.clone(),
    );
    let address = format!("{}:{}", settings.host, settings.port);

    let shutdown = Shutdown::new();
    shutdown.trigger_on_signal();
    let worker = groundwork_example_order_worker::start(settings, shutdown.clone()).await?;
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
    tracing::info!(%address, "order-worker health endpoints listening");

    let options = ServeOptions {
        drain_delay: Duration::ZERO,
    };
    groundwork_service::serve(
        listener,
        worker.router.clone(),
        &worker.health,
        shutdown,
        options,
    )
    .await?;
    worker.shutdown().await?;
    tracing::info!("order-worker stopped");
    if let Some(log_level) = log_level {
        log_level.shutdown().await;
    }
    // Flush the last spans (bounded) off the runtime's threads.
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await??;
    Ok(())
}
