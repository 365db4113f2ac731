//! The analytics-ingest binary: load config, start consuming, serve `/v1/stats` and health until
//! SIGTERM or Ctrl-C, write the last batch, exit.

use groundwork_config::ExposeSecret;
use groundwork_example_analytics_ingest::{Settings, start};
use groundwork_service::Startup;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    groundwork_service::run(async |settings: Settings, startup: &mut Startup| {
        // The level follows `log.level` in `platform_config` from now on.
        let database_url = settings.database_url.as_ref();
        startup
            .follow_log_level_at(
                database_url.map(ExposeSecret::expose_secret),
                &settings.config_env,
            )
            .await;
        Ok(start(settings, startup.shutdown()).await?)
    })
    .await?;
    Ok(())
}
