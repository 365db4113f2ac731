//! Every client against real TLS servers on loopback (`cargo xtask infra up` starts them): a round
//! trip with the test CA, a refusal naming the reason with a wrong CA, and the wrong scheme for a
//! port failing within the connect timeout instead of hanging or falling back to plain text.

use std::fmt::Write as _;
use std::time::Duration;

use groundwork_config::{Loader, Secret};
use groundwork_connect::{
    ConnectError, RedisOptions, TlsSettings, amqp_connect, clickhouse_client, http_client,
    redis_pool,
};
use groundwork_testkit::{InfraEnv, Service, TestTls};
use lapin::ConnectionProperties;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

const TIMEOUT: Duration = Duration::from_secs(3);

fn trusting(tls: &TestTls) -> TlsSettings {
    TlsSettings {
        ca_cert: Some(tls.ca_cert.clone()),
        ..TlsSettings::default()
    }
}

/// A CA that signed nothing the servers present.
fn wrong_ca() -> anyhow::Result<TlsSettings> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key)?;
    Ok(TlsSettings {
        ca_cert: Some(cert.pem()),
        ..TlsSettings::default()
    })
}

fn options() -> RedisOptions {
    let mut options = RedisOptions::default();
    options.connect_timeout = TIMEOUT;
    options
}

fn assert_untrusted(error: &ConnectError) {
    let text = error.to_string();
    assert!(error.is_tls(), "{text}");
    assert!(text.contains("127.0.0.1:"), "names the host: {text}");
    assert!(text.contains("not signed by a trusted CA"), "{text}");
}

#[tokio::test]
async fn redis_round_trip_over_tls_with_the_test_ca() -> anyhow::Result<()> {
    let tls = TestTls::discover()?;
    let pool = redis_pool(&tls.redis_url, &trusting(&tls), &options()).await?;
    let mut connection = pool.get().await?;
    let key = format!("groundwork-connect-test:{}", std::process::id());
    let () = deadpool_redis::redis::cmd("SET")
        .arg(&key)
        .arg("over-tls")
        .query_async(&mut connection)
        .await?;
    let value: String = deadpool_redis::redis::cmd("GETDEL")
        .arg(&key)
        .query_async(&mut connection)
        .await?;
    assert_eq!(value, "over-tls");
    Ok(())
}

#[tokio::test]
async fn redis_presents_a_client_certificate() -> anyhow::Result<()> {
    let tls = TestTls::discover()?;
    let settings = TlsSettings {
        ca_cert: Some(tls.ca_cert.clone()),
        client_cert: Some(tls.read_sibling("client.crt")?),
        client_key: Some(Secret::from(tls.read_sibling("client.key")?)),
    };
    let pool = redis_pool(&tls.redis_url, &settings, &options()).await?;
    let pong: String = deadpool_redis::redis::cmd("PING")
        .query_async(&mut pool.get().await?)
        .await?;
    assert_eq!(pong, "PONG");
    Ok(())
}

#[tokio::test]
async fn redis_refuses_a_server_signed_by_another_ca() -> anyhow::Result<()> {
    let tls = TestTls::discover()?;
    let error = redis_pool(&tls.redis_url, &wrong_ca()?, &options())
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("a wrong CA must be refused"))?;
    assert_untrusted(&error);
    // Without settings the system's roots are used, and they do not hold the test CA either.
    let error = redis_pool(&tls.redis_url, &TlsSettings::default(), &options())
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("the system roots do not trust the test CA"))?;
    assert_untrusted(&error);
    Ok(())
}

#[tokio::test]
async fn redis_scheme_and_port_mismatches_fail_within_the_timeout() -> anyhow::Result<()> {
    let tls = TestTls::discover()?;
    let plain = InfraEnv::discover()?.url(Service::Redis);
    let plain_port = plain.rsplit(':').next().unwrap_or("6379").to_owned();
    let tls_port = tls.redis_url.rsplit(':').next().unwrap_or("0").to_owned();

    // A plain server behind `rediss://`.
    let error = redis_pool(
        &format!("rediss://127.0.0.1:{plain_port}"),
        &trusting(&tls),
        &options(),
    )
    .await
    .err()
    .ok_or_else(|| anyhow::anyhow!("a plain server is not TLS"))?;
    // A plain Redis waits for the rest of what it takes for a command; the timeout ends it and
    // the message asks whether the port is a TLS port.
    assert!(
        error.is_tls()
            || matches!(
                error,
                ConnectError::Timeout {
                    expected: "TLS",
                    ..
                }
            ),
        "{error}"
    );

    // A TLS server behind `redis://`.
    let error = redis_pool(
        &format!("redis://127.0.0.1:{tls_port}"),
        &TlsSettings::default(),
        &options(),
    )
    .await
    .err()
    .ok_or_else(|| anyhow::anyhow!("a TLS server does not speak plain text"))?;
    assert!(error.to_string().contains("is this a TLS port?"), "{error}");

    // TLS settings with a plain URL are refused before anything is sent.
    let error = redis_pool(&plain, &trusting(&tls), &options())
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("settings with a plain URL"))?;
    assert!(error.to_string().contains("use `rediss://`"), "{error}");
    Ok(())
}

#[tokio::test]
async fn rabbitmq_round_trip_over_tls_with_the_test_ca() -> anyhow::Result<()> {
    let tls = TestTls::discover()?;
    let connection = amqp_connect(
        &tls.amqp_url,
        &trusting(&tls),
        ConnectionProperties::default(),
        TIMEOUT,
    )
    .await?;
    let channel = connection.create_channel().await?;
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    assert!(queue.name().as_str().starts_with("amq.gen-"));
    connection.close(200, "done".into()).await?;
    Ok(())
}

#[tokio::test]
async fn rabbitmq_refuses_a_server_signed_by_another_ca() -> anyhow::Result<()> {
    let tls = TestTls::discover()?;
    let error = amqp_connect(
        &tls.amqp_url,
        &wrong_ca()?,
        ConnectionProperties::default(),
        TIMEOUT,
    )
    .await
    .err()
    .ok_or_else(|| anyhow::anyhow!("a wrong CA must be refused"))?;
    assert_untrusted(&error);
    assert!(!error.to_string().contains("guest:guest"), "{error}");
    Ok(())
}

#[tokio::test]
async fn rabbitmq_scheme_and_port_mismatches_fail_within_the_timeout() -> anyhow::Result<()> {
    let tls = TestTls::discover()?;
    let plain = InfraEnv::discover()?.url(Service::RabbitMq);
    let plain_behind_tls = plain.replacen("amqp://", "amqps://", 1);
    let error = amqp_connect(
        &plain_behind_tls,
        &trusting(&tls),
        ConnectionProperties::default(),
        TIMEOUT,
    )
    .await
    .err()
    .ok_or_else(|| anyhow::anyhow!("a plain broker is not TLS"))?;
    assert!(
        error.to_string().contains("is this a plain-text port?"),
        "{error}"
    );

    let tls_behind_plain = tls.amqp_url.replacen("amqps://", "amqp://", 1);
    let error = amqp_connect(
        &tls_behind_plain,
        &TlsSettings::default(),
        ConnectionProperties::default(),
        TIMEOUT,
    )
    .await
    .err()
    .ok_or_else(|| anyhow::anyhow!("a TLS endpoint does not speak plain AMQP"))?;
    assert!(error.to_string().contains("is this a TLS port?"), "{error}");
    Ok(())
}

#[tokio::test]
async fn clickhouse_round_trip_over_tls_with_the_test_ca() -> anyhow::Result<()> {
    let tls = TestTls::discover()?;
    let client = clickhouse_client(&tls.clickhouse_url, &trusting(&tls))?.with_validation(false);
    let answer: u8 = client.query("SELECT 1").fetch_one().await?;
    assert_eq!(answer, 1);
    Ok(())
}

#[tokio::test]
async fn clickhouse_refuses_a_server_signed_by_another_ca() -> anyhow::Result<()> {
    let tls = TestTls::discover()?;
    let client = clickhouse_client(&tls.clickhouse_url, &wrong_ca()?)?.with_validation(false);
    let error = client
        .query("SELECT 1")
        .fetch_one::<u8>()
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("a wrong CA must be refused"))?;
    let chain = chain(&error);
    assert!(chain.contains("UnknownIssuer"), "{chain}");
    Ok(())
}

#[tokio::test]
async fn clickhouse_https_to_a_plain_port_fails() -> anyhow::Result<()> {
    let tls = TestTls::discover()?;
    let plain = InfraEnv::discover()?.url(Service::ClickHouse);
    let client = clickhouse_client(&plain.replacen("http://", "https://", 1), &trusting(&tls))?
        .with_validation(false);
    let answer = tokio::time::timeout(TIMEOUT * 2, client.query("SELECT 1").fetch_one::<u8>())
        .await
        .map_err(|_| anyhow::anyhow!("a plain port answers TLS with an error, not silence"))?;
    assert!(answer.is_err(), "https to a plain port must not succeed");
    let error = clickhouse_client(&plain, &trusting(&tls))
        .err()
        .ok_or_else(|| anyhow::anyhow!("settings with http://"))?;
    assert!(error.to_string().contains("use `https://`"), "{error}");
    Ok(())
}

#[tokio::test]
async fn http_client_trusts_the_configured_ca_only() -> anyhow::Result<()> {
    let tls = TestTls::discover()?;
    let ping = format!("{}/ping", tls.clickhouse_url);
    let body = http_client(&trusting(&tls), TIMEOUT)?
        .get(&ping)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    assert_eq!(body.trim(), "Ok.");
    let refused = http_client(&wrong_ca()?, TIMEOUT)?.get(&ping).send().await;
    let error = refused
        .err()
        .ok_or_else(|| anyhow::anyhow!("a wrong CA must be refused"))?;
    assert!(chain(&error).contains("UnknownIssuer"), "{}", chain(&error));
    Ok(())
}

/// The settings come through groundwork-config like any other, the CA from a `*_FILE` variable.
#[tokio::test]
async fn settings_load_from_file_variables() -> anyhow::Result<()> {
    #[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
    struct Settings {
        redis_url: groundwork_config::SecretUrl,
        #[serde(default)]
        redis_tls: TlsSettings,
    }
    let tls = TestTls::discover()?;
    let ca_path = tls.ca_cert_path.display().to_string();
    let settings: Settings = Loader::new()
        .no_dotenv()
        .vars([
            ("REDIS_URL", tls.redis_url.as_str()),
            ("REDIS_TLS_CA_CERT_FILE", ca_path.as_str()),
        ])
        .load()?;
    assert!(settings.redis_tls.is_configured());
    let pool = redis_pool(
        groundwork_config::ExposeSecret::expose_secret(&settings.redis_url),
        &settings.redis_tls,
        &options(),
    )
    .await?;
    drop(pool.get().await?);
    Ok(())
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, " / {cause:?}");
        source = cause.source();
    }
    text
}
