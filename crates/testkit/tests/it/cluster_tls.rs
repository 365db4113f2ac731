//! PostgreSQL over TLS through sqlx, against a private cluster with `ssl=on`: `verify-full` checks
//! the CA and the host name, `verify-ca` only the CA, `require` never falls back to a plain
//! connection, and `sslcert`/`sslkey` present a client certificate.

#![cfg(all(feature = "postgres", feature = "certs"))]

use std::path::{Path, PathBuf};

use groundwork_testkit::{ClusterTls, TestCa, TestCluster};
use sqlx::{Connection, PgConnection};

/// Writes `content` to `dir/name`.
fn write(dir: &Path, name: &str, content: &str) -> std::io::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, content)?;
    Ok(path)
}

/// The cluster's URL with `host` instead of 127.0.0.1 and the query `params`.
fn url(cluster: &TestCluster, host: &str, params: &str) -> String {
    format!(
        "postgres://postgres@{host}:{}/postgres?{params}",
        cluster.port()
    )
}

/// Whether the session runs over TLS, as the server sees it.
async fn server_sees_tls(conn: &mut PgConnection) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(conn)
        .await
}

async fn refused(url: &str) -> String {
    match PgConnection::connect(url).await {
        Ok(_) => format!("connected to {url}"),
        Err(error) => error.to_string(),
    }
}

#[tokio::test]
async fn verify_full_connects_with_the_right_ca_and_refuses_a_wrong_one() -> anyhow::Result<()> {
    let ca = TestCa::new("groundwork test CA")?;
    let server = ca.server(&["localhost", "127.0.0.1"])?;
    let cluster =
        TestCluster::start_with_tls(ClusterTls::new(server.certificate_pem, server.key_pem))
            .await?;
    let dir = tempfile::tempdir()?;
    let right = write(dir.path(), "ca.crt", ca.certificate_pem())?;
    let wrong = write(
        dir.path(),
        "other-ca.crt",
        TestCa::new("another CA")?.certificate_pem(),
    )?;

    for host in ["127.0.0.1", "localhost"] {
        let params = format!("sslmode=verify-full&sslrootcert={}", right.display());
        let mut conn = PgConnection::connect(&url(&cluster, host, &params)).await?;
        let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await?;
        assert_eq!(one, 1);
        assert!(server_sees_tls(&mut conn).await?, "{host}: not over TLS");
    }

    let params = format!("sslmode=verify-full&sslrootcert={}", wrong.display());
    let error = refused(&url(&cluster, "127.0.0.1", &params)).await;
    assert!(error.contains("UnknownIssuer"), "{error}");
    // The same CA file is refused with `verify-ca` too: the chain is checked in both modes.
    let params = format!("sslmode=verify-ca&sslrootcert={}", wrong.display());
    let error = refused(&url(&cluster, "127.0.0.1", &params)).await;
    assert!(error.contains("UnknownIssuer"), "{error}");
    Ok(())
}

#[tokio::test]
async fn verify_full_refuses_a_certificate_for_another_host_that_verify_ca_accepts()
-> anyhow::Result<()> {
    let ca = TestCa::new("groundwork test CA")?;
    let server = ca.server(&["db.orders.internal"])?;
    let cluster =
        TestCluster::start_with_tls(ClusterTls::new(server.certificate_pem, server.key_pem))
            .await?;
    let dir = tempfile::tempdir()?;
    let ca_file = write(dir.path(), "ca.crt", ca.certificate_pem())?;

    let params = format!("sslmode=verify-full&sslrootcert={}", ca_file.display());
    let error = refused(&url(&cluster, "127.0.0.1", &params)).await;
    assert!(error.contains("not valid for name"), "{error}");
    let error = refused(&url(&cluster, "localhost", &params)).await;
    assert!(error.contains("not valid for name"), "{error}");

    let params = format!("sslmode=verify-ca&sslrootcert={}", ca_file.display());
    let mut conn = PgConnection::connect(&url(&cluster, "127.0.0.1", &params)).await?;
    assert!(server_sees_tls(&mut conn).await?);
    Ok(())
}

#[tokio::test]
async fn require_never_falls_back_to_plain_against_a_server_without_tls() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;

    for mode in ["require", "verify-ca", "verify-full"] {
        let error = refused(&url(&cluster, "127.0.0.1", &format!("sslmode={mode}"))).await;
        assert!(
            error.contains("TLS") || error.contains("SSL"),
            "{mode}: {error}"
        );
    }
    // `prefer` (sqlx's default) does fall back: the server sees a plain session.
    let mut conn = PgConnection::connect(&url(&cluster, "127.0.0.1", "sslmode=prefer")).await?;
    assert!(!server_sees_tls(&mut conn).await?);
    Ok(())
}

#[tokio::test]
async fn sslcert_and_sslkey_present_the_client_certificate_the_server_requires()
-> anyhow::Result<()> {
    let ca = TestCa::new("groundwork test CA")?;
    let server = ca.server(&["127.0.0.1"])?;
    let client = ca.client("postgres")?;
    let cluster = TestCluster::start_with_tls(
        ClusterTls::new(server.certificate_pem, server.key_pem)
            .require_client_certificates(ca.certificate_pem()),
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let ca_file = write(dir.path(), "ca.crt", ca.certificate_pem())?;
    let cert_file = write(dir.path(), "client.crt", &client.certificate_pem)?;
    let key_file = write(dir.path(), "client.key", &client.key_pem)?;

    let without = format!("sslmode=verify-full&sslrootcert={}", ca_file.display());
    let error = refused(&url(&cluster, "127.0.0.1", &without)).await;
    assert!(error.contains("certificate"), "{error}");

    let with = format!(
        "{without}&sslcert={}&sslkey={}",
        cert_file.display(),
        key_file.display()
    );
    let mut conn = PgConnection::connect(&url(&cluster, "127.0.0.1", &with)).await?;
    let client_dn: Option<String> =
        sqlx::query_scalar("SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&mut conn)
            .await?;
    assert_eq!(client_dn.as_deref(), Some("/CN=postgres"));
    Ok(())
}
