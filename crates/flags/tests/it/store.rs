//! The `feature_flags` table against a real PostgreSQL: migrations, hot reload, outages and
//! admin. Each test owns a fresh database.

#![cfg(feature = "postgres")]

use std::time::Duration;

use anyhow::{Context, Result};
use groundwork_flags::admin::{AdminError, Expect, FlagAdmin, FlagItem, FlagUpdate};
use groundwork_flags::{Flag, Flags, Reason, Variant, store};
use groundwork_live::{Feed, FeedOptions};
use groundwork_testkit::TestDatabase;

use crate::common::migrated;
use sqlx::PgPool;

/// A migrated database where `alice` created `flag`; its admin, and the flag as read back.
async fn created_by_alice(flag: &Flag) -> Result<(TestDatabase, FlagAdmin, FlagItem)> {
    let db = migrated().await?;
    let admin = FlagAdmin::new(db.pool().clone());
    admin.create(flag, "alice").await?;
    let read = admin.item(&flag.name).await?;
    Ok((db, admin, read))
}

/// An update that switches a flag on.
fn enable() -> FlagUpdate {
    FlagUpdate {
        enabled: Some(true),
        ..FlagUpdate::default()
    }
}

#[tokio::test]
async fn migrations_run_once_under_groundwork_migrate_and_then_find_nothing_to_do() -> Result<()> {
    let db = TestDatabase::create().await?;
    let (first, second) = tokio::join!(store::migrate(db.pool()), store::migrate(db.pool()));
    let applied = first?.steps.len() + second?.steps.len();
    assert_eq!(
        applied, 2,
        "one of two concurrent runs applies 0001 and 0002, the other finds nothing"
    );
    let again = store::migrate(db.pool()).await?;
    assert!(again.steps.is_empty());
    let tracked: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {}",
        store::MIGRATIONS_TABLE
    )))
    .fetch_one(db.pool())
    .await?;
    assert_eq!(tracked, 2);
    Ok(())
}

/// Waits, without sleeping, until `check` holds: re-checks whenever the feed publishes.
async fn until(feed: &Feed, what: &str, check: impl Fn() -> bool) -> Result<()> {
    groundwork_testkit::until_changed(feed.generations(), Duration::from_secs(10), what, check)
        .await?;
    Ok(())
}

fn options() -> FeedOptions {
    // A long poll so tests prove notifications, not the safety net, deliver changes.
    FeedOptions::default().poll_interval(Duration::from_hours(1))
}

#[tokio::test]
async fn migrations_apply_and_revert_cleanly() -> Result<()> {
    let db = migrated().await?;
    let (_, down) = store::MIGRATIONS[1];
    sqlx::raw_sql(down).execute(db.pool()).await?;
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_class WHERE relname LIKE 'feature_flags%'")
            .fetch_one(db.pool())
            .await?;
    assert_eq!(left, 0);
    let (_, up) = store::MIGRATIONS[0];
    sqlx::raw_sql(up).execute(db.pool()).await?;
    Ok(())
}

#[tokio::test]
async fn the_table_refuses_a_rollout_outside_0_to_100() -> Result<()> {
    let db = migrated().await?;
    let result = sqlx::query("INSERT INTO feature_flags (name, rollout_pct) VALUES ('x', 150)")
        .execute(db.pool())
        .await;
    assert!(result.is_err(), "the CHECK constraint must refuse 150");
    Ok(())
}

#[tokio::test]
async fn admin_changes_reach_watching_services() -> Result<()> {
    let db = migrated().await?;
    let (flags, feed) = store::watch(db.pool().clone(), options()).await?;
    let admin = FlagAdmin::new(db.pool().clone());
    assert!(flags.snapshot().is_empty());

    admin
        .create(&Flag::new("supplier.realtime.sync"), "alice")
        .await?;
    until(&feed, "the flag appears", || flags.snapshot().len() == 1).await?;
    assert!(!flags.is_enabled("supplier.realtime.sync", "tenant-1"));

    admin
        .set_rollout("supplier.realtime.sync", 14, "alice")
        .await?;
    admin
        .set_enabled("supplier.realtime.sync", true, "alice")
        .await?;
    // tenant-1 is in bucket 13: on at 14%.
    until(&feed, "tenant-1 is on", || {
        flags.is_enabled("supplier.realtime.sync", "tenant-1")
    })
    .await?;

    admin
        .set_rollout("supplier.realtime.sync", 100, "bob")
        .await?;
    let tricky_tenants = [
        "tenant-7",
        r#"say "hi""#,
        r"back\slash",
        "NULL",
        "{braces}",
        "it's",
    ];
    admin
        .set_whitelist(
            "supplier.realtime.sync",
            Some(tricky_tenants.iter().map(|&t| t.to_owned()).collect()),
            "bob",
        )
        .await?;
    until(&feed, "the whitelist applies", || {
        !flags.is_enabled("supplier.realtime.sync", "tenant-1")
    })
    .await?;
    // Loaded as text: the array's quoting and escapes come back as written.
    for tenant in tricky_tenants {
        assert!(
            flags.is_enabled("supplier.realtime.sync", tenant),
            "{tenant:?} is whitelisted"
        );
    }

    admin.delete("supplier.realtime.sync", "bob").await?;
    until(&feed, "the flag is gone", || flags.snapshot().is_empty()).await?;
    assert_eq!(
        flags.evaluate("supplier.realtime.sync", "tenant-7").reason,
        Reason::NotFound
    );
    assert!(feed.status().is_fresh());
    feed.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_operators_plain_sql_update_reaches_the_service() -> Result<()> {
    let db = migrated().await?;
    sqlx::query("INSERT INTO feature_flags (name, enabled) VALUES ('admin.v2', false)")
        .execute(db.pool())
        .await?;
    let (flags, feed) = store::watch(db.pool().clone(), options()).await?;
    assert!(!flags.is_enabled("admin.v2", "tenant-1"));
    // Through a separate connection, as psql would.
    let operator = PgPool::connect(db.url()).await?;
    sqlx::query("UPDATE feature_flags SET enabled = true WHERE name = 'admin.v2'")
        .execute(&operator)
        .await?;
    until(&feed, "the update arrives", || {
        flags.is_enabled("admin.v2", "tenant-1")
    })
    .await?;
    operator.close().await;
    Ok(())
}

#[tokio::test]
async fn a_terminated_listener_reconnects_and_misses_nothing() -> Result<()> {
    let db = migrated().await?;
    let (flags, feed) = store::watch(db.pool().clone(), options()).await?;
    let admin = FlagAdmin::new(db.pool().clone());
    admin.create(&Flag::new("risk.auto.reject"), "ops").await?;
    until(&feed, "the flag appears", || flags.snapshot().len() == 1).await?;

    let killed = db.terminate_listeners().await?;
    assert_eq!(killed, 1, "exactly the listener connection is terminated");
    // Changed while the listener is reconnecting: the resync after reconnecting must find it.
    admin.set_enabled("risk.auto.reject", true, "ops").await?;
    until(&feed, "the change made during the outage arrives", || {
        flags.is_enabled("risk.auto.reject", "tenant-1")
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_legacy_out_of_range_row_is_off_and_reported() -> Result<()> {
    let db = migrated().await?;
    sqlx::raw_sql(
        "ALTER TABLE feature_flags DROP CONSTRAINT feature_flags_rollout_pct_range;
         INSERT INTO feature_flags (name, enabled, rollout_pct) VALUES ('matching.ai.boost', true, 150);",
    )
    .execute(db.pool())
    .await?;
    let (flags, _feed) = store::watch(db.pool().clone(), options()).await?;
    let evaluation = flags.evaluate("matching.ai.boost", "tenant-1");
    assert!(!evaluation.enabled);
    assert_eq!(evaluation.reason, Reason::InvalidRollout);
    assert_eq!(flags.snapshot().invalid().count(), 1);
    Ok(())
}

#[tokio::test]
async fn a_snapshot_serves_a_cold_start_while_the_database_is_down() -> Result<()> {
    let db = migrated().await?;
    let dir = tempfile::tempdir()?;
    let snapshot = dir.path().join("flags.snapshot.json");
    sqlx::query(
        "INSERT INTO feature_flags (name, enabled) VALUES ('settlement.auto.reconcile', true)",
    )
    .execute(db.pool())
    .await?;
    let (_, feed) = store::watch(db.pool().clone(), options().snapshot_path(&snapshot)).await?;
    feed.shutdown().await;
    assert!(snapshot.exists());

    // Nothing listens on port 1: the database is "down".
    let down = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy("postgres://postgres:hunter2@127.0.0.1:1/postgres")?;
    let (flags, feed) = store::watch(down.clone(), options().snapshot_path(&snapshot)).await?;
    assert!(flags.is_enabled("settlement.auto.reconcile", "tenant-1"));
    assert!(!feed.status().is_fresh(), "served from a snapshot is stale");

    let missing = dir.path().join("none.json");
    let error = store::watch(down, options().snapshot_path(&missing))
        .await
        .err()
        .context("no database and no snapshot must fail")?;
    let message = error.to_string();
    assert!(
        message.contains("feature_flags") && message.contains("none.json"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
    Ok(())
}

#[tokio::test]
async fn history_records_every_change_and_rollback_restores_one() -> Result<()> {
    let db = migrated().await?;
    let admin = FlagAdmin::new(db.pool().clone());
    admin.create(&Flag::new("admin.v2"), "alice").await?;
    admin.set_rollout("admin.v2", 5, "alice").await?;
    admin.set_enabled("admin.v2", true, "bob").await?;
    admin.set_rollout("admin.v2", 30, "carol").await?;

    let history = admin.history("admin.v2").await?;
    let authors: Vec<_> = history
        .iter()
        .map(|c| c.changed_by.clone().unwrap_or_default())
        .collect();
    assert_eq!(authors, ["carol", "bob", "alice", "alice"]);
    assert!(history.windows(2).all(|w| w[0].revision > w[1].revision));

    // Back to "enabled at 5%", the state right after bob's change.
    let target = history[1].revision;
    let restored = admin.rollback("admin.v2", target, "dave").await?;
    assert_eq!((restored.enabled, restored.rollout_pct), (true, 5));
    let now = admin.get("admin.v2").await?;
    assert_eq!((now.enabled, now.rollout_pct), (true, 5));
    assert_eq!(
        admin.history("admin.v2").await?[0].changed_by.as_deref(),
        Some("dave")
    );

    admin.delete("admin.v2", "erin").await?;
    let restored = admin.rollback("admin.v2", target, "erin").await?;
    assert_eq!(restored.rollout_pct, 5);
    assert!(
        admin.get("admin.v2").await.is_ok(),
        "rollback recreates a deleted flag"
    );

    assert!(matches!(
        admin.rollback("admin.v2", -1, "x").await,
        Err(AdminError::NoSuchRevision { .. })
    ));
    assert!(matches!(
        admin.set_rollout("admin.v2", 101, "x").await,
        Err(AdminError::InvalidRollout(101))
    ));
    assert!(matches!(
        admin.set_enabled("nope", true, "x").await,
        Err(AdminError::NotFound(_))
    ));
    assert!(matches!(
        admin.create(&Flag::new("admin.v2"), "x").await,
        Err(AdminError::Exists(_))
    ));
    Ok(())
}

#[tokio::test]
async fn a_burst_of_updates_converges_to_the_last_one() -> Result<()> {
    let db = migrated().await?;
    let (flags, feed) = store::watch(db.pool().clone(), options()).await?;
    sqlx::query("INSERT INTO feature_flags (name, enabled, rollout_pct) VALUES ('burst', true, 0)")
        .execute(db.pool())
        .await?;
    let writer = PgPool::connect(db.url()).await?;
    sqlx::raw_sql(
        "DO $$ BEGIN FOR i IN 1..2000 LOOP
            UPDATE feature_flags SET rollout_pct = i % 100 WHERE name = 'burst';
         END LOOP; END $$;
         UPDATE feature_flags SET rollout_pct = 100 WHERE name = 'burst';",
    )
    .execute(&writer)
    .await?;
    until(&feed, "the last update wins", || {
        flags.snapshot().get("burst").map(|f| f.rollout_pct) == Some(100)
    })
    .await?;
    let generations = *feed.generations().borrow();
    assert!(
        generations < 100,
        "2,001 updates coalesced into {generations} reloads"
    );
    Ok(())
}

/// Flags not in the table keep evaluating to off while the set is swapped under readers.
#[tokio::test]
async fn readers_never_see_a_partial_set() -> Result<()> {
    let flags = Flags::default();
    let reader = flags.clone();
    let handle =
        tokio::task::spawn_blocking(move || (0..100_000).all(|_| !reader.is_enabled("never", "t")));
    for i in 0..1_000 {
        flags.replace(groundwork_flags::FlagSet::new([Flag {
            enabled: i % 2 == 0,
            ..Flag::new("other")
        }]));
    }
    assert!(handle.await?);
    Ok(())
}

#[test]
fn written_migrations_equal_the_crates_migrations_directory() -> Result<()> {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    Ok(groundwork_testkit::writes_same_files(
        store::write_migrations,
        &source,
    )?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_pgbouncer_flags_follow_changes_relayed_through_redis() -> Result<()> {
    use groundwork_live::{Relay, RelayOptions, RelayRole, Transport};
    use groundwork_testkit::{InfraEnv, Service};

    let db = migrated().await?;
    sqlx::query("INSERT INTO feature_flags (name, enabled) VALUES ('admin.v2', false)")
        .execute(db.pool())
        .await?;
    let transport = Transport::Redis {
        url: InfraEnv::discover()?.url(Service::Redis),
    };
    let namespace = format!("gwtest.{}", db.name());
    let relay = Relay::start(
        db.pool().clone(),
        RelayOptions::new(transport.clone())
            .namespace(namespace.as_str())
            .channels([store::CHANNEL]),
    )?;
    let mut roles = relay.roles();
    tokio::time::timeout(
        Duration::from_secs(10),
        roles.wait_for(|role| *role == RelayRole::Leader),
    )
    .await??;
    // The instance reaches PostgreSQL only through PgBouncer in transaction pooling mode.
    let pooled = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&db.pgbouncer_url()?)
        .await?;
    let (flags, feed) = store::watch(
        pooled,
        options().transport(transport).namespace(namespace.as_str()),
    )
    .await?;
    assert!(!flags.is_enabled("admin.v2", "tenant-1"));
    sqlx::query("UPDATE feature_flags SET enabled = true WHERE name = 'admin.v2'")
        .execute(db.pool())
        .await?;
    until(&feed, "the update arrives through the relay", || {
        flags.is_enabled("admin.v2", "tenant-1")
    })
    .await?;
    feed.shutdown().await;
    relay.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_change_from_a_stale_revision_is_refused_and_names_both_revisions() -> Result<()> {
    let (_db, admin, read) = created_by_alice(&Flag::new("risk.auto.reject")).await?;
    assert_eq!(read.updated_by.as_deref(), Some("alice"));

    // Bob and Carol both read `read`; Bob writes first.
    let bob = admin
        .update(
            "risk.auto.reject",
            &enable(),
            Expect::Revision(read.revision),
            "bob",
        )
        .await?;
    assert!(bob.flag.enabled && bob.revision > read.revision, "{bob:?}");
    assert_eq!(bob.updated_by.as_deref(), Some("bob"));

    let rollout = FlagUpdate {
        rollout_pct: Some(5),
        ..FlagUpdate::default()
    };
    let carol = admin
        .update(
            "risk.auto.reject",
            &rollout,
            Expect::Revision(read.revision),
            "carol",
        )
        .await;
    let Err(error) = carol else {
        anyhow::bail!("a write from a stale revision must be refused: {carol:?}");
    };
    assert!(error.is_conflict(), "{error:?}");
    let AdminError::Conflict {
        name,
        expected,
        actual,
    } = &error
    else {
        anyhow::bail!("expected a conflict, got {error:?}");
    };
    assert_eq!(
        (name.as_str(), *expected, *actual),
        ("risk.auto.reject", read.revision, bob.revision)
    );
    let message = error.to_string();
    for part in [
        "risk.auto.reject".to_owned(),
        read.revision.to_string(),
        bob.revision.to_string(),
    ] {
        assert!(message.contains(&part), "{part} missing from: {message}");
    }
    let now = admin.item("risk.auto.reject").await?;
    assert_eq!(now, bob, "Carol's refused write changed nothing");

    Ok(())
}

#[tokio::test]
async fn delete_and_rollback_are_guarded_and_an_update_never_creates_a_flag() -> Result<()> {
    let (_db, admin, read) = created_by_alice(&Flag::new("risk.auto.reject")).await?;
    let enable = enable();
    let bob = admin
        .update("risk.auto.reject", &enable, Expect::Any, "bob")
        .await?;

    // Delete and rollback are guarded the same way.
    assert!(matches!(
        admin
            .delete_if("risk.auto.reject", Expect::Revision(read.revision), "carol")
            .await,
        Err(AdminError::Conflict { .. })
    ));
    assert!(matches!(
        admin
            .rollback_if(
                "risk.auto.reject",
                read.revision,
                Expect::Revision(read.revision),
                "carol"
            )
            .await,
        Err(AdminError::Conflict { .. })
    ));
    let rolled = admin
        .rollback_if(
            "risk.auto.reject",
            read.revision,
            Expect::Revision(bob.revision),
            "carol",
        )
        .await?;
    assert!(
        !rolled.flag.enabled,
        "back to the state of {}",
        read.revision
    );

    // An update never creates a flag, and cannot expect one to be absent.
    assert!(matches!(
        admin
            .update("no.such.flag", &enable, Expect::Any, "carol")
            .await,
        Err(AdminError::NotFound(_))
    ));
    assert!(matches!(
        admin
            .update("risk.auto.reject", &enable, Expect::Absent, "carol")
            .await,
        Err(AdminError::Exists(_))
    ));
    admin
        .delete_if(
            "risk.auto.reject",
            Expect::Revision(rolled.revision),
            "carol",
        )
        .await?;
    assert!(matches!(
        admin.get("risk.auto.reject").await,
        Err(AdminError::NotFound(_))
    ));
    Ok(())
}

#[tokio::test]
async fn variants_are_written_checked_and_rolled_back_through_the_admin() -> Result<()> {
    let split = vec![Variant::new("blue", 50), Variant::new("green", 50)];
    let flag = Flag {
        enabled: true,
        variants: split.clone(),
        ..Flag::new("checkout.button")
    };
    let (db, admin, created) = created_by_alice(&flag).await?;
    assert_eq!(created.flag.variants, split);

    let refused = FlagUpdate {
        variants: Some(vec![Variant::new("blue", 50)]),
        ..FlagUpdate::default()
    };
    assert!(matches!(
        admin
            .update("checkout.button", &refused, Expect::Any, "bob")
            .await,
        Err(AdminError::Invalid(_))
    ));
    let all_blue = FlagUpdate {
        variants: Some(vec![Variant::new("blue", 100)]),
        ..FlagUpdate::default()
    };
    let changed = admin
        .update(
            "checkout.button",
            &all_blue,
            Expect::Revision(created.revision),
            "bob",
        )
        .await?;
    assert_eq!(changed.flag.variants, [Variant::new("blue", 100)]);

    let rolled = admin
        .rollback_if(
            "checkout.button",
            created.revision,
            Expect::Revision(changed.revision),
            "carol",
        )
        .await?;
    assert_eq!(rolled.flag.variants, split, "the split is back");
    let loaded = store::load_all(db.pool()).await?;
    assert_eq!(
        loaded
            .iter()
            .map(|f| f.variants.clone())
            .collect::<Vec<_>>(),
        [split],
        "the feed's loader reads what the admin wrote"
    );
    Ok(())
}
