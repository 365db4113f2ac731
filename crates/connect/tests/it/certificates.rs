//! Certificates that must be refused even though the right CA signed them: one for another host
//! name, one that expired. Each runs against a private `redis-server` on a free port with TLS
//! only, its certificate made by the test (`TestCa`), never the shared servers.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use groundwork_connect::{ConnectError, RedisOptions, TlsSettings, redis_pool};
use groundwork_testkit::{TestCa, TestCertificate};

/// A TLS-only `redis-server` serving `certificate`, stopped on drop.
struct TlsRedis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl TlsRedis {
    fn start(certificate: &TestCertificate) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let cert = dir.path().join("server.crt");
        let key = dir.path().join("server.key");
        std::fs::write(&cert, &certificate.certificate_pem)?;
        std::fs::write(&key, &certificate.key_pem)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--tls-auth-clients", "no"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--tls-cert-file")
            .arg(&cert)
            .arg("--tls-key-file")
            .arg(&key)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("redis-server is not installed")?;
        let server = Self {
            child,
            port,
            _dir: dir,
        };
        server.wait_until_listening()?;
        Ok(server)
    }

    fn wait_until_listening(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "redis-server on port {} did not listen within 10 s",
            self.port
        )
    }

    fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn trusting(ca: &TestCa) -> TlsSettings {
    TlsSettings {
        ca_cert: Some(ca.certificate_pem().to_owned()),
        ..TlsSettings::default()
    }
}

async fn connect(server: &TlsRedis, ca: &TestCa) -> Result<(), ConnectError> {
    let mut options = RedisOptions::default();
    options.connect_timeout = Duration::from_secs(5);
    redis_pool(&server.url(), &trusting(ca), &options)
        .await
        .map(drop)
}

#[tokio::test]
async fn a_certificate_for_the_host_connects() -> Result<()> {
    let ca = TestCa::new("connect test CA")?;
    let server = TlsRedis::start(&ca.server(&["127.0.0.1"])?)?;
    connect(&server, &ca).await?;
    Ok(())
}

#[tokio::test]
async fn a_certificate_for_another_host_is_refused() -> Result<()> {
    let ca = TestCa::new("connect test CA")?;
    let server = TlsRedis::start(&ca.server(&["cache.internal.example"])?)?;
    let error = connect(&server, &ca)
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("a certificate for another host was accepted"))?;
    let text = error.to_string();
    assert!(error.is_tls(), "{text}");
    assert!(
        text.contains(&format!("Redis at 127.0.0.1:{}", server.port)),
        "{text}"
    );
    assert!(
        text.contains("the certificate is not valid for this host name"),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn an_expired_certificate_is_refused() -> Result<()> {
    let ca = TestCa::new("connect test CA")?;
    let server = TlsRedis::start(&ca.expired_server(&["127.0.0.1"])?)?;
    let error = connect(&server, &ca)
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("an expired certificate was accepted"))?;
    let text = error.to_string();
    assert!(error.is_tls(), "{text}");
    assert!(text.contains("the certificate has expired"), "{text}");
    Ok(())
}
