//! `/health/status` against the JSON Schema of draft-inadarei-api-health-check, in every state.

use crate::common;

use anyhow::Context as _;
use common::Server;
use groundwork_health::{
    CheckOptions, CheckResult, Component, ComponentType, Details, Health, HealthCheck,
};

struct Fixed(&'static str, CheckResult);

impl HealthCheck for Fixed {
    fn component(&self) -> Component {
        Component::new(self.0, ComponentType::Datastore)
    }

    async fn check(&self) -> CheckResult {
        self.1.clone()
    }
}

fn validator() -> anyhow::Result<(boon::Schemas, boon::SchemaIndex)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/health-status.schema.json"
    );
    let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler
        .add_resource("health-status.schema.json", schema)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let index = compiler
        .compile("health-status.schema.json", &mut schemas)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((schemas, index))
}

fn assert_valid(
    (schemas, index): &(boon::Schemas, boon::SchemaIndex),
    document: &serde_json::Value,
) -> anyhow::Result<()> {
    schemas
        .validate(document, *index)
        .map_err(|e| anyhow::anyhow!("{e:#}\nin {document:#}"))
}

#[tokio::test]
async fn status_document_follows_the_health_json_schema_in_every_state() -> anyhow::Result<()> {
    let validator = validator()?;
    let mut builder = Health::builder()
        .service_id("query-engine")
        .version("1.4.0")
        .release_id("1.4.0-abc123")
        .description("hotel search")
        .details(Details::Always)
        .check(Fixed("database", CheckResult::pass()))
        .check_with(
            Fixed(
                "clickhouse",
                CheckResult::fail("down").with_observation("rows", 12, None),
            ),
            CheckOptions::default().non_critical(),
        )
        .check(Fixed(
            "redis",
            CheckResult::warn("slow").with_observation("connections", 3, Some("connections")),
        ));
    let migrations = builder.startup_task("migrations");
    let health = builder.build()?;
    let server = Server::start(health.router()).await?;

    // Starting: fail with an output.
    let starting = server.get("/health/status").await?;
    assert_eq!(starting.status, 503);
    assert_valid(&validator, &starting.json()?)?;

    // Running with a warning and a non-critical failure.
    migrations.done();
    let running = server.get("/health/status").await?;
    assert_eq!(running.status, 200);
    let document = running.json()?;
    assert_valid(&validator, &document)?;
    assert_eq!(document["status"], "warn");
    assert_eq!(document["serviceId"], "query-engine");
    assert_eq!(document["version"], "1.4.0");
    let checks = document["checks"].as_object().context("no checks")?;
    let keys: Vec<&str> = checks.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "clickhouse:responseTime",
            "clickhouse:rows",
            "database:responseTime",
            "redis:connections",
            "redis:responseTime",
        ]
    );
    let latency = &checks["database:responseTime"][0];
    assert_eq!(latency["componentId"], "database");
    assert_eq!(latency["componentType"], "datastore");
    assert_eq!(latency["observedUnit"], "ms");
    assert!(latency["observedValue"].is_f64());
    assert!(latency.get("output").is_none(), "a pass has no output");

    // One component.
    let component = server.get("/health/redis").await?;
    assert_eq!(component.status, 200);
    assert_valid(&validator, &component.json()?)?;

    // Shutting down.
    health.begin_shutdown();
    let stopping = server.get("/health/status").await?;
    assert_eq!(stopping.status, 503);
    assert_valid(&validator, &stopping.json()?)?;

    // The report's own rendering is the same document.
    assert_valid(&validator, &health.report().await.to_json())?;
    Ok(())
}

#[tokio::test]
async fn status_document_without_details_follows_the_schema() -> anyhow::Result<()> {
    let validator = validator()?;
    let health = Health::builder()
        .check(Fixed("database", CheckResult::pass()))
        .build()?;
    let server = Server::start(health.router()).await?;
    let reply = server.get("/health/status").await?;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, r#"{"status":"pass"}"#);
    assert_valid(&validator, &reply.json()?)?;
    Ok(())
}
