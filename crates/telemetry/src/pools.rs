//! Gauges of the connections a service holds, read when `/metrics` is scraped: an sqlx `PgPool`
//! (`postgres` feature), a deadpool-redis `Pool` (`redis` feature) and a lapin `Connection`
//! (`amqp` feature).
//!
//! Each function sets its gauges through the `metrics` facade, so it records into whatever
//! recorder is current; register it with `HttpMetrics::on_render`
//! (`http` feature) to have it run on every scrape of that page:
//!
//! ```no_run
//! # #[cfg(all(feature = "http", feature = "postgres"))]
//! # fn wire(db: sqlx::PgPool) {
//! let metrics = groundwork_telemetry::http::HttpMetrics::new();
//! metrics.on_render(move || groundwork_telemetry::pools::record_pg_pool("postgres", &db));
//! # }
//! ```
//!
//! The pool gauges carry the names and labels of OpenTelemetry's database-client connection-pool
//! conventions as Prometheus shows them (what the OpenTelemetry Java agent exports for `HikariCP`,
//! so stock dashboards read them): `db_client_connections_usage{pool_name, state="idle"|"used"}`,
//! `db_client_connections_max{pool_name}` and, where the pool knows it,
//! `db_client_connections_pending_requests{pool_name}`. The pool's size is the sum of both
//! states.

/// Connections of a pool by `state` (`idle` or `used`), labelled `pool_name`.
pub const POOL_USAGE: &str = "db_client_connections_usage";
/// The most connections a pool opens, labelled `pool_name`.
pub const POOL_MAX: &str = "db_client_connections_max";
/// Callers waiting for a connection of a pool, labelled `pool_name` (deadpool only: sqlx does
/// not report it).
pub const POOL_PENDING: &str = "db_client_connections_pending_requests";
/// 1 while a RabbitMQ connection is open and usable, else 0, labelled `connection`.
pub const AMQP_CONNECTION_UP: &str = "rabbitmq_connection_up";
/// 1 while the broker blocks a RabbitMQ connection's publishes (a memory or disk alarm), else 0,
/// labelled `connection`.
pub const AMQP_CONNECTION_BLOCKED: &str = "rabbitmq_connection_blocked";

#[cfg(any(feature = "postgres", feature = "redis"))]
fn describe_pool() {
    metrics::describe_gauge!(
        POOL_USAGE,
        "Connections of the pool, by state (idle or used)."
    );
    metrics::describe_gauge!(POOL_MAX, "The most connections the pool opens.");
}

/// Records the gauges of an sqlx PostgreSQL pool named `pool_name`: idle and used connections
/// and the maximum.
#[cfg(feature = "postgres")]
pub fn record_pg_pool(pool_name: &str, pool: &sqlx::PgPool) {
    describe_pool();
    let size = f64::from(pool.size());
    // The idle count is read after the size: a connection taken in between makes `used` one too
    // high for this scrape, never negative.
    #[expect(
        clippy::cast_precision_loss,
        reason = "a pool holds far fewer than 2^52 connections"
    )]
    let idle = (pool.num_idle() as f64).min(size);
    set_pool(pool_name, idle, size - idle);
    metrics::gauge!(POOL_MAX, "pool_name" => pool_name.to_owned())
        .set(f64::from(pool.options().get_max_connections()));
}

/// Records the gauges of a deadpool-redis pool named `pool_name`: idle (available) and used
/// connections, the maximum, and the callers waiting for a connection.
#[cfg(feature = "redis")]
pub fn record_redis_pool(pool_name: &str, pool: &deadpool_redis::Pool) {
    record_redis_status(pool_name, pool.status());
}

/// Records the gauges of a Redis pool named `pool_name` from its `status`, for pools other than
/// a plain deadpool-redis one (groundwork-connect's `RedisPool` of any topology:
/// `record_redis_status("redis", pool.status())`).
#[cfg(feature = "redis")]
#[expect(
    clippy::cast_precision_loss,
    reason = "a pool holds far fewer than 2^52 connections"
)]
pub fn record_redis_status(pool_name: &str, status: deadpool_redis::Status) {
    describe_pool();
    metrics::describe_gauge!(
        POOL_PENDING,
        "Callers waiting for a connection of the pool."
    );
    let idle = status.available.min(status.size);
    set_pool(
        pool_name,
        idle as f64,
        status.size.saturating_sub(idle) as f64,
    );
    metrics::gauge!(POOL_MAX, "pool_name" => pool_name.to_owned()).set(status.max_size as f64);
    metrics::gauge!(POOL_PENDING, "pool_name" => pool_name.to_owned()).set(status.waiting as f64);
}

#[cfg(any(feature = "postgres", feature = "redis"))]
fn set_pool(pool_name: &str, idle: f64, used: f64) {
    metrics::gauge!(POOL_USAGE, "pool_name" => pool_name.to_owned(), "state" => "idle").set(idle);
    metrics::gauge!(POOL_USAGE, "pool_name" => pool_name.to_owned(), "state" => "used").set(used);
}

/// Records the state of a lapin (RabbitMQ) connection named `connection`: up (connected) or not,
/// and blocked by the broker or not.
#[cfg(feature = "amqp")]
pub fn record_amqp_connection(connection: &str, amqp: &lapin::Connection) {
    metrics::describe_gauge!(
        AMQP_CONNECTION_UP,
        "1 while the RabbitMQ connection is open and usable, else 0."
    );
    metrics::describe_gauge!(
        AMQP_CONNECTION_BLOCKED,
        "1 while the broker blocks the connection's publishes (resource alarm), else 0."
    );
    let status = amqp.status();
    metrics::gauge!(AMQP_CONNECTION_UP, "connection" => connection.to_owned())
        .set(if status.connected() { 1.0 } else { 0.0 });
    metrics::gauge!(AMQP_CONNECTION_BLOCKED, "connection" => connection.to_owned())
        .set(if status.blocked() { 1.0 } else { 0.0 });
}
