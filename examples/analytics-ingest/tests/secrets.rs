//! A secret planted in every URL setting of the analytics-ingest never appears in anything it
//! prints: its log lines (the log-level follower's warning too), its health details, `/metrics`,
//! `/v1/stats`, the `Debug` form of its settings.

use std::time::Duration;

use anyhow::Result;
use groundwork_config::{ExposeSecret, Loader};
use groundwork_example_analytics_ingest::Settings;
use groundwork_service::{LogLevelFollower, ServeOptions, Shutdown};
use groundwork_telemetry::{Telemetry, TelemetrySettings};
use groundwork_testkit::{
    CapturedOutput, Plant, TestAmqp, TestClickHouse, TestDatabase, http_get, outputs_showing,
    plant_canary,
};

const CANARY: &str = "Gw-Canary-9d2b";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_any_url_setting_never_appears_in_any_output() -> Result<()> {
    // Not migrated: without `platform_config` the log-level follower fails, and its warning is
    // one more output that must not show the URL.
    let db = TestDatabase::create().await?;
    let clickhouse = TestClickHouse::create().await?;
    let amqp = TestAmqp::create().await?;
    // The userinfo password only where the server accepts any: the test PostgreSQL trusts
    // loopback; RabbitMQ and ClickHouse check theirs.
    let database_url = plant_canary(db.url(), CANARY, Plant::EVERYWHERE)?;
    let rabbitmq_url = plant_canary(amqp.url(), CANARY, Plant::QUERY)?;
    // No `password` here: ClickHouse's HTTP interface uses that query parameter as the password
    // and would refuse the canary.
    let clickhouse_url = plant_canary(
        clickhouse.url(),
        CANARY,
        Plant {
            userinfo: false,
            query: &["token", "sslpassword"],
        },
    )?;

    let captured = CapturedOutput::new();
    let writer = captured.clone();
    let telemetry_settings = TelemetrySettings::default();
    let telemetry = Telemetry::builder(&telemetry_settings)
        .writer(move || writer.clone())
        .build()?
        .install()?;

    let settings: Settings = Loader::new()
        .no_dotenv()
        .vars([
            ("DATABASE_URL", database_url.as_str()),
            ("CLICKHOUSE_URL", clickhouse_url.as_str()),
            ("CLICKHOUSE_DATABASE", clickhouse.database()),
            ("RABBITMQ_URL", rabbitmq_url.as_str()),
            ("ANALYTICS_EXCHANGE", amqp.name("analytics").as_str()),
            ("QUEUE", amqp.name("order-processed").as_str()),
            ("DEAD_LETTER_EXCHANGE", amqp.name("dlx").as_str()),
            (
                "DEAD_LETTER_QUEUE",
                amqp.name("order-processed.dlq").as_str(),
            ),
            ("CONFIG_ENV", "test"),
        ])
        .load()?;
    let mut outputs = vec![
        ("settings Debug", format!("{settings:?}")),
        ("settings pretty Debug", format!("{settings:#?}")),
    ];
    // As the binary does: follow `log.level` in `platform_config`, or warn.
    let log_level = LogLevelFollower::start_or_warn(
        settings
            .database_url
            .as_ref()
            .map(ExposeSecret::expose_secret),
        &settings.config_env,
        telemetry.log_level().clone(),
        telemetry_settings.log_directives(),
    )
    .await;
    let shutdown = Shutdown::new();
    let ingest = groundwork_example_analytics_ingest::start(settings, shutdown.clone()).await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let options = ServeOptions {
        drain_delay: Duration::ZERO,
        ..ServeOptions::default()
    };
    let (router, health, stop) = (
        ingest.router.clone(),
        ingest.health.clone(),
        shutdown.clone(),
    );
    let server = tokio::spawn(async move {
        groundwork_service::serve(listener, router, &health, stop, options).await
    });
    for path in [
        "/health",
        "/health/status",
        "/health/clickhouse",
        "/health/rabbitmq",
        "/v1/stats",
        "/metrics",
    ] {
        outputs.push((path, http_get(address, path).await?));
    }
    shutdown.trigger();
    server.await??;
    ingest.shutdown().await?;
    if let Some(log_level) = log_level {
        log_level.shutdown().await;
    }
    telemetry.force_flush()?;

    let logs = captured.text();
    assert!(!logs.is_empty(), "the ingest logged nothing");
    outputs.push(("log lines", logs));
    let health = outputs
        .iter()
        .find(|(what, _)| *what == "/health/status")
        .map(|(_, body)| body.as_str())
        .unwrap_or_default();
    assert!(health.contains("200 OK"), "{outputs:#?}");
    let leaking = outputs_showing(&outputs, CANARY);
    assert!(
        leaking.is_empty(),
        "{leaking:?} show a secret:\n{outputs:#?}"
    );
    Ok(())
}
