//! Fan-out through a relay: instances that load through PgBouncer in transaction pooling mode
//! and learn of changes from NATS or Redis; a leader killed mid-stream; private NATS and Redis
//! servers restarted mid-stream; malformed messages and unreachable transports.
//!
//! The shared NATS (4222) and Redis (6379) are only published to and subscribed on, under a
//! namespace of the test's own; restarts use private servers on free ports.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use groundwork_live::config::{self, LiveConfig};
use groundwork_live::{
    Feed, FeedOptions, FeedStatus, Relay, RelayError, RelayOptions, RelayRole, Transport,
};
use groundwork_testkit::{InfraEnv, Service, TestDatabase};
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::process::{Child, Command};

use crate::common::migrated;

const ENV: &str = "production";

fn shared_nats() -> Transport {
    Transport::Nats {
        url: "nats://127.0.0.1:4222".to_owned(),
    }
}

fn shared_redis() -> Result<Transport> {
    Ok(Transport::Redis {
        url: InfraEnv::discover()?.url(Service::Redis),
    })
}

/// A namespace of the test's own on the shared servers.
fn namespace(db: &TestDatabase) -> String {
    format!("gwtest.{}", db.name())
}

fn relay_options(transport: Transport, namespace: &str) -> RelayOptions {
    let mut options = RelayOptions::new(transport)
        .namespace(namespace)
        .heartbeat_interval(Duration::from_millis(200))
        .takeover_interval(Duration::from_millis(100));
    options.max_backoff = Duration::from_millis(500);
    options
}

fn feed_options(transport: Transport, namespace: &str) -> FeedOptions {
    let mut options = FeedOptions::default()
        .transport(transport)
        .namespace(namespace)
        .relay_timeout(Duration::from_secs(1))
        // Recovery must come from the fan-out, never from the safety net.
        .poll_interval(Duration::from_hours(1));
    options.max_backoff = Duration::from_millis(500);
    options
}

/// A pool through PgBouncer in transaction pooling mode.
async fn pgbouncer_pool(db: &TestDatabase) -> Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&db.pgbouncer_url()?)
        .await?)
}

async fn set(pool: &PgPool, key: &str, value: serde_json::Value) -> Result<()> {
    sqlx::query(
        "INSERT INTO platform_config (key, value, env) VALUES ($1, $2, $3)
         ON CONFLICT (env, key) DO UPDATE SET value = EXCLUDED.value",
    )
    .bind(key)
    .bind(value)
    .bind(ENV)
    .execute(pool)
    .await?;
    Ok(())
}

async fn until_value(
    config: &LiveConfig,
    key: &str,
    expected: &serde_json::Value,
    within: Duration,
) -> Result<()> {
    groundwork_testkit::until_changed(config.updates(), within, key, || {
        config.value(key).as_ref() == Some(expected)
    })
    .await?;
    Ok(())
}

async fn until_status(feed: &Feed, fresh: bool, within: Duration) -> Result<FeedStatus> {
    let mut statuses = feed.statuses();
    let status = tokio::time::timeout(within, statuses.wait_for(|s| s.is_fresh() == fresh))
        .await
        .with_context(|| {
            format!(
                "the feed did not turn {} within {within:?}: {:?}",
                if fresh { "fresh" } else { "stale" },
                feed.status()
            )
        })??
        .clone();
    Ok(status)
}

async fn until_role(relay: &Relay, role: &RelayRole, within: Duration) -> Result<()> {
    let mut roles = relay.roles();
    tokio::time::timeout(within, roles.wait_for(|r| r == role))
        .await
        .with_context(|| {
            format!(
                "the relay is not {role:?} within {within:?}: {:?}",
                relay.role()
            )
        })??;
    Ok(())
}

/// The client's entries equal the table's.
async fn assert_converged(config: &LiveConfig, db: &TestDatabase) -> Result<()> {
    let table = config::load_env(db.pool(), ENV).await?;
    let snapshot = config.snapshot();
    let mut client: Vec<_> = snapshot.iter().cloned().collect();
    client.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(client, table, "the client's final state equals the table's");
    Ok(())
}

/// A relay started on `db` that has reached `role` within 10 s.
async fn relay_in_role(
    db: &TestDatabase,
    transport: Transport,
    namespace: &str,
    role: &RelayRole,
) -> Result<Relay> {
    let relay = Relay::start(db.pool().clone(), relay_options(transport, namespace))?;
    until_role(&relay, role, Duration::from_secs(10)).await?;
    Ok(relay)
}

/// An instance watching the config through `pool`, its changes fanned out on `transport`.
async fn watch(pool: &PgPool, transport: Transport, namespace: &str) -> Result<(LiveConfig, Feed)> {
    Ok(config::watch(pool.clone(), ENV, feed_options(transport, namespace)).await?)
}

/// Every instance reaches `drill.counter = counter` within `within`, holds what the table holds,
/// and is fresh again within half of `within`.
async fn all_converge(
    instances: &[(LiveConfig, Feed)],
    db: &TestDatabase,
    counter: &serde_json::Value,
    within: Duration,
) -> Result<()> {
    for (config, feed) in instances {
        until_value(config, "drill.counter", counter, within).await?;
        assert_converged(config, db).await?;
        until_status(feed, true, within / 2).await?;
    }
    Ok(())
}

async fn follows_through_pgbouncer(transport: Transport) -> Result<()> {
    let db = migrated().await?;
    let namespace = namespace(&db);
    set(db.pool(), "greeting", json!("hello")).await?;
    let relay = relay_in_role(&db, transport.clone(), &namespace, &RelayRole::Leader).await?;

    let (config, feed) = watch(&pgbouncer_pool(&db).await?, transport, &namespace).await?;
    assert_eq!(config.value("greeting"), Some(json!("hello")));
    until_status(&feed, true, Duration::from_secs(5)).await?;

    set(db.pool(), "greeting", json!("bonjour")).await?;
    until_value(
        &config,
        "greeting",
        &json!("bonjour"),
        Duration::from_secs(5),
    )
    .await?;
    set(db.pool(), "new.key", json!(1)).await?;
    until_value(&config, "new.key", &json!(1), Duration::from_secs(5)).await?;
    // Keys are quoted into the load's SQL: quotes and backslashes arrive as written.
    let tricky = r"it's a \'key'); DROP TABLE platform_config; --";
    set(db.pool(), tricky, json!("quoted")).await?;
    until_value(&config, tricky, &json!("quoted"), Duration::from_secs(5)).await?;
    sqlx::query("DELETE FROM platform_config WHERE key = 'greeting'")
        .execute(db.pool())
        .await?;
    groundwork_testkit::until_changed(config.updates(), Duration::from_secs(5), "delete", || {
        config.value("greeting").is_none()
    })
    .await?;
    assert_converged(&config, &db).await?;
    assert!(feed.status().is_fresh(), "{:?}", feed.status());
    feed.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_behind_pgbouncer_follow_changes_relayed_through_nats() -> Result<()> {
    follows_through_pgbouncer(shared_nats()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_behind_pgbouncer_follow_changes_relayed_through_redis() -> Result<()> {
    follows_through_pgbouncer(shared_redis()?).await
}

/// Writes `drill.counter = i` for i in 1..=updates, reporting progress.
async fn stream_updates(
    pool: PgPool,
    updates: i64,
    progress: tokio::sync::watch::Sender<i64>,
) -> Result<()> {
    for i in 1..=updates {
        set(&pool, "drill.counter", json!(i)).await?;
        progress.send_replace(i);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_when_the_leader_dies_mid_stream() -> Result<()> {
    const UPDATES: i64 = 1_000;
    let db = migrated().await?;
    let namespace = namespace(&db);
    let transport = shared_redis()?;
    set(db.pool(), "drill.counter", json!(0)).await?;
    let leader = relay_in_role(&db, transport.clone(), &namespace, &RelayRole::Leader).await?;
    let standby = relay_in_role(&db, transport.clone(), &namespace, &RelayRole::Standby).await?;

    let pool = pgbouncer_pool(&db).await?;
    let mut instances = Vec::new();
    for _ in 0..5 {
        instances.push(watch(&pool, transport.clone(), &namespace).await?);
    }
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0);
    let writer = tokio::spawn(stream_updates(db.pool().clone(), UPDATES, progress_tx));
    progress.wait_for(|done| *done >= 300).await?;
    // The leader's process dies: its connections close, PostgreSQL releases the lock.
    let killed = Instant::now();
    let written_at_kill = *progress.borrow();
    drop(leader);
    until_role(&standby, &RelayRole::Leader, Duration::from_secs(10)).await?;
    let gap = killed.elapsed();
    let written_in_gap = *progress.borrow() - written_at_kill;
    writer.await??;

    all_converge(&instances, &db, &json!(UPDATES), Duration::from_secs(10)).await?;
    println!(
        "leader killed mid-stream after update {written_at_kill} of {UPDATES}: the standby led after {gap:?}, \
         {written_in_gap} updates written meanwhile; 5 instances converged"
    );
    assert!(gap < Duration::from_secs(5), "takeover took {gap:?}");
    standby.shutdown().await;
    Ok(())
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A private server the test may stop and start; killed when dropped.
struct Private {
    program: &'static str,
    args: Vec<String>,
    port: u16,
    child: Option<Child>,
}

impl Private {
    fn nats(dir: &std::path::Path) -> Result<Self> {
        let port = free_port()?;
        let args = ["-a", "127.0.0.1", "-p", &port.to_string(), "-sd"]
            .iter()
            .map(ToString::to_string)
            .chain([dir.display().to_string()])
            .collect();
        Ok(Self {
            program: "nats-server",
            args,
            port,
            child: None,
        })
    }

    fn redis(dir: &std::path::Path) -> Result<Self> {
        let port = free_port()?;
        let args = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
        ]
        .iter()
        .map(ToString::to_string)
        .chain([dir.display().to_string()])
        .collect();
        Ok(Self {
            program: "redis-server",
            args,
            port,
            child: None,
        })
    }

    async fn start(&mut self) -> Result<()> {
        let child = Command::new(self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.program))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                bail!("{} does not answer on port {}", self.program, self.port);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    async fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }
}

async fn restart_mid_stream(private: &mut Private, transport: Transport) -> Result<()> {
    const UPDATES: i64 = 600;
    private.start().await?;
    let db = migrated().await?;
    let namespace = namespace(&db);
    set(db.pool(), "drill.counter", json!(0)).await?;
    let relay = relay_in_role(&db, transport.clone(), &namespace, &RelayRole::Leader).await?;
    let pool = pgbouncer_pool(&db).await?;
    let mut instances = Vec::new();
    for _ in 0..3 {
        let (config, feed) = watch(&pool, transport.clone(), &namespace).await?;
        until_status(&feed, true, Duration::from_secs(5)).await?;
        instances.push((config, feed));
    }

    let (progress_tx, mut progress) = tokio::sync::watch::channel(0);
    let writer = tokio::spawn(stream_updates(db.pool().clone(), UPDATES, progress_tx));
    progress.wait_for(|done| *done >= 200).await?;
    private.stop().await?;
    for (_, feed) in &instances {
        let status = until_status(feed, false, Duration::from_secs(10)).await?;
        println!("{} down: {status:?}", transport.kind());
    }
    progress.wait_for(|done| *done >= 400).await?;
    private.start().await?;
    writer.await??;
    all_converge(&instances, &db, &json!(UPDATES), Duration::from_secs(20)).await?;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_nats_mid_stream_turns_instances_stale_then_they_resync() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut nats = Private::nats(dir.path())?;
    let transport = Transport::Nats {
        url: format!("nats://127.0.0.1:{}", nats.port),
    };
    restart_mid_stream(&mut nats, transport).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_redis_mid_stream_turns_instances_stale_then_they_resync() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut redis = Private::redis(dir.path())?;
    let transport = Transport::Redis {
        url: format!("redis://127.0.0.1:{}", redis.port),
    };
    restart_mid_stream(&mut redis, transport).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_transport_at_start_keeps_values_and_reports_stale() -> Result<()> {
    let db = migrated().await?;
    set(db.pool(), "greeting", json!("hello")).await?;
    let port = free_port()?;
    for (transport, name) in [
        (
            Transport::Nats {
                url: format!("nats://127.0.0.1:{port}"),
            },
            "NATS",
        ),
        (
            Transport::Redis {
                url: format!("redis://:hunter2@127.0.0.1:{port}"),
            },
            "Redis",
        ),
    ] {
        let (config, feed) = watch(
            &pgbouncer_pool(&db).await?,
            transport.clone(),
            &namespace(&db),
        )
        .await?;
        assert_eq!(
            config.value("greeting"),
            Some(json!("hello")),
            "values kept"
        );
        let status = until_status(&feed, false, Duration::from_secs(5)).await?;
        let FeedStatus::Stale { error, .. } = &status else {
            bail!("not stale: {status:?}");
        };
        assert!(
            error.contains(name) && error.contains(&format!("127.0.0.1:{port}")),
            "the error names the transport and where: {error}"
        );
        assert!(!error.contains("hunter2"), "no password in {error}");
        feed.shutdown().await;
    }
    // A relay that cannot reach its transport does not contend for the lock.
    let relay = Relay::start(
        db.pool().clone(),
        relay_options(
            Transport::Nats {
                url: format!("nats://127.0.0.1:{port}"),
            },
            &namespace(&db),
        ),
    )?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let RelayRole::Starting(reason) = relay.role() else {
        bail!(
            "the relay left Starting without a transport: {:?}",
            relay.role()
        );
    };
    assert!(
        reason.contains("NATS") && reason.contains(&format!("127.0.0.1:{port}")),
        "{reason}"
    );
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_ignored_and_changes_still_arrive() -> Result<()> {
    let db = migrated().await?;
    let namespace = namespace(&db);
    let transport = shared_redis()?;
    set(db.pool(), "greeting", json!("hello")).await?;
    let relay = relay_in_role(&db, transport.clone(), &namespace, &RelayRole::Leader).await?;
    let (config, feed) = watch(&pgbouncer_pool(&db).await?, transport, &namespace).await?;
    until_status(&feed, true, Duration::from_secs(5)).await?;

    let redis = deadpool_redis::redis::Client::open(InfraEnv::discover()?.url(Service::Redis))?;
    let mut connection = redis.get_multiplexed_async_connection().await?;
    let subject = format!("{namespace}.{}", config::CHANNEL);
    // The feed starts fresh from its first load; its subscription follows on its own task.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, subscribers): (String, i64) = deadpool_redis::redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&subject)
            .query_async(&mut connection)
            .await?;
        if subscribers >= 1 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the instance never subscribed to {subject}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for garbage in [
        "not json",
        "{\"relay\": 5}",
        "{\"env\":\"production\",\"key\":\"greeting\",\"revision\":1,\"value\":\"injected\"}",
        "",
    ] {
        let receivers: i64 = deadpool_redis::redis::cmd("PUBLISH")
            .arg(&subject)
            .arg(garbage)
            .query_async(&mut connection)
            .await?;
        assert!(receivers >= 1, "the instance subscribes to {subject}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        config.value("greeting"),
        Some(json!("hello")),
        "values kept"
    );
    assert!(feed.status().is_fresh(), "{:?}", feed.status());
    set(db.pool(), "greeting", json!("still delivered")).await?;
    until_value(
        &config,
        "greeting",
        &json!("still delivered"),
        Duration::from_secs(5),
    )
    .await?;
    feed.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_with_no_listeners_keeps_relaying_and_bad_options_are_refused() -> Result<()> {
    let db = migrated().await?;
    let relay = relay_in_role(&db, shared_redis()?, &namespace(&db), &RelayRole::Leader).await?;
    for i in 0..20 {
        set(db.pool(), "nobody.listens", json!(i)).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(relay.role(), RelayRole::Leader);
    relay.shutdown().await;

    let refused = Relay::start(db.pool().clone(), RelayOptions::new(Transport::Postgres));
    assert!(matches!(refused, Err(RelayError::NoFanOut)), "{refused:?}");
    let refused = Relay::start(
        db.pool().clone(),
        RelayOptions::new(shared_nats()).namespace("has space"),
    );
    let Err(RelayError::Subject(reason)) = refused else {
        bail!("a namespace with a space was accepted: {refused:?}");
    };
    assert!(reason.contains("has space"), "{reason}");
    let refused = config::watch(
        db.pool().clone(),
        ENV,
        FeedOptions::default()
            .transport(shared_nats())
            .namespace("a.*"),
    )
    .await;
    let Err(error) = refused else {
        bail!("a wildcard namespace was accepted");
    };
    assert!(error.to_string().contains("a.*"), "{error}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_command_relays_and_a_killed_relay_shows_as_stale() -> Result<()> {
    let db = migrated().await?;
    let namespace = namespace(&db);
    let transport = shared_redis()?;
    let Transport::Redis { url } = &transport else {
        bail!("not redis");
    };
    set(db.pool(), "greeting", json!("hello")).await?;
    let mut relay = Command::new(env!("CARGO_BIN_EXE_groundwork-live"))
        .args(["relay", "--namespace", &namespace])
        .env("DATABASE_URL", db.url())
        .env("LIVE_TRANSPORT", url)
        .env_remove("APP_ENV")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let (config, feed) = watch(&pgbouncer_pool(&db).await?, transport, &namespace).await?;
    set(db.pool(), "greeting", json!("relayed by the command")).await?;
    until_value(
        &config,
        "greeting",
        &json!("relayed by the command"),
        Duration::from_secs(10),
    )
    .await?;
    until_status(&feed, true, Duration::from_secs(5)).await?;
    // SIGKILL: no goodbye; the instance notices the missing heartbeats.
    relay.kill().await?;
    let status = until_status(&feed, false, Duration::from_secs(5)).await?;
    let FeedStatus::Stale { error, .. } = &status else {
        bail!("not stale: {status:?}");
    };
    assert!(error.contains("no message from a relay"), "{error}");
    assert_eq!(
        config.value("greeting"),
        Some(json!("relayed by the command")),
        "values kept"
    );
    feed.shutdown().await;
    Ok(())
}
