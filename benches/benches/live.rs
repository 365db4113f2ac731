//! The `platform_config` client (`groundwork-live`): how fast business code reads a value, and how
//! long a change takes to reach it.
//!
//! Reads, on 1,000 keys: `LiveConfig::get_or` (the seed's `get(key, defaultValue)`, served from
//! the per-type decode cache), a `Setting` (no key lookup), the `config` crate's (config-rs)
//! `Config::get::<T>()` on the same values, and a straightforward Rust port of the seed's
//! `ConfigClient` (`RwLock<HashMap<String, serde_json::Value>>`, cloning and decoding the value on
//! every `get`) as the baseline. Apollo's and Nacos' clients are Java and cannot be measured in
//! this process.
//!
//! Changes, in memory: what one changed key costs a client holding 1,000 keys —
//! `LiveConfig::apply` (what a notification leads to) against `LiveConfig::replace` with all
//! 1,000 entries (what a full reload leads to).
//!
//! Propagation, against the real PostgreSQL the test kit finds: from issuing an `UPDATE` to the
//! new value being readable through a `Setting` in a watching service, with 1,000 keys in the
//! service's environment; and the same `UPDATE` alone, to separate the write from the push.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use groundwork_live::FeedOptions;
use groundwork_live::config::{self, ConfigEntry, ConfigSnapshot, LiveConfig};
use groundwork_testkit::TestDatabase;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const WEIGHTS: &str = "matching.algorithm.weights";
const EXPIRY: &str = "order.expiry.minutes";
const KEYS: usize = 1_000;

// The field names are the seed's JSON keys.
#[allow(clippy::struct_field_names)]
#[derive(Debug, Clone, Default, Deserialize)]
struct MatchingWeights {
    price_weight: f64,
    rating_weight: f64,
    availability_weight: f64,
    supplier_reliability_weight: f64,
}

impl MatchingWeights {
    /// Reads every field, as the matching code would.
    fn total(&self) -> f64 {
        self.price_weight
            + self.rating_weight
            + self.availability_weight
            + self.supplier_reliability_weight
    }
}

/// 998 filler keys plus the two measured ones, as `(key, value)`.
fn values() -> Vec<(String, Value)> {
    let mut values: Vec<(String, Value)> = (0..KEYS - 2)
        .map(|i| {
            (
                format!("service{}.setting{}", i / 20, i % 20),
                json!({ "limit": i, "enabled": i % 2 == 0 }),
            )
        })
        .collect();
    values.push((
        WEIGHTS.to_owned(),
        json!({"price_weight": 0.4, "rating_weight": 0.3, "availability_weight": 0.2, "supplier_reliability_weight": 0.1}),
    ));
    values.push((EXPIRY.to_owned(), json!(30)));
    values
}

/// The seed's `ConfigClient` ported as directly as Rust allows: a locked map of JSON values.
struct SeedPortClient {
    cache: RwLock<HashMap<String, Value>>,
}

impl SeedPortClient {
    fn get<T: DeserializeOwned>(&self, key: &str, default: T) -> T {
        let cache = self
            .cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match cache.get(key) {
            Some(value) => serde_json::from_value(value.clone()).unwrap_or(default),
            None => default,
        }
    }
}

/// A JSON value as config-rs holds it.
fn config_rs_value(value: &Value) -> ::config::Value {
    let kind = match value {
        Value::Null => ::config::ValueKind::Nil,
        Value::Bool(b) => ::config::ValueKind::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => ::config::ValueKind::I64(i),
            (None, f) => ::config::ValueKind::Float(f.unwrap_or_default()),
        },
        Value::String(s) => ::config::ValueKind::String(s.clone()),
        Value::Array(items) => {
            ::config::ValueKind::Array(items.iter().map(config_rs_value).collect())
        }
        Value::Object(members) => ::config::ValueKind::Table(
            members
                .iter()
                .map(|(k, v)| (k.clone(), config_rs_value(v)))
                .collect(),
        ),
    };
    ::config::Value::new(None, kind)
}

/// The same 1,000 values in config-rs, set in code (its dotted keys are paths, so
/// `order.expiry.minutes` is read back with the same string).
fn config_rs() -> ::config::Config {
    let builder = values()
        .iter()
        .try_fold(::config::Config::builder(), |builder, (key, value)| {
            builder.set_default(key, config_rs_value(value))
        });
    or_exit(
        builder.and_then(::config::ConfigBuilder::<::config::builder::DefaultState>::build),
        "config-rs",
    )
}

fn entries(revision_offset: i64) -> impl Iterator<Item = ConfigEntry> {
    values()
        .into_iter()
        .enumerate()
        .map(move |(i, (key, value))| ConfigEntry {
            key,
            value,
            revision: i64::try_from(i).unwrap_or_default() + revision_offset,
            description: None,
            updated_by: None,
        })
}

fn reads(c: &mut Criterion) {
    let live = LiveConfig::new(ConfigSnapshot::new("production", entries(0)));
    let weights = live.setting(WEIGHTS, MatchingWeights::default());
    let expiry = live.setting(EXPIRY, 15_u32);
    let seed = SeedPortClient {
        cache: RwLock::new(values().into_iter().collect()),
    };
    let config_rs = config_rs();
    // The same values must come back, or the comparison is not like for like.
    assert_eq!(config_rs.get::<u32>(EXPIRY).ok(), Some(30));
    assert!(
        config_rs
            .get::<MatchingWeights>(WEIGHTS)
            .is_ok_and(|w| (w.total() - 1.0).abs() < 1e-9)
    );

    let mut group = c.benchmark_group("config_read");
    group.bench_function("groundwork-live Setting<u32>::get", |b| {
        b.iter(|| *black_box(&expiry).get());
    });
    group.bench_function("groundwork-live Setting<u32>::with", |b| {
        b.iter(|| black_box(&expiry).with(|minutes| *minutes));
    });
    group.bench_function("groundwork-live LiveConfig::get_or::<u32>", |b| {
        b.iter(|| black_box(&live).get_or(black_box(EXPIRY), 15_u32));
    });
    group.bench_function("config-rs Config::get::<u32>", |b| {
        b.iter(|| black_box(&config_rs).get::<u32>(black_box(EXPIRY)).ok());
    });
    group.bench_function("seed port get::<u32>", |b| {
        b.iter(|| black_box(&seed).get(black_box(EXPIRY), 15_u32));
    });
    group.bench_function("groundwork-live Setting<MatchingWeights>::with", |b| {
        b.iter(|| black_box(&weights).with(MatchingWeights::total));
    });
    group.bench_function("groundwork-live LiveConfig::get::<MatchingWeights>", |b| {
        b.iter(|| {
            black_box(&live)
                .get::<MatchingWeights>(black_box(WEIGHTS))
                .map(|w| w.total())
        });
    });
    group.bench_function("config-rs Config::get::<MatchingWeights>", |b| {
        b.iter(|| {
            black_box(&config_rs)
                .get::<MatchingWeights>(black_box(WEIGHTS))
                .map(|w| w.total())
                .ok()
        });
    });
    group.bench_function("seed port get::<MatchingWeights>", |b| {
        b.iter(|| {
            black_box(&seed)
                .get(black_box(WEIGHTS), MatchingWeights::default())
                .total()
        });
    });
    group.finish();
}

fn changes(c: &mut Criterion) {
    let live = LiveConfig::new(ConfigSnapshot::new("production", entries(0)));
    // As a service would hold them: a few settings, and values read (so cached) before.
    let _weights = live.setting(WEIGHTS, MatchingWeights::default());
    let _expiry = live.setting(EXPIRY, 15_u32);
    let mut revision = 10_000_i64;
    let mut group = c.benchmark_group("config_change");
    group.bench_function("LiveConfig::apply, 1 key of 1,000", |b| {
        b.iter(|| {
            revision += 1;
            let entry = ConfigEntry {
                key: EXPIRY.to_owned(),
                value: json!(revision % 60),
                revision,
                description: None,
                updated_by: None,
            };
            live.apply([entry], std::iter::empty::<&str>());
        });
    });
    group.bench_function("LiveConfig::replace, 1 key of 1,000 changed", |b| {
        b.iter(|| {
            revision += 1;
            let mut all: Vec<ConfigEntry> = entries(0).collect();
            if let Some(last) = all.last_mut() {
                last.value = json!(revision % 60);
                last.revision = revision;
            }
            live.replace(ConfigSnapshot::new("production", all));
        });
    });
    group.finish();
}

fn or_exit<T, E: std::fmt::Display>(result: Result<T, E>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(error) => {
            eprintln!("live bench: {what}: {error}");
            std::process::exit(1);
        }
    }
}

fn propagation(c: &mut Criterion) {
    let runtime = or_exit(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
        "cannot start a runtime",
    );
    let db = or_exit(
        runtime.block_on(TestDatabase::create()),
        "cannot create a test database (is PostgreSQL running?)",
    );
    let pool = db.pool().clone();
    runtime.block_on(async {
        or_exit(
            sqlx::raw_sql(config::MIGRATIONS[0].1).execute(&pool).await,
            "migration",
        );
        for (key, value) in values() {
            or_exit(
                sqlx::query(
                    "INSERT INTO platform_config (env, key, value) VALUES ('production', $1, $2)",
                )
                .bind(key)
                .bind(value)
                .execute(&pool)
                .await,
                "seeding",
            );
        }
    });
    // Poll hourly: only notifications deliver the changes measured.
    let options = FeedOptions::default().poll_interval(Duration::from_hours(1));
    let (live, feed) = or_exit(
        runtime.block_on(config::watch(pool.clone(), "production", options)),
        "cannot watch platform_config",
    );
    let expiry = live.setting(EXPIRY, 0_i64);
    let mut next = 1_000_i64;

    let mut group = c.benchmark_group("config_propagation");
    group.sample_size(30);
    group.bench_function("UPDATE to visible in a Setting (1,000 keys)", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                let mut updates = live.updates();
                for _ in 0..iters {
                    next += 1;
                    let start = Instant::now();
                    or_exit(
                        sqlx::query("UPDATE platform_config SET value = to_jsonb($1::BIGINT) WHERE env = 'production' AND key = $2")
                            .bind(next)
                            .bind(EXPIRY)
                            .execute(&pool)
                            .await,
                        "update",
                    );
                    while *expiry.get() != next {
                        or_exit(updates.changed().await, "the feed stopped");
                    }
                    total += start.elapsed();
                }
                total
            })
        });
    });
    group.bench_function("UPDATE alone (write, trigger, history, NOTIFY)", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    next += 1;
                    let start = Instant::now();
                    or_exit(
                        sqlx::query("UPDATE platform_config SET value = to_jsonb($1::BIGINT) WHERE env = 'production' AND key = $2")
                            .bind(next)
                            .bind("service0.setting0")
                            .execute(&pool)
                            .await,
                        "update",
                    );
                    total += start.elapsed();
                }
                total
            })
        });
    });
    group.finish();
    runtime.block_on(feed.shutdown());
    drop(runtime);
    drop(db);
}

criterion_group!(benches, reads, changes, propagation);
criterion_main!(benches);
