//! `GET /v1/matching/weights` over HTTP on loopback: the api-gateway with its full middleware
//! stack (served by `groundwork_service::serve` with its edge limits, telemetry layer with span,
//! request id and metrics, JSON log subscriber installed, the value read from hot-reload config)
//! against a bare axum handler returning the same JSON, in one
//! run, and the bare handler behind the telemetry layer alone, which splits the difference into
//! the layer's share and the gateway's. Each iteration is one request on a kept-alive connection, so time per request is the
//! inverse of one connection's throughput.
//!
//! Needs PostgreSQL, Redis and RabbitMQ (`cargo xtask infra up`). With `TELEMETRY_BRIDGE=standard`
//! the installed subscriber is groundwork-telemetry's standard path (tracing-opentelemetry's layer).
//!
//! ```text
//! cargo bench -p groundwork-benches --bench gateway -- --warm-up-time 1 --measurement-time 3
//! TELEMETRY_BRIDGE=standard cargo bench -p groundwork-benches --bench gateway -- --warm-up-time 1 --measurement-time 3
//! ```

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use criterion::Criterion;
use groundwork_config::Loader;
use groundwork_telemetry::{Telemetry, TelemetrySettings, TracingBridge};
use groundwork_testkit::{TestAmqp, TestDatabase, TestRedis};

const WEIGHTS: &str = r#"{"price":0.4,"rating":0.3,"distance":0.2,"availability":0.1}"#;

struct Fixture {
    gateway: SocketAddr,
    bare: SocketAddr,
    layered: SocketAddr,
    _runtime: tokio::runtime::Runtime,
    _telemetry: Telemetry,
    _resources: (TestDatabase, TestRedis, TestAmqp),
}

fn fixture() -> anyhow::Result<Fixture> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let mut settings = TelemetrySettings::default();
    settings.service_name = Some("api-gateway".into());
    // `TELEMETRY_BRIDGE=standard cargo bench ...` measures the standard path (tracing-opentelemetry's
    // layer); the subscriber is installed for the whole process, so one run measures one bridge.
    if std::env::var("TELEMETRY_BRIDGE").as_deref() == Ok("standard") {
        settings.bridge = TracingBridge::Standard;
    }
    let telemetry = Telemetry::builder(&settings)
        .writer(std::io::sink)
        .build()?
        .install()?;
    let (gateway, bare, layered, resources) = runtime.block_on(async {
        let db = TestDatabase::create().await?;
        let redis = TestRedis::create().await?;
        let amqp = TestAmqp::create().await?;
        let orders = amqp.name("orders");
        let settings: groundwork_example_api_gateway::Settings = Loader::new()
            .no_dotenv()
            .vars([
                ("DATABASE_URL", db.url()),
                ("REDIS_URL", redis.url()),
                ("REDIS_KEY_PREFIX", redis.prefix()),
                ("RABBITMQ_URL", amqp.url()),
                ("ORDERS_EXCHANGE", orders.as_str()),
                ("CONFIG_ENV", "bench"),
            ])
            .load()?;
        groundwork_example_api_gateway::migrate(db.pool()).await?;
        sqlx::query(
            "INSERT INTO platform_config (env, key, value) VALUES ('bench', 'matching.algorithm.weights', $1::jsonb)",
        )
        .bind(WEIGHTS)
        .execute(db.pool())
        .await?;
        let gateway = groundwork_example_api_gateway::start(settings).await?;
        let bare = axum::Router::new().route(
            "/v1/matching/weights",
            axum::routing::get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    WEIGHTS,
                )
            }),
        );
        let metrics = groundwork_telemetry::http::HttpMetrics::new();
        let layered = bare.clone().layer(
            groundwork_telemetry::http::TelemetryLayer::new().with_metrics(metrics),
        );
        // The gateway as its binary serves it: `groundwork_service::serve` with the edge limits.
        let gateway_addr = serve_with_edge(&gateway).await?;
        let bare_addr = serve(bare).await?;
        let layered_addr = serve(layered).await?;
        // Kept alive for the whole run: the feeds and connections belong to it.
        std::mem::forget(gateway);
        anyhow::Ok((gateway_addr, bare_addr, layered_addr, (db, redis, amqp)))
    })?;
    Ok(Fixture {
        gateway,
        bare,
        layered,
        _runtime: runtime,
        _telemetry: telemetry,
        _resources: resources,
    })
}

async fn serve(router: axum::Router) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(address)
}

async fn serve_with_edge(
    gateway: &groundwork_example_api_gateway::Gateway,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (router, health, options) = (
        gateway.router.clone(),
        gateway.health.clone(),
        gateway.serve_options(),
    );
    tokio::spawn(async move {
        let shutdown = groundwork_service::Shutdown::new();
        let _ = groundwork_service::serve(listener, router, &health, shutdown, options).await;
    });
    Ok(address)
}

/// A kept-alive HTTP/1.1 connection that sends one GET and reads one response per call.
struct Client {
    reader: BufReader<TcpStream>,
    request: Vec<u8>,
    body: Vec<u8>,
    line: String,
}

impl Client {
    fn connect(address: SocketAddr, path: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(address)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Self {
            reader: BufReader::new(stream),
            request: format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n").into_bytes(),
            body: Vec::new(),
            line: String::new(),
        })
    }

    fn get(&mut self) -> anyhow::Result<u16> {
        self.reader.get_mut().write_all(&self.request)?;
        let mut status = 0;
        let mut length = 0;
        loop {
            self.line.clear();
            self.reader.read_line(&mut self.line)?;
            let line = self.line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(code) = line.strip_prefix("HTTP/1.1 ") {
                status = code.get(..3).unwrap_or("0").parse()?;
            } else if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse()?;
            }
        }
        self.body.resize(length, 0);
        self.reader.read_exact(&mut self.body)?;
        Ok(status)
    }
}

fn main() {
    let fixture = match fixture() {
        Ok(fixture) => fixture,
        Err(error) => panic!("benchmark setup (is `cargo xtask infra up` running?): {error:#}"),
    };
    let mut c = Criterion::default().configure_from_args();
    latency(&mut c, &fixture);
    throughput(&mut c, &fixture);
    c.final_summary();
    interleaved(&fixture);
}

/// One connection, one request at a time: each iteration is a round trip.
fn latency(c: &mut Criterion, fixture: &Fixture) {
    for (name, address) in [
        ("gateway/weights/full_middleware", fixture.gateway),
        ("gateway/weights/bare_axum", fixture.bare),
        (
            "gateway/weights/bare_axum_with_telemetry_layer",
            fixture.layered,
        ),
    ] {
        let mut client = match Client::connect(address, "/v1/matching/weights") {
            Ok(client) => client,
            Err(error) => panic!("benchmark setup: {error}"),
        };
        match client.get() {
            Ok(200) => {}
            other => panic!("{name}: expected 200, got {other:?}"),
        }
        c.bench_function(name, |b| {
            b.iter(|| match client.get() {
                Ok(200) => {}
                other => panic!("{name}: expected 200, got {other:?}"),
            });
        });
    }
}

/// Kept-alive connections the throughput variants keep busy at once, each from its own thread.
const CONNECTIONS: u64 = 4;

/// Requests per second with [`CONNECTIONS`] connections sending back to back: the server is never
/// idle between requests, so its own cost per request decides the rate.
fn throughput(c: &mut Criterion, fixture: &Fixture) {
    let mut group = c.benchmark_group("gateway/weights_throughput");
    group.throughput(criterion::Throughput::Elements(1));
    for (name, address) in [
        ("full_middleware", fixture.gateway),
        ("bare_axum", fixture.bare),
        ("bare_axum_with_telemetry_layer", fixture.layered),
    ] {
        let mut clients = Vec::new();
        for _ in 0..CONNECTIONS {
            match Client::connect(address, "/v1/matching/weights") {
                Ok(client) => clients.push(client),
                Err(error) => panic!("benchmark setup: {error}"),
            }
        }
        group.bench_function(name, |b| {
            b.iter_custom(|iters| load(&mut clients, iters));
        });
    }
    group.finish();
}

/// Rounds of the interleaved comparison, and requests per variant in each round.
const ROUNDS: usize = 151;
const ROUND_REQUESTS: u32 = 1_500;

/// The throughput ratios with the variants interleaved in short rounds (each variant once per
/// round, the order rotating from round to round), so that a slow second of a shared machine hits all of them alike: criterion measures
/// each variant for seconds on its own, and on two shared cores the machine's speed drifts more
/// than the difference being measured. Prints the median ratio over the rounds and its spread.
fn interleaved(fixture: &Fixture) {
    let variants = [fixture.gateway, fixture.bare, fixture.layered];
    let mut clients: Vec<Vec<Client>> = Vec::new();
    for address in variants {
        let mut connections = Vec::new();
        for _ in 0..CONNECTIONS {
            match Client::connect(address, "/v1/matching/weights") {
                Ok(client) => connections.push(client),
                Err(error) => panic!("benchmark setup: {error}"),
            }
        }
        clients.push(connections);
    }
    let mut full_vs_bare = Vec::new();
    let mut layered_vs_bare = Vec::new();
    for round in 0..ROUNDS {
        // Each round starts with a different variant, so none always pays for a round's start.
        let mut rates = [0.0_f64; 3];
        for step in 0..3 {
            let variant = (round + step) % 3;
            let elapsed = load(&mut clients[variant], u64::from(ROUND_REQUESTS));
            rates[variant] = f64::from(ROUND_REQUESTS) / elapsed.as_secs_f64();
        }
        let [full, bare, layered] = rates;
        full_vs_bare.push(full / bare);
        layered_vs_bare.push(layered / bare);
    }
    for (name, ratios) in [
        ("full_middleware / bare_axum", &mut full_vs_bare),
        (
            "bare_axum_with_telemetry_layer / bare_axum",
            &mut layered_vs_bare,
        ),
    ] {
        ratios.sort_by(f64::total_cmp);
        println!(
            "gateway/weights_throughput/interleaved {name}: median {:.3}x (min {:.3}, max {:.3}) over {ROUNDS} rounds of {ROUND_REQUESTS} requests",
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1],
        );
    }
}

/// Sends `requests` over the connections at once, each connection back to back; the time taken.
fn load(clients: &mut [Client], requests: u64) -> Duration {
    let connections = clients.len() as u64;
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for (index, client) in (0_u64..).zip(clients.iter_mut()) {
            // Spread the requests over the connections; the first ones take the remainder.
            let share = requests / connections + u64::from(index < requests % connections);
            scope.spawn(move || {
                for _ in 0..share {
                    match client.get() {
                        Ok(200) => {}
                        other => panic!("expected 200, got {other:?}"),
                    }
                }
            });
        }
    });
    started.elapsed()
}
