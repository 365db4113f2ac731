//! A secret planted in every URL setting of the gateway never appears in anything it prints: its
//! log lines, its health details, `/metrics`, the `Debug` form of its settings.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, bail};
use groundwork_config::Loader;
use groundwork_example_api_gateway::Settings;
use groundwork_service::{ServeOptions, Shutdown};
use groundwork_telemetry::{Telemetry, TelemetrySettings};
use groundwork_testkit::{TestAmqp, TestDatabase, TestRedis};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const CANARY: &str = "Gw-Canary-1f3e";

/// Collects the log lines; clones share the buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `url` with the canary as `?password=` and `?sslpassword=`, and as the userinfo password when
/// `userinfo` (only where the server accepts any password: the test PostgreSQL trusts loopback;
/// Redis without a password refuses `AUTH`, RabbitMQ checks guest's).
fn planted(url: &str, userinfo: bool) -> Result<String> {
    let mut url = url::Url::parse(url)?;
    if userinfo
        && url
            .set_password(Some(&format!("{CANARY}-userinfo")))
            .is_err()
    {
        bail!("{url} cannot have a password");
    }
    let planted = format!("password={CANARY}-query&sslpassword={CANARY}-ssl");
    let query = match url.query() {
        Some(query) => format!("{query}&{planted}"),
        None => planted,
    };
    url.set_query(Some(&query));
    Ok(url.to_string())
}

/// The body of `GET path`, read to the end.
async fn get(address: std::net::SocketAddr, path: &str) -> Result<String> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let head = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await?;
    Ok(raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_any_url_setting_never_appears_in_any_output() -> Result<()> {
    let db = TestDatabase::create().await?;
    let redis = TestRedis::create().await?;
    let amqp = TestAmqp::create().await?;
    let database_url = planted(db.url(), true)?;
    let redis_url = planted(redis.url(), false)?;
    let rabbitmq_url = planted(amqp.url(), false)?;

    let captured = Captured::default();
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
        outputs.push((path, get(address, path).await?));
    }
    shutdown.trigger();
    server.await??;
    gateway.shutdown().await;
    telemetry.force_flush()?;

    let logs = captured
        .0
        .lock()
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    assert!(!logs.is_empty(), "the gateway logged nothing");
    outputs.push(("log lines", logs));
    let health = outputs
        .iter()
        .find(|(what, _)| *what == "/health/status")
        .map(|(_, body)| body.as_str())
        .unwrap_or_default();
    assert!(health.contains("200 OK"), "{outputs:#?}");
    for (what, text) in &outputs {
        assert!(!text.contains(CANARY), "{what} shows a secret:\n{text}");
    }
    Ok(())
}
