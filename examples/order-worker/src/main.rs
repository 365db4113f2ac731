//! The order-worker binary: load config, start consuming, serve health until SIGTERM or Ctrl-C,
//! finish the messages in hand, exit.

use groundwork_config::ExposeSecret as _;
use groundwork_example_order_worker::{Settings, start};
use groundwork_service::Startup;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    groundwork_service::run(async |settings: Settings, startup: &mut Startup| {
        // The level follows `log.level` in `platform_config` from now on.
        let database_url = settings.database_url.expose_secret();
        startup
            .follow_log_level_at(Some(database_url), &settings.config_env)
            .await;
        Ok(start(settings, startup.shutdown()).await?)
    })
    .await?;
    Ok(())
}
