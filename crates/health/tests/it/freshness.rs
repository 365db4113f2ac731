//! The hot-reload freshness check, on hand-made statuses and on a real groundwork-live feed.

use crate::common;

use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use groundwork_health::{ConfigFreshnessCheck, Health, HealthCheck, Status};
use groundwork_live::{FeedOptions, FeedStatus, Table};
use groundwork_testkit::TestDatabase;
use tokio::sync::watch;

const POLL: Duration = Duration::from_secs(30);

fn seconds_ago(seconds: u64) -> anyhow::Result<SystemTime> {
    SystemTime::now()
        .checked_sub(Duration::from_secs(seconds))
        .context("clock before 1970")
}

#[tokio::test]
async fn fresh_feed_passes_with_its_age() -> anyhow::Result<()> {
    let (_sender, statuses) = watch::channel(FeedStatus::Fresh {
        loaded_at: seconds_ago(12)?,
    });
    let result = ConfigFreshnessCheck::new(statuses, POLL).check().await;
    assert_eq!(result.status, Status::Pass);
    let age = result
        .observations
        .iter()
        .find(|o| o.measurement == "age")
        .and_then(|o| o.value.as_f64())
        .context("no age")?;
    assert!((12.0..14.0).contains(&age), "{age}");
    Ok(())
}

#[tokio::test]
async fn feed_stale_within_n_poll_intervals_still_passes() -> anyhow::Result<()> {
    let (_sender, statuses) = watch::channel(FeedStatus::Stale {
        since: seconds_ago(80)?,
        error: "connection refused".into(),
    });
    let result = ConfigFreshnessCheck::new(statuses, POLL).check().await;
    assert_eq!(result.status, Status::Pass, "{result:?}");
    Ok(())
}

#[tokio::test]
async fn feed_stale_longer_than_n_poll_intervals_warns_and_the_service_stays_ready()
-> anyhow::Result<()> {
    let (_sender, statuses) = watch::channel(FeedStatus::Stale {
        since: seconds_ago(100)?,
        error: "error connecting to postgres://app:hunter2@db/app".into(),
    });
    let check = ConfigFreshnessCheck::new(statuses, POLL);
    let result = check.check().await;
    assert_eq!(result.status, Status::Warn);
    let output = result.output.context("no output")?;
    assert!(
        output.starts_with("stale for 100 s, longer than 3 poll intervals of 30s"),
        "{output}"
    );
    assert!(!output.contains("hunter2"), "{output}");

    let health = Health::builder().check(check).build()?;
    let server = common::Server::start(health.router()).await?;
    let reply = server.get("/health").await?;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, r#"{"status":"warn"}"#)
    );
    Ok(())
}

#[tokio::test]
async fn stale_after_polls_sets_the_limit() -> anyhow::Result<()> {
    let (_sender, statuses) = watch::channel(FeedStatus::Stale {
        since: seconds_ago(40)?,
        error: "timeout".into(),
    });
    let result = ConfigFreshnessCheck::new(statuses, POLL)
        .stale_after_polls(1)
        .check()
        .await;
    assert_eq!(result.status, Status::Warn);
    Ok(())
}

#[tokio::test]
async fn stopped_feed_warns() -> anyhow::Result<()> {
    let (sender, statuses) = watch::channel(FeedStatus::Fresh {
        loaded_at: SystemTime::now(),
    });
    drop(sender);
    let result = ConfigFreshnessCheck::new(statuses, POLL).check().await;
    assert_eq!(result.status, Status::Warn);
    assert_eq!(
        result.output.as_deref(),
        Some("the feed stopped: the values it served last no longer change")
    );
    Ok(())
}

/// A table the test creates and drops: enough for a feed to load, and to fail to load.
struct Numbers;

impl Table for Numbers {
    type Row = i32;

    fn name(&self) -> &'static str {
        "numbers"
    }

    fn channel(&self) -> &'static str {
        "gw_health_test_numbers"
    }

    async fn load(&self, pool: &sqlx::PgPool) -> Result<Vec<i32>, sqlx::Error> {
        sqlx::query_scalar("SELECT n FROM numbers")
            .fetch_all(pool)
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_feed_passes_while_fresh_and_warns_once_stale() -> anyhow::Result<()> {
    let database = TestDatabase::create().await?;
    sqlx::query("CREATE TABLE numbers (n INTEGER NOT NULL)")
        .execute(database.pool())
        .await?;
    sqlx::query("INSERT INTO numbers VALUES (1)")
        .execute(database.pool())
        .await?;
    let poll = Duration::from_millis(50);
    let feed = groundwork_live::start(
        database.pool().clone(),
        Numbers,
        FeedOptions::default().poll_interval(poll),
        |_rows| {},
    )
    .await?;
    // Zero poll intervals: any staleness warns, so the test needs no wait for time to pass.
    let check = ConfigFreshnessCheck::new(feed.statuses(), poll).stale_after_polls(0);
    assert_eq!(check.check().await.status, Status::Pass);

    // The table disappears: the feed's next poll fails and it serves its last rows, stale.
    sqlx::query("DROP TABLE numbers")
        .execute(database.pool())
        .await?;
    let mut statuses = feed.statuses();
    tokio::time::timeout(
        Duration::from_secs(10),
        statuses.wait_for(|status| !status.is_fresh()),
    )
    .await
    .context("the feed did not turn stale within 10 s")?
    .context("the feed stopped")?;
    let result = check.check().await;
    assert_eq!(result.status, Status::Warn, "{result:?}");
    assert!(
        result
            .output
            .as_deref()
            .is_some_and(|o| o.contains("numbers")),
        "{result:?}"
    );
    feed.shutdown().await;
    Ok(())
}
