//! The api-gateway binary: load config, start, serve until SIGTERM or Ctrl-C, shut down.
//!
//! ```text
//! DATABASE_URL=postgres://... REDIS_URL=redis://... RABBITMQ_URL=amqp://... \
//!     cargo run -p groundwork-example-api-gateway
//! ```
//! `api-gateway migrate` applies the migrations (each set under its advisory lock) and exits,
//! for a deploy step that runs before the new version serves (an init container or a Job).

use groundwork_example_api_gateway::{Settings, migrate_database, start};
use groundwork_service::{RunError, Startup};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let unexpected = match args.as_slice() {
        [] => return Ok(serve().await?),
        [command] if command == "migrate" => return Ok(migrate().await?),
        [command, second, ..] if command == "migrate" => second,
        [first, ..] => first,
    };
    let unexpected = unexpected.to_string_lossy();
    eprintln!("api-gateway: unexpected argument `{unexpected}`; usage: api-gateway [migrate]");
    std::process::exit(2);
}

/// Serves until SIGTERM or Ctrl-C; the log level follows `log.level` in `platform_config`.
async fn serve() -> Result<(), RunError> {
    groundwork_service::run(async |settings: Settings, startup: &mut Startup| {
        let gateway = start(settings).await?;
        startup.follow_log_level(&gateway.config);
        Ok(gateway)
    })
    .await
}

async fn migrate() -> Result<(), RunError> {
    groundwork_service::run_task(async |settings: Settings| Ok(migrate_database(&settings).await?))
        .await
}
