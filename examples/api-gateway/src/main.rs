//! The api-gateway binary: load config, start, serve until SIGTERM or Ctrl-C, shut down.
//!
//! ```text
//! DATABASE_URL=postgres://... REDIS_URL=redis://... RABBITMQ_URL=amqp://... \
//!     cargo run -p groundwork-example-api-gateway
//! ```

use groundwork_example_api_gateway::Settings;
use groundwork_service::Shutdown;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: Settings = groundwork_config::load_or_exit();
    let telemetry_settings = settings.telemetry();
    let telemetry = groundwork_telemetry::init(&telemetry_settings)?;
    let address = format!("{}:{}", settings.host, settings.port);

    let gateway = groundwork_example_api_gateway::start(settings).await?;
    let log_level = groundwork_service::follow_log_level(
        &gateway.config,
        groundwork_service::LOG_LEVEL_KEY,
        telemetry.log_level().clone(),
        telemetry_settings.log_directives()?,
    );

    let shutdown = Shutdown::new();
    shutdown.trigger_on_signal();
    let options = gateway.serve_options();
    groundwork_service::serve_at(
        &address,
        gateway.router.clone(),
        &gateway.health,
        shutdown,
        options,
    )
    .await?;
    log_level.abort();
    gateway.shutdown().await;
    tracing::info!("api-gateway stopped");
    // Flush the last spans (bounded) off the runtime's threads.
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await??;
    Ok(())
}
