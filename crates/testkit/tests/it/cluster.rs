//! A throwaway cluster starts, restarts on the same port, and leaves nothing behind.

#![cfg(feature = "postgres")]

use groundwork_testkit::TestCluster;
use sqlx::Connection;

#[tokio::test]
async fn a_cluster_restarts_on_its_port_and_is_removed_on_drop()
-> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::start().await?;
    let mut conn = sqlx::PgConnection::connect(&cluster.url()).await?;
    sqlx::query("CREATE TABLE kept (id INT)")
        .execute(&mut conn)
        .await?;

    cluster.restart().await?;
    // The old connection was cut by the restart.
    assert!(sqlx::query("SELECT 1").execute(&mut conn).await.is_err());
    let mut conn = sqlx::PgConnection::connect(&cluster.url()).await?;
    let tables: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE tablename = 'kept'")
        .fetch_one(&mut conn)
        .await?;
    assert_eq!(tables, 1, "data survives a restart");

    cluster.stop().await?;
    assert!(
        sqlx::PgConnection::connect(&cluster.url()).await.is_err(),
        "a stopped cluster refuses"
    );
    cluster.resume().await?;
    sqlx::PgConnection::connect(&cluster.url()).await?;

    let port = cluster.port();
    drop(cluster);
    let refused = std::net::TcpStream::connect(("127.0.0.1", port)).is_err();
    assert!(refused, "nothing listens on port {port} after drop");
    let leftovers = std::fs::read_dir(std::env::temp_dir())?
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with(&format!("-{port}"))
        });
    assert!(!leftovers, "the data directory is removed");
    Ok(())
}
