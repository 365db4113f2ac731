//! What `HttpMetrics` serves besides HTTP: the process metrics of `metrics-process` and the
//! connection gauges of `pools`, read from a real process and real PostgreSQL, Redis and RabbitMQ
//! connections at every render.

#![expect(
    clippy::float_cmp,
    reason = "counts and gauges here are small whole numbers, exact in an f64"
)]

use anyhow::{Context as _, Result, bail, ensure};
use groundwork_telemetry::http::HttpMetrics;
use groundwork_telemetry::pools;
use groundwork_testkit::{TestAmqp, TestDatabase, TestRedis};
use sqlx::postgres::PgPoolOptions;

/// The value of the sample `name` whose labels include every pair of `labels`, in a Prometheus
/// text page.
fn sample(page: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((series_name, rest)) => (series_name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let matches = series_name == name
                && labels.iter().all(|(label, value)| {
                    series_labels
                        .split(',')
                        .any(|pair| pair == format!("{label}=\"{value}\""))
                });
            if matches { value.parse().ok() } else { None }
        })
}

fn required(page: &str, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
    sample(page, name, labels).with_context(|| format!("no {name} {labels:?} on the page:\n{page}"))
}

#[test]
fn process_metrics_are_read_from_the_running_process_at_each_render() -> Result<()> {
    let metrics = HttpMetrics::new().with_process_metrics();
    let page = metrics.render();
    for family in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "process_threads",
    ] {
        ensure!(
            page.contains(&format!("# HELP {family} ")),
            "no help text for {family}:\n{page}"
        );
    }
    let resident = required(&page, "process_resident_memory_bytes", &[])?;
    ensure!(
        (1_000_000.0..64e9).contains(&resident),
        "resident memory {resident} bytes"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs_f64();
    let started = required(&page, "process_start_time_seconds", &[])?;
    ensure!(
        started <= now + 1.0 && started > now - 3600.0,
        "start time {started}, now {now}"
    );
    ensure!(required(&page, "process_threads", &[])? >= 1.0);
    ensure!(required(&page, "process_cpu_seconds_total", &[])? >= 0.0);
    let open = required(&page, "process_open_fds", &[])?;
    ensure!(open >= 3.0 && open < required(&page, "process_max_fds", &[])?);

    // Read again at the next render: twenty more open files show.
    let dir = tempfile::tempdir()?;
    let files = (0..20)
        .map(|index| std::fs::File::create(dir.path().join(index.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let later = required(&metrics.render(), "process_open_fds", &[])?;
    ensure!(
        later >= open + 20.0,
        "open fds {open} then {later} with 20 more files"
    );
    drop(files);
    Ok(())
}

#[test]
fn a_registry_without_process_metrics_shows_none() {
    let page = HttpMetrics::new().render();
    assert!(!page.contains("process_"), "{page}");
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

#[test]
fn postgres_pool_gauges_follow_connections_taken_and_returned() -> Result<()> {
    runtime()?.block_on(async {
        let db = TestDatabase::create().await?;
        let pool = PgPoolOptions::new()
            .max_connections(3)
            .connect(db.url())
            .await?;
        let metrics = HttpMetrics::new();
        metrics.on_render({
            let pool = pool.clone();
            move || pools::record_pg_pool("orders", &pool)
        });
        let first = pool.acquire().await?;
        let second = pool.acquire().await?;
        let page = metrics.render();
        let labels = |state| [("pool_name", "orders"), ("state", state)];
        ensure!(
            required(&page, pools::POOL_USAGE, &labels("used"))? == 2.0,
            "{page}"
        );
        ensure!(
            required(&page, pools::POOL_MAX, &[("pool_name", "orders")])? == 3.0,
            "{page}"
        );
        let idle_before = required(&page, pools::POOL_USAGE, &labels("idle"))?;
        drop((first, second));
        // A returned connection goes back to the idle queue from a spawned task.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let page = metrics.render();
            let used = required(&page, pools::POOL_USAGE, &labels("used"))?;
            let idle = required(&page, pools::POOL_USAGE, &labels("idle"))?;
            if used == 0.0 && idle >= idle_before + 2.0 {
                break;
            }
            if std::time::Instant::now() > deadline {
                bail!("connections not back in the pool: {page}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        pool.close().await;
        let page = metrics.render();
        ensure!(
            required(&page, pools::POOL_USAGE, &labels("idle"))? == 0.0,
            "{page}"
        );
        db.cleanup().await?;
        Ok(())
    })
}

#[test]
fn redis_pool_gauges_count_connections_in_use() -> Result<()> {
    runtime()?.block_on(async {
        let redis = TestRedis::create().await?;
        let pool = redis.pool().clone();
        let metrics = HttpMetrics::new();
        metrics.on_render({
            let pool = pool.clone();
            move || pools::record_redis_pool("idempotency", &pool)
        });
        let held = pool.get().await?;
        let page = metrics.render();
        let name = ("pool_name", "idempotency");
        ensure!(
            required(&page, pools::POOL_USAGE, &[name, ("state", "used")])? == 1.0,
            "{page}"
        );
        let max = required(&page, pools::POOL_MAX, &[name])?;
        ensure!(
            max == f64::from(u32::try_from(pool.status().max_size)?) && max >= 1.0,
            "{page}"
        );
        ensure!(
            required(&page, pools::POOL_PENDING, &[name])? == 0.0,
            "{page}"
        );
        drop(held);
        let page = metrics.render();
        ensure!(
            required(&page, pools::POOL_USAGE, &[name, ("state", "used")])? == 0.0,
            "{page}"
        );
        ensure!(
            required(&page, pools::POOL_USAGE, &[name, ("state", "idle")])? >= 1.0,
            "{page}"
        );
        redis.cleanup().await?;
        Ok(())
    })
}

#[test]
fn rabbitmq_connection_gauge_is_one_while_connected_and_zero_once_closed() -> Result<()> {
    runtime()?.block_on(async {
        let amqp = TestAmqp::create().await?;
        let connection =
            lapin::Connection::connect(amqp.url(), lapin::ConnectionProperties::default()).await?;
        let connection = std::sync::Arc::new(connection);
        let metrics = HttpMetrics::new();
        metrics.on_render({
            let connection = std::sync::Arc::clone(&connection);
            move || pools::record_amqp_connection("publisher", &connection)
        });
        let name = [("connection", "publisher")];
        let page = metrics.render();
        ensure!(
            required(&page, pools::AMQP_CONNECTION_UP, &name)? == 1.0,
            "{page}"
        );
        ensure!(
            required(&page, pools::AMQP_CONNECTION_BLOCKED, &name)? == 0.0,
            "{page}"
        );
        connection.close(200, "test done".into()).await?;
        let page = metrics.render();
        ensure!(
            required(&page, pools::AMQP_CONNECTION_UP, &name)? == 0.0,
            "{page}"
        );
        amqp.cleanup().await?;
        Ok(())
    })
}
