//! Reliability drills that take the database away: they run against a private PostgreSQL
//! cluster the test owns, so restarting it disturbs no other test.

use std::time::Duration;

use anyhow::{Context, Result};
use groundwork_live::FeedOptions;
use groundwork_live::config::{self, LiveConfig};
use groundwork_testkit::TestCluster;
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

const ENV: &str = "production";
const UPDATES: i64 = 1_000;

async fn until(config: &LiveConfig, what: &str, check: impl Fn() -> bool) -> Result<()> {
    groundwork_testkit::until_changed(config.updates(), Duration::from_secs(30), what, check)
        .await?;
    Ok(())
}

async fn pool(url: &str) -> Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(2)
        // Short: with the server stopped, a reload fails (and the status turns stale) only once
        // acquiring a connection gives up.
        .acquire_timeout(Duration::from_secs(2))
        .connect(url)
        .await?)
}

/// Writes `value = i` for i in 1..=UPDATES, retrying each write until the server takes it, and
/// reports its progress.
async fn stream_updates(url: String, progress: tokio::sync::watch::Sender<i64>) -> Result<()> {
    let writer = pool(&url).await?;
    for i in 1..=UPDATES {
        let mut attempts = 0;
        loop {
            let written = sqlx::query(
                "UPDATE platform_config SET value = $1, updated_by = 'drill' WHERE env = $2 AND key = 'drill.counter'",
            )
            .bind(json!(i))
            .bind(ENV)
            .execute(&writer)
            .await;
            match written {
                Ok(_) => break,
                // The server is restarting: back off briefly and write the same value again.
                Err(_) if attempts < 200 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                Err(error) => return Err(error).context(format!("update {i} never went through")),
            }
        }
        progress.send_replace(i);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_postgres_while_updates_stream_in_converges_to_the_table() -> Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = pool(&cluster.url()).await?;
    sqlx::raw_sql(config::MIGRATIONS[0].1)
        .execute(&admin)
        .await?;
    sqlx::query("INSERT INTO platform_config (key, value, env) VALUES ('drill.counter', '0', $1)")
        .bind(ENV)
        .execute(&admin)
        .await?;
    sqlx::query(
        "INSERT INTO platform_config (key, value, env) VALUES ('drill.steady', '\"kept\"', $1)",
    )
    .bind(ENV)
    .execute(&admin)
    .await?;

    let client_pool = pool(&cluster.url()).await?;
    // A long poll: recovery must come from reconnecting and resynchronising, not the safety net.
    let options = FeedOptions::default().poll_interval(Duration::from_hours(1));
    let (live, feed) = config::watch(client_pool, ENV, options).await?;

    let (progress_tx, mut progress) = tokio::sync::watch::channel(0);
    let writer = tokio::spawn(stream_updates(cluster.url(), progress_tx));
    progress.wait_for(|done| *done >= 300).await?;
    cluster.restart().await?;
    writer.await??;

    until(&live, "the client holds the last update", || {
        live.value("drill.counter") == Some(json!(UPDATES))
    })
    .await?;
    let mut table = config::load_env(&pool(&cluster.url()).await?, ENV).await?;
    table.sort_by(|a, b| a.key.cmp(&b.key));
    let snapshot = live.snapshot();
    // The snapshot iterates in no particular order.
    let mut client: Vec<_> = snapshot.iter().cloned().collect();
    client.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(client, table, "the client's final state equals the table's");
    assert!(feed.status().is_fresh(), "{:?}", feed.status());
    drop(admin);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_database_makes_the_client_stale_and_a_restart_makes_it_fresh() -> Result<()> {
    let cluster = TestCluster::start().await?;
    let admin = pool(&cluster.url()).await?;
    sqlx::raw_sql(config::MIGRATIONS[0].1)
        .execute(&admin)
        .await?;
    drop(admin);
    let options = FeedOptions::default().poll_interval(Duration::from_hours(1));
    let (_live, feed) = config::watch(pool(&cluster.url()).await?, ENV, options).await?;
    let mut statuses = feed.statuses();

    cluster.stop().await?;
    tokio::time::timeout(Duration::from_mins(1), statuses.wait_for(|s| !s.is_fresh()))
        .await
        .context("the client never reported stale")??;
    cluster.resume().await?;
    tokio::time::timeout(
        Duration::from_mins(2),
        statuses.wait_for(groundwork_live::FeedStatus::is_fresh),
    )
    .await
    .context("the client never recovered")??;
    Ok(())
}
