//! What TLS costs where it is paid: once per connection. Each pair connects to the same server
//! in plain text and through TLS (`cargo xtask infra up` starts the TLS endpoints with a test CA),
//! from a fresh client, up to a first answer:
//!
//! - Redis: `redis_pool` (pool, one connection with its handshake, returned) against Redis's own
//!   TLS port;
//! - RabbitMQ: `amqp_connect` (TCP, TLS, AMQP handshake) and `close`, TLS terminated by stunnel
//!   in front of the same broker;
//! - ClickHouse: `clickhouse_client` and a first `SELECT 1` (connection, TLS, HTTP request),
//!   TLS terminated by stunnel in front of the same server.
//!
//! The request path pays nothing: pools keep their connections, and a request only borrows one.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use groundwork_connect::{RedisOptions, TlsSettings, amqp_connect, clickhouse_client, redis_pool};
use groundwork_testkit::{InfraEnv, Service, TestTls};
use lapin::ConnectionProperties;

const TIMEOUT: Duration = Duration::from_secs(5);

fn bench(c: &mut Criterion) {
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    else {
        eprintln!("cannot build a tokio runtime");
        return;
    };
    let (Ok(env), Ok(tls)) = (InfraEnv::discover(), TestTls::discover()) else {
        eprintln!("the TLS endpoints are not known: run `cargo xtask infra up`");
        return;
    };
    let trusted = TlsSettings {
        ca_cert: Some(tls.ca_cert.clone()),
        ..TlsSettings::default()
    };
    let plain = TlsSettings::default();

    let mut group = c.benchmark_group("connect");
    group.sample_size(30);
    let redis_plain = env.url(Service::Redis);
    for (name, url, settings) in [
        ("redis/plain", redis_plain.as_str(), &plain),
        ("redis/tls", tls.redis_url.as_str(), &trusted),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let pool = redis_pool(url, settings, &RedisOptions::default()).await;
                    assert!(pool.is_ok(), "{:?}", pool.err());
                });
            });
        });
    }
    let amqp_plain = env.url(Service::RabbitMq);
    for (name, url, settings) in [
        ("rabbitmq/plain", amqp_plain.as_str(), &plain),
        ("rabbitmq/tls", tls.amqp_url.as_str(), &trusted),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let connection =
                        amqp_connect(url, settings, ConnectionProperties::default(), TIMEOUT).await;
                    match connection {
                        Ok(connection) => {
                            let _ = connection.close(200, "bench".into()).await;
                        }
                        Err(error) => panic!("{error}"),
                    }
                });
            });
        });
    }
    let clickhouse_plain = env.url(Service::ClickHouse);
    for (name, url, settings) in [
        ("clickhouse/plain", clickhouse_plain.as_str(), &plain),
        ("clickhouse/tls", tls.clickhouse_url.as_str(), &trusted),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let answer = match clickhouse_client(url, settings) {
                        Ok(client) => client
                            .with_validation(false)
                            .query("SELECT 1")
                            .fetch_one::<u8>()
                            .await
                            .map_err(|error| error.to_string()),
                        Err(error) => Err(error.to_string()),
                    };
                    assert_eq!(answer, Ok(1));
                });
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
