//! Without `OTEL_EXPORTER_OTLP_CERTIFICATE`, an `https://` collector is trusted through the
//! system's root certificates, for gRPC and http/protobuf.
//!
//! The system's roots are made to hold the test's CA through `SSL_CERT_FILE`, which the root
//! loaders read from the process environment. That variable cannot be set safely inside a running
//! test, so this file is a plain program (`harness = false`) that runs itself again with the
//! variable set.

mod common;

use std::time::Duration;

use common::tls::{Pki, Receiver};

/// The file the system's roots are loaded from.
const ROOTS: &str = "SSL_CERT_FILE";
/// Set for the child run: the collector's certificate and key.
const SERVER_CERT: &str = "GW_TEST_SERVER_CERT";
const SERVER_KEY: &str = "GW_TEST_SERVER_KEY";

fn main() {
    let result = if std::env::var_os(SERVER_CERT).is_some() {
        spans_reach_a_collector_whose_ca_is_among_the_system_roots()
    } else {
        run_with_the_test_ca_as_system_roots()
    };
    if let Err(error) = result {
        eprintln!("otlp_system_roots: FAILED: {error:#}");
        std::process::exit(1);
    }
    println!("otlp_system_roots: 1 passed, 0 failed");
}

/// Runs this program again with `SSL_CERT_FILE` naming a file that holds only the test's CA.
fn run_with_the_test_ca_as_system_roots() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let output = std::process::Command::new(std::env::current_exe()?)
        .env(ROOTS, &pki.ca_file)
        .env_remove("SSL_CERT_DIR")
        .env(SERVER_CERT, &pki.server.certificate_pem)
        .env(SERVER_KEY, &pki.server.key_pem)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "the run with {ROOTS} set failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

fn spans_reach_a_collector_whose_ca_is_among_the_system_roots() -> anyhow::Result<()> {
    let server = groundwork_testkit::TestCertificate::new(
        std::env::var(SERVER_CERT)?,
        std::env::var(SERVER_KEY)?,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        for protocol in ["grpc", "http/protobuf"] {
            let mut receiver = if protocol == "grpc" {
                Receiver::grpc(&server, None).await?
            } else {
                Receiver::http(&server, None).await?
            };
            let mut settings = common::default_settings();
            settings.service_name = Some("query-engine".into());
            settings.otlp_endpoint = Some(receiver.https_endpoint().parse()?);
            settings.otlp_protocol = Some(protocol.parse()?);
            settings.otlp_timeout = Some(2000);
            let (telemetry, _captured) = common::telemetry(&settings)?;
            tracing::dispatcher::with_default(telemetry.dispatch(), || {
                tracing::info_span!("trusted through the system roots").in_scope(|| {});
            });
            tokio::task::spawn_blocking(move || telemetry.force_flush())
                .await?
                .map_err(|error| anyhow::anyhow!("{protocol}: {error}"))?;
            let names = receiver.span_names(1, Duration::from_secs(5)).await;
            anyhow::ensure!(
                names == ["trusted through the system roots"],
                "{protocol}: received {names:?}"
            );
        }
        Ok(())
    })
}
