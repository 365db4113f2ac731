//! A secret planted in every URL setting of the gateway never appears in anything it prints: its
//! log lines, its health details, `/metrics`, the `Debug` form of its settings.

use std::time::Duration;

use anyhow::Result;
use groundwork_config::Loader;
use groundwork_example_api_gateway::Settings;
use groundwork_service::{ServeOptions, Shutdown};
use groundwork_telemetry::{Telemetry, TelemetrySettings};
use groundwork_testkit::{
    CapturedOutput, Plant, TestAmqp, TestDatabase, TestRedis, http_get, outputs_showing,
    plant_canary,
};

const CANARY: &str = "Gw-Canary-1f3e";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_any_url_setting_never_appears_in_any_output() -> Result<()> {
    let db = TestDatabase::create().await?;
    let redis = TestRedis::create().await?;
    let amqp = TestAmqp::create().await?;
    // The userinfo password only where the server accepts any: the test PostgreSQL trusts
    // loopback; Redis without a password refuses `AUTH`, RabbitMQ checks guest's.
    let database_url = plant_canary(db.url(), CANARY, Plant::EVERYWHERE)?;
    let redis_url = plant_canary(redis.url(), CANARY, Plant::QUERY)?;
    let rabbitmq_url = plant_canary(amqp.url(), CANARY, Plant::QUERY)?;

    let captured = CapturedOutput::new();
    let writer = captured.clone();
    let telemetry = Telemetry::builder(&TelemetrySettings::default())
        .writer(move || writer.clone())
        .build()?
        .install()?;

    let settings: Settings = Loader::new()
        .no_dotenv()
        .vars([
            ("DATABASE_URL", database_url.as_str()),
            ("REDIS_URL", redis_url.as_str()),
            ("RABBITMQ_URL", rabbitmq_url.as_str()),
            ("REDIS_KEY_PREFIX", redis.prefix()),
            ("ORDERS_EXCHANGE", amqp.name("orders").as_str()),
            ("CONFIG_ENV", "test"),
            ("DATABASE_POOL_SIZE", "4"),
        ])
        .load()?;
    let mut outputs = vec![
        ("settings Debug", format!("{settings:?}")),
        ("settings pretty Debug", format!("{settings:#?}")),
    ];
    let gateway = groundwork_example_api_gateway::start(settings).await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let shutdown = Shutdown::new();
    let options = ServeOptions {
        drain_delay: Duration::ZERO,
        ..gateway.serve_options()
    };
    let (router, health, stop) = (
        gateway.router.clone(),
        gateway.health.clone(),
        shutdown.clone(),
    );
    let server = tokio::spawn(async move {
        groundwork_service::serve(listener, router, &health, stop, options).await
    });
    for path in [
        "/health",
        "/health/status",
        "/health/database",
        "/health/redis",
        "/health/rabbitmq",
        "/metrics",
    ] {
        outputs.push((path, http_get(address, path).await?));
    }
    shutdown.trigger();
    server.await??;
    gateway.shutdown().await;
    telemetry.force_flush()?;

    let logs = captured.text();
    assert!(!logs.is_empty(), "the gateway logged nothing");
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
