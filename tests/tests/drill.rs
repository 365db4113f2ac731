//! The fault drill: orders go through the api-gateway at a steady rate while, one after the
//! other, the gateway's PostgreSQL restarts, Redis restarts, RabbitMQ closes the services'
//! connections, the order-worker and the analytics-ingest are killed with `SIGKILL` and started
//! again, and ClickHouse stops and starts.
//!
//! It checks that nothing is lost: every order that got a 201 is processed exactly once and
//! counted exactly once in ClickHouse, no order whose request failed was half-created, nothing
//! was dead-lettered, and every service recovers without a restart (except the killed ones),
//! its readiness going 503 during the fault and 200 again after. It prints, per fault, the
//! requests that failed, the time to recover and the rate held (see RELIABILITY.md).
//!
//! Every server the drill takes away is its own: a private PostgreSQL cluster, a private Redis
//! and ClickHouse server, and a private virtual host on the machine's RabbitMQ (whose
//! connections it closes with `rabbitmqctl`, so the broker itself keeps running). It needs
//! root (for `rabbitmqctl` and to run the servers as their users) and Debian's
//! `postgresql`, `redis-server`, `rabbitmq-server` and `clickhouse-server`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use groundwork_testkit::{
    InfraEnv, TestClickHouse, TestClickHouseServer, TestCluster, TestRedisServer,
};
use groundwork_tests::service::{
    GATEWAY, INGEST, ServiceProcess as Service, WORKER, build_example_services, eventually,
    get_json, request,
};
use serde_json::Value;

/// Orders sent per second.
const RATE: u32 = 20;
/// How long each server stays away.
const OUTAGE: Duration = Duration::from_secs(3);
/// Steady load before the first fault and after each recovery.
const STEADY: Duration = Duration::from_secs(6);
/// Generous bound for a service to be ready again after a fault ended.
const RECOVERY: Duration = Duration::from_mins(1);
/// Generous bound for every accepted order to be processed and counted after the load stops.
const SETTLE: Duration = Duration::from_mins(2);
/// The tenant of every order the drill sends.
const TENANT: &str = "drill";

/// One order request and its answer.
#[derive(Debug, Clone)]
struct Sent {
    key: String,
    at: Duration,
    /// The HTTP status, or `None` when no answer came (connection refused or reset).
    status: Option<u16>,
    id: Option<i64>,
}

/// One look at a service's readiness: the status, or `None` when it did not answer.
#[derive(Debug, Clone, Copy)]
struct Probe {
    at: Duration,
    service: usize,
    status: Option<u16>,
}

/// What one fault did, for the report.
struct FaultReport {
    name: &'static str,
    started: Duration,
    /// When the fault was over: the server back, the permission restored, the process started.
    ended: Duration,
    /// When every affected service was ready again and an order got a 201.
    recovered: Duration,
    /// Services whose readiness had to go 503 (or stop answering) during the fault.
    affected: Vec<usize>,
}

const NAMES: [&str; 3] = ["api-gateway", "order-worker", "analytics-ingest"];

/// How long a service may take to answer `/health/ready` after it was started.
const READY: Duration = Duration::from_mins(1);

/// The services' environments: `servers` (every service ignores the variables it has no
/// setting for), JSON logs, no drain delay, short retry back-offs and batch waits, and exchange
/// and queue names of the drill's own.
struct StackEnv {
    gateway: BTreeMap<String, String>,
    worker: BTreeMap<String, String>,
    ingest: BTreeMap<String, String>,
}

fn stack_env(servers: &[(&str, &str)]) -> StackEnv {
    let common = [
        ("APP_ENV", "test"),
        ("LOG_FORMAT", "json"),
        ("SHUTDOWN_DRAIN_MS", "0"),
        ("CONFIG_ENV", "test"),
        ("ORDERS_EXCHANGE", "drill.orders"),
        ("ANALYTICS_EXCHANGE", "drill.analytics"),
    ];
    let with = |name: &str, own: &[(&str, &str)]| -> BTreeMap<String, String> {
        servers
            .iter()
            .chain(&common)
            .chain(own)
            .chain(&[("SERVICE_NAME", name)])
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    StackEnv {
        gateway: with(NAMES[0], &[]),
        worker: with(
            NAMES[1],
            &[
                ("QUEUE", "drill.order-created"),
                ("DEAD_LETTER_EXCHANGE", "drill.worker-dlx"),
                ("DEAD_LETTER_QUEUE", "drill.order-created.dlq"),
                ("RETRY_BACKOFF_MS", "50"),
            ],
        ),
        ingest: with(
            NAMES[2],
            &[
                ("QUEUE", "drill.order-processed"),
                ("DEAD_LETTER_EXCHANGE", "drill.ingest-dlx"),
                ("DEAD_LETTER_QUEUE", "drill.order-processed.dlq"),
                ("BATCH_MAX_WAIT_MS", "100"),
            ],
        ),
    }
}

/// The drill's private RabbitMQ virtual host on the machine's broker, deleted on drop.
struct Vhost {
    name: String,
    user: String,
    url: String,
}

impl Vhost {
    fn create(shared_url: &str) -> Result<Self> {
        let mut url = url::Url::parse(shared_url)?;
        let user = url.username().to_owned();
        let name = format!("gw-drill-{}", std::process::id());
        rabbitmqctl(&["add_vhost", &name])?;
        rabbitmqctl(&["set_permissions", "-p", &name, &user, ".*", ".*", ".*"])?;
        url.set_path(&format!("/{name}"));
        Ok(Self {
            name,
            user,
            url: url.to_string(),
        })
    }

    /// Takes the user's permissions on the vhost away, so reconnections are refused, and closes
    /// every connection to the vhost.
    fn cut(&self) -> Result<usize> {
        rabbitmqctl(&["clear_permissions", "-p", &self.name, &self.user])?;
        let listing = rabbitmqctl(&["list_connections", "-q", "pid", "vhost"])?;
        let mut closed = 0;
        for line in listing.lines() {
            let mut fields = line.split('\t');
            if let (Some(pid), Some(vhost)) = (fields.next(), fields.next())
                && vhost.trim() == self.name
            {
                rabbitmqctl(&["close_connection", pid.trim(), "fault drill"])?;
                closed += 1;
            }
        }
        Ok(closed)
    }

    fn restore(&self) -> Result<()> {
        rabbitmqctl(&[
            "set_permissions",
            "-p",
            &self.name,
            &self.user,
            ".*",
            ".*",
            ".*",
        ])?;
        Ok(())
    }

    /// Messages waiting in `queue` of the vhost.
    fn messages(&self, queue: &str) -> Result<u64> {
        let listing = rabbitmqctl(&["list_queues", "-q", "-p", &self.name, "name", "messages"])?;
        for line in listing.lines() {
            let mut fields = line.split('\t');
            if fields.next().map(str::trim) == Some(queue) {
                return Ok(fields.next().unwrap_or("0").trim().parse()?);
            }
        }
        bail!("no queue {queue} in vhost {}:\n{listing}", self.name)
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        if let Err(error) = rabbitmqctl(&["delete_vhost", &self.name]) {
            eprintln!("cannot delete the drill's vhost: {error:#}");
        }
    }
}

fn rabbitmqctl(args: &[&str]) -> Result<String> {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .context("cannot run rabbitmqctl (the drill needs rabbitmq-server installed and root)")?;
    if !output.status.success() {
        bail!(
            "rabbitmqctl {} failed: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Sends orders at [`RATE`] until `stop`, each with its own idempotency key and on its own task,
/// so a slow answer does not hold the rate back.
async fn send_orders(
    gateway: SocketAddr,
    started: Instant,
    sent: Arc<Mutex<Vec<Sent>>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / RATE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut requests = tokio::task::JoinSet::new();
    for n in 0_u64.. {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stop| *stop) => break,
        }
        let sent = Arc::clone(&sent);
        requests.spawn(async move {
            let key = format!("drill-{n}");
            let at = started.elapsed();
            let amount = format!("{}.{:02}", 10 + n % 90, n % 100);
            let body = format!(r#"{{"tenant":"{TENANT}","amount":{amount}}}"#);
            let answer = request(
                gateway,
                "POST /v1/orders",
                Some(&body),
                &[("Idempotency-Key", &key)],
            )
            .await;
            let (status, id) = match answer {
                Ok((status, body)) => {
                    let id = serde_json::from_str::<Value>(&body)
                        .ok()
                        .and_then(|created| created["id"].as_i64())
                        .filter(|_| status == 201);
                    (Some(status), id)
                }
                Err(_) => (None, None),
            };
            if let Ok(mut sent) = sent.lock() {
                sent.push(Sent {
                    key,
                    at,
                    status,
                    id,
                });
            }
        });
        while requests.try_join_next().is_some() {}
    }
    while requests.join_next().await.is_some() {}
}

/// Looks at one service's `/health/ready` every 100 ms until `stop`; each look is recorded
/// with the time it was sent.
async fn watch_readiness(
    service: usize,
    address: SocketAddr,
    started: Instant,
    probes: Arc<Mutex<Vec<Probe>>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let at = started.elapsed();
        let answer = tokio::time::timeout(
            Duration::from_secs(1),
            request(address, "GET /health/ready", None, &[]),
        )
        .await;
        let status = match answer {
            Ok(Ok((status, _))) => Some(status),
            _ => None,
        };
        if let Ok(mut probes) = probes.lock() {
            probes.push(Probe {
                at,
                service,
                status,
            });
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

/// Waits until every service in `affected` is ready and an order sent after `since` got a 201.
async fn wait_recovered(
    addresses: [SocketAddr; 3],
    affected: &[usize],
    sent: &Arc<Mutex<Vec<Sent>>>,
    since: Duration,
    what: &str,
) -> Result<()> {
    eventually(RECOVERY, what, || async {
        for service in affected {
            match request(addresses[*service], "GET /health/ready", None, &[]).await {
                Ok((200, _)) => {}
                _ => return Ok(None),
            }
        }
        let created = sent
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .iter()
            .any(|order| order.at > since && order.status == Some(201));
        Ok(created.then_some(()))
    })
    .await?;
    Ok(())
}

// One drill, read top to bottom: splitting it would hide the order of the faults.
#[allow(clippy::too_many_lines)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_survive_restarts_of_every_server_and_killed_consumers() -> Result<()> {
    let bin = tokio::task::spawn_blocking(build_example_services).await??;
    let workdir = tempfile::tempdir()?;

    let postgres = TestCluster::start().await?;
    let mut redis = TestRedisServer::start().await?;
    let shared = InfraEnv::discover()?.url(groundwork_testkit::Service::RabbitMq);
    let vhost = tokio::task::spawn_blocking(move || Vhost::create(&shared)).await??;
    let clickhouse_server = TestClickHouseServer::start().await?;
    let clickhouse = TestClickHouse::create_on(&clickhouse_server.url()).await?;

    let env = stack_env(&[
        ("DATABASE_URL", &postgres.url()),
        ("REDIS_URL", &redis.url()),
        ("REDIS_KEY_PREFIX", "drill:"),
        ("RABBITMQ_URL", &vhost.url),
        ("CLICKHOUSE_URL", clickhouse.url()),
        ("CLICKHOUSE_DATABASE", clickhouse.database()),
    ]);
    let gateway = Service::start(&bin.join(GATEWAY), NAMES[0], workdir.path(), &env.gateway)?;
    gateway.wait_ok("/health/ready", READY).await?;
    let mut worker = Service::start(&bin.join(WORKER), NAMES[1], workdir.path(), &env.worker)?;
    let mut ingest = Service::start(&bin.join(INGEST), NAMES[2], workdir.path(), &env.ingest)?;
    worker.wait_ok("/health/ready", READY).await?;
    ingest.wait_ok("/health/ready", READY).await?;
    let addresses = [gateway.address, worker.address, ingest.address];

    let started = Instant::now();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let sent = Arc::new(Mutex::new(Vec::new()));
    let probes = Arc::new(Mutex::new(Vec::new()));
    let load = tokio::spawn(send_orders(
        gateway.address,
        started,
        Arc::clone(&sent),
        stopped.clone(),
    ));
    let watchers: Vec<_> = addresses
        .into_iter()
        .enumerate()
        .map(|(service, address)| {
            tokio::spawn(watch_readiness(
                service,
                address,
                started,
                Arc::clone(&probes),
                stopped.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(STEADY).await;

    let mut faults = Vec::new();
    let mut killed = Vec::new();

    // 1. The gateway's PostgreSQL restarts (the worker's database too).
    let began = started.elapsed();
    postgres.stop().await?;
    tokio::time::sleep(OUTAGE).await;
    postgres.resume().await?;
    let ended = started.elapsed();
    wait_recovered(
        addresses,
        &[0, 1],
        &sent,
        ended,
        "recovery from the PostgreSQL restart",
    )
    .await?;
    faults.push(FaultReport {
        name: "PostgreSQL restart",
        started: began,
        ended,
        recovered: started.elapsed(),
        affected: vec![0, 1],
    });
    tokio::time::sleep(STEADY).await;

    // 2. Redis restarts (empty: no persistence).
    let began = started.elapsed();
    redis.stop()?;
    tokio::time::sleep(OUTAGE).await;
    redis.resume().await?;
    let ended = started.elapsed();
    wait_recovered(
        addresses,
        &[0],
        &sent,
        ended,
        "recovery from the Redis restart",
    )
    .await?;
    faults.push(FaultReport {
        name: "Redis restart",
        started: began,
        ended,
        recovered: started.elapsed(),
        affected: vec![0],
    });
    tokio::time::sleep(STEADY).await;

    // 3. RabbitMQ closes every connection of the services; reconnecting is refused for a while.
    let began = started.elapsed();
    let closed = tokio::task::block_in_place(|| vhost.cut())?;
    assert!(
        closed >= 4,
        "the gateway (2), worker and ingest hold connections; closed {closed}"
    );
    tokio::time::sleep(OUTAGE).await;
    tokio::task::block_in_place(|| vhost.restore())?;
    let ended = started.elapsed();
    wait_recovered(
        addresses,
        &[0, 1, 2],
        &sent,
        ended,
        "recovery from the closed RabbitMQ connections",
    )
    .await?;
    faults.push(FaultReport {
        name: "RabbitMQ connections closed",
        started: began,
        ended,
        recovered: started.elapsed(),
        affected: vec![0, 1, 2],
    });
    tokio::time::sleep(STEADY).await;

    // 4. The worker and the ingest are killed and started again, on the same ports.
    let began = started.elapsed();
    worker.kill()?;
    ingest.kill()?;
    tokio::time::sleep(OUTAGE).await;
    let new_worker = Service::start_on(
        &bin.join(WORKER),
        NAMES[1],
        workdir.path(),
        &env.worker,
        addresses[1].port(),
    )?;
    let new_ingest = Service::start_on(
        &bin.join(INGEST),
        NAMES[2],
        workdir.path(),
        &env.ingest,
        addresses[2].port(),
    )?;
    killed.push(std::mem::replace(&mut worker, new_worker));
    killed.push(std::mem::replace(&mut ingest, new_ingest));
    let ended = started.elapsed();
    wait_recovered(
        addresses,
        &[1, 2],
        &sent,
        ended,
        "recovery from the killed consumers",
    )
    .await?;
    faults.push(FaultReport {
        name: "worker and ingest SIGKILLed",
        started: began,
        ended,
        recovered: started.elapsed(),
        affected: vec![1, 2],
    });
    tokio::time::sleep(STEADY).await;

    // 5. ClickHouse stops and starts.
    let began = started.elapsed();
    clickhouse_server.stop().await?;
    tokio::time::sleep(OUTAGE).await;
    clickhouse_server.resume().await?;
    let ended = started.elapsed();
    wait_recovered(
        addresses,
        &[2],
        &sent,
        ended,
        "recovery from the ClickHouse restart",
    )
    .await?;
    faults.push(FaultReport {
        name: "ClickHouse stop and start",
        started: began,
        ended,
        recovered: started.elapsed(),
        affected: vec![2],
    });
    tokio::time::sleep(STEADY).await;

    stop.send_replace(true);
    load.await?;
    for watcher in watchers {
        watcher.await?;
    }
    let load_time = started.elapsed();
    let sent = sent
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    let probes = probes
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();

    // The figures per fault; the checks follow.
    println!(
        "{:<30} {:>7} {:>7} {:>7} {:>10} {:>12} {:>12}",
        "fault", "sent", "failed", "down s", "recover s", "sent/s", "201/s"
    );
    for (n, fault) in faults.iter().enumerate() {
        // A fault's window runs from its start to the next fault's start (or the end of load).
        let until = faults.get(n + 1).map_or(load_time, |next| next.started);
        let window: Vec<&Sent> = sent
            .iter()
            .filter(|order| order.at >= fault.started && order.at < until)
            .collect();
        let failed = window.iter().filter(|o| o.status != Some(201)).count();
        let incident: Vec<&&Sent> = window
            .iter()
            .filter(|order| order.at <= fault.recovered)
            .collect();
        let span = fault.recovered.saturating_sub(fault.started);
        let accepted_in_incident = incident.iter().filter(|o| o.status == Some(201)).count();
        println!(
            "{:<30} {:>7} {:>7} {:>7.1} {:>10.1} {:>12.1} {:>12.1}",
            fault.name,
            window.len(),
            failed,
            fault.ended.saturating_sub(fault.started).as_secs_f64(),
            fault.recovered.saturating_sub(fault.ended).as_secs_f64(),
            per_second(incident.len(), span),
            per_second(accepted_in_incident, span),
        );
    }

    // No service that was not killed restarted.
    let mut gateway = gateway;
    assert!(
        gateway.is_running(),
        "the gateway exited:\n{}",
        gateway.log_text()
    );
    assert!(
        worker.is_running(),
        "the restarted worker exited:\n{}",
        worker.log_text()
    );
    assert!(
        ingest.is_running(),
        "the restarted ingest exited:\n{}",
        ingest.log_text()
    );

    // Every order that got a 201 is processed exactly once and counted exactly once.
    let created: BTreeMap<i64, String> = sent
        .iter()
        .filter_map(|order| order.id.map(|id| (id, order.key.clone())))
        .collect();
    let accepted = sent
        .iter()
        .filter(|order| order.status == Some(201))
        .count();
    assert_eq!(
        created.len(),
        accepted,
        "a 201 without an id, or an id twice"
    );
    let unexpected: Vec<&Sent> = sent
        .iter()
        .filter(|order| !matches!(order.status, Some(201 | 503) | None))
        .collect();
    assert!(
        unexpected.is_empty(),
        "answers other than 201 and 503: {unexpected:?}"
    );
    let db = sqlx::PgPool::connect(&postgres.url()).await?;
    let ((), settled) = eventually(SETTLE, "every stored order processed", || async {
        let waiting: i64 =
            sqlx::query_scalar("SELECT count(*) FROM orders WHERE status <> 'processed'")
                .fetch_one(&db)
                .await?;
        let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM groundwork_outbox")
            .fetch_one(&db)
            .await?;
        Ok((waiting == 0 && outbox == 0).then_some(()))
    })
    .await?;
    let stored: Vec<(i64, Option<String>, String)> =
        sqlx::query_as("SELECT id, idempotency_key, status FROM orders ORDER BY id")
            .fetch_all(&db)
            .await?;
    let stored_ids: BTreeSet<i64> = stored.iter().map(|(id, _, _)| *id).collect();
    for (id, key) in &created {
        assert!(
            stored_ids.contains(id),
            "order {id} ({key}) got a 201 but is not stored"
        );
    }
    // An order whose request failed was either not stored at all, or stored whole (its commit
    // went through but the answer was lost): then it was processed and is counted like any other.
    let failed_keys: BTreeSet<&str> = sent
        .iter()
        .filter(|order| order.status != Some(201))
        .map(|order| order.key.as_str())
        .collect();
    let mut stored_despite_error = Vec::new();
    for (id, key, status) in &stored {
        let key = key
            .as_deref()
            .context("an order without its idempotency key")?;
        assert_eq!(status, "processed", "order {id} ({key})");
        if !created.contains_key(id) {
            assert!(
                failed_keys.contains(key),
                "order {id} ({key}) was stored but its request is unknown"
            );
            stored_despite_error.push(*id);
        }
    }

    let mut processed_lines: BTreeMap<i64, usize> = BTreeMap::new();
    for service in killed
        .iter()
        .filter(|s| s.name == NAMES[1])
        .chain([&worker])
    {
        for line in service.log()? {
            if line["message"] == "order processed"
                && let Some(id) = line["context"]["order_id"].as_i64()
            {
                *processed_lines.entry(id).or_default() += 1;
            }
        }
    }
    let twice: Vec<(&i64, &usize)> = processed_lines.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "orders processed more than once: {twice:?}"
    );

    // The ingest writes in batches: wait until it has written every stored order.
    let (rows, _) = eventually(SETTLE, "every stored order in ClickHouse", || async {
        let rows: Vec<(i64, u64)> = clickhouse
            .client()
            .query(&format!(
                "SELECT order_id, count() FROM order_events WHERE tenant = '{TENANT}' GROUP BY order_id"
            ))
            .fetch_all()
            .await?;
        let ids: BTreeSet<i64> = rows.iter().map(|(id, _)| *id).collect();
        Ok(ids.is_superset(&stored_ids).then_some(rows))
    })
    .await?;
    let counted: BTreeSet<i64> = rows.iter().map(|(id, _)| *id).collect();
    let duplicate_rows: u64 = rows.iter().map(|(_, copies)| copies - 1).sum();
    let unknown: Vec<&i64> = counted.difference(&stored_ids).collect();
    assert!(
        unknown.is_empty(),
        "orders in ClickHouse that were never stored: {unknown:?}"
    );
    let stats = get_json(ingest.address, "/v1/stats").await?;
    let tenant = stats["tenants"]
        .as_array()
        .and_then(|tenants| tenants.iter().find(|t| t["tenant"] == TENANT))
        .context("the drill's tenant is not in /v1/stats")?;
    assert_eq!(
        tenant["orders"].as_u64(),
        Some(stored_ids.len() as u64),
        "{tenant}"
    );
    for queue in ["drill.order-created.dlq", "drill.order-processed.dlq"] {
        let dead = tokio::task::block_in_place(|| vhost.messages(queue))?;
        assert_eq!(dead, 0, "{queue} holds {dead} messages");
    }

    // Readiness went 503 (or stopped answering) during each fault and was 200 again after it.
    for fault in &faults {
        for service in &fault.affected {
            let during: Vec<(Duration, Option<u16>)> = probes
                .iter()
                .filter(|p| p.service == *service && p.at >= fault.started && p.at <= fault.ended)
                .map(|p| (p.at, p.status))
                .collect();
            assert!(
                during.iter().any(|(_, status)| *status != Some(200)),
                "{}: {} stayed ready during the fault: {during:?}",
                fault.name,
                NAMES[*service]
            );
        }
    }

    // The figures.
    println!(
        "fault drill: {RATE} orders/s for {:.0} s, {} sent, {} accepted (201), {} failed, \
         {} stored despite a failed answer; every accepted order processed and counted \
         {:.1} s after the load stopped; {} duplicate ClickHouse rows (counted once)",
        load_time.as_secs_f64(),
        sent.len(),
        accepted,
        sent.len() - accepted,
        stored_despite_error.len(),
        settled.as_secs_f64(),
        duplicate_rows,
    );
    drop((gateway, worker, ingest, killed));
    db.close().await;
    clickhouse.cleanup().await?;
    drop(vhost);
    Ok(())
}

/// `count` events over `span`, per second.
fn per_second(count: usize, span: Duration) -> f64 {
    f64::from(u32::try_from(count).unwrap_or(u32::MAX)) / span.as_secs_f64().max(0.001)
}
