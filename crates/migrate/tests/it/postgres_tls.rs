//! `groundwork-migrate`'s connection over TLS: `sslmode=verify-full` with `sslrootcert` in the URL
//! connects to a server whose certificate the CA signed, and a wrong CA is refused with an error
//! naming the server.
#![cfg(feature = "postgres")]

use groundwork_migrate::postgres::PgBackend;
use groundwork_testkit::TlsTestCluster;

#[tokio::test]
async fn verify_full_connects_with_the_right_ca_and_names_the_server_when_refused()
-> anyhow::Result<()> {
    let cluster = TlsTestCluster::start().await?;
    PgBackend::connect(&cluster.trusted_url())
        .await?
        .close()
        .await?;

    let error = PgBackend::connect(&cluster.untrusted_url())
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
    assert!(cluster.names_the_refusal(&error), "{error}");
    Ok(())
}
