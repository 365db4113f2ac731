// `TestClickHouse` against the real ClickHouse server (18.16 locally, current versions in CI).
#![cfg(feature = "clickhouse")]

use clickhouse::{Client, Row};
use groundwork_testkit::{InfraEnv, Service, TestClickHouse};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Row, Serialize, Deserialize)]
struct Event {
    id: u32,
    name: String,
}

async fn database_exists(name: &str) -> anyhow::Result<bool> {
    let client = Client::default()
        .with_url(InfraEnv::discover()?.url(Service::ClickHouse))
        .with_validation(false);
    let count: u64 = client
        .query("SELECT count() FROM system.databases WHERE name = ?")
        .bind(name)
        .fetch_one()
        .await?;
    Ok(count == 1)
}

#[tokio::test]
async fn database_is_usable_and_dropped_on_drop() -> anyhow::Result<()> {
    let ch = TestClickHouse::create().await?;
    let database = ch.database().to_owned();
    assert!(database.starts_with("gw_test_"));

    ch.client()
        .query("CREATE TABLE events (id UInt32, name String) ENGINE = MergeTree ORDER BY id")
        .execute()
        .await?;
    let mut insert = ch.client().insert::<Event>("events").await?;
    for (id, name) in [(1, "signup"), (2, "login")] {
        insert
            .write(&Event {
                id,
                name: name.to_owned(),
            })
            .await?;
    }
    insert.end().await?;
    let events: Vec<Event> = ch
        .client()
        .query("SELECT ?fields FROM events ORDER BY id")
        .fetch_all()
        .await?;
    assert_eq!(
        events,
        [
            Event {
                id: 1,
                name: "signup".to_owned()
            },
            Event {
                id: 2,
                name: "login".to_owned()
            }
        ]
    );
    let current: String = ch
        .client()
        .query("SELECT currentDatabase()")
        .fetch_one()
        .await?;
    assert_eq!(current, database);
    assert!(database_exists(&database).await?);

    drop(ch);

    assert!(!database_exists(&database).await?);
    Ok(())
}

#[tokio::test]
async fn database_is_dropped_when_the_test_panics() -> anyhow::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let failing_test = tokio::spawn(async move {
        let Ok(ch) = TestClickHouse::create().await else {
            return;
        };
        let _ = tx.send(ch.database().to_owned());
        panic!("simulated test failure");
    });

    assert!(failing_test.await.is_err_and(|err| err.is_panic()));
    let database = rx.recv()?;
    assert!(!database_exists(&database).await?);
    Ok(())
}

#[tokio::test]
async fn explicit_cleanup_drops_the_database() -> anyhow::Result<()> {
    let ch = TestClickHouse::create().await?;
    let database = ch.database().to_owned();

    ch.cleanup().await?;

    assert!(!database_exists(&database).await?);
    Ok(())
}

#[tokio::test]
async fn concurrent_databases_are_distinct_and_isolated() -> anyhow::Result<()> {
    let (first, second) = tokio::try_join!(TestClickHouse::create(), TestClickHouse::create())?;
    assert_ne!(first.database(), second.database());

    for ch in [&first, &second] {
        ch.client()
            .query("CREATE TABLE shared_name (id UInt32) ENGINE = Memory")
            .execute()
            .await?;
    }
    first
        .client()
        .query("INSERT INTO shared_name VALUES (1)")
        .execute()
        .await?;
    let in_second: u64 = second
        .client()
        .query("SELECT count() FROM shared_name")
        .fetch_one()
        .await?;
    assert_eq!(in_second, 0);
    Ok(())
}

#[tokio::test]
async fn a_private_server_answers_on_its_own_port_and_comes_back_after_a_stop() -> anyhow::Result<()>
{
    let server = groundwork_testkit::TestClickHouseServer::start().await?;
    assert_ne!(server.url(), InfraEnv::discover()?.url(Service::ClickHouse));
    let client = Client::default()
        .with_url(server.url())
        .with_validation(false);
    let one: u8 = client.query("SELECT toUInt8(1)").fetch_one().await?;
    assert_eq!(one, 1);

    server.stop().await?;
    assert!(
        client
            .query("SELECT toUInt8(1)")
            .fetch_one::<u8>()
            .await
            .is_err(),
        "a stopped server still answers"
    );
    server.resume().await?;
    let one: u8 = client.query("SELECT toUInt8(1)").fetch_one().await?;
    assert_eq!(one, 1);
    Ok(())
}
