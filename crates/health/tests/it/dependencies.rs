//! The built-in checks against the real servers (`cargo xtask infra up`): healthy, down (a
//! port nobody listens on), hung (a listener that never answers), and under 1,000 probes.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Counting, HungListener, Server, closed_port};
use groundwork_health::{
    CheckOptions, ClickHouseCheck, Details, Health, PostgresCheck, RabbitMqCheck, RedisCheck,
};
use groundwork_testkit::{TestAmqp, TestClickHouse, TestDatabase, TestRedis};

const TIMEOUT: Duration = Duration::from_millis(500);
const PASSWORD: &str = "pw-secret-9";

fn short_timeout() -> CheckOptions {
    CheckOptions::default().timeout(TIMEOUT)
}

/// Each kind of built-in check, connected to `127.0.0.1:port` with a password in its URL.
fn checks_on_port(port: u16) -> anyhow::Result<Vec<(&'static str, Health)>> {
    let postgres = sqlx::postgres::PgPoolOptions::new().connect_lazy(&format!(
        "postgres://postgres:{PASSWORD}@127.0.0.1:{port}/postgres"
    ))?;
    let redis = deadpool_redis::Config::from_url(format!("redis://:{PASSWORD}@127.0.0.1:{port}"))
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))?;
    let clickhouse = clickhouse::Client::default()
        .with_url(format!("http://127.0.0.1:{port}"))
        .with_user("default")
        .with_password(PASSWORD);
    let rabbitmq = RabbitMqCheck::connect(format!("amqp://guest:{PASSWORD}@127.0.0.1:{port}/%2f"));
    let build =
        |builder: groundwork_health::HealthBuilder| builder.details(Details::Always).build();
    Ok(vec![
        (
            "database",
            build(Health::builder().check_with(PostgresCheck::new(postgres), short_timeout()))?,
        ),
        (
            "redis",
            build(Health::builder().check_with(RedisCheck::new(redis), short_timeout()))?,
        ),
        (
            "rabbitmq",
            build(Health::builder().check_with(rabbitmq, short_timeout()))?,
        ),
        (
            "clickhouse",
            build(Health::builder().check_with(ClickHouseCheck::new(clickhouse), short_timeout()))?,
        ),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_dependencies_pass_and_report_their_pools() -> anyhow::Result<()> {
    let _serial = common::serial().await;
    let database = TestDatabase::create().await?;
    let redis = TestRedis::create().await?;
    let amqp = TestAmqp::create().await?;
    let clickhouse = TestClickHouse::create().await?;
    // A client as applications make it, validation on: the check must work with ClickHouse
    // 18.16 (the local server) anyway.
    let application_client = clickhouse::Client::default().with_url(clickhouse.url());
    let application_connection = Arc::new(
        lapin::Connection::connect(amqp.url(), lapin::ConnectionProperties::default()).await?,
    );
    let health = Health::builder()
        .check(PostgresCheck::new(database.pool().clone()))
        .check(RedisCheck::new(redis.pool().clone()))
        .check(RabbitMqCheck::new(application_connection.clone()))
        .check_with(
            RabbitMqCheck::connect(amqp.url()),
            CheckOptions::default().name("rabbitmq-own"),
        )
        .check(ClickHouseCheck::new(application_client))
        .details(Details::Always)
        .build()?;
    let server = Server::start(health.router()).await?;

    for path in ["/health", "/readyz", "/health/ready", "/livez"] {
        let reply = server.get(path).await?;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, r#"{"status":"pass"}"#),
            "{path}"
        );
    }
    for component in [
        "database",
        "redis",
        "rabbitmq",
        "rabbitmq-own",
        "clickhouse",
    ] {
        let reply = server.get(&format!("/health/{component}")).await?;
        assert_eq!(reply.status, 200, "{component}: {}", reply.body);
        assert_eq!(reply.json()?["status"], "pass", "{component}");
    }
    let document = server.get("/health/status").await?.json()?;
    let checks = &document["checks"];
    assert!(checks["database:connections"][0]["observedValue"].as_u64() >= Some(1));
    assert!(checks["database:idleConnections"][0]["observedValue"].is_u64());
    assert!(checks["redis:connections"][0]["observedValue"].as_u64() >= Some(1));
    assert!(checks["redis:availableConnections"][0]["observedValue"].is_u64());
    for key in [
        "database:responseTime",
        "redis:responseTime",
        "rabbitmq:responseTime",
        "clickhouse:responseTime",
    ] {
        assert_eq!(checks[key][0]["status"], "pass", "{key}: {document}");
    }

    // The application's connection closing is a failure of the check watching it.
    application_connection
        .close(200, "test done".into())
        .await?;
    let health = Health::builder()
        .check(RabbitMqCheck::new(application_connection))
        .details(Details::Always)
        .build()?;
    let report = health.report().await;
    assert_eq!(report.status(), groundwork_health::Status::Fail);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependency_down_fails_its_endpoint_and_readiness_within_the_timeout_not_liveness()
-> anyhow::Result<()> {
    let _serial = common::serial().await;
    let port = closed_port().await?;
    for (component, health) in checks_on_port(port)? {
        let server = Server::start(health.router()).await?;
        for path in [
            format!("/health/{component}"),
            "/health".into(),
            "/readyz".into(),
        ] {
            let started = Instant::now();
            let reply = server.get(&path).await?;
            let elapsed = started.elapsed();
            assert_eq!(reply.status, 503, "{component} {path}: {}", reply.body);
            assert!(
                elapsed < TIMEOUT + Duration::from_millis(100),
                "{component} {path} answered after {elapsed:?}"
            );
        }
        let live = server.get("/livez").await?;
        assert_eq!(live.status, 200, "{component} /livez");
        let status = server.get("/health/status").await?;
        assert_eq!(status.status, 503, "{component}");
        let output = status.json()?["checks"][format!("{component}:responseTime")][0]["output"]
            .as_str()
            .map(str::to_owned);
        assert!(
            output.is_some(),
            "{component}: no output in {}",
            status.body
        );
        assert!(
            !status.body.contains(PASSWORD),
            "{component}: {}",
            status.body
        );
        assert!(!status.body.contains("://"), "{component}: {}", status.body);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_dependency_fails_at_the_timeout_and_the_probe_answers_within_100_ms_of_it()
-> anyhow::Result<()> {
    let _serial = common::serial().await;
    let hung = HungListener::start().await?;
    for (component, health) in checks_on_port(hung.addr.port())? {
        let server = Server::start(health.router()).await?;
        let started = Instant::now();
        let reply = server.get(&format!("/health/{component}")).await?;
        let elapsed = started.elapsed();
        assert_eq!(reply.status, 503, "{component}: {}", reply.body);
        assert!(
            elapsed >= TIMEOUT,
            "{component} answered before the timeout: {elapsed:?}"
        );
        assert!(
            elapsed < TIMEOUT + Duration::from_millis(100),
            "{component} answered after {elapsed:?}"
        );
        let document = reply.json()?;
        assert_eq!(
            document["checks"][format!("{component}:responseTime")][0]["output"],
            "no answer within 500ms",
            "{component}"
        );
        // Readiness uses the same (cached) run: no second wait.
        let started = Instant::now();
        assert_eq!(server.get("/health").await?.status, 503, "{component}");
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "{component}"
        );
        assert_eq!(server.get("/livez").await?.status, 200, "{component}");
    }
    Ok(())
}

/// Real checks wrapped to count their runs (each run is one query), behind one `Health`.
struct CountedChecks {
    health: Health,
    runs: Vec<(&'static str, Arc<std::sync::atomic::AtomicUsize>)>,
    _resources: (TestDatabase, TestRedis, TestAmqp, TestClickHouse),
}

async fn counted_checks(ttl: Duration) -> anyhow::Result<CountedChecks> {
    let database = TestDatabase::create().await?;
    let redis = TestRedis::create().await?;
    let amqp = TestAmqp::create().await?;
    let clickhouse = TestClickHouse::create().await?;
    let (postgres, postgres_runs) = Counting::new(PostgresCheck::new(database.pool().clone()));
    let (redis_check, redis_runs) = Counting::new(RedisCheck::new(redis.pool().clone()));
    let (rabbitmq, rabbitmq_runs) = Counting::new(RabbitMqCheck::connect(amqp.url()));
    let (clickhouse_check, clickhouse_runs) =
        Counting::new(ClickHouseCheck::new(clickhouse.client().clone()));
    let health = Health::builder()
        .ttl(ttl)
        .check(postgres)
        .check(redis_check)
        .check(rabbitmq)
        .check(clickhouse_check)
        .build()?;
    Ok(CountedChecks {
        health,
        runs: vec![
            ("database", postgres_runs),
            ("redis", redis_runs),
            ("rabbitmq", rabbitmq_runs),
            ("clickhouse", clickhouse_runs),
        ],
        _resources: (database, redis, amqp, clickhouse),
    })
}

async fn probe_concurrently(server: &Server, count: usize) -> anyhow::Result<()> {
    let mut probes = tokio::task::JoinSet::new();
    for index in 0..count {
        let addr = server.addr;
        let path = ["/health", "/readyz", "/health/ready"][index % 3];
        probes.spawn(async move { common::request(addr, "GET", path, &[]).await });
    }
    while let Some(reply) = probes.join_next().await {
        let reply = reply??;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_probes_cost_one_query_per_dependency() -> anyhow::Result<()> {
    let _serial = common::serial().await;
    // A TTL longer than the test: every probe must be answered by the one run.
    let counted = counted_checks(Duration::from_mins(10)).await?;
    let server = Server::start(counted.health.router()).await?;
    probe_concurrently(&server, 1000).await?;
    for (name, runs) in &counted.runs {
        assert_eq!(runs.load(Ordering::SeqCst), 1, "{name} ran more than once");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sustained_probes_cost_at_most_one_query_per_dependency_per_ttl() -> anyhow::Result<()> {
    let _serial = common::serial().await;
    let ttl = Duration::from_millis(200);
    let counted = counted_checks(ttl).await?;
    let server = Server::start(counted.health.router()).await?;
    let started = Instant::now();
    let mut probes = 0;
    while started.elapsed() < Duration::from_secs(1) {
        probe_concurrently(&server, 100).await?;
        probes += 100;
    }
    let elapsed = started.elapsed();
    // One run per TTL at most, plus the run in progress when the loop ended.
    let bound = usize::try_from(elapsed.as_millis() / ttl.as_millis())? + 1;
    for (name, runs) in &counted.runs {
        let runs = runs.load(Ordering::SeqCst);
        assert!(runs >= 1, "{name} never ran");
        assert!(
            runs <= bound,
            "{name} ran {runs} times for {probes} probes in {elapsed:?} with a TTL of {ttl:?}"
        );
    }
    Ok(())
}

/// A check's own `amqps://` connection to a broker whose certificate the configured CA did not
/// sign fails with the TLS reason; with the right CA it passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_failures_are_reported_with_the_reason() -> anyhow::Result<()> {
    let tls = groundwork_testkit::TestTls::discover()?;
    let trusted = groundwork_connect::TlsSettings {
        ca_cert: Some(tls.ca_cert.clone()),
        ..groundwork_connect::TlsSettings::default()
    };
    let check = |settings: groundwork_connect::TlsSettings| -> anyhow::Result<Health> {
        let rabbitmq = RabbitMqCheck::connect(tls.amqp_url.clone()).with_tls(settings);
        Ok(Health::builder()
            .check_with(
                rabbitmq,
                CheckOptions::default().timeout(Duration::from_secs(5)),
            )
            .details(Details::Always)
            .build()?)
    };

    let server = Server::start(check(trusted)?.router()).await?;
    let reply = server.get("/health/rabbitmq").await?;
    assert_eq!(reply.status, 200, "{}", reply.body);

    // The system's roots do not hold the test CA.
    let server = Server::start(check(groundwork_connect::TlsSettings::default())?.router()).await?;
    let status = server.get("/health/status").await?;
    assert_eq!(status.status, 503, "{}", status.body);
    let output = status.json()?["checks"]["rabbitmq:responseTime"][0]["output"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(
        output.contains("TLS: the certificate is not signed by a trusted CA"),
        "{output}"
    );
    assert!(!status.body.contains("guest:guest"), "{}", status.body);
    Ok(())
}
