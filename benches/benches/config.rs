//! Start-up cost of loading configuration: groundwork-config (schema-typed, validated, with
//! provenance and secrets) side by side with the hand-written figment setup services use today
//! (each variable merged as a key/value, then `extract()`), on the same ten variables. The process
//! environment is not used by either side, so runs do not depend on the machine's variables.

#![allow(missing_docs)] // criterion_main! generates undocumented items.

use criterion::{Criterion, criterion_group, criterion_main};
use figment::Figment;
use groundwork_config::Loader;
use groundwork_example_quickstart::Settings;
use std::hint::black_box;

const VARS: [(&str, &str); 10] = [
    ("SERVICE_NAME", "query-engine"),
    ("PORT", "8080"),
    ("LOG_LEVEL", "info"),
    ("DATABASE_URL", "postgres://app:pw@db:5432/app"),
    ("REDIS_URL", "redis://cache:6379"),
    ("RABBITMQ_URL", "amqp://guest:guest@mq:5672/%2f"),
    ("CLICKHOUSE_URL", "http://ch:8123"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4317"),
    ("JWT_SECRET", "0123456789abcdef0123456789abcdef-bench"),
    (
        "ENCRYPTION_SECRET",
        "0123456789abcdef0123456789abcdef-bench",
    ),
];

/// What a service writes by hand with figment alone: the same fields, no secrets handling.
#[derive(serde::Deserialize)]
#[allow(dead_code)] // Fields exist to be deserialized.
struct HandWritten {
    service_name: String,
    port: u16,
    log_level: String,
    database_url: String,
    redis_url: String,
    rabbitmq_url: String,
    clickhouse_url: String,
    otel_exporter_otlp_endpoint: Option<String>,
    jwt_secret: String,
    encryption_secret: String,
}

fn load(c: &mut Criterion) {
    let mut group = c.benchmark_group("config_load");
    group.bench_function("groundwork_config", |b| {
        b.iter(|| {
            let settings: Settings = Loader::new()
                .no_dotenv()
                .config_dir("/nonexistent")
                .vars(VARS)
                .load()
                .unwrap_or_else(|e| panic!("{e}"));
            black_box(settings)
        });
    });
    group.bench_function("figment_by_hand", |b| {
        b.iter(|| {
            let figment = VARS.iter().fold(Figment::new(), |figment, (name, value)| {
                // What `figment::providers::Env` does with each variable: lowercase the name, parse
                // the value as a figment `Value` ("8080" becomes a number).
                let parsed: figment::value::Value = value
                    .parse()
                    .unwrap_or_else(|e: std::convert::Infallible| match e {});
                figment.merge((name.to_ascii_lowercase(), parsed))
            });
            let settings: HandWritten = figment.extract().unwrap_or_else(|e| panic!("{e}"));
            black_box(settings)
        });
    });
    group.finish();
}

criterion_group!(benches, load);
criterion_main!(benches);
