//! The {{name}} binary: load config, start, serve until SIGTERM or Ctrl-C, shut down.
//!
//! ```text
//! cp .env.example .env && cargo run
//! ```

use groundwork_service::Shutdown;
use {{crate}}::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Every problem in the configuration at once, then exit code 2.
    let settings: Settings = groundwork_config::load_or_exit();
    let telemetry_settings = settings.telemetry();
    let telemetry = groundwork_telemetry::init(&telemetry_settings)?;
    let address = format!("{}:{}", settings.host, settings.port);

    let app = {{crate}}::start(settings).await?;
    //@if live
    // `UPDATE platform_config SET value = '"debug"' WHERE key = 'log.level'` turns on debug logs
    // without a restart.
    let log_level = groundwork_service::follow_log_level(
        &app.config,
        groundwork_service::LOG_LEVEL_KEY,
        telemetry.log_level().clone(),
        telemetry_settings.log_directives(),
    );
    //@end

    let shutdown = Shutdown::new();
    shutdown.trigger_on_signal();
    let options = app.serve_options();
    groundwork_service::serve_at(&address, app.router.clone(), &app.health, shutdown, options)
        .await?;
    //@if live
    log_level.abort();
    //@end
    app.shutdown().await;
    tracing::info!("{{name}} stopped");
    // Flush the last spans (bounded) off the runtime's threads.
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await??;
    Ok(())
}
