//! The api-gateway binary: load config, start, serve until SIGTERM or Ctrl-C, shut down.
//!
//! ```text
//! DATABASE_URL=postgres://... REDIS_URL=redis://... RABBITMQ_URL=amqp://... \
//!     cargo run -p groundwork-example-api-gateway
//! ```

use std::time::Duration;

use anyhow::Context as _;
use groundwork_example_api_gateway::Settings;
use groundwork_service::{ServeOptions, Shutdown};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_telemetry();
    let settings: Settings = groundwork_config::load_or_exit();
    let address = format!("{}:{}", settings.host, settings.port);
    let options = ServeOptions {
        drain_delay: Duration::from_millis(settings.shutdown_drain_ms),
    };

    let gateway = groundwork_example_api_gateway::start(settings).await?;
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .with_context(|| {
            format!("cannot listen on {address}; is another process using the port?")
        })?;
    tracing::info!(%address, "api-gateway listening");

    let shutdown = Shutdown::new();
    shutdown.trigger_on_signal();
    groundwork_service::serve(
        listener,
        gateway.router.clone(),
        &gateway.health,
        shutdown,
        options,
    )
    .await?;
    gateway.shutdown().await;
    tracing::info!("api-gateway stopped");
    Ok(())
}

/// Where logging and tracing are set up. Until `groundwork-telemetry` is wired in, events go
/// nowhere; this is the one place that changes.
fn init_telemetry() {}
