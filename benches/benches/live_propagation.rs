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

async fn run() {
    // A private cluster: 50 clients hold about 100 connections, the shared server's whole budget.
    let cluster = or_exit(
        TestCluster::start().await,
        "cannot start a PostgreSQL cluster",
    );
    let url = cluster.url();
    let pool = or_exit(
        PgPoolOptions::new().max_connections(4).connect(&url).await,
        "pool",
    );
    seed(&pool).await;
    let (clients, feeds) = start_clients(&url).await;
    if std::env::var("LIVE_PROPAGATION").is_ok_and(|only| only == "fanout") {
        // Only the fan-out table, with the LISTEN row measured as its other rows are.
        let mut value = 0_i64;
        let samples = measure(&pool, &clients, FANOUT_ROUNDS, &mut value).await;
        let listen_connections = client_connections(&pool).await;
        for feed in feeds {
            feed.shutdown().await;
        }
        drop(clients);
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
    for feed in feeds {
        feed.shutdown().await;
    }
    drop(clients);
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
                     max_client_conn = 2000\ndefault_pool_size = 20\n\
                     ignore_startup_parameters = extra_float_digits,options\n",
                    users.display()
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
    let redis_url = or_exit(InfraEnv::discover(), "infra env").url(Service::Redis);
    let pgbouncer = PrivatePgBouncer::start(cluster.port());
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", pgbouncer.port);
    let mut rows = vec![format!(
        "| LISTEN (a connection per client) | {CLIENTS} | {listen_p50:.2} ms | {listen_p99:.2} ms | {listen_connections} |"
    )];
    for (name, transport) in [
        (
            "NATS",
            Transport::Nats {
                url: "nats://127.0.0.1:4222".to_owned(),
            },
        ),
        ("Redis", Transport::Redis { url: redis_url }),
    ] {
        let namespace = format!("gwbench.p{}", std::process::id());
        let relay = or_exit(
            Relay::start(
                pool.clone(),
                RelayOptions::new(transport.clone()).namespace(namespace.as_str()),
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
        for (count, rounds) in [(CLIENTS, FANOUT_ROUNDS), (500, FANOUT_ROUNDS / 5)] {
            let options = FeedOptions::default()
                .poll_interval(Duration::from_hours(1))
                .transport(transport.clone())
                .namespace(namespace.as_str());
            let (clients, feeds) = start_clients_with(&url, count, 1, &options).await;
            // Every client has heard the relay (its first message makes it resync once more).
            tokio::time::sleep(Duration::from_secs(3)).await;
            let samples = measure(pool, &clients, rounds, &mut value).await;
            let connections = client_connections(pool).await;
            rows.push(format!(
                "| {name} relay, clients through PgBouncer (transaction) | {count} | {:.2} ms | {:.2} ms | {connections} |",
                ms(percentile(&samples, 50.0)),
                ms(percentile(&samples, 99.0)),
            ));
            for feed in feeds {
                feed.shutdown().await;
            }
            drop(clients);
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
