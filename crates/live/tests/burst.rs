//! The 10,000-update burst drill, alone in its own test binary so that the process's memory
//! figures belong to it: the client converges to the table, coalesces the burst into a few
//! loads, and its memory stays bounded.

use std::time::Duration;

use anyhow::{Context, Result};
use groundwork_live::FeedOptions;
use groundwork_live::config::{self, LiveConfig};
use groundwork_testkit::TestDatabase;
use sqlx::PgPool;

/// A `VmRSS`/`VmHWM`-style line of /proc/self/status, in KiB.
fn status_kib(field: &str) -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .with_context(|| format!("no {field} in /proc/self/status"))?;
    let kib = line
        .split_whitespace()
        .nth(1)
        .with_context(|| format!("no value in `{line}`"))?;
    Ok(kib.parse()?)
}

/// Resets the process's peak resident set size (`VmHWM`) to its current size, so that the peak
/// read later is the burst's. Linux only; false when the kernel refuses.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

async fn until(config: &LiveConfig, what: &str, check: impl Fn() -> bool) -> Result<()> {
    groundwork_testkit::until_changed(config.updates(), Duration::from_mins(1), what, check)
        .await?;
    Ok(())
}

async fn table_equals_client(pool: &PgPool, config: &LiveConfig) -> Result<()> {
    let mut table = config::load_env(pool, "production").await?;
    table.sort_by(|a, b| a.key.cmp(&b.key));
    let mut client: Vec<_> = config.snapshot().iter().cloned().collect();
    client.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(client.len(), table.len());
    assert!(client == table, "the client's state equals the table's");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_ten_thousand_updates_converges_with_bounded_memory() -> Result<()> {
    let db = TestDatabase::create().await?;
    sqlx::raw_sql(config::MIGRATIONS[0].1)
        .execute(db.pool())
        .await?;
    // 1,000 keys, as a service's environment might hold.
    sqlx::raw_sql(
        "INSERT INTO platform_config (env, key, value)
         SELECT 'production', 'service' || (i / 20) || '.setting' || (i % 20), to_jsonb(i)
         FROM generate_series(0, 999) AS i;",
    )
    .execute(db.pool())
    .await?;
    let options = FeedOptions::default().poll_interval(Duration::from_hours(1));
    let (config, feed) = config::watch(db.pool().clone(), "production", options).await?;
    let writer = PgPool::connect(db.url()).await?;

    let rss_before = status_kib("VmRSS:")?;
    let peak_reset = reset_peak_rss();
    let generations_before = *feed.generations().borrow();

    // Four transactions: 10,000 updates of one key; 10,000 updates spread over the 1,000 keys;
    // 2,000 new keys (more distinct keys than the feed queues: it falls back to a full reload);
    // a marker.
    for statement in [
        "DO $$ BEGIN FOR i IN 1..10000 LOOP
            UPDATE platform_config SET value = to_jsonb(i) WHERE key = 'service0.setting0';
         END LOOP; END $$;",
        "DO $$ BEGIN FOR i IN 1..10000 LOOP
            UPDATE platform_config SET value = to_jsonb(-i)
            WHERE key = 'service' || ((i % 1000) / 20) || '.setting' || (i % 20);
         END LOOP; END $$;",
        "INSERT INTO platform_config (env, key, value)
         SELECT 'production', 'added.' || i, to_jsonb(i) FROM generate_series(1, 2000) AS i;",
        "INSERT INTO platform_config (env, key, value) VALUES ('production', 'burst.done', 'true');",
    ] {
        sqlx::raw_sql(statement).execute(&writer).await?;
    }
    until(&config, "the marker after the bursts arrives", || {
        config.get_or("burst.done", false)
    })
    .await?;
    table_equals_client(db.pool(), &config).await?;

    let rss_after = status_kib("VmRSS:")?;
    let peak = status_kib("VmHWM:")?;
    let loads = *feed.generations().borrow() - generations_before;
    println!(
        "bursts of 22,001 changes: {loads} loads published; VmRSS {rss_before} KiB before, \
         {rss_after} KiB after; peak during the burst {peak} KiB (peak reset before the burst: {peak_reset})"
    );
    assert!(
        loads < 100,
        "22,001 notifications coalesced into {loads} published loads"
    );
    // The client holds 3,001 small values; what a burst may add is a bounded queue of keys
    // (at most 1,024) and a load's rows, well under 16 MiB whatever the burst's length.
    let growth = rss_after.saturating_sub(rss_before);
    assert!(growth < 16 * 1024, "resident memory grew by {growth} KiB");
    if peak_reset {
        let peak_growth = peak.saturating_sub(rss_before);
        assert!(
            peak_growth < 16 * 1024,
            "peak resident memory grew by {peak_growth} KiB during the burst"
        );
    }
    assert!(feed.status().is_fresh());
    feed.shutdown().await;
    Ok(())
}
