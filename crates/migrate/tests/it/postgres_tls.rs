//! `groundwork-migrate`'s connection over TLS: `sslmode=verify-full` with `sslrootcert` in the URL
//! connects to a server whose certificate the CA signed, and a wrong CA is refused with an error
//! naming the server.
#![cfg(feature = "postgres")]

use groundwork_migrate::postgres::PgBackend;
use groundwork_testkit::{ClusterTls, TestCa, TestCluster};

#[tokio::test]
async fn verify_full_connects_with_the_right_ca_and_names_the_server_when_refused()
-> anyhow::Result<()> {
    let ca = TestCa::new("groundwork test CA")?;
    let server = ca.server(&["127.0.0.1"])?;
    let cluster =
        TestCluster::start_with_tls(ClusterTls::new(server.certificate_pem, server.key_pem))
            .await?;
    let dir = tempfile::tempdir()?;
    let right = dir.path().join("ca.crt");
    std::fs::write(&right, ca.certificate_pem())?;
    let wrong = dir.path().join("other-ca.crt");
    std::fs::write(&wrong, TestCa::new("another CA")?.certificate_pem())?;

    let url = |ca: &std::path::Path| {
        format!(
            "{}?sslmode=verify-full&sslrootcert={}",
            cluster.url(),
            ca.display()
        )
    };
    PgBackend::connect(&url(&right)).await?.close().await?;

    let error = PgBackend::connect(&url(&wrong))
        .await
        .err()
        .map(|e| {
            // The message and its causes: the driver's error is the source.
            let mut parts = vec![e.to_string()];
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                parts.push(cause.to_string());
                source = cause.source();
            }
            parts.join(": ")
        })
        .unwrap_or_default();
    let server = format!("127.0.0.1:{}", cluster.port());
    assert!(
        error.contains(&server) && error.contains("invalid peer certificate: UnknownIssuer"),
        "{error}"
    );
    Ok(())
}
