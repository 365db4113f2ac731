//! A secret planted in every URL setting of the order-worker never appears in anything it prints:
//! its log lines (the log-level follower's too), its health details, the `Debug` form of its
//! settings.

use std::time::Duration;

use anyhow::Result;
use groundwork_config::{ExposeSecret as _, Loader};
use groundwork_example_order_worker::Settings;
use groundwork_service::{LogLevelFollower, ServeOptions, Shutdown};
use groundwork_telemetry::{Telemetry, TelemetrySettings};
use groundwork_testkit::{
    CapturedOutput, Plant, TestAmqp, TestDatabase, http_get, outputs_showing, plant_canary,
};

const CANARY: &str = "Gw-Canary-5a7c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_any_url_setting_never_appears_in_any_output() -> Result<()> {
    let db = TestDatabase::create().await?;
    // The gateway's migrations: the orders table and `platform_config`, which the log-level
    // follower reads.
    groundwork_example_api_gateway::migrate(db.pool()).await?;
    let amqp = TestAmqp::create().await?;
    // The userinfo password only where the server accepts any: the test PostgreSQL trusts
    // loopback; RabbitMQ checks guest's.
    let database_url = plant_canary(db.url(), CANARY, Plant::EVERYWHERE)?;
    let rabbitmq_url = plant_canary(amqp.url(), CANARY, Plant::QUERY)?;

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
            ("RABBITMQ_URL", rabbitmq_url.as_str()),
            ("ORDERS_EXCHANGE", amqp.name("orders").as_str()),
            ("QUEUE", amqp.name("order-created").as_str()),
            ("DEAD_LETTER_EXCHANGE", amqp.name("dlx").as_str()),
            ("DEAD_LETTER_QUEUE", amqp.name("order-created.dlq").as_str()),
            ("ANALYTICS_EXCHANGE", amqp.name("analytics").as_str()),
            ("CONFIG_ENV", "test"),
        ])
        .load()?;
    let mut outputs = vec![
        ("settings Debug", format!("{settings:?}")),
        ("settings pretty Debug", format!("{settings:#?}")),
    ];
    // As the binary does: the log level follows `log.level` in `platform_config`.
    let log_level = LogLevelFollower::start_or_warn(
        Some(settings.database_url.expose_secret()),
        &settings.config_env,
        telemetry.log_level().clone(),
        telemetry_settings.log_directives(),
    )
    .await;
    let shutdown = Shutdown::new();
    let worker = groundwork_example_order_worker::start(settings, shutdown.clone()).await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let options = ServeOptions {
        drain_delay: Duration::ZERO,
        ..ServeOptions::default()
    };
    let (router, health, stop) = (
        worker.router.clone(),
        worker.health.clone(),
        shutdown.clone(),
    );
    let server = tokio::spawn(async move {
        groundwork_service::serve(listener, router, &health, stop, options).await
    });
    // The worker serves no `/metrics`.
    for path in [
        "/health",
        "/health/status",
        "/health/database",
        "/health/rabbitmq",
    ] {
        outputs.push((path, http_get(address, path).await?));
    }
    shutdown.trigger();
    server.await??;
    worker.shutdown().await?;
    if let Some(log_level) = log_level {
        log_level.shutdown().await;
    }
    telemetry.force_flush()?;

    let logs = captured.text();
    assert!(!logs.is_empty(), "the worker logged nothing");
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
