//! The `platform_config` client against a real PostgreSQL: migrations, reads with defaults, hot
//! reload, bad values, outages, snapshots and admin with lost-update protection. Each test owns
//! a fresh database.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use groundwork_live::config::admin::{AdminError, ConfigAdmin, Expect, NewValue};
use groundwork_live::config::{self, LiveConfig};
use groundwork_live::{Feed, FeedOptions, FeedStatus};
use groundwork_testkit::TestDatabase;
use serde::Deserialize;
use serde_json::json;
use sqlx::{Connection, PgPool};

use crate::common::migrated;

// The field names are the seed's JSON keys.
#[allow(clippy::struct_field_names)]
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct MatchingWeights {
    price_weight: f64,
    rating_weight: f64,
    availability_weight: f64,
    supplier_reliability_weight: f64,
}

const WEIGHTS: &str = "matching.algorithm.weights";

fn seed_weights() -> serde_json::Value {
    json!({"price_weight": 0.4, "rating_weight": 0.3, "availability_weight": 0.2, "supplier_reliability_weight": 0.1})
}

fn even_weights() -> MatchingWeights {
    MatchingWeights {
        price_weight: 0.25,
        rating_weight: 0.25,
        availability_weight: 0.25,
        supplier_reliability_weight: 0.25,
    }
}

/// Waits, without sleeping, until `check` holds: re-checks whenever the values are replaced.
async fn until(config: &LiveConfig, what: &str, check: impl Fn() -> bool) -> Result<()> {
    groundwork_testkit::until_changed(config.updates(), Duration::from_secs(10), what, check)
        .await?;
    Ok(())
}

/// Waits, without sleeping, until the feed's status satisfies `check`.
async fn until_status(feed: &Feed, what: &str, check: impl Fn(&FeedStatus) -> bool) -> Result<()> {
    let mut statuses = feed.statuses();
    let wait = statuses.wait_for(|status| check(status));
    if tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .is_err()
    {
        bail!("timed out waiting until {what}");
    }
    Ok(())
}

fn options() -> FeedOptions {
    // A long poll so tests prove notifications, not the safety net, deliver changes.
    FeedOptions::default().poll_interval(Duration::from_hours(1))
}

async fn insert(pool: &PgPool, env: &str, key: &str, value: &serde_json::Value) -> Result<()> {
    sqlx::query("INSERT INTO platform_config (env, key, value) VALUES ($1, $2, $3)")
        .bind(env)
        .bind(key)
        .bind(value)
        .execute(pool)
        .await?;
    Ok(())
}

#[tokio::test]
async fn migrations_apply_and_revert_cleanly() -> Result<()> {
    let db = migrated().await?;
    let (_, up) = config::MIGRATIONS[0];
    sqlx::raw_sql(up)
        .execute(db.pool())
        .await
        .context("up twice")?;
    let (_, down) = config::MIGRATIONS[1];
    sqlx::raw_sql(down).execute(db.pool()).await?;
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_class WHERE relname LIKE 'platform_config%'")
            .fetch_one(db.pool())
            .await?;
    assert_eq!(left, 0);
    sqlx::raw_sql(up).execute(db.pool()).await?;
    Ok(())
}

#[test]
fn written_migrations_equal_the_crates_migrations_directory() -> Result<()> {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    Ok(groundwork_testkit::writes_same_files(
        config::write_migrations,
        &source,
    )?)
}

#[tokio::test]
async fn a_table_from_the_seeds_ddl_is_upgraded_to_one_key_per_environment() -> Result<()> {
    let db = TestDatabase::create().await?;
    sqlx::raw_sql(
        "CREATE TABLE platform_config (
            id          SERIAL PRIMARY KEY,
            key         VARCHAR(255) NOT NULL UNIQUE,
            value       JSONB NOT NULL,
            env         VARCHAR(20) NOT NULL DEFAULT 'production',
            description TEXT,
            updated_at  TIMESTAMPTZ DEFAULT NOW(),
            updated_by  VARCHAR(100)
         );
         CREATE INDEX idx_config_env_key ON platform_config(env, key);
         INSERT INTO platform_config (key, value) VALUES ('order.expiry.minutes', '30');",
    )
    .execute(db.pool())
    .await?;
    let (_, up) = config::MIGRATIONS[0];
    sqlx::raw_sql(up).execute(db.pool()).await?;

    insert(db.pool(), "staging", "order.expiry.minutes", &json!(5)).await?;
    let (production, _feed) = config::watch(db.pool().clone(), "production", options()).await?;
    assert_eq!(production.get_or("order.expiry.minutes", 0), 30);
    let duplicate = insert(db.pool(), "staging", "order.expiry.minutes", &json!(6)).await;
    assert!(duplicate.is_err(), "(env, key) is unique");
    Ok(())
}

#[tokio::test]
async fn values_are_read_with_their_defaults() -> Result<()> {
    let db = migrated().await?;
    insert(db.pool(), "production", WEIGHTS, &seed_weights()).await?;
    insert(db.pool(), "production", "order.expiry.minutes", &json!(30)).await?;
    let (config, feed) = config::watch(db.pool().clone(), "production", options()).await?;
    assert!(feed.status().is_fresh());

    let weights = config.get_or(WEIGHTS, even_weights());
    assert!((weights.price_weight - 0.4).abs() < f64::EPSILON);
    assert!((weights.supplier_reliability_weight - 0.1).abs() < f64::EPSILON);
    assert_eq!(config.get_or("order.expiry.minutes", 15_u32), 30);
    assert_eq!(config.get_or("no.such.key", 15_u32), 15);
    assert!(config.get::<u32>("no.such.key").is_none());
    let cached = config.get::<MatchingWeights>(WEIGHTS).context("decodes")?;
    let again = config.get::<MatchingWeights>(WEIGHTS).context("decodes")?;
    assert!(
        std::sync::Arc::ptr_eq(&cached, &again),
        "decoded once, then served from the cache"
    );
    assert_eq!(config.value(WEIGHTS), Some(seed_weights()));
    assert!(config.problems().is_empty());

    // Read as the wrong type: the default, and the problem is listed once.
    assert_eq!(config.get_or(WEIGHTS, 7_u32), 7);
    assert_eq!(config.get_or(WEIGHTS, 7_u32), 7);
    let problems = config.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, WEIGHTS);
    assert_eq!(problems[0].expected, "u32");
    assert_eq!(problems[0].serving, None);
    let snapshot = config.snapshot();
    assert_eq!((snapshot.env(), snapshot.len()), ("production", 2));
    Ok(())
}

#[tokio::test]
async fn admin_changes_reach_watching_services() -> Result<()> {
    let db = migrated().await?;
    let (config, feed) = config::watch(db.pool().clone(), "production", options()).await?;
    let weights = config.setting(WEIGHTS, even_weights());
    let admin = ConfigAdmin::new(db.pool().clone());
    assert_eq!(*weights.get(), even_weights());

    let value = seed_weights();
    let new = NewValue {
        env: "production",
        key: WEIGHTS,
        value: &value,
        description: Some("hotel matching weights"),
    };
    let created = admin.set(&new, Expect::Absent, "alice").await?;
    assert_eq!(created.updated_by.as_deref(), Some("alice"));
    until(&config, "the value appears", || {
        weights.with(|w| (w.price_weight - 0.4).abs() < f64::EPSILON)
    })
    .await?;

    let value = json!({"price_weight": 0.7, "rating_weight": 0.1, "availability_weight": 0.1, "supplier_reliability_weight": 0.1});
    let new = NewValue {
        value: &value,
        description: None,
        ..new
    };
    let updated = admin
        .set(&new, Expect::Revision(created.revision), "bob")
        .await?;
    assert!(updated.revision > created.revision);
    assert_eq!(
        updated.description.as_deref(),
        Some("hotel matching weights"),
        "no description keeps the old one"
    );
    until(&config, "the update arrives", || {
        (weights.get().price_weight - 0.7).abs() < f64::EPSILON
    })
    .await?;
    assert!((config.get_or(WEIGHTS, even_weights()).price_weight - 0.7).abs() < f64::EPSILON);

    admin
        .delete(
            "production",
            WEIGHTS,
            Expect::Revision(updated.revision),
            "bob",
        )
        .await?;
    until(&config, "a deleted key falls back to the default", || {
        *weights.get() == even_weights()
    })
    .await?;
    assert!(config.problems().is_empty());
    assert!(feed.status().is_fresh());
    feed.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_operators_plain_sql_update_reaches_the_service() -> Result<()> {
    let db = migrated().await?;
    insert(db.pool(), "production", "order.expiry.minutes", &json!(30)).await?;
    let (config, _feed) = config::watch(db.pool().clone(), "production", options()).await?;
    let expiry = config.setting("order.expiry.minutes", 15_u32);
    assert_eq!(*expiry.get(), 30);
    // Through a separate connection, as psql would.
    let mut operator = sqlx::PgConnection::connect(db.url()).await?;
    sqlx::query(
        "UPDATE platform_config SET value = '45' WHERE env = 'production' AND key = 'order.expiry.minutes'",
    )
    .execute(&mut operator)
    .await?;
    until(&config, "the update arrives", || *expiry.get() == 45).await?;
    let admin = ConfigAdmin::new(db.pool().clone());
    let item = admin.get("production", "order.expiry.minutes").await?;
    assert_eq!(
        item.updated_by.as_deref(),
        Some("postgres"),
        "plain SQL is attributed to the database user"
    );
    operator.close().await?;
    Ok(())
}

#[tokio::test]
async fn a_feed_leaves_the_application_pool_its_connections() -> Result<()> {
    let db = migrated().await?;
    insert(db.pool(), "production", "order.expiry.minutes", &json!(30)).await?;
    // The application's pool has one connection; the feed's listener must not take it.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(3))
        .connect(db.url())
        .await?;
    let (config, feed) = config::watch(pool.clone(), "production", options()).await?;
    let expiry = config.setting("order.expiry.minutes", 15_u32);
    // Wait until the listener is up (so that the update below is notified).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listening: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %'",
        )
        .fetch_one(db.pool())
        .await?;
        if listening == 1 {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the feed is not listening after 10 s ({listening} listeners)");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The application's own query still gets the pool's connection.
    let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&pool).await?;
    assert_eq!(one, 1);
    sqlx::query(
        "UPDATE platform_config SET value = '45' WHERE env = 'production' AND key = 'order.expiry.minutes'",
    )
    .execute(db.pool())
    .await?;
    until(
        &config,
        "the update is loaded through the pool of one",
        || *expiry.get() == 45,
    )
    .await?;
    feed.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn only_the_services_environment_is_served() -> Result<()> {
    let db = migrated().await?;
    insert(db.pool(), "production", "order.expiry.minutes", &json!(30)).await?;
    insert(db.pool(), "staging", "order.expiry.minutes", &json!(5)).await?;
    let (production, _p) = config::watch(db.pool().clone(), "production", options()).await?;
    let (staging, _s) = config::watch(db.pool().clone(), "staging", options()).await?;
    assert_eq!(production.get_or("order.expiry.minutes", 0), 30);
    assert_eq!(staging.get_or("order.expiry.minutes", 0), 5);

    insert(db.pool(), "staging", "staging.only", &json!(true)).await?;
    until(&staging, "the staging key arrives", || {
        staging.get_or("staging.only", false)
    })
    .await?;
    assert!(!production.get_or("staging.only", false));
    assert_eq!(production.snapshot().len(), 1);
    Ok(())
}

#[tokio::test]
async fn stale_value_is_kept_when_new_value_does_not_decode() -> Result<()> {
    let db = migrated().await?;
    insert(db.pool(), "production", WEIGHTS, &seed_weights()).await?;
    let (config, _feed) = config::watch(db.pool().clone(), "production", options()).await?;
    let weights = config.setting(WEIGHTS, even_weights());
    let good = config.snapshot().entry(WEIGHTS).map(|e| e.revision);
    assert!((weights.get().price_weight - 0.4).abs() < f64::EPSILON);

    // A typo: a weight as a string.
    sqlx::query(
        "UPDATE platform_config SET value = '{\"price_weight\": \"0.5\", \"rating_weight\": 0.3,
            \"availability_weight\": 0.2, \"supplier_reliability_weight\": 0.1}'
         WHERE key = $1",
    )
    .bind(WEIGHTS)
    .execute(db.pool())
    .await?;
    until(&config, "the problem is reported", || {
        !config.problems().is_empty()
    })
    .await?;
    assert!(
        (weights.get().price_weight - 0.4).abs() < f64::EPSILON,
        "the setting keeps the last good value"
    );
    assert!(
        (config
            .get::<MatchingWeights>(WEIGHTS)
            .context("the last good value")?
            .price_weight
            - 0.4)
            .abs()
            < f64::EPSILON,
        "reads keep the last good value too, not the default"
    );
    assert!((config.get_or(WEIGHTS, even_weights()).price_weight - 0.4).abs() < f64::EPSILON);
    let problem = config.problems().remove(0);
    assert_eq!(problem.key, WEIGHTS);
    assert_eq!(problem.serving, good);
    assert!(problem.expected.ends_with("MatchingWeights"), "{problem}");
    assert!(problem.to_string().contains("expected f64"), "{problem}");

    // Fixed: the problem is gone and the new value served.
    sqlx::query(
        "UPDATE platform_config SET value = jsonb_set(value, '{price_weight}', '0.5') WHERE key = $1",
    )
    .bind(WEIGHTS)
    .execute(db.pool())
    .await?;
    until(&config, "the fixed value arrives", || {
        (weights.get().price_weight - 0.5).abs() < f64::EPSILON
    })
    .await?;
    assert!(config.problems().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_terminated_listener_reconnects_and_misses_nothing() -> Result<()> {
    let db = migrated().await?;
    insert(db.pool(), "production", "order.expiry.minutes", &json!(30)).await?;
    let (config, _feed) = config::watch(db.pool().clone(), "production", options()).await?;
    let expiry = config.setting("order.expiry.minutes", 15_u32);
    // A change that arrives proves the listener is connected before it is terminated.
    sqlx::query("UPDATE platform_config SET value = '45' WHERE key = 'order.expiry.minutes'")
        .execute(db.pool())
        .await?;
    until(&config, "the first change arrives", || *expiry.get() == 45).await?;

    let killed = db.terminate_listeners().await?;
    assert_eq!(killed, 1, "exactly the listener connection is terminated");
    // Changed while the listener is reconnecting: the resync after reconnecting must find it.
    sqlx::query("UPDATE platform_config SET value = '60' WHERE key = 'order.expiry.minutes'")
        .execute(db.pool())
        .await?;
    until(&config, "the change made during the outage arrives", || {
        *expiry.get() == 60
    })
    .await?;
    Ok(())
}

/// The database refuses every new connection and loses its current ones; a change is made
/// meanwhile. The service keeps serving, reports stale, and catches up when the database is back.
#[tokio::test]
async fn values_survive_a_database_outage_and_catch_up_after_it() -> Result<()> {
    let db = migrated().await?;
    insert(db.pool(), "production", "order.expiry.minutes", &json!(30)).await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(2))
        .connect(db.url())
        .await?;
    let (config, feed) = config::watch(pool, "production", options()).await?;
    let expiry = config.setting("order.expiry.minutes", 15_u32);
    // A change that arrives proves the listener is connected: its loss is what reports the outage.
    sqlx::query("UPDATE platform_config SET value = '45' WHERE key = 'order.expiry.minutes'")
        .execute(db.pool())
        .await?;
    until(&config, "the first change arrives", || *expiry.get() == 45).await?;
    // The operator's connection survives the outage; everything else is cut. A database cannot
    // close itself to connections, so that is done from the server's maintenance database.
    let mut operator = sqlx::PgConnection::connect(db.url()).await?;
    let database = db.name();
    let mut maintenance =
        sqlx::PgConnection::connect(&db.url().replace(database, "postgres")).await?;
    // The name is the test kit's `gw_test_<pid>_<random>`: no quoting issue.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{database}\" ALLOW_CONNECTIONS false"
    )))
    .execute(&mut maintenance)
    .await?;
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&mut operator)
    .await?;

    until_status(&feed, "the feed reports the outage", |s| !s.is_fresh()).await?;
    sqlx::query("UPDATE platform_config SET value = '90' WHERE key = 'order.expiry.minutes'")
        .execute(&mut operator)
        .await?;
    assert_eq!(
        *expiry.get(),
        45,
        "the last values are served during the outage"
    );
    assert_eq!(config.get_or("order.expiry.minutes", 0), 45);
    let FeedStatus::Stale { error, .. } = feed.status() else {
        bail!("expected a stale status");
    };
    assert!(!error.is_empty());

    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{database}\" ALLOW_CONNECTIONS true"
    )))
    .execute(&mut maintenance)
    .await?;
    until(&config, "the change made during the outage arrives", || {
        *expiry.get() == 90
    })
    .await?;
    until_status(&feed, "the feed is fresh again", FeedStatus::is_fresh).await?;
    operator.close().await?;
    maintenance.close().await?;
    Ok(())
}

#[tokio::test]
async fn a_snapshot_serves_a_cold_start_while_the_database_is_down() -> Result<()> {
    let db = migrated().await?;
    let dir = tempfile::tempdir()?;
    let snapshot = dir.path().join("config.snapshot.json");
    insert(db.pool(), "production", WEIGHTS, &seed_weights()).await?;
    let (_, feed) = config::watch(
        db.pool().clone(),
        "production",
        options().snapshot_path(&snapshot),
    )
    .await?;
    feed.shutdown().await;
    assert!(snapshot.exists());

    // Nothing listens on port 1: the database is "down".
    let down = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy("postgres://postgres:hunter2@127.0.0.1:1/postgres")?;
    let (config, feed) = config::watch(
        down.clone(),
        "production",
        options().snapshot_path(&snapshot),
    )
    .await?;
    let weights = config.setting(WEIGHTS, even_weights());
    assert!((weights.get().price_weight - 0.4).abs() < f64::EPSILON);
    assert!(!feed.status().is_fresh(), "served from a snapshot is stale");
    drop(feed);

    // Another environment's snapshot is never served.
    let error = config::watch(down.clone(), "staging", options().snapshot_path(&snapshot))
        .await
        .err()
        .context("a production snapshot must not start staging")?;
    let message = error.to_string();
    assert!(message.contains("platform_config/staging"), "{message}");

    let missing = dir.path().join("none.json");
    let error = config::watch(down, "production", options().snapshot_path(&missing))
        .await
        .err()
        .context("no database and no snapshot must fail")?;
    let message = error.to_string();
    assert!(message.contains("none.json"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    Ok(())
}

#[tokio::test]
async fn a_concurrent_edit_is_refused_not_lost() -> Result<()> {
    let db = migrated().await?;
    let admin = ConfigAdmin::new(db.pool().clone());
    let value = json!(30);
    let new = NewValue {
        env: "production",
        key: "order.expiry.minutes",
        value: &value,
        description: None,
    };
    let created = admin.set(&new, Expect::Absent, "alice").await?;
    assert!(matches!(
        admin.set(&new, Expect::Absent, "bob").await,
        Err(AdminError::Exists { revision, .. }) if revision == created.revision
    ));

    // Alice and Bob both read revision `created.revision`; Alice writes first.
    let alices = json!(45);
    let alice = admin
        .set(
            &NewValue {
                value: &alices,
                ..new.clone()
            },
            Expect::Revision(created.revision),
            "alice",
        )
        .await?;
    let bobs = json!(20);
    let refused = admin
        .set(
            &NewValue {
                value: &bobs,
                ..new.clone()
            },
            Expect::Revision(created.revision),
            "bob",
        )
        .await;
    match refused {
        Err(AdminError::Conflict {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (created.revision, alice.revision)),
        other => bail!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        admin.get("production", "order.expiry.minutes").await?.value,
        alices
    );
    assert!(matches!(
        admin
            .delete(
                "production",
                "order.expiry.minutes",
                Expect::Revision(created.revision),
                "bob"
            )
            .await,
        Err(AdminError::Conflict { .. })
    ));
    assert!(matches!(
        admin
            .set(
                &NewValue {
                    key: "nope",
                    ..new.clone()
                },
                Expect::Revision(1),
                "bob"
            )
            .await,
        Err(AdminError::NotFound { .. })
    ));
    assert!(matches!(
        admin
            .set(&NewValue { key: "", ..new }, Expect::Any, "bob")
            .await,
        Err(AdminError::InvalidKey(0))
    ));
    Ok(())
}

/// Eight writers each add 1 five times, reading and retrying on conflict: no increment is lost.
#[tokio::test]
async fn concurrent_writers_that_retry_on_conflict_lose_nothing() -> Result<()> {
    let db = migrated().await?;
    let admin = ConfigAdmin::new(db.pool().clone());
    let counter = json!(0);
    let counter_key = NewValue {
        env: "production",
        key: "counter",
        value: &counter,
        description: None,
    };
    admin.set(&counter_key, Expect::Absent, "setup").await?;
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..8 {
        let admin = admin.clone();
        writers.spawn(async move {
            let actor = format!("writer-{writer}");
            for _ in 0..5 {
                loop {
                    let item = admin.get("production", "counter").await?;
                    let next = json!(item.value.as_i64().unwrap_or_default() + 1);
                    let new = NewValue {
                        env: "production",
                        key: "counter",
                        value: &next,
                        description: None,
                    };
                    match admin
                        .set(&new, Expect::Revision(item.revision), &actor)
                        .await
                    {
                        Ok(_) => break,
                        Err(AdminError::Conflict { .. }) => {}
                        Err(error) => return Err(anyhow::Error::from(error)),
                    }
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = writers.join_next().await {
        done??;
    }
    assert_eq!(admin.get("production", "counter").await?.value, json!(40));
    Ok(())
}

#[tokio::test]
async fn history_records_every_change_and_rollback_restores_one() -> Result<()> {
    let db = migrated().await?;
    let admin = ConfigAdmin::new(db.pool().clone());
    let key = "order.expiry.minutes";
    let mut revision = None;
    for (minutes, author) in [(30, "alice"), (45, "bob"), (60, "carol")] {
        let value = json!(minutes);
        let new = NewValue {
            env: "production",
            key,
            value: &value,
            description: Some("unpaid orders expire"),
        };
        let expect = revision.map_or(Expect::Absent, Expect::Revision);
        revision = Some(admin.set(&new, expect, author).await?.revision);
    }
    let history = admin.history("production", key).await?;
    let authors: Vec<_> = history
        .iter()
        .map(|c| c.changed_by.clone().unwrap_or_default())
        .collect();
    assert_eq!(authors, ["carol", "bob", "alice"]);
    assert!(history.windows(2).all(|w| w[0].revision > w[1].revision));
    assert_eq!(history[1].value, Some(json!(45)));

    let current = history[0].revision;
    let restored = admin
        .rollback(
            "production",
            key,
            history[1].revision,
            Expect::Revision(current),
            "dave",
        )
        .await?;
    assert_eq!(restored.value, json!(45));
    assert_eq!(restored.updated_by.as_deref(), Some("dave"));
    assert!(matches!(
        admin
            .rollback(
                "production",
                key,
                history[2].revision,
                Expect::Revision(current),
                "erin"
            )
            .await,
        Err(AdminError::Conflict { .. })
    ));

    admin.delete("production", key, Expect::Any, "erin").await?;
    let history = admin.history("production", key).await?;
    assert_eq!(history[0].op, "DELETE");
    assert_eq!(history[0].changed_by.as_deref(), Some("erin"));
    let restored = admin
        .rollback(
            "production",
            key,
            history[4].revision,
            Expect::Absent,
            "erin",
        )
        .await?;
    assert_eq!(restored.value, json!(30));
    assert_eq!(
        restored.description.as_deref(),
        Some("unpaid orders expire")
    );

    assert!(matches!(
        admin
            .rollback("production", key, -1, Expect::Any, "x")
            .await,
        Err(AdminError::NoSuchRevision { .. })
    ));
    assert!(matches!(
        admin.history("staging", key).await,
        Err(AdminError::NotFound { .. })
    ));
    Ok(())
}

#[tokio::test]
async fn a_burst_of_updates_converges_to_the_last_one() -> Result<()> {
    let db = migrated().await?;
    insert(db.pool(), "production", "burst", &json!(0)).await?;
    let (config, feed) = config::watch(db.pool().clone(), "production", options()).await?;
    let writer = PgPool::connect(db.url()).await?;
    sqlx::raw_sql(
        "DO $$ BEGIN FOR i IN 1..10000 LOOP
            UPDATE platform_config SET value = to_jsonb(i) WHERE key = 'burst';
         END LOOP; END $$;
         UPDATE platform_config SET value = '-1' WHERE key = 'burst';",
    )
    .execute(&writer)
    .await?;
    until(&config, "the last update wins", || {
        config.get_or("burst", 0_i64) == -1
    })
    .await?;
    let generations = *feed.generations().borrow();
    assert!(
        generations < 100,
        "10,001 updates coalesced into {generations} reloads"
    );
    Ok(())
}

#[tokio::test]
async fn inserts_deletes_renames_and_moves_by_plain_sql_leave_the_client_equal_to_the_table()
-> Result<()> {
    let db = migrated().await?;
    for key in ["a", "b", "c", "d"] {
        insert(db.pool(), "production", key, &json!(key)).await?;
    }
    let (config, feed) = config::watch(db.pool().clone(), "production", options()).await?;
    let mut operator = sqlx::PgConnection::connect(db.url()).await?;
    // Each statement changes rows the client holds without a full reload: only notifications
    // name them, and the client loads just those keys.
    sqlx::raw_sql(
        "INSERT INTO platform_config (env, key, value) VALUES ('production', 'e', '\"e\"');
         DELETE FROM platform_config WHERE env = 'production' AND key = 'a';
         UPDATE platform_config SET key = 'b.renamed' WHERE env = 'production' AND key = 'b';
         UPDATE platform_config SET env = 'staging' WHERE env = 'production' AND key = 'c';
         UPDATE platform_config SET value = '\"d2\"' WHERE env = 'production' AND key = 'd';
         INSERT INTO platform_config (env, key, value) VALUES ('staging', 'f', '\"f\"');
         INSERT INTO platform_config (env, key, value) VALUES ('production', 'last', 'true');",
    )
    .execute(&mut operator)
    .await?;
    until(&config, "the last insert arrives", || {
        config.get_or("last", false)
    })
    .await?;
    let mut table = config::load_env(db.pool(), "production").await?;
    table.sort_by(|a, b| a.key.cmp(&b.key));
    let mut client: Vec<_> = config.snapshot().iter().cloned().collect();
    client.sort_by(|a, b| a.key.cmp(&b.key));
    let keys: Vec<&str> = client.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["b.renamed", "d", "e", "last"]);
    assert_eq!(client, table, "the client's state equals the table's");
    assert_eq!(config.get_or("d", String::new()), "d2");
    assert!(feed.status().is_fresh());
    operator.close().await?;
    Ok(())
}

#[tokio::test]
async fn a_deleted_and_reinserted_key_is_served_with_its_new_value() -> Result<()> {
    let db = migrated().await?;
    insert(db.pool(), "production", "limit", &json!(1)).await?;
    let (config, _feed) = config::watch(db.pool().clone(), "production", options()).await?;
    let limit = config.setting("limit", 0_u32);
    assert_eq!(*limit.get(), 1);
    // One transaction: the client sees both notifications together and must end with the row.
    sqlx::raw_sql(
        "BEGIN;
         DELETE FROM platform_config WHERE env = 'production' AND key = 'limit';
         INSERT INTO platform_config (env, key, value) VALUES ('production', 'limit', '2');
         COMMIT;",
    )
    .execute(db.pool())
    .await?;
    until(&config, "the new row arrives", || *limit.get() == 2).await?;
    sqlx::query("DELETE FROM platform_config WHERE key = 'limit'")
        .execute(db.pool())
        .await?;
    until(&config, "the delete arrives", || *limit.get() == 0).await?;
    assert!(config.snapshot().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_postgres_source_serves_the_table_like_watch() -> Result<()> {
    let db = migrated().await?;
    insert(db.pool(), "production", "order.expiry.minutes", &json!(30)).await?;
    let (config, feed) = config::Source::postgres(db.pool().clone(), options())
        .start("production")
        .await?;
    assert_eq!(config.get_or("order.expiry.minutes", 15_u32), 30);
    insert(db.pool(), "production", "added", &json!(1)).await?;
    until(&config, "the insert arrives", || {
        config.get_or("added", 0) == 1
    })
    .await?;
    assert!(feed.status().is_fresh());
    feed.shutdown().await;
    Ok(())
}
