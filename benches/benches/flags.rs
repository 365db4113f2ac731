//! `groundwork-flags` evaluation against Unleash's Rust engine (`unleash-yggdrasil`) on the same
//! 1,000 flags and the same tenants.
//!
//! Both sides look up a flag by name in a 1,000-entry set and decide a 30% rollout for a tenant
//! id: ours by `murmurhash(tenant + name) % 100`, Unleash's by its `flexibleRollout` strategy with
//! stickiness on `userId` (the tenant id) and `groupId` = the flag name. Evaluation only: the
//! Unleash context is built once per tenant outside the timed loop, as a service would keep it
//! per request. Neither side records Unleash-style metrics; groundwork-flags' usage counters (one
//! relaxed atomic increment per evaluation) are always on, so they are in every figure.
//!
//! Variants: one more flag in both sets, `checkout.button`, with two context rules (`plan in
//! [gold, platinum]`, `app_version` semver greater than 2.0.0) and three variants (34/33/33),
//! resolved for tenants on the gold plan with app 2.4.1: ours by `Flags::resolve`, Unleash's by
//! `EngineState::get_variant` with the same constraints (`IN`, `SEMVER_GT`) and variants
//! (weights 340/330/330 of 1000, stickiness `userId`).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use groundwork_flags::{
    Attribute, Context as FlagContext, Flag, FlagSet, Flags, Operator, Rule, Variant, bucket,
};
use serde_json::{Value, json};
use unleash_yggdrasil::{ClientFeatures, Context, EngineState};

/// The flag measured: it exists, and its rollout is below 100% so the hash runs.
const FLAG: &str = "supplier.realtime.sync";
const FLAG_ROLLOUT: i32 = 30;

const AREAS: [&str; 25] = [
    "admin",
    "analytics",
    "auth",
    "billing",
    "catalog",
    "checkout",
    "crm",
    "dashboard",
    "exports",
    "fulfilment",
    "imports",
    "inventory",
    "invoicing",
    "messaging",
    "notifications",
    "onboarding",
    "orders",
    "payments",
    "pricing",
    "reports",
    "search",
    "settings",
    "shipping",
    "supplier",
    "warehouse",
];

const FEATURES: [&str; 40] = [
    "audit-log",
    "batch-api",
    "bulk-edit",
    "csv-export",
    "dark-mode",
    "fast-path",
    "graphql",
    "inline-edit",
    "kafka-ingest",
    "lazy-load",
    "new-editor",
    "new-pricing",
    "pagination-v2",
    "pdf-export",
    "push",
    "rate-limit",
    "read-replica",
    "realtime.sync",
    "redesign",
    "retry-v2",
    "saved-views",
    "scheduler",
    "semantic",
    "sso",
    "streaming",
    "tax-engine",
    "two-factor",
    "v2",
    "v3",
    "webhooks",
    "wizard",
    "xlsx-export",
    "ai-suggest",
    "async-jobs",
    "cache-v2",
    "compact-ui",
    "edge-cache",
    "geo-routing",
    "multi-currency",
    "outbox",
];

/// 1,000 flags as a platform accumulates them: most partly rolled out, some fully on, some
/// limited to named tenants, some switched off.
fn flag_set(tenants: &[String]) -> Vec<Flag> {
    const ROLLOUTS: [i32; 8] = [1, 5, 10, 25, 30, 50, 75, 90];
    let mut flags = Vec::with_capacity(AREAS.len() * FEATURES.len());
    for (i, (area, feature)) in AREAS
        .iter()
        .flat_map(|area| FEATURES.iter().map(move |feature| (area, feature)))
        .enumerate()
    {
        let name = format!("{area}.{feature}");
        let mut flag = Flag {
            enabled: true,
            ..Flag::new(name)
        };
        match i % 10 {
            0 => flag.enabled = false,
            1 => flag.whitelist = Some(tenants.iter().step_by(7).cloned().collect()),
            2 | 3 => {}
            _ => flag.rollout_pct = ROLLOUTS[i % ROLLOUTS.len()],
        }
        if flag.name == FLAG {
            flag.enabled = true;
            flag.whitelist = None;
            flag.rollout_pct = FLAG_ROLLOUT;
        }
        flags.push(flag);
    }
    assert_eq!(flags.len(), 1_000);
    flags
}

/// Tenant ids as the platform issues them: UUIDs (plus two legacy slugs), from a fixed seed.
fn tenants() -> Vec<String> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut tenants: Vec<String> = (0..62)
        .map(|_| {
            let (a, b) = (next(), next());
            format!(
                "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                a >> 32,
                (a >> 16) & 0xffff,
                a & 0xfff,
                0x8000 | (b >> 48) & 0x3fff,
                b & 0xffff_ffff_ffff
            )
        })
        .collect();
    tenants.extend(["acme-logistics".to_owned(), "nordic-foods-eu".to_owned()]);
    tenants
}

/// The same flags as Unleash toggles: `flexibleRollout` on `userId` with the flag name as
/// `groupId`; a whitelist becomes a `userId IN (...)` constraint on a 100% rollout.
fn unleash_state(flags: &[Flag]) -> ClientFeatures {
    let features: Vec<Value> = flags
        .iter()
        .map(|flag| {
            let mut strategy = json!({
                "name": "flexibleRollout",
                "parameters": {
                    "rollout": flag.rollout_pct.to_string(),
                    "stickiness": "userId",
                    "groupId": flag.name,
                },
            });
            if let Some(whitelist) = flag.whitelist.as_ref().filter(|w| !w.is_empty()) {
                strategy["constraints"] = json!([{
                    "contextName": "userId",
                    "operator": "IN",
                    "values": whitelist,
                }]);
            }
            json!({
                "name": flag.name,
                "type": "release",
                "enabled": flag.enabled,
                "strategies": [strategy],
            })
        })
        .collect();
    let mut features = features;
    features.push(unleash_variant_toggle());
    serde_json::from_value(json!({ "version": 2, "features": features }))
        .unwrap_or_else(|e| panic!("the generated Unleash state does not parse: {e}"))
}

/// The variant flag measured, in both engines.
const VARIANT_FLAG: &str = "checkout.button";
const VARIANTS: [(&str, i32); 3] = [("blue", 34), ("green", 33), ("red", 33)];

fn variant_flag() -> Flag {
    Flag {
        enabled: true,
        rules: vec![
            Rule::new("plan", Operator::In, vec!["gold".into(), "platinum".into()]),
            Rule::new("app_version", Operator::SemverGt, vec!["2.0.0".into()]),
        ],
        variants: VARIANTS
            .iter()
            .map(|&(name, weight)| Variant::new(name, weight))
            .collect(),
        ..Flag::new(VARIANT_FLAG)
    }
}

fn unleash_variant_toggle() -> Value {
    let variants: Vec<Value> = VARIANTS
        .iter()
        .map(|&(name, weight)| {
            json!({
                "name": name,
                "weight": weight * 10,
                "weightType": "variable",
                "stickiness": "userId",
            })
        })
        .collect();
    json!({
        "name": VARIANT_FLAG,
        "type": "experiment",
        "enabled": true,
        "strategies": [{
            "name": "flexibleRollout",
            "parameters": { "rollout": "100", "stickiness": "userId", "groupId": VARIANT_FLAG },
            "constraints": [
                { "contextName": "plan", "operator": "IN", "values": ["gold", "platinum"] },
                { "contextName": "app_version", "operator": "SEMVER_GT", "value": "2.0.0" },
            ],
        }],
        "variants": variants,
    })
}

fn unleash_context(tenant: &str) -> Context {
    Context {
        user_id: Some(tenant.to_owned()),
        session_id: None,
        environment: None,
        app_name: None,
        current_time: None,
        remote_address: None,
        properties: None,
    }
}

/// Variant resolution with two context rules, side by side with Unleash's `get_variant`.
fn variants(c: &mut Criterion, flags: &Flags, engine: &EngineState, tenants: &[String]) {
    let mask = tenants.len() - 1;
    // Variants with two rules: gold-plan tenants on app 2.4.1.
    let attributes = [
        ("plan", Attribute::Str("gold")),
        ("app_version", Attribute::Str("2.4.1")),
    ];
    let gold_contexts: Vec<Context> = tenants
        .iter()
        .map(|t| Context {
            properties: Some(
                [("plan", "gold"), ("app_version", "2.4.1")]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            ),
            ..unleash_context(t)
        })
        .collect();
    let ours: Vec<String> = tenants
        .iter()
        .map(|t| {
            let context = FlagContext::new(t).with_attributes(&attributes);
            flags
                .resolve(VARIANT_FLAG, &context)
                .variant_name()
                .to_owned()
        })
        .collect();
    let theirs: Vec<String> = gold_contexts
        .iter()
        .map(|cx| engine.get_variant(VARIANT_FLAG, cx, &None).name)
        .collect();
    for served in [&ours, &theirs] {
        let distinct: std::collections::HashSet<&String> = served.iter().collect();
        assert!(
            distinct.len() >= 2
                && served
                    .iter()
                    .all(|v| ["blue", "green", "red"].contains(&v.as_str())),
            "both engines must serve real variants: {served:?}"
        );
    }
    let mut group = c.benchmark_group("flags/variant with two rules");
    let mut i = 0;
    group.bench_function("groundwork-flags Flags::resolve", |b| {
        b.iter(|| {
            i = (i + 1) & mask;
            let context = FlagContext::new(black_box(&tenants[i])).with_attributes(&attributes);
            let resolved = flags.resolve(black_box(VARIANT_FLAG), &context);
            black_box(resolved.variant().map(|v| v.weight))
        });
    });
    let mut i = 0;
    group.bench_function("unleash-yggdrasil EngineState::get_variant", |b| {
        b.iter(|| {
            i = (i + 1) & mask;
            engine.get_variant(black_box(VARIANT_FLAG), black_box(&gold_contexts[i]), &None)
        });
    });
    group.finish();
}

fn flags(c: &mut Criterion) {
    let tenants = tenants();
    let set = flag_set(&tenants);
    let engine = EngineState::default();
    if let Some(warnings) = engine.apply_client_features(unleash_state(&set)) {
        panic!("Unleash rejected the generated state: {warnings:?}");
    }
    let flags = Flags::new(FlagSet::new(set.into_iter().chain([variant_flag()])));
    let contexts: Vec<Context> = tenants.iter().map(|t| unleash_context(t)).collect();

    // Both engines must be deciding a real split for these tenants, not a constant.
    let ours_on = tenants.iter().filter(|t| flags.is_enabled(FLAG, t)).count();
    let unleash_on = contexts
        .iter()
        .filter(|cx| engine.is_enabled(FLAG, cx, &None))
        .count();
    assert!(
        (1..tenants.len()).contains(&ours_on) && (1..tenants.len()).contains(&unleash_on),
        "on for {ours_on} (ours) and {unleash_on} (Unleash) of {} tenants",
        tenants.len()
    );
    assert!(tenants.iter().all(|t| {
        // `rollout_pct` is 30, not negative.
        #[allow(clippy::cast_sign_loss)]
        let pct = FLAG_ROLLOUT as u32;
        flags.is_enabled(FLAG, t) == (bucket(t, FLAG) < pct)
    }));

    let mask = tenants.len() - 1;
    assert!(tenants.len().is_power_of_two());

    let mut group = c.benchmark_group("flags/1000-flag set, 30% rollout");
    let mut i = 0;
    group.bench_function("groundwork-flags Flags::is_enabled", |b| {
        b.iter(|| {
            i = (i + 1) & mask;
            flags.is_enabled(black_box(FLAG), black_box(&tenants[i]))
        });
    });
    let mut i = 0;
    group.bench_function("unleash-yggdrasil EngineState::is_enabled", |b| {
        b.iter(|| {
            i = (i + 1) & mask;
            engine.is_enabled(black_box(FLAG), black_box(&contexts[i]), &None)
        });
    });
    group.finish();

    variants(c, &flags, &engine, &tenants);

    let mut i = 0;
    c.bench_function("flags/bucket", |b| {
        b.iter(|| {
            i = (i + 1) & mask;
            bucket(black_box(&tenants[i]), black_box(FLAG))
        });
    });
    // MurmurHash3 is one serial chain per 4 bytes, so the cost follows the key length: the same
    // hash over short `tenant-NNNN` ids (32 bytes with the name instead of 58).
    let short: Vec<String> = (0..tenants.len())
        .map(|n| format!("tenant-{}", 1_000 + n * 37))
        .collect();
    let mut i = 0;
    c.bench_function("flags/bucket, short tenant ids", |b| {
        b.iter(|| {
            i = (i + 1) & mask;
            bucket(black_box(&short[i]), black_box(FLAG))
        });
    });
}

criterion_group!(benches, flags);
criterion_main!(benches);
