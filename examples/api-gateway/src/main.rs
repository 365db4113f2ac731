//! The api-gateway binary: load config, start, serve until SIGTERM or Ctrl-C, shut down.
//!
//! ```text
//! DATABASE_URL=postgres://... REDIS_URL=redis://... RABBITMQ_URL=amqp://... \
//!     cargo run -p groundwork-example-api-gateway
//! ```
//!
//! `api-gateway migrate` applies the migrations (each set under its advisory lock) and exits,
//! for a deploy step that runs before the new version serves (an init container or a Job).

use std::time::Duration;

use anyhow::Context as _;
use groundwork_config::ExposeSecret as _;
use groundwork_example_api_gateway::Settings;
use groundwork_service::Shutdown;

/// What the binary was asked to do by its first argument.
enum Command {
    /// No argument: serve until SIGTERM or Ctrl-C.
    Serve,
    /// `migrate`: apply the migrations and exit.
    Migrate,
}

fn command() -> Command {
    let mut args = std::env::args_os().skip(1);
    let first = args.next();
    let unexpected = match first {
        None => return Command::Serve,
        Some(first) if first == "migrate" => match args.next() {
            None => return Command::Migrate,
            Some(second) => second,
        },
        Some(first) => first,
    };
    eprintln!(
        "api-gateway: unexpected argument `{}`; usage: api-gateway [migrate]",
        unexpected.to_string_lossy()
    );
    std::process::exit(2);
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = command();
    let settings: Settings = groundwork_config::load_or_exit();
    let telemetry_settings = settings.telemetry();
    let telemetry = groundwork_telemetry::init(&telemetry_settings)?;
    if let Command::Migrate = command {
        let outcome = migrate(&settings).await;
        tokio::task::spawn_blocking(move || telemetry.shutdown()).await??;
        return outcome;
    }
    let address = format!("{}:{}", settings.host, settings.port);

    let gateway = groundwork_example_api_gateway::start(settings).await?;
    let log_level = groundwork_service::follow_log_level(
        &gateway.config,
        groundwork_service::LOG_LEVEL_KEY,
        telemetry.log_level().clone(),
        telemetry_settings.log_directives(),
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

/// Applies the gateway's migrations on a small pool of its own and returns.
async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .connect(settings.database_url.expose_secret())
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {}", settings.database_url))?;
    groundwork_example_api_gateway::migrate(&db).await?;
    db.close().await;
    tracing::info!("api-gateway migrations applied");
    Ok(())
}
