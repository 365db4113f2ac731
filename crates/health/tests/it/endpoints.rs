//! The endpoints' semantics with in-process checks: readiness, liveness, start-up, shutdown,
//! criticality, details, HEAD, timeouts, caching and the health+json document.

use crate::common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::http::HeaderName;
use common::{Counting, Server, request};
use groundwork_health::{
    CheckOptions, CheckResult, Component, ComponentType, Details, Health, HealthCheck, HealthError,
    Status,
};

/// A check that always answers `result`.
struct Fixed {
    name: &'static str,
    result: CheckResult,
}

impl Fixed {
    fn pass(name: &'static str) -> Self {
        Self {
            name,
            result: CheckResult::pass(),
        }
    }

    fn fail(name: &'static str, output: &str) -> Self {
        Self {
            name,
            result: CheckResult::fail(output),
        }
    }
}

impl HealthCheck for Fixed {
    fn component(&self) -> Component {
        Component::new(self.name, ComponentType::Datastore)
    }

    async fn check(&self) -> CheckResult {
        self.result.clone()
    }
}

/// A check that never completes.
struct Hung;

impl HealthCheck for Hung {
    fn component(&self) -> Component {
        Component::new("hung", ComponentType::Component)
    }

    async fn check(&self) -> CheckResult {
        std::future::pending().await
    }
}

/// A check that panics.
struct Panicking;

impl HealthCheck for Panicking {
    fn component(&self) -> Component {
        Component::new("panicking", ComponentType::Component)
    }

    async fn check(&self) -> CheckResult {
        panic!("a bug in a check")
    }
}

const READINESS: [&str; 3] = ["/health", "/health/ready", "/readyz"];
const LIVENESS: [&str; 2] = ["/livez", "/health/live"];

#[tokio::test]
async fn readiness_passes_when_every_check_passes() -> anyhow::Result<()> {
    let _serial = common::serial().await;
    let health = Health::builder().check(Fixed::pass("database")).build()?;
    let server = Server::start(health.router()).await?;
    for path in READINESS {
        let reply = server.get(path).await?;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.body, r#"{"status":"pass"}"#, "{path}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/health+json")
        );
        assert_eq!(reply.header("cache-control"), Some("no-store"));
    }
    Ok(())
}

#[tokio::test]
async fn failing_critical_check_makes_readiness_503_and_leaves_liveness_200() -> anyhow::Result<()>
{
    let _serial = common::serial().await;
    let health = Health::builder()
        .check(Fixed::pass("redis"))
        .check(Fixed::fail("database", "connection refused"))
        .build()?;
    let server = Server::start(health.router()).await?;
    for path in READINESS {
        let reply = server.get(path).await?;
        assert_eq!(reply.status, 503, "{path}");
        assert_eq!(reply.body, r#"{"status":"fail"}"#, "{path}");
    }
    for path in LIVENESS {
        let reply = server.get(path).await?;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.body, r#"{"status":"pass"}"#, "{path}");
    }
    assert_eq!(server.get("/health/database").await?.status, 503);
    assert_eq!(server.get("/health/redis").await?.status, 200);
    assert_eq!(server.get("/health/status").await?.status, 503);
    Ok(())
}

#[tokio::test]
async fn failing_non_critical_check_warns_and_stays_ready() -> anyhow::Result<()> {
    let _serial = common::serial().await;
    let health = Health::builder()
        .check(Fixed::pass("database"))
        .check_with(
            Fixed::fail("clickhouse", "down"),
            CheckOptions::default().non_critical(),
        )
        .details(Details::Always)
        .build()?;
    let server = Server::start(health.router()).await?;
    let reply = server.get("/health").await?;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, r#"{"status":"warn"}"#);
    // The component's own endpoint tells the truth about the component.
    let reply = server.get("/health/clickhouse").await?;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()?["status"], "fail");
    let status = server.get("/health/status").await?;
    assert_eq!(status.status, 200);
    let document = status.json()?;
    assert_eq!(document["status"], "warn");
    assert_eq!(
        document["checks"]["clickhouse:responseTime"][0]["status"],
        "fail"
    );
    assert_eq!(
        document["checks"]["clickhouse:responseTime"][0]["output"],
        "down"
    );
    Ok(())
}

#[tokio::test]
async fn readiness_is_503_until_startup_work_is_done() -> anyhow::Result<()> {
    let _serial = common::serial().await;
    let mut builder = Health::builder()
        .check(Fixed::pass("database"))
        .details(Details::Always);
    let migrations = builder.startup_task("migrations");
    let config = builder.startup_task("first config load");
    let health = builder.build()?;
    let server = Server::start(health.router()).await?;

    for path in READINESS {
        assert_eq!(server.get(path).await?.status, 503, "{path}");
    }
    assert_eq!(server.get("/livez").await?.status, 200);
    let status = server.get("/health/status").await?;
    assert_eq!(status.status, 503);
    assert_eq!(
        status.json()?["output"],
        "start-up work not done: migrations, first config load"
    );

    migrations.done();
    assert_eq!(server.get("/health").await?.status, 503);
    config.done();
    for path in READINESS {
        assert_eq!(server.get(path).await?.status, 200, "{path}");
    }
    Ok(())
}

#[tokio::test]
async fn startup_task_dropped_without_done_keeps_the_service_not_ready() -> anyhow::Result<()> {
    let _serial = common::serial().await;
    let mut builder = Health::builder();
    drop(builder.startup_task("migrations"));
    let health = builder.build()?;
    assert_eq!(health.readiness().await, Status::Fail);
    Ok(())
}

#[tokio::test]
async fn readiness_turns_503_at_once_on_shutdown() -> anyhow::Result<()> {
    let _serial = common::serial().await;
    // A long TTL: the cached `pass` must not outlive the shutdown.
    let health = Health::builder()
        .check(Fixed::pass("database"))
        .ttl(Duration::from_hours(1))
        .build()?;
    let server = Server::start(health.router()).await?;
    assert_eq!(server.get("/health").await?.status, 200);

    health.begin_shutdown();
    for path in READINESS {
        let reply = server.get(path).await?;
        assert_eq!(reply.status, 503, "{path}");
        assert_eq!(reply.body, r#"{"status":"fail"}"#);
    }
    assert_eq!(server.get("/livez").await?.status, 200);
    Ok(())
}

#[tokio::test]
async fn head_requests_answer_with_status_and_no_body() -> anyhow::Result<()> {
    let _serial = common::serial().await;
    let health = Health::builder()
        .check(Fixed::pass("database"))
        .check(Fixed::fail("redis", "down"))
        .build()?;
    let server = Server::start(health.router()).await?;
    let expected = [
        ("/health", 503),
        ("/readyz", 503),
        ("/livez", 200),
        ("/health/live", 200),
        ("/health/status", 503),
        ("/health/database", 200),
        ("/health/redis", 503),
    ];
    for (path, code) in expected {
        let reply = request(server.addr, "HEAD", path, &[]).await?;
        assert_eq!(reply.status, code, "HEAD {path}");
        assert_eq!(reply.body, "", "HEAD {path}");
        assert_eq!(
            reply.header("content-type"),
            Some("application/health+json"),
            "HEAD {path}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn hung_check_fails_at_its_timeout_and_the_probe_answers_just_after() -> anyhow::Result<()> {
    let _serial = common::serial().await;
    let timeout = Duration::from_millis(300);
    let health = Health::builder()
        .check(Fixed::pass("database"))
        .check_with(Hung, CheckOptions::default().timeout(timeout))
        .details(Details::Always)
        .build()?;
    let server = Server::start(health.router()).await?;

    let started = Instant::now();
    let reply = server.get("/health/status").await?;
    let elapsed = started.elapsed();
    assert_eq!(reply.status, 503);
    assert!(
        elapsed >= timeout,
        "answered before the timeout: {elapsed:?}"
    );
    assert!(
        elapsed < timeout + Duration::from_millis(100),
        "answered {elapsed:?} after the probe, more than the timeout + 100 ms"
    );
    let entry = &reply.json()?["checks"]["hung:responseTime"][0];
    assert_eq!(entry["status"], "fail");
    assert_eq!(entry["output"], "no answer within 300ms");
    Ok(())
}

#[tokio::test]
async fn panicking_check_fails_alone() -> anyhow::Result<()> {
    let _serial = common::serial().await;
    let health = Health::builder()
        .check(Fixed::pass("database"))
        .check(Panicking)
        .build()?;
    let report = health.report().await;
    assert_eq!(report.status(), Status::Fail);
    let panicking = report
        .component("panicking")
        .context("no panicking component")?;
    assert_eq!(panicking.status(), Status::Fail);
    assert!(
        panicking
            .output()
            .is_some_and(|o| o.starts_with("the check did not complete")),
        "{:?}",
        panicking.output()
    );
    assert_eq!(
        report
            .component("database")
            .map(groundwork_health::ComponentReport::status),
        Some(Status::Pass)
    );
    Ok(())
}

#[tokio::test]
async fn results_are_reused_within_the_ttl_and_renewed_after_it() -> anyhow::Result<()> {
    let _serial = common::serial().await;
    let ttl = Duration::from_millis(200);
    let (check, runs) = Counting::new(Fixed::pass("database"));
    let health = Health::builder().check(check).ttl(ttl).build()?;
    let server = Server::start(health.router()).await?;
    for _ in 0..20 {
        assert_eq!(server.get("/health").await?.status, 200);
    }
    let runs_within_ttl = runs.load(Ordering::SeqCst);
    // The 20 probes take a few milliseconds; on a machine slow enough to exceed the TTL the
    // check may run a second time, never once per probe.
    assert!(runs_within_ttl <= 2, "{runs_within_ttl} runs for 20 probes");
    // Waiting out the TTL is the behaviour under test, not synchronisation.
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    assert_eq!(server.get("/health").await?.status, 200);
    assert_eq!(runs.load(Ordering::SeqCst), runs_within_ttl + 1);
    Ok(())
}

#[tokio::test]
async fn details_are_shown_only_as_configured() -> anyhow::Result<()> {
    let _serial = common::serial().await;
    let header = HeaderName::from_static("x-health-token");
    let token = "s3cret-token";
    let cases = [
        (Details::Never, vec![], false),
        (Details::Never, vec![("x-health-token", token)], false),
        (Details::Always, vec![], true),
        (Details::with_token(header.clone(), token), vec![], false),
        (
            Details::with_token(header.clone(), token),
            vec![("x-health-token", "wrong")],
            false,
        ),
        (
            Details::with_token(header.clone(), token),
            vec![("x-health-token", token)],
            true,
        ),
    ];
    for (details, headers, shown) in cases {
        let label = format!("{details:?} with {headers:?}");
        let health = Health::builder()
            .check(Fixed::fail("database", "down"))
            .service_id("query-engine")
            .details(details)
            .build()?;
        let server = Server::start(health.router()).await?;
        for path in ["/health/status", "/health/database"] {
            let reply = request(server.addr, "GET", path, &headers).await?;
            assert_eq!(reply.status, 503, "{label} {path}");
            let document = reply.json()?;
            assert_eq!(document["status"], "fail", "{label} {path}");
            assert_eq!(document.get("checks").is_some(), shown, "{label} {path}");
            assert_eq!(document.get("serviceId").is_some(), shown, "{label} {path}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn output_never_contains_a_url_or_password() -> anyhow::Result<()> {
    let _serial = common::serial().await;
    let leaky =
        "cannot connect to postgres://app:hunter2@db.internal:5432/app with password=hunter2";
    let health = Health::builder()
        .check(Fixed::fail("database", leaky))
        .details(Details::Always)
        .build()?;
    let server = Server::start(health.router()).await?;
    for path in ["/health/status", "/health/database", "/health"] {
        let reply = server.get(path).await?;
        assert!(!reply.body.contains("hunter2"), "{path}: {}", reply.body);
        assert!(!reply.body.contains("://"), "{path}: {}", reply.body);
    }
    let document = server.get("/health/status").await?.json()?;
    assert_eq!(
        document["checks"]["database:responseTime"][0]["output"],
        "cannot connect to <url> with password=***"
    );
    Ok(())
}

#[tokio::test]
async fn names_that_collide_or_cannot_be_paths_are_refused() {
    let _serial = common::serial().await;
    let duplicate = Health::builder()
        .check(Fixed::pass("database"))
        .check(Fixed::pass("database"))
        .build();
    assert!(matches!(duplicate, Err(HealthError::DuplicateName { name }) if name == "database"));
    for name in ["status", "ready", "live", "", "a/b", "db{x}"] {
        let result = Health::builder()
            .check_with(Fixed::pass("database"), CheckOptions::default().name(name))
            .build();
        assert!(
            matches!(result, Err(HealthError::InvalidName { .. })),
            "{name:?} was accepted"
        );
    }
    let renamed = Health::builder()
        .check(Fixed::pass("database"))
        .check_with(
            Fixed::pass("database"),
            CheckOptions::default().name("database-replica"),
        )
        .build();
    assert!(renamed.is_ok());
}

#[tokio::test]
async fn unknown_component_is_404() -> anyhow::Result<()> {
    let _serial = common::serial().await;
    let health = Health::builder().check(Fixed::pass("database")).build()?;
    let server = Server::start(health.router()).await?;
    assert_eq!(server.get("/health/rabbitmq").await?.status, 404);
    Ok(())
}

#[tokio::test]
async fn router_merges_into_an_application_with_state() -> anyhow::Result<()> {
    #[derive(Clone)]
    struct AppState {
        greeting: &'static str,
    }
    let _serial = common::serial().await;
    let health = Health::builder().check(Fixed::pass("database")).build()?;
    let app = axum::Router::new()
        .route(
            "/hello",
            axum::routing::get(
                |axum::extract::State(state): axum::extract::State<AppState>| async move {
                    state.greeting
                },
            ),
        )
        .merge(health.router())
        .with_state(AppState { greeting: "hi" });
    let server = Server::start(app).await?;
    assert_eq!(server.get("/hello").await?.body, "hi");
    assert_eq!(server.get("/health").await?.status, 200);
    Ok(())
}
