//! How fast a `platform_config` change reaches many services: 50 `LiveConfig` clients in one
//! process, each with its own change feed (its own LISTEN connection), watching the same key on
//! a private PostgreSQL cluster from the test kit (fsync off; the floor is measured on it too).
//! Each round issues one `UPDATE` and records, for every client, the time from issuing it until
//! the client's `Setting` shows the new value, and for a bare `sqlx::PgListener` on the trigger's
//! channel, the time until it receives the NOTIFY: the floor, measured on the same updates under
//! the same load. A second floor, for comparison with earlier runs, is measured in rounds of its
//! own after the clients' (each update's 50 client loads then overlap the next update).
//!
//! The fan-out paths follow in the same run: 50 and 500 clients that load through a private
//! PgBouncer in transaction pooling mode (in front of the same cluster) and learn of changes from
//! a relay through NATS (the machine's, 127.0.0.1:4222) or Redis (`REDIS_URL`), measured the same
//! way, with the PostgreSQL connections in use counted for every path.
//!
//! Percentiles need every sample, which criterion does not expose, so this bench prints its own
//! table: `cargo bench -p groundwork-benches --bench live_propagation`. With
//! `LIVE_PROPAGATION=fanout` only the fan-out table is measured (its LISTEN row in 200 updates,
//! as the fan-out rows, instead of the 300 rounds and the floors). `LIVE_PROPAGATION_PING=off`
//! builds the clients' pools with `test_before_acquire(false)`.
//!
//! `LIVE_PROPAGATION=breakdown` splits the 500-instance figure into its parts, in one run on a
//! cluster allowed 1,200 connections: (a) the transport alone — UPDATE issued → the relay's
//! message received by 500 bare subscribers, each on its own NATS or Redis connection, loading
//! nothing; (b) the load floor — 500 separate pools of one connection each run the feed's single
//! key query at the same instant, through PgBouncer and, for comparison, straight to
//! PostgreSQL, with no transport; (c) the full path — 500 `LiveConfig` clients as in the fan-out
//! table; and the LISTEN path with 500 clients measured the same way.
//! `LIVE_PROPAGATION_PGBOUNCER_POOL` sets PgBouncer's `default_pool_size` (20).

use std::time::{Duration, Instant};

use groundwork_live::config::{self, LiveConfig};
use groundwork_live::{Feed, FeedOptions, Relay, RelayOptions, RelayRole, Transport};
use groundwork_testkit::{InfraEnv, Service, TestCluster};
use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};

const CLIENTS: usize = 50;
/// Each round gives 50 client samples and one floor sample; a floor p99 needs a few hundred.
const ROUNDS: usize = 300;
const FLOOR_ROUNDS: usize = 300;
const KEY: &str = "order.expiry.minutes";
/// Updates measured per fan-out row with 50 clients (and for the LISTEN row with
/// `LIVE_PROPAGATION=fanout`); 500 clients get `FANOUT_ROUNDS / 5`.
const FANOUT_ROUNDS: usize = 200;
/// Instances in the breakdown, and the updates (or query rounds) measured for each of its rows.
const BREAKDOWN_CLIENTS: usize = 500;
const BREAKDOWN_ROUNDS: usize = 40;

fn or_exit<T, E: std::fmt::Display>(result: Result<T, E>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(error) => {
            eprintln!("live_propagation: {what}: {error}");
            std::process::exit(1);
        }
    }
}

async fn update(pool: &PgPool, value: i64) {
    or_exit(
        sqlx::query("UPDATE platform_config SET value = to_jsonb($1::BIGINT) WHERE env = 'production' AND key = $2")
            .bind(value)
            .bind(KEY)
            .execute(pool)
            .await,
        "update",
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    // Nearest-rank percentile over at most a few thousand samples.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// Waits until `client` shows `value` and returns when it did.
async fn seen(client: LiveConfig, value: i64) -> Instant {
    let setting = client.setting(KEY, 0_i64);
    let mut updates = client.updates();
    while *setting.get() != value {
        or_exit(updates.changed().await, "a feed stopped");
    }
    Instant::now()
}

/// Creates the table with 1,000 keys of environment `production`, `KEY` among them.
async fn seed(pool: &PgPool) {
    or_exit(
        sqlx::raw_sql(config::MIGRATIONS[0].1).execute(pool).await,
        "migration",
    );
    for i in 0..998 {
        or_exit(
            sqlx::query(
                "INSERT INTO platform_config (env, key, value) VALUES ('production', $1, '1')",
            )
            .bind(format!("service{}.setting{}", i / 20, i % 20))
            .execute(pool)
            .await,
            "seeding",
        );
    }
    or_exit(
        sqlx::query("INSERT INTO platform_config (env, key, value) VALUES ('production', $1, '0')")
            .bind(KEY)
            .execute(pool)
            .await,
        "seeding",
    );
}

/// Whether the clients' pools ping a connection before handing it out (sqlx's default): one
/// more round trip per load. `LIVE_PROPAGATION_PING=off` turns it off, as a pool behind
/// PgBouncer (which checks its server connections itself) may.
fn test_before_acquire() -> bool {
    std::env::var("LIVE_PROPAGATION_PING").map_or(true, |ping| ping != "off")
}

/// Starts the clients, each as a separate service would run it: its own small pool and feed.
async fn start_clients(url: &str) -> (Vec<LiveConfig>, Vec<Feed>) {
    let options = FeedOptions::default().poll_interval(Duration::from_hours(1));
    start_clients_with(url, CLIENTS, 2, &options).await
}

async fn start_clients_with(
    url: &str,
    count: usize,
    pool_size: u32,
    options: &FeedOptions,
) -> (Vec<LiveConfig>, Vec<Feed>) {
    let mut clients = Vec::with_capacity(count);
    let mut feeds = Vec::with_capacity(count);
    for _ in 0..count {
        let client_pool = or_exit(
            PgPoolOptions::new()
                .max_connections(pool_size)
                .test_before_acquire(test_before_acquire())
                .connect(url)
                .await,
            "client pool",
        );
        let options = options.clone();
        let (live, feed) = or_exit(
            config::watch(client_pool, "production", options).await,
            "watch",
        );
        clients.push(live);
        feeds.push(feed);
    }
    (clients, feeds)
}

/// A private cluster: 50 clients hold about 100 connections, the shared server's whole budget;
/// the 500 LISTEN clients of the breakdown hold 1,000.
async fn start_cluster(mode: &str) -> TestCluster {
    let started = if mode == "breakdown" {
        TestCluster::start_with_conf("max_connections = 1200").await
    } else {
        TestCluster::start().await
    };
    or_exit(started, "cannot start a PostgreSQL cluster")
}

async fn run() {
    let mode = std::env::var("LIVE_PROPAGATION").unwrap_or_default();
    let cluster = start_cluster(&mode).await;
    let url = cluster.url();
    let pool = or_exit(
        PgPoolOptions::new().max_connections(4).connect(&url).await,
        "pool",
    );
    seed(&pool).await;
    if mode == "breakdown" {
        breakdown(&cluster, &pool).await;
        return;
    }
    let (clients, feeds) = start_clients(&url).await;
    if mode == "fanout" {
        // Only the fan-out table, with the LISTEN row measured as its other rows are.
        let mut value = 0_i64;
        let samples = measure(&pool, &clients, FANOUT_ROUNDS, &mut value).await;
        let listen_connections = client_connections(&pool).await;
        stop_clients(clients, feeds).await;
        let (p50, p99) = (percentile(&samples, 50.0), percentile(&samples, 99.0));
        fan_out(&cluster, &pool, value, ms(p50), ms(p99), listen_connections).await;
        return;
    }

    // The floor: a bare listener on the trigger's channel.
    let mut listener = or_exit(PgListener::connect_with(&pool).await, "listener");
    or_exit(listener.listen(config::CHANNEL).await, "listen");

    let mut samples = Vec::with_capacity(CLIENTS * ROUNDS);
    let mut floor_same = Vec::with_capacity(ROUNDS);
    let mut value = 0_i64;
    for _ in 0..ROUNDS {
        value += 1;
        let waiting: Vec<_> = clients
            .iter()
            .map(|c| tokio::spawn(seen(c.clone(), value)))
            .collect();
        // Already waiting when the update is issued, like the clients.
        let bare = tokio::spawn(async move {
            let received = listener.recv().await;
            (listener, received, Instant::now())
        });
        let start = Instant::now();
        update(&pool, value).await;
        for task in waiting {
            let at = or_exit(task.await, "a waiting task");
            samples.push(at.saturating_duration_since(start));
        }
        let (returned, received, at) = or_exit(bare.await, "the bare listener's task");
        or_exit(received, "notification");
        listener = returned;
        floor_same.push(at.saturating_duration_since(start));
    }

    let mut floor = Vec::with_capacity(FLOOR_ROUNDS);
    for _ in 0..FLOOR_ROUNDS {
        value += 1;
        let start = Instant::now();
        update(&pool, value).await;
        or_exit(listener.recv().await, "notification");
        floor.push(start.elapsed());
    }

    samples.sort_unstable();
    floor_same.sort_unstable();
    floor.sort_unstable();
    let (p50, p99) = (percentile(&samples, 50.0), percentile(&samples, 99.0));
    let (s50, s99) = (percentile(&floor_same, 50.0), percentile(&floor_same, 99.0));
    let (f50, f99) = (percentile(&floor, 50.0), percentile(&floor, 99.0));
    println!(
        "live_propagation: {CLIENTS} clients x {ROUNDS} updates, 1,000 keys; floor: {FLOOR_ROUNDS} updates"
    );
    println!("| measurement | p50 | p99 |");
    println!("|---|---|---|");
    println!(
        "| UPDATE issued → visible in all {CLIENTS} clients' `Setting` | {:.2} ms | {:.2} ms |",
        ms(p50),
        ms(p99)
    );
    println!(
        "| UPDATE issued → NOTIFY received by a bare `PgListener`, same updates (floor) | {:.2} ms | {:.2} ms |",
        ms(s50),
        ms(s99)
    );
    println!(
        "| UPDATE issued → NOTIFY received by a bare `PgListener`, rounds of its own | {:.2} ms | {:.2} ms |",
        ms(f50),
        ms(f99)
    );
    println!(
        "ratio to the floor (same updates): p50 {:.1}x, p99 {:.1}x; to the floor in rounds of its own: p50 {:.1}x, p99 {:.1}x",
        ms(p50) / ms(s50),
        ms(p99) / ms(s99),
        ms(p50) / ms(f50),
        ms(p99) / ms(f99)
    );

    let listen_connections = client_connections(&pool).await;
    stop_clients(clients, feeds).await;
    fan_out(&cluster, &pool, value, ms(p50), ms(p99), listen_connections).await;
}

/// Client connections on the cluster other than the bench's own pool.
async fn client_connections(pool: &PgPool) -> i64 {
    let total: i64 = or_exit(
        sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
        )
        .fetch_one(pool)
        .await,
        "counting connections",
    );
    total - i64::from(pool.size())
}

/// Issues `rounds` updates and returns, for every client and update, the time from issuing it
/// until the client shows the value.
async fn measure(
    pool: &PgPool,
    clients: &[LiveConfig],
    rounds: usize,
    value: &mut i64,
) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(clients.len() * rounds);
    for _ in 0..rounds {
        *value += 1;
        let waiting: Vec<_> = clients
            .iter()
            .map(|c| tokio::spawn(seen(c.clone(), *value)))
            .collect();
        let start = Instant::now();
        update(pool, *value).await;
        for task in waiting {
            let at = or_exit(task.await, "a waiting task");
            samples.push(at.saturating_duration_since(start));
        }
    }
    samples.sort_unstable();
    samples
}

/// PgBouncer's `default_pool_size`: `LIVE_PROPAGATION_PGBOUNCER_POOL`, 20 by default.
fn pgbouncer_pool_size() -> u32 {
    std::env::var("LIVE_PROPAGATION_PGBOUNCER_POOL")
        .ok()
        .and_then(|size| size.parse().ok())
        .unwrap_or(20)
}

/// A PgBouncer in transaction pooling mode in front of the cluster, on a free port; killed and
/// removed by `stop`.
struct PrivatePgBouncer {
    child: std::process::Child,
    dir: std::path::PathBuf,
    port: u16,
}

impl PrivatePgBouncer {
    fn start(backend_port: u16) -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        let port = or_exit(
            std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()),
            "free port",
        )
        .port();
        let dir = std::env::temp_dir().join(format!("gw-bench-pgbouncer-{}", std::process::id()));
        or_exit(std::fs::create_dir_all(&dir), "pgbouncer dir");
        // PgBouncer runs as `postgres` when the bench runs as root; it only reads these files.
        or_exit(
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)),
            "pgbouncer dir mode",
        );
        let users = dir.join("users.txt");
        or_exit(
            std::fs::write(&users, "\"postgres\" \"\"\n"),
            "pgbouncer users",
        );
        let config = dir.join("pgbouncer.ini");
        or_exit(
            std::fs::write(
                &config,
                format!(
                    "[databases]\n* = host=127.0.0.1 port={backend_port}\n[pgbouncer]\n\
                     listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                     auth_type = trust\nauth_file = {}\npool_mode = transaction\n\
                     max_client_conn = 2000\ndefault_pool_size = {}\n\
                     ignore_startup_parameters = extra_float_digits,options\n",
                    users.display(),
                    pgbouncer_pool_size(),
                ),
            ),
            "pgbouncer config",
        );
        for file in [&users, &config] {
            or_exit(
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)),
                "pgbouncer file mode",
            );
        }
        let is_root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|out| out.stdout.trim_ascii() == b"0");
        // `-u` switches user in the same process, so that `stop` kills PgBouncer itself (through
        // `runuser` it would kill only `runuser`, leaving PgBouncer running).
        let mut command = std::process::Command::new("pgbouncer");
        if is_root {
            command.args(["-u", "postgres"]);
        }
        let child = or_exit(
            command
                .arg("-q")
                .arg(&config)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn(),
            "cannot start pgbouncer (apt-get install pgbouncer)",
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                eprintln!("live_propagation: pgbouncer does not answer on port {port}");
                std::process::exit(1);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, dir, port }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The fan-out paths: relay + NATS or Redis, clients through PgBouncer.
async fn fan_out(
    cluster: &TestCluster,
    pool: &PgPool,
    mut value: i64,
    listen_p50: f64,
    listen_p99: f64,
    listen_connections: i64,
) {
    let pgbouncer = PrivatePgBouncer::start(cluster.port());
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", pgbouncer.port);
    let mut rows = vec![format!(
        "| LISTEN (a connection per client) | {CLIENTS} | {listen_p50:.2} ms | {listen_p99:.2} ms | {listen_connections} |"
    )];
    for (name, transport) in transports() {
        let namespace = format!("gwbench.p{}", std::process::id());
        let relay = start_relay(pool, &transport, &namespace).await;
        for (count, rounds) in [(CLIENTS, FANOUT_ROUNDS), (500, FANOUT_ROUNDS / 5)] {
            let (clients, feeds) = start_subscribers(&url, count, &transport, &namespace).await;
            let samples = measure(pool, &clients, rounds, &mut value).await;
            let connections = client_connections(pool).await;
            rows.push(format!(
                "| {name} relay, clients through PgBouncer (transaction) | {count} | {:.2} ms | {:.2} ms | {connections} |",
                ms(percentile(&samples, 50.0)),
                ms(percentile(&samples, 99.0)),
            ));
            stop_clients(clients, feeds).await;
            // Let PgBouncer's client connections go before the next count.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        relay.shutdown().await;
    }
    pgbouncer.stop();
    println!();
    println!("live_propagation fan-out: UPDATE issued → visible in every client's `Setting`");
    println!("| path | clients | p50 | p99 | PostgreSQL client connections |");
    println!("|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}

/// The feed's query for one key (`config::watch`'s load of a changed key), as its text.
const KEY_QUERY: &str = "SELECT key, value, revision, description, updated_by FROM platform_config \
     WHERE env = E'production' AND key = E'order.expiry.minutes'";

/// The breakdown of the 500-instance figure: transport alone, load floor, full path, and LISTEN.
async fn breakdown(cluster: &TestCluster, pool: &PgPool) {
    let mut value = 0_i64;
    println!(
        "live_propagation breakdown: {BREAKDOWN_CLIENTS} instances, {BREAKDOWN_ROUNDS} updates (or query rounds) each; PgBouncer default_pool_size {}; clients' pools {}",
        pgbouncer_pool_size(),
        if test_before_acquire() {
            "ping before acquire"
        } else {
            "without the ping"
        }
    );
    println!("| measurement | path | instances | p50 | p99 | PostgreSQL client connections |");
    println!("|---|---|---|---|---|---|");
    let emit = |row: String| {
        use std::io::Write as _;
        println!("{row}");
        let _ = std::io::stdout().flush();
    };
    let row = |what: &str, path: &str, samples: &[Duration], connections: i64| {
        format!(
            "| {what} | {path} | {BREAKDOWN_CLIENTS} | {:.2} ms | {:.2} ms | {connections} |",
            ms(percentile(samples, 50.0)),
            ms(percentile(samples, 99.0)),
        )
    };

    // (b) The load floor, straight to PostgreSQL and through PgBouncer.
    let samples = load_floor(&cluster.url()).await;
    emit(row(
        "(b) load floor: 500 pools run the key query at once",
        "straight to PostgreSQL",
        &samples.0,
        samples.1,
    ));
    let pgbouncer = PrivatePgBouncer::start(cluster.port());
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", pgbouncer.port);
    let samples = load_floor(&url).await;
    emit(row(
        "(b) load floor: 500 pools run the key query at once",
        "through PgBouncer (transaction)",
        &samples.0,
        samples.1,
    ));

    for (name, transport) in transports() {
        let namespace = format!("gwbench.b{}", std::process::id());
        let relay = start_relay(pool, &transport, &namespace).await;

        // (a) The transport alone: bare subscribers, no load.
        let samples = transport_only(pool, &transport, &namespace, &mut value).await;
        let connections = client_connections(pool).await;
        emit(row(
            "(a) transport: UPDATE → relay's message received by every subscriber",
            &format!("{name} relay"),
            &samples,
            connections,
        ));

        // (c) The full path.
        let (clients, feeds) =
            start_subscribers(&url, BREAKDOWN_CLIENTS, &transport, &namespace).await;
        let samples = measure(pool, &clients, BREAKDOWN_ROUNDS, &mut value).await;
        let connections = client_connections(pool).await;
        emit(row(
            "(c) full path: UPDATE → visible in every client",
            &format!("{name} relay, clients through PgBouncer (transaction)"),
            &samples,
            connections,
        ));
        stop_clients(clients, feeds).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        relay.shutdown().await;
    }
    pgbouncer.stop();

    listen_path(cluster, pool, &mut value).await;
}

/// The breakdown's LISTEN row: 500 clients, each with its own listener and pool, straight to
/// PostgreSQL.
async fn listen_path(cluster: &TestCluster, pool: &PgPool, value: &mut i64) {
    let row = |samples: &[Duration], connections: i64| {
        format!(
            "| (c) full path: UPDATE → visible in every client | LISTEN (a connection per client) | {BREAKDOWN_CLIENTS} | {:.2} ms | {:.2} ms | {connections} |",
            ms(percentile(samples, 50.0)),
            ms(percentile(samples, 99.0)),
        )
    };
    // LISTEN: each client its own listener and pool, straight to PostgreSQL; last, as it needs
    // 1,000 connections. A pool of two, as the 50 LISTEN clients': the listener takes its
    // connection from the pool and keeps it, so a pool of one would leave none for the loads.
    let options = FeedOptions::default().poll_interval(Duration::from_hours(1));
    let (clients, feeds) = start_clients_with(&cluster.url(), BREAKDOWN_CLIENTS, 2, &options).await;
    let measured = tokio::time::timeout(
        Duration::from_mins(2),
        measure(pool, &clients, BREAKDOWN_ROUNDS, value),
    )
    .await;
    let connections = client_connections(pool).await;
    match measured {
        Ok(samples) => println!("{}", row(&samples, connections)),
        Err(_) => println!(
            "| (c) full path | LISTEN (a connection per client) | {BREAKDOWN_CLIENTS} | not every client saw the updates within 120 s | | {connections} |"
        ),
    }
    stop_clients(clients, feeds).await;
}

/// The fan-out transports measured, by name: the machine's NATS and the infra's Redis.
fn transports() -> [(&'static str, Transport); 2] {
    let redis_url = or_exit(InfraEnv::discover(), "infra env").url(Service::Redis);
    [
        (
            "NATS",
            Transport::Nats {
                url: "nats://127.0.0.1:4222".to_owned(),
            },
        ),
        ("Redis", Transport::Redis { url: redis_url }),
    ]
}

/// Starts `count` clients through `url` (pools of one connection) that learn of changes on
/// `transport`, and waits until every one has heard the relay (its first message makes a client
/// resync once more).
async fn start_subscribers(
    url: &str,
    count: usize,
    transport: &Transport,
    namespace: &str,
) -> (Vec<LiveConfig>, Vec<Feed>) {
    let options = FeedOptions::default()
        .poll_interval(Duration::from_hours(1))
        .transport(transport.clone())
        .namespace(namespace);
    let started = start_clients_with(url, count, 1, &options).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    started
}

/// Stops the clients' feeds and drops the clients.
async fn stop_clients(clients: Vec<LiveConfig>, feeds: Vec<Feed>) {
    for feed in feeds {
        feed.shutdown().await;
    }
    drop(clients);
}

/// Starts a relay on `transport` and waits until it leads.
async fn start_relay(pool: &PgPool, transport: &Transport, namespace: &str) -> Relay {
    let relay = or_exit(
        Relay::start(
            pool.clone(),
            RelayOptions::new(transport.clone()).namespace(namespace),
        ),
        "relay",
    );
    let mut roles = relay.roles();
    or_exit(
        tokio::time::timeout(
            Duration::from_secs(30),
            roles.wait_for(|role| *role == RelayRole::Leader),
        )
        .await,
        "the relay never led",
    )
    .ok();
    relay
}

/// 500 pools of one connection each, as the clients' (the same ping setting), run the key query
/// all at once, `BREAKDOWN_ROUNDS` times: the time from the start of a round until each query's
/// rows are in, and the PostgreSQL client connections meanwhile.
async fn load_floor(url: &str) -> (Vec<Duration>, i64) {
    let mut pools = Vec::with_capacity(BREAKDOWN_CLIENTS);
    for _ in 0..BREAKDOWN_CLIENTS {
        let client_pool = or_exit(
            PgPoolOptions::new()
                .max_connections(1)
                .test_before_acquire(test_before_acquire())
                .connect(url)
                .await,
            "floor pool",
        );
        pools.push(client_pool);
    }
    let mut samples = Vec::with_capacity(BREAKDOWN_CLIENTS * BREAKDOWN_ROUNDS);
    let mut connections = 0;
    for round in 0..BREAKDOWN_ROUNDS {
        let (go, _) = tokio::sync::watch::channel(());
        let tasks: Vec<_> = pools
            .iter()
            .map(|client_pool| {
                let client_pool = client_pool.clone();
                let mut go = go.subscribe();
                tokio::spawn(async move {
                    or_exit(go.changed().await, "the start signal");
                    let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(KEY_QUERY))
                        .fetch_all(&client_pool)
                        .await;
                    let at = Instant::now();
                    or_exit(rows, "key query");
                    at
                })
            })
            .collect();
        let start = Instant::now();
        go.send_replace(());
        for task in tasks {
            let at = or_exit(task.await, "a query task");
            samples.push(at.saturating_duration_since(start));
        }
        if round == 0 {
            connections = count_connections(url).await;
        }
        // The next round starts from idle, as the next change would.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for client_pool in pools {
        client_pool.close().await;
    }
    samples.sort_unstable();
    (samples, connections)
}

/// PostgreSQL's client backends, through a connection of its own to `url`'s server, less itself.
async fn count_connections(url: &str) -> i64 {
    let pool = or_exit(
        PgPoolOptions::new().max_connections(1).connect(url).await,
        "counting pool",
    );
    let total: i64 = or_exit(
        sqlx::raw_sql(sqlx::AssertSqlSafe(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
        ))
        .fetch_one(&pool)
        .await
        .and_then(|row| sqlx::Row::try_get(&row, 0)),
        "counting connections",
    );
    pool.close().await;
    total - 1
}

/// 500 bare subscribers to the relay's subject, each on its own connection: for each of
/// `BREAKDOWN_ROUNDS` updates, the time from issuing it until each subscriber has the relay's
/// message naming the change (parsed as JSON, as a feed does), with no load.
async fn transport_only(
    pool: &PgPool,
    transport: &Transport,
    namespace: &str,
    value: &mut i64,
) -> Vec<Duration> {
    use futures_util::StreamExt as _;

    let subject = format!("{namespace}.{}", config::CHANNEL);
    let (heard_tx, mut heard) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let mut tasks = Vec::with_capacity(BREAKDOWN_CLIENTS);
    for _ in 0..BREAKDOWN_CLIENTS {
        let mut messages: futures_util::stream::BoxStream<'static, Vec<u8>> = match transport {
            Transport::Nats { url } => {
                let client = or_exit(async_nats::connect(url.as_str()).await, "NATS connect");
                let subscriber = or_exit(client.subscribe(subject.clone()).await, "subscribe");
                subscriber
                    .map(move |message| {
                        let _ = &client;
                        message.payload.to_vec()
                    })
                    .boxed()
            }
            Transport::Redis { url } => {
                let mut pubsub = or_exit(
                    async {
                        deadpool_redis::redis::Client::open(url.as_str())?
                            .get_async_pubsub()
                            .await
                    }
                    .await,
                    "Redis connect",
                );
                or_exit(pubsub.subscribe(&subject).await, "subscribe");
                pubsub
                    .into_on_message()
                    .map(|message| message.get_payload_bytes().to_vec())
                    .boxed()
            }
            _ => {
                eprintln!("live_propagation: no bare subscriber for {transport:?}");
                std::process::exit(1);
            }
        };
        let heard_tx = heard_tx.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(body) = messages.next().await {
                let message: serde_json::Value =
                    or_exit(serde_json::from_slice(&body), "relay message");
                // Heartbeats carry no payload.
                if message.get("payload").is_some() && heard_tx.send(Instant::now()).is_err() {
                    break;
                }
            }
        }));
    }
    drop(heard_tx);
    // Every subscription is in place once the relay's heartbeats reach the subscribers.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut samples = Vec::with_capacity(BREAKDOWN_CLIENTS * BREAKDOWN_ROUNDS);
    for _ in 0..BREAKDOWN_ROUNDS {
        *value += 1;
        let start = Instant::now();
        update(pool, *value).await;
        for _ in 0..BREAKDOWN_CLIENTS {
            let at = or_exit(
                tokio::time::timeout(Duration::from_secs(10), heard.recv())
                    .await
                    .map_err(|_| "10 s without a message".to_owned())
                    .and_then(|at| at.ok_or_else(|| "subscribers gone".to_owned())),
                "transport",
            );
            samples.push(at.saturating_duration_since(start));
        }
    }
    for task in tasks {
        task.abort();
    }
    samples.sort_unstable();
    samples
}

fn main() {
    let runtime = or_exit(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
        "runtime",
    );
    runtime.block_on(run());
}
