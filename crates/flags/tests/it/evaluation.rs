//! The flag semantics a tenant sees, checked against the npm package the platform's TypeScript
//! services use and against the seed's truth table.

use groundwork_flags::{Flag, FlagSet, Flags, Reason, bucket, murmur3_32_pair};

#[derive(serde::Deserialize)]
struct Vectors {
    package: String,
    vectors: Vec<Vector>,
}

#[derive(serde::Deserialize)]
struct Vector {
    tenant: String,
    flag: String,
    hash: u32,
    bucket: u32,
}

fn vectors() -> Vectors {
    let text = include_str!("../data/murmurhash-vectors.json");
    serde_json::from_str(text).unwrap_or_else(|e| panic!("murmurhash-vectors.json: {e}"))
}

#[test]
fn buckets_equal_the_npm_murmurhash_package() {
    let file = vectors();
    assert_eq!(file.package, "murmurhash@2.0.1");
    assert!(file.vectors.len() > 500, "expected the full generated set");
    for v in &file.vectors {
        assert_eq!(
            murmur3_32_pair(v.tenant.as_bytes(), v.flag.as_bytes()),
            v.hash,
            "hash of {:?} + {:?}",
            v.tenant,
            v.flag
        );
        assert_eq!(
            bucket(&v.tenant, &v.flag),
            v.bucket,
            "bucket of {:?} + {:?}",
            v.tenant,
            v.flag
        );
    }
}

#[test]
fn the_brief_examples_hold() {
    assert_eq!(murmur3_32_pair(b"a", b""), 1_009_084_850);
    assert_eq!(murmur3_32_pair(b"hello", b""), 613_153_351);
    assert_eq!(bucket("tenant-1", "supplier.realtime.sync"), 13);
}

fn flag(enabled: bool, rollout_pct: i32, whitelist: Option<&[&str]>) -> Flag {
    Flag {
        enabled,
        rollout_pct,
        whitelist: whitelist.map(|w| w.iter().map(|t| (*t).to_owned()).collect()),
        ..Flag::new("supplier.realtime.sync")
    }
}

/// tenant-1 is in bucket 13 of supplier.realtime.sync.
const IN_13: &str = "tenant-1";

#[test]
fn truth_table() {
    let cases: [(Flag, &str, bool, Reason); 11] = [
        (flag(false, 100, None), IN_13, false, Reason::Disabled),
        (
            flag(false, 50, Some(&[IN_13])),
            IN_13,
            false,
            Reason::Disabled,
        ),
        (flag(true, 14, None), IN_13, true, Reason::Split),
        (flag(true, 13, None), IN_13, false, Reason::Split),
        (flag(true, 0, None), IN_13, false, Reason::Split),
        // Below 100% the whitelist is not consulted, in either direction.
        (flag(true, 13, Some(&[IN_13])), IN_13, false, Reason::Split),
        (
            flag(true, 14, Some(&["someone-else"])),
            IN_13,
            true,
            Reason::Split,
        ),
        (
            flag(true, 100, Some(&[IN_13])),
            IN_13,
            true,
            Reason::TargetingMatch,
        ),
        (
            flag(true, 100, Some(&["someone-else"])),
            IN_13,
            false,
            Reason::TargetingMatch,
        ),
        (flag(true, 100, Some(&[])), IN_13, true, Reason::Static),
        (flag(true, 100, None), IN_13, true, Reason::Static),
    ];
    for (flag, tenant, expected, reason) in cases {
        let evaluation = flag.evaluate(tenant);
        assert_eq!(evaluation.enabled, expected, "{flag:?}");
        assert_eq!(evaluation.reason, reason, "{flag:?}");
        assert_eq!(flag.is_enabled_for(tenant), expected, "{flag:?}");
    }
}

#[test]
fn out_of_range_rollout_is_off_and_does_not_panic() {
    for pct in [-1, 101, i32::MIN, i32::MAX] {
        let flag = flag(true, pct, None);
        let evaluation = flag.evaluate(IN_13);
        assert!(!evaluation.enabled);
        assert_eq!(evaluation.reason, Reason::InvalidRollout);
    }
    let set = FlagSet::new([flag(true, 150, None), Flag::new("ok")]);
    let invalid: Vec<&str> = set.invalid().map(|f| f.name.as_str()).collect();
    assert_eq!(invalid, ["supplier.realtime.sync"]);
}

#[test]
fn unicode_and_empty_tenant_ids_evaluate() {
    let flag = flag(true, 50, None);
    for tenant in ["", "酒店-上海-001", "🏨-hotel", "\u{0}"] {
        let expected = bucket(tenant, &flag.name) < 50;
        assert_eq!(flag.is_enabled_for(tenant), expected, "{tenant:?}");
    }
}

#[test]
fn rows_deserialize_from_the_table_columns() -> Result<(), serde_json::Error> {
    let flag: Flag = serde_json::from_str(
        r#"{"id":3,"name":"risk.auto.reject","enabled":true,"rollout_pct":30,
            "whitelist":["t1","t2"],"description":"auto-reject risky bookings",
            "created_at":"2025-01-15T08:30:15Z"}"#,
    )?;
    assert_eq!(flag.rollout_pct, 30);
    assert_eq!(
        flag.whitelist.as_deref(),
        Some(&["t1".to_owned(), "t2".to_owned()][..])
    );
    let minimal: Flag = serde_json::from_str(r#"{"name":"admin.v2","whitelist":null}"#)?;
    assert_eq!(minimal, Flag::new("admin.v2"));
    Ok(())
}

fn tenants(n: usize) -> impl Iterator<Item = String> {
    (0..n).map(|i| format!("tenant-{i:06}"))
}

#[test]
fn rollout_reaches_its_share_of_100000_tenants() {
    for pct in [5, 30] {
        let flag = flag(true, pct, None);
        let on = tenants(100_000).filter(|t| flag.is_enabled_for(t)).count();
        #[allow(clippy::cast_precision_loss)] // 100,000 is exact in f64.
        let share = on as f64 / 1_000.0;
        assert!(
            (share - f64::from(pct)).abs() <= 0.5,
            "{pct}% rollout reached {share}% of tenants"
        );
    }
}

#[test]
fn raising_the_rollout_keeps_every_tenant_that_was_on() {
    let at_5 = flag(true, 5, None);
    let at_30 = flag(true, 30, None);
    let at_100 = flag(true, 100, None);
    for tenant in tenants(20_000) {
        if at_5.is_enabled_for(&tenant) {
            assert!(
                at_30.is_enabled_for(&tenant),
                "{tenant} dropped going 5% → 30%"
            );
        }
        if at_30.is_enabled_for(&tenant) {
            assert!(
                at_100.is_enabled_for(&tenant),
                "{tenant} dropped going 30% → 100%"
            );
        }
    }
}

#[test]
fn unknown_flags_are_off_and_replacing_the_set_is_seen_at_once() {
    let flags = Flags::new(FlagSet::default());
    assert!(!flags.is_enabled("admin.v2", IN_13));
    assert_eq!(flags.evaluate("admin.v2", IN_13).reason, Reason::NotFound);
    flags.replace(FlagSet::new([Flag {
        enabled: true,
        ..Flag::new("admin.v2")
    }]));
    assert!(flags.clone().is_enabled("admin.v2", IN_13));
    assert_eq!(flags.snapshot().len(), 1);
}
