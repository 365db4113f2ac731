// `TestDatabase` against the real PostgreSQL server.
#![cfg(feature = "postgres")]

use groundwork_testkit::{InfraEnv, Service, TestDatabase};
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

async fn database_exists(name: &str) -> anyhow::Result<bool> {
    let mut admin = PgConnection::connect(&InfraEnv::discover()?.url(Service::Postgres)).await?;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_one(&mut admin)
        .await?;
    admin.close().await?;
    Ok(count == 1)
}

#[tokio::test]
async fn database_is_usable_and_dropped_on_drop() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let name = db.name().to_owned();
    assert!(name.starts_with(&format!("gw_test_{}_", std::process::id())));
    assert!(db.url().ends_with(&format!("/{name}")));

    sqlx::query("CREATE TABLE orders (id BIGINT PRIMARY KEY, item TEXT NOT NULL)")
        .execute(db.pool())
        .await?;
    sqlx::query("INSERT INTO orders VALUES (1, 'tea'), (2, 'cake')")
        .execute(db.pool())
        .await?;
    let items: Vec<String> = sqlx::query_scalar("SELECT item FROM orders ORDER BY id")
        .fetch_all(db.pool())
        .await?;
    assert_eq!(items, ["tea", "cake"]);

    // A second connection through the URL, as a service under test would open it.
    let mut other = PgConnection::connect(db.url()).await?;
    let current: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut other)
        .await?;
    assert_eq!(current, name);
    assert!(database_exists(&name).await?);

    // Open connections (pool and `other`) must not keep the database alive.
    drop(db);
    assert!(!database_exists(&name).await?);
    drop(other);
    Ok(())
}

#[tokio::test]
async fn explicit_cleanup_drops_the_database() -> anyhow::Result<()> {
    let db = TestDatabase::create().await?;
    let name = db.name().to_owned();
    sqlx::query("SELECT 1").execute(db.pool()).await?;

    db.cleanup().await?;

    assert!(!database_exists(&name).await?);
    Ok(())
}

#[tokio::test]
async fn database_is_dropped_when_the_test_panics() -> anyhow::Result<()> {
    let (name_tx, name_rx) = std::sync::mpsc::channel();
    let failing_test = tokio::spawn(async move {
        let Ok(db) = TestDatabase::create().await else {
            return;
        };
        let _ = name_tx.send(db.name().to_owned());
        panic!("simulated test failure while {} is alive", db.name());
    });

    let outcome = failing_test.await;

    assert!(outcome.is_err_and(|err| err.is_panic()));
    let name = name_rx.recv()?;
    assert!(!database_exists(&name).await?);
    Ok(())
}

#[tokio::test]
async fn concurrent_databases_are_distinct_and_isolated() -> anyhow::Result<()> {
    let (first, second) = tokio::try_join!(TestDatabase::create(), TestDatabase::create())?;
    assert_ne!(first.name(), second.name());

    // The same table name in both databases does not collide.
    for db in [&first, &second] {
        sqlx::query("CREATE TABLE shared_name (id INT)")
            .execute(db.pool())
            .await?;
    }
    sqlx::query("INSERT INTO shared_name VALUES (1)")
        .execute(first.pool())
        .await?;
    let in_second: i64 = sqlx::query_scalar("SELECT count(*) FROM shared_name")
        .fetch_one(second.pool())
        .await?;
    assert_eq!(in_second, 0);
    Ok(())
}
