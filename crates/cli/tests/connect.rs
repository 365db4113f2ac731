//! `ConnectArgs` against a real PostgreSQL, a closed port and a server that never answers.

use anyhow::{Context, Result, bail};
use clap::Parser;
use groundwork_cli::{ConnectArgs, Exit};
use groundwork_testkit::TestDatabase;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    connect: ConnectArgs,
}

fn args(url: &str, timeout: &str) -> Result<ConnectArgs> {
    Ok(Cli::try_parse_from(["tool", "--database-url", url, "--connect-timeout", timeout])?.connect)
}

/// A port nothing listens on: bound, then released.
fn closed_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

#[tokio::test]
async fn a_reachable_database_gives_a_working_pool() -> Result<()> {
    let db = TestDatabase::create().await?;
    let pool = args(db.url(), "5")?
        .postgres_pool()
        .await
        .map_err(|f| anyhow::anyhow!("{f}"))?;
    let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&pool).await?;
    assert_eq!(one, 1);
    Ok(())
}

#[tokio::test]
async fn a_closed_port_fails_with_the_cause_and_without_the_password() -> Result<()> {
    let url = format!("postgres://app:s3cret-pw@127.0.0.1:{}/app", closed_port()?);
    let Err(failure) = args(&url, "5")?.connect_postgres().await else {
        bail!("connected to a closed port");
    };
    let message = failure.message();
    assert_eq!(failure.exit(), Exit::Failed);
    assert!(
        message.contains("cannot connect to the database at postgres://app:***@127.0.0.1"),
        "{message}"
    );
    assert!(message.contains("Connection refused"), "{message}");
    assert_eq!(
        message.matches("Connection refused").count(),
        1,
        "{message}"
    );
    assert!(!message.contains("s3cret-pw"), "{message}");
    Ok(())
}

#[tokio::test]
async fn a_server_that_never_answers_fails_at_the_connect_timeout() -> Result<()> {
    // The kernel accepts the connection into the backlog; nothing ever answers the startup message.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("postgres://app:s3cret-pw@{}/app", silent.local_addr()?);
    let Err(failure) = args(&url, "1")?.postgres_pool().await else {
        bail!("a silent server gave a pool");
    };
    let message = failure.message();
    assert!(
        message.contains("no answer within 1 s (--connect-timeout)"),
        "{message}"
    );
    assert!(!message.contains("s3cret-pw"), "{message}");
    Ok(())
}

#[tokio::test]
async fn a_missing_database_is_named_by_the_server() -> Result<()> {
    let db = TestDatabase::create().await?;
    let (server, _) = db
        .url()
        .rsplit_once('/')
        .context("a URL with a database name")?;
    let url = format!("{server}/groundwork_no_such_database");
    let Err(failure) = args(&url, "5")?.connect_postgres().await else {
        bail!("connected to a database that does not exist");
    };
    let message = failure.message();
    assert_eq!(failure.exit(), Exit::Failed);
    assert!(message.contains("does not exist"), "{message}");
    Ok(())
}

#[test]
fn no_url_is_a_usage_failure() -> Result<()> {
    let connect = ConnectArgs {
        database_url: None,
        connect_timeout: 5,
    };
    let failure = connect.url().err().context("a URL without one given")?;
    assert_eq!(failure.exit(), Exit::Usage);
    assert!(
        failure.message().contains("--database-url"),
        "{}",
        failure.message()
    );
    Ok(())
}
