//! `LIVE_RELAY`: a setting runs the fan-out relay inside a service. The service is started with
//! `run_with`; an instance elsewhere follows `platform_config` through NATS and sees changes only
//! while the service (and so its relay) runs. (`run_with` installs the global telemetry, so this
//! test has a binary of its own.)

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use groundwork_config::{ExposeSecret as _, Loader, SecretUrl};
use groundwork_health::Health;
use groundwork_live::config;
use groundwork_live::{FeedOptions, FeedStatus, Transport};
use groundwork_service::{
    BoxError, LiveSettings, LiveSettingsError, RunOptions, ServeOptions, Service, ServiceSettings,
    Shutdown, Startup,
};
use groundwork_telemetry::TelemetrySettings;
use groundwork_testkit::TestDatabase;
use serde_json::json;

const ENV: &str = "production";
const NATS: &str = "nats://127.0.0.1:4222";

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Settings {
    #[serde(default)]
    telemetry: TelemetrySettings,
    database_url: SecretUrl,
    #[serde(default)]
    live: LiveSettings,
}

impl ServiceSettings for Settings {
    fn telemetry(&self) -> TelemetrySettings {
        self.telemetry.with_service_default("relaying")
    }

    fn listen_address(&self) -> String {
        // Never bound: the test hands `run_with` a listener.
        "127.0.0.1:1".to_owned()
    }
}

struct Relaying {
    router: axum::Router,
    health: Health,
}

impl Service for Relaying {
    fn router(&self) -> axum::Router {
        self.router.clone()
    }

    fn health(&self) -> &Health {
        &self.health
    }

    fn serve_options(&self) -> ServeOptions {
        ServeOptions {
            drain_delay: Duration::ZERO,
            ..ServeOptions::default()
        }
    }

    async fn shutdown(self) -> Result<(), BoxError> {
        Ok(())
    }
}

fn load(vars: &[(&str, &str)]) -> Result<LiveSettings, groundwork_config::ConfigError> {
    #[derive(serde::Deserialize, schemars::JsonSchema)]
    struct Only {
        #[serde(default)]
        live: LiveSettings,
    }
    let only: Only = Loader::new()
        .no_dotenv()
        .vars(vars.iter().copied())
        .load()?;
    Ok(only.live)
}

#[test]
fn the_settings_choose_the_transport_and_whether_a_relay_runs() -> Result<()> {
    let defaults = load(&[])?;
    assert_eq!(defaults.transport()?, Transport::Postgres);
    assert!(!defaults.relay);
    assert_eq!(defaults.namespace, groundwork_live::DEFAULT_NAMESPACE);

    let live = load(&[
        ("LIVE_TRANSPORT", "redis://:hunter2@cache:6379"),
        ("LIVE_NAMESPACE", "hotel.prod"),
        ("LIVE_RELAY", "on"),
    ])?;
    assert!(live.relay);
    assert_eq!(live.transport()?.kind(), "redis");
    let options = live.feed_options()?;
    assert_eq!(options.namespace, "hotel.prod");
    assert_eq!(options.transport.kind(), "redis");
    let shown = format!("{live:?} {:?}", options.transport);
    assert!(!shown.contains("hunter2"), "{shown}");

    let Err(LiveSettingsError::Transport(error)) =
        load(&[("LIVE_TRANSPORT", "kafka://b:9092")])?.transport()
    else {
        bail!("kafka was taken for a transport");
    };
    assert!(error.to_string().contains("kafka://b:9092"), "{error}");
    Ok(())
}

#[tokio::test]
async fn a_relay_setting_without_a_transport_is_refused_and_off_starts_none() -> Result<()> {
    let db = TestDatabase::create().await?;
    let Err(error) = load(&[("LIVE_RELAY", "on")])?.start_relay(db.pool(), [config::CHANNEL])
    else {
        bail!("a relay started without a transport");
    };
    assert!(
        matches!(error, LiveSettingsError::RelayWithoutTransport),
        "{error}"
    );
    assert!(error.to_string().contains("LIVE_TRANSPORT"), "{error}");
    let off = load(&[("LIVE_TRANSPORT", NATS)])?.start_relay(db.pool(), [config::CHANNEL])?;
    assert!(off.is_none(), "LIVE_RELAY unset starts no relay");
    Ok(())
}

async fn set(db: &TestDatabase, key: &str, value: serde_json::Value) -> Result<()> {
    sqlx::query(
        "INSERT INTO platform_config (key, value, env) VALUES ($1, $2, $3)
         ON CONFLICT (env, key) DO UPDATE SET value = EXCLUDED.value",
    )
    .bind(key)
    .bind(value)
    .bind(ENV)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Waits until the relay lock of `namespace` is held (a relay leads) or free.
async fn until_lock(db: &TestDatabase, namespace: &str, held: bool) -> Result<()> {
    let key = groundwork_live::RelayOptions::new(Transport::parse(NATS)?)
        .namespace(namespace)
        .lock_key();
    let key = u64::from_ne_bytes(key.to_ne_bytes());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        // A bigint advisory lock shows as its high half in classid and its low half in objid.
        let locks: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT classid::bigint, objid::bigint FROM pg_locks
             WHERE locktype = 'advisory' AND objsubid = 1 AND granted",
        )
        .fetch_all(db.pool())
        .await?;
        let is_held = locks.iter().any(|&(high, low)| {
            u64::try_from(high)
                .is_ok_and(|high| u64::try_from(low).is_ok_and(|low| (high << 32) | low == key))
        });
        if is_held == held {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "the relay lock of {namespace} is still {}",
                if held { "free" } else { "held" }
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_relay_on_runs_a_relay_inside_the_service_until_it_stops() -> Result<()> {
    let db = TestDatabase::create().await?;
    sqlx::raw_sql(config::MIGRATIONS[0].1)
        .execute(db.pool())
        .await?;
    let namespace = format!("gwtest.{}", db.name());
    set(&db, "greeting", json!("hello")).await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let shutdown = Shutdown::new();
    let mut options = RunOptions::default();
    options.loader = Loader::new().no_dotenv().vars([
        ("DATABASE_URL", db.url()),
        ("LIVE_TRANSPORT", NATS),
        ("LIVE_NAMESPACE", namespace.as_str()),
        ("LIVE_RELAY", "on"),
        ("LOG_LEVEL", "warn"),
    ]);
    options.listener = Some(listener);
    options.shutdown = Some(shutdown.clone());
    let service = groundwork_service::run_with(
        options,
        async |settings: Settings, startup: &mut Startup| {
            let pool = sqlx::PgPool::connect(settings.database_url.expose_secret()).await?;
            let started = startup.start_live_relay(&settings.live, &pool, [config::CHANNEL])?;
            if !started {
                return Err("LIVE_RELAY=on started no relay".into());
            }
            let health = Health::builder().service_id("relaying").build()?;
            Ok(Relaying {
                router: health.router(),
                health,
            })
        },
    );

    // An instance elsewhere, following the table through the service's relay only.
    let instance = async {
        let (config, feed) = config::watch(
            db.pool().clone(),
            ENV,
            FeedOptions::default()
                .transport(Transport::parse(NATS)?)
                .namespace(namespace.as_str())
                .relay_timeout(Duration::from_secs(1))
                .poll_interval(Duration::from_hours(1)),
        )
        .await?;
        until_lock(&db, &namespace, true).await?;
        // The second change can only arrive through the relay: the feed resyncs by itself only
        // when it subscribes, which is over once the first change is visible.
        for value in ["first", "relayed from the service"] {
            set(&db, "greeting", json!(value)).await?;
            groundwork_testkit::until_changed(
                config.updates(),
                Duration::from_secs(10),
                "the relayed change",
                || config.value("greeting") == Some(json!(value)),
            )
            .await?;
        }
        shutdown.trigger();
        Ok::<_, anyhow::Error>((config, feed))
    };
    let (outcome, instance) = tokio::join!(service, instance);
    outcome?;
    let (config, feed) = instance?;

    // The service stopped, and its relay with it: the lock is free, the instance hears nothing.
    until_lock(&db, &namespace, false).await?;
    let mut statuses = feed.statuses();
    let status = tokio::time::timeout(
        Duration::from_secs(10),
        statuses.wait_for(|status| !status.is_fresh()),
    )
    .await
    .context("the instance stayed fresh after the service (and its relay) stopped")??
    .clone();
    let FeedStatus::Stale { error, .. } = &status else {
        bail!("not stale: {status:?}");
    };
    assert!(error.contains("no message from a relay"), "{error}");
    assert_eq!(
        config.value("greeting"),
        Some(json!("relayed from the service")),
        "values kept"
    );
    feed.shutdown().await;
    Ok(())
}
