//! The three example services as real processes, against real PostgreSQL, Redis, RabbitMQ and
//! ClickHouse, exporting spans to an in-test OTLP collector: one order with a `traceparent` is
//! followed through every service's JSON logs and exported spans into `/v1/stats`; flags and
//! config (the log level included) change without a restart; a killed worker leaves its messages
//! queued and a restarted one processes each exactly once; a backup of the gateway's database
//! restores and verifies.
//!
//! The test builds the service binaries with the cargo that runs it, starts each in an empty
//! working directory (so no `.env` or `config/` of the developer's leaks in), and owns every
//! resource it uses, so it runs beside `cargo xtask up` and other tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use fake_opentelemetry_collector::{ExportedSpan, FakeCollectorServer};
use groundwork_testkit::{TestAmqp, TestClickHouse, TestDatabase, TestRedis};
use groundwork_tests::service::{
    GATEWAY, INGEST, ServiceProcess as Service, WORKER, build_example_services as build_services,
    eventually, get_json, request,
};
use serde_json::Value;

/// How long a service may take to answer `/health/ready` after it was started.
const READY: Duration = Duration::from_mins(1);

/// Starts a service binary with `SERVICE_NAME` set to `name` (what its logs and spans carry).
fn start(
    binary: &Path,
    name: &str,
    workdir: &Path,
    env: &BTreeMap<String, String>,
) -> Result<Service> {
    let env = env
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .chain([("SERVICE_NAME", name)]);
    Service::start(binary, name, workdir, env)
}

fn spans_of_trace(spans: &[ExportedSpan], trace_id: &str) -> Vec<String> {
    spans
        .iter()
        .filter(|span| span.trace_id == trace_id)
        .map(|span| span.name.clone())
        .collect()
}

fn lines_with_trace<'a>(log: &'a [Value], trace_id: &str) -> Vec<&'a Value> {
    log.iter()
        .filter(|line| line["traceId"].as_str() == Some(trace_id))
        .collect()
}

/// Scrapes each service's `/metrics`: the page must pass `promtool check metrics`, show the
/// process metrics and the service's connection gauges, and, with `groundwork-backup`'s metrics,
/// serve every metric that `deploy/prometheus/alerts.yml` and the Grafana dashboard query.
async fn check_metrics_pages(services: &[&Service]) -> Result<()> {
    // `groundwork-backup metrics` serves the backup families, those of WAL archives included.
    let mut served: BTreeSet<String> =
        groundwork_tests::families(&groundwork_backup::render_metrics(&[]));
    served.extend(groundwork_tests::families(
        &groundwork_backup::render_wal_metrics(&[], &[], std::time::SystemTime::now()),
    ));
    for service in services {
        let (status, page) = request(service.address, "GET /metrics", None, &[]).await?;
        if status != 200 {
            bail!("{} answered {status} on /metrics: {page}", service.name);
        }
        groundwork_tests::promtool(Path::new("."), &["check", "metrics"], Some(&page))
            .with_context(|| format!("{}'s /metrics:\n{page}", service.name))?;
        let families = groundwork_tests::families(&page);
        let mut expected = vec![
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
            "rabbitmq_connection_up",
            "http_server_shed_requests_total",
        ];
        match service.name.as_str() {
            "api-gateway" => expected.extend([
                "http_server_request_duration_seconds",
                "db_client_connections_usage",
                "db_client_connections_max",
                "live_feed_stale",
                "live_feed_last_load_timestamp_seconds",
            ]),
            "order-worker" => expected.extend(["db_client_connections_usage"]),
            _ => expected.push("http_server_request_duration_seconds"),
        }
        for family in expected {
            if !families.contains(family) {
                bail!("{} serves no {family}:\n{page}", service.name);
            }
        }
        let up = page
            .lines()
            .find(|line| line.starts_with("rabbitmq_connection_up{"))
            .unwrap_or_default();
        if !up.ends_with(" 1") {
            bail!("{}: RabbitMQ connection not up: {up:?}", service.name);
        }
        served.extend(families);
    }
    for (place, query) in groundwork_tests::deploy_queries()? {
        for metric in groundwork_tests::metric_names(&query) {
            if !served.contains(&metric) {
                bail!("{place} reads {metric}, which no service serves; served: {served:?}");
            }
        }
    }
    Ok(())
}

// One scenario, read top to bottom: splitting it would hide the order of events it checks.
#[allow(clippy::too_many_lines)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_traced_through_three_processes_and_survives_a_killed_worker() -> Result<()> {
    let _heavy = crate::HEAVY.lock().await;
    let bin = tokio::task::spawn_blocking(build_services).await??;
    let workdir = tempfile::tempdir()?;
    let db = TestDatabase::create().await?;
    let redis = TestRedis::create().await?;
    let amqp = TestAmqp::create().await?;
    let clickhouse = TestClickHouse::create().await?;
    let mut collector = FakeCollectorServer::start()
        .await
        .map_err(|error| anyhow::anyhow!("cannot start the OTLP collector: {error}"))?;

    let orders_exchange = amqp.name("orders");
    let analytics_exchange = amqp.name("analytics");
    let worker_queue = amqp.name("order-created");
    let ingest_queue = amqp.name("order-processed");
    let common: BTreeMap<String, String> = [
        ("APP_ENV", "test".to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint()),
        // The in-test collector speaks gRPC; http/protobuf is the default.
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
        // Export every 200 ms instead of every 5 s, so spans arrive while the test waits.
        ("OTEL_BSP_SCHEDULE_DELAY", "200".to_owned()),
        ("RABBITMQ_URL", amqp.url().to_owned()),
        ("SHUTDOWN_DRAIN_MS", "0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let with = |pairs: &[(&str, &str)]| {
        let mut env = common.clone();
        env.extend(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        env
    };
    let gateway_env = with(&[
        ("DATABASE_URL", db.url()),
        ("REDIS_URL", redis.url()),
        ("REDIS_KEY_PREFIX", redis.prefix()),
        ("ORDERS_EXCHANGE", &orders_exchange),
        ("CONFIG_ENV", "test"),
    ]);
    let worker_env = with(&[
        ("DATABASE_URL", db.url()),
        ("CONFIG_ENV", "test"),
        ("ORDERS_EXCHANGE", &orders_exchange),
        ("QUEUE", &worker_queue),
        ("DEAD_LETTER_EXCHANGE", &amqp.name("worker-dlx")),
        ("DEAD_LETTER_QUEUE", &amqp.name("order-created.dlq")),
        ("ANALYTICS_EXCHANGE", &analytics_exchange),
        ("RETRY_BACKOFF_MS", "50"),
    ]);
    let ingest_env = with(&[
        // Only for following `log.level`; the ingest stores nothing in PostgreSQL.
        ("DATABASE_URL", db.url()),
        ("CONFIG_ENV", "test"),
        ("CLICKHOUSE_URL", clickhouse.url()),
        ("CLICKHOUSE_DATABASE", clickhouse.database()),
        ("ANALYTICS_EXCHANGE", &analytics_exchange),
        ("QUEUE", &ingest_queue),
        ("DEAD_LETTER_EXCHANGE", &amqp.name("ingest-dlx")),
        ("DEAD_LETTER_QUEUE", &amqp.name("order-processed.dlq")),
        ("BATCH_MAX_WAIT_MS", "100"),
    ]);

    // The gateway first (it migrates the database), then the consumers.
    let gateway = start(
        &bin.join(GATEWAY),
        "api-gateway",
        workdir.path(),
        &gateway_env,
    )?;
    gateway.wait_ok("/health/ready", READY).await?;
    let mut worker = start(
        &bin.join(WORKER),
        "order-worker",
        workdir.path(),
        &worker_env,
    )?;
    let ingest = start(
        &bin.join(INGEST),
        "analytics-ingest",
        workdir.path(),
        &ingest_env,
    )?;
    worker.wait_ok("/health/ready", READY).await?;
    ingest.wait_ok("/health/ready", READY).await?;

    // One order, continuing the caller's trace.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let (status, body) = request(
        gateway.address,
        "POST /v1/orders",
        Some(r#"{"tenant":"tenant-traced","amount":42.5}"#),
        &[("traceparent", &traceparent), ("Idempotency-Key", "e2e-1")],
    )
    .await?;
    assert_eq!(status, 201, "{body}");

    let (tenant, took) = eventually(
        Duration::from_secs(30),
        "the order in /v1/stats",
        || async {
            let summary = get_json(ingest.address, "/v1/stats").await?;
            let found = summary["tenants"].as_array().and_then(|tenants| {
                tenants
                    .iter()
                    .find(|t| t["tenant"] == "tenant-traced")
                    .cloned()
            });
            Ok(found)
        },
    )
    .await?;
    assert_eq!(tenant["orders"], 1, "{tenant}");
    println!("order reached /v1/stats in {took:?}");

    for service in [&gateway, &worker, &ingest] {
        let log = service.log()?;
        let traced = lines_with_trace(&log, trace_id);
        assert!(
            !traced.is_empty(),
            "{} logged nothing with trace {trace_id}:\n{}",
            service.name,
            service.log_text()
        );
        for line in &log {
            assert_eq!(line["service"], service.name, "{line}");
        }
    }

    let mut spans = Vec::new();
    let wanted = [
        "POST /v1/orders".to_owned(),
        format!("{worker_queue} process"),
        format!("{ingest_queue} process"),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    while !wanted
        .iter()
        .all(|name| spans_of_trace(&spans, trace_id).contains(name))
    {
        if Instant::now() > deadline {
            bail!(
                "spans of trace {trace_id} received: {:?}, wanted {wanted:?}",
                spans_of_trace(&spans, trace_id)
            );
        }
        spans.extend(
            collector
                .exported_spans(1, Duration::from_millis(500))
                .await,
        );
    }

    // Every service's `/metrics`, as Prometheus scrapes it, passes `promtool check metrics` and
    // serves what the alert rules and the dashboard in `deploy/` read.
    check_metrics_pages(&[&gateway, &worker, &ingest]).await?;

    // A flag and a config value change in the database; the running gateway follows.
    sqlx::query(
        "INSERT INTO feature_flags (name, enabled, rollout_pct) VALUES ('e2e.new.checkout', true, 100)",
    )
    .execute(db.pool())
    .await?;
    let ((), took) = eventually(
        Duration::from_secs(10),
        "the flag in /v1/features",
        || async {
            let features = get_json(gateway.address, "/v1/features?tenant=tenant-1").await?;
            Ok((features["flags"]["e2e.new.checkout"] == true).then_some(()))
        },
    )
    .await?;
    println!("flag change visible in /v1/features after {took:?}");

    sqlx::query(
        "INSERT INTO platform_config (env, key, value, updated_by)
         VALUES ('test', 'matching.algorithm.weights', '{\"price\":0.6,\"rating\":0.4}', 'e2e')",
    )
    .execute(db.pool())
    .await?;
    let (weights, took) = eventually(Duration::from_secs(10), "the new weights", || async {
        let (status, body) =
            request(gateway.address, "GET /v1/matching/weights", None, &[]).await?;
        Ok((status == 200).then_some(body))
    })
    .await?;
    let weights: Value = serde_json::from_str(&weights)?;
    assert_eq!(weights["price"], 0.6, "{weights}");
    println!("config change visible in /v1/matching/weights after {took:?}");

    // Every service follows the log level in `platform_config` without a restart.
    let directives = "info,sqlx=warn";
    sqlx::query(
        "INSERT INTO platform_config (env, key, value, updated_by) VALUES ('test', 'log.level', $1, 'e2e')",
    )
    .bind(Value::from(directives))
    .execute(db.pool())
    .await?;
    for service in [&gateway, &worker, &ingest] {
        let ((), took) = eventually(
            Duration::from_secs(10),
            &format!("{} applying log.level", service.name),
            || async {
                Ok(service
                    .log()?
                    .iter()
                    .any(|line| {
                        line["message"] == "log level changed"
                            && line["context"]["level"] == directives
                    })
                    .then_some(()))
            },
        )
        .await?;
        println!("{} applied log.level after {took:?}", service.name);
    }

    // The worker dies; orders keep coming and wait in its queue.
    worker.kill()?;
    let mut ids = Vec::new();
    for n in 0..3 {
        let (status, body) = request(
            gateway.address,
            "POST /v1/orders",
            Some(&format!(
                r#"{{"tenant":"tenant-queued","amount":{}}}"#,
                10 + n
            )),
            &[("Idempotency-Key", &format!("e2e-queued-{n}"))],
        )
        .await?;
        assert_eq!(status, 201, "{body}");
        let created: Value = serde_json::from_str(&body)?;
        ids.push(created["id"].as_i64().context("no id in the 201 body")?);
    }
    // The gateway answers 201 at its commit and the outbox relay publishes right after.
    let channel = amqp.connection().create_channel().await?;
    eventually(
        Duration::from_secs(10),
        "the orders' events waiting in the worker's queue",
        || async {
            let queue = channel
                .queue_declare(
                    worker_queue.as_str().into(),
                    lapin::options::QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    lapin::types::FieldTable::default(),
                )
                .await?;
            assert!(queue.message_count() <= 3, "more events than orders");
            Ok((queue.message_count() == 3).then_some(()))
        },
    )
    .await
    .context("the orders wait for the worker")?;
    let waiting: i64 =
        sqlx::query_scalar("SELECT count(*) FROM orders WHERE id = ANY($1) AND status = 'created'")
            .bind(&ids)
            .fetch_one(db.pool())
            .await?;
    assert_eq!(waiting, 3);

    // A new worker process takes them over and processes each exactly once.
    let restarted = start(
        &bin.join(WORKER),
        "order-worker",
        workdir.path(),
        &worker_env,
    )?;
    restarted.wait_ok("/health/ready", READY).await?;
    eventually(
        Duration::from_secs(30),
        "the queued orders in /v1/stats",
        || async {
            let summary = get_json(ingest.address, "/v1/stats").await?;
            let orders = summary["tenants"].as_array().and_then(|tenants| {
                tenants
                    .iter()
                    .find(|t| t["tenant"] == "tenant-queued")
                    .map(|t| t["orders"].clone())
            });
            Ok((orders == Some(Value::from(3))).then_some(()))
        },
    )
    .await?;
    let processed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM orders WHERE id = ANY($1) AND status = 'processed'",
    )
    .bind(&ids)
    .fetch_one(db.pool())
    .await?;
    assert_eq!(processed, 3);
    let mut processed_lines: BTreeMap<i64, usize> = BTreeMap::new();
    for service in [&worker, &restarted] {
        for line in service.log()? {
            if line["message"] == "order processed"
                && let Some(id) = line["context"]["order_id"].as_i64()
            {
                *processed_lines.entry(id).or_default() += 1;
            }
        }
    }
    for id in &ids {
        assert_eq!(
            processed_lines.get(id),
            Some(&1),
            "order {id} processed once: {processed_lines:?}"
        );
    }

    // A backup of the gateway's database restores and verifies (encrypted, to local storage).
    let storage_dir = tempfile::tempdir()?;
    let storage = groundwork_backup::Storage::open(
        &format!("file://{}", storage_dir.path().display()),
        &groundwork_backup::S3Options::default(),
    )?;
    let key = groundwork_backup::Identity::generate();
    let mut options = groundwork_backup::PostgresBackupOptions::default();
    options.pipeline.recipients = vec![key.public()];
    let database = secrecy::SecretString::from(db.url().to_owned());
    let manifest = groundwork_backup::backup_postgres(&storage, &database, &options).await?;
    let orders_in_manifest = manifest
        .row_counts
        .iter()
        .find(|(table, _)| table.ends_with("orders"))
        .map(|(_, rows)| *rows);
    assert_eq!(orders_in_manifest, Some(4), "{:?}", manifest.row_counts);
    let server = match db.url().rsplit_once('/') {
        Some((server, _)) => format!("{server}/postgres"),
        None => bail!("no database name in {}", db.name()),
    };
    let restore = groundwork_backup::PostgresRestoreOptions {
        identities: vec![key],
        ..groundwork_backup::PostgresRestoreOptions::default()
    };
    let report = groundwork_backup::verify_postgres(
        &storage,
        &manifest,
        &secrecy::SecretString::from(server),
        &restore,
    )
    .await?;
    assert!(report.ok, "{report:?}");
    assert!(report.tables >= 3, "{report:?}");

    drop((gateway, restarted, ingest, worker));
    channel.close(200, "done".into()).await?;
    clickhouse.cleanup().await?;
    amqp.cleanup().await?;
    redis.cleanup().await?;
    db.cleanup().await?;
    Ok(())
}
