//! The {{name}} binary: load config, set up telemetry, start, serve until SIGTERM or Ctrl-C,
//! drain, shut down.
//!
//! ```text
//! cp .env.example .env && cargo run
//! ```

use groundwork_service::Startup;
use {{crate}}::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Every problem in the configuration at once, then exit code 2.
    //@if live
    groundwork_service::run(async |settings: Settings, startup: &mut Startup| {
        let app = {{crate}}::start(settings).await?;
        // `UPDATE platform_config SET value = '"debug"' WHERE key = 'log.level'` turns on debug logs
        // without a restart.
        startup.follow_log_level(&app.config);
        Ok(app)
    })
    .await?;
    //@end
    //@unless live
    groundwork_service::run(async |settings: Settings, _startup: &mut Startup| {
        Ok({{crate}}::start(settings).await?)
    })
    .await?;
    //@end
    Ok(())
}
