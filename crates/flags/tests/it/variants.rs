//! Variants and context rules: the variant a tenant gets, checked against the npm package the
//! platform's TypeScript services use; the rules' operators, defaults and order; bad input.

use std::collections::HashMap;

use groundwork_flags::{
    Attribute, Context, Flag, FlagSet, Flags, InvalidFlag, Operator, Payload, Reason, Rule,
    RuleValue, Variant, bucket, murmur3_32_parts, variant_point,
};

#[derive(serde::Deserialize)]
struct VectorFile {
    package: String,
    separator: String,
    flags: Vec<VectorFlag>,
    vectors: Vec<Vector>,
}

#[derive(serde::Deserialize)]
struct VectorFlag {
    name: String,
    variants: Vec<(String, i32)>,
}

#[derive(serde::Deserialize)]
struct Vector {
    tenant: String,
    flag: String,
    hash: u32,
    point: u32,
    variant: String,
}

fn variant_flag(name: &str, variants: &[(&str, i32)]) -> Flag {
    Flag {
        enabled: true,
        variants: variants
            .iter()
            .map(|&(name, weight)| Variant::new(name, weight))
            .collect(),
        ..Flag::new(name)
    }
}

#[test]
fn variants_equal_the_npm_murmurhash_package() -> anyhow::Result<()> {
    let file: VectorFile = serde_json::from_str(include_str!("../data/variant-vectors.json"))?;
    assert_eq!(file.package, "murmurhash@2.0.1");
    assert_eq!(file.separator, groundwork_flags::VARIANT_SEPARATOR);
    assert!(file.vectors.len() > 200, "expected the full generated set");
    let flags: HashMap<String, Flag> = file
        .flags
        .iter()
        .map(|f| {
            let variants: Vec<(&str, i32)> =
                f.variants.iter().map(|(n, w)| (n.as_str(), *w)).collect();
            (f.name.clone(), variant_flag(&f.name, &variants))
        })
        .collect();
    for v in &file.vectors {
        let input = [v.tenant.as_bytes(), b":", v.flag.as_bytes()];
        assert_eq!(
            murmur3_32_parts(&input),
            v.hash,
            "{:?} {:?}",
            v.tenant,
            v.flag
        );
        assert_eq!(variant_point(&v.tenant, &v.flag), v.point);
        let flag = &flags[&v.flag];
        let resolution = flag.resolve(&Context::new(&v.tenant));
        assert!(resolution.enabled);
        assert_eq!(
            resolution.variant.map(|variant| variant.name.as_str()),
            Some(v.variant.as_str()),
            "{:?} {:?}",
            v.tenant,
            v.flag
        );
    }
    Ok(())
}

fn tenants(n: usize) -> impl Iterator<Item = String> {
    (0..n).map(|i| format!("tenant-{i:06}"))
}

#[test]
fn variants_reach_their_weights_within_half_a_point_over_100000_tenants() {
    let flag = variant_flag(
        "search.ranking",
        &[("control", 50), ("bm25", 30), ("semantic", 15), ("rare", 5)],
    );
    let mut counts: HashMap<String, u32> = HashMap::new();
    for tenant in tenants(100_000) {
        let resolution = flag.resolve(&Context::new(&tenant));
        let name = resolution.variant.map_or("none", |v| v.name.as_str());
        *counts.entry(name.to_owned()).or_default() += 1;
    }
    for variant in &flag.variants {
        let share = f64::from(counts.get(&variant.name).copied().unwrap_or(0)) / 1_000.0;
        assert!(
            (share - f64::from(variant.weight)).abs() <= 0.5,
            "{} has weight {} and reached {share}% of tenants",
            variant.name,
            variant.weight
        );
    }
    assert_eq!(counts.get("none"), None);
}

#[test]
fn variant_and_rollout_are_independent() {
    // Among the tenants a 50% rollout admits, the 50/50 variants still split evenly: the variant
    // point is not the rollout bucket.
    let flag = Flag {
        rollout_pct: 50,
        ..variant_flag("checkout.button", &[("blue", 50), ("green", 50)])
    };
    let (mut on, mut blue) = (0_u32, 0_u32);
    for tenant in tenants(100_000) {
        let resolution = flag.resolve(&Context::new(&tenant));
        assert_eq!(resolution.enabled, bucket(&tenant, &flag.name) < 50);
        if resolution.enabled {
            on += 1;
            assert_eq!(resolution.reason, Reason::Split);
            if resolution.variant.is_some_and(|v| v.name == "blue") {
                blue += 1;
            }
        } else {
            assert_eq!(resolution.variant, None);
        }
    }
    let blue_share = f64::from(blue) * 100.0 / f64::from(on);
    assert!(
        (blue_share - 50.0).abs() <= 1.0,
        "blue: {blue_share}% of {on}"
    );
}

#[test]
fn the_variant_is_sticky_across_reloads_and_serialization() -> anyhow::Result<()> {
    let flag = Flag {
        variants: vec![
            Variant::new("blue", 34).with_payload(Payload::Object(vec![(
                "color".into(),
                Payload::String("#00f".into()),
            )])),
            Variant::new("green", 33),
            Variant::new("red", 33),
        ],
        ..variant_flag("checkout.button", &[])
    };
    let first = Flags::new(FlagSet::new([flag.clone()]));
    let before: Vec<String> = tenants(2_000)
        .map(|t| {
            first
                .resolve("checkout.button", &Context::new(&t))
                .variant_name()
                .to_owned()
        })
        .collect();
    // A restart: the set comes back from its stored JSON form into a new handle.
    let stored = serde_json::to_string(&flag)?;
    let reloaded: Flag = serde_json::from_str(&stored)?;
    assert_eq!(reloaded, flag);
    let second = Flags::new(FlagSet::new([reloaded]));
    let each_tenant_keeps_its_variant = |flags: &Flags| {
        for (tenant, expected) in tenants(2_000).zip(&before) {
            assert_eq!(
                flags
                    .resolve("checkout.button", &Context::new(&tenant))
                    .variant_name(),
                expected
            );
        }
    };
    each_tenant_keeps_its_variant(&second);
    // Reordering other flags or editing the description changes nothing.
    second.replace(FlagSet::new([
        Flag::new("other"),
        Flag {
            description: Some("button colour test".into()),
            ..flag
        },
    ]));
    each_tenant_keeps_its_variant(&second);
    Ok(())
}

#[test]
fn flags_without_variants_or_rules_keep_the_seed_semantics() {
    // Same truth as tests/evaluation.rs: resolve() agrees with evaluate() and the seed function.
    for pct in [0, 5, 13, 14, 30, 99, 100] {
        let flag = Flag {
            enabled: true,
            rollout_pct: pct,
            ..Flag::new("supplier.realtime.sync")
        };
        for tenant in tenants(500) {
            let resolution = flag.resolve(&Context::new(&tenant));
            #[allow(clippy::cast_sign_loss)]
            let expected = pct == 100 || bucket(&tenant, &flag.name) < pct as u32;
            assert_eq!(resolution.enabled, expected);
            assert_eq!(resolution.variant, None);
            assert_eq!(flag.evaluate(&tenant).enabled, expected);
        }
    }
}

fn rule(attribute: &str, operator: &str, values: Vec<RuleValue>) -> Rule {
    let Ok(operator) = operator.parse::<Operator>();
    Rule::new(attribute, operator, values)
}

/// A rule with one value.
fn rule1(attribute: &str, operator: &str, value: impl Into<RuleValue>) -> Rule {
    rule(attribute, operator, vec![value.into()])
}

fn ruled(rules: Vec<Rule>) -> Flag {
    Flag {
        enabled: true,
        rules,
        ..Flag::new("matching.ai.boost")
    }
}

fn outcome(flag: &Flag, attributes: &[(&str, Attribute<'_>)]) -> (bool, Reason) {
    let resolution = flag.resolve(&Context::new("tenant-1").with_attributes(&attributes));
    (resolution.enabled, resolution.reason)
}

#[test]
fn each_operator_compares_as_documented() {
    use Attribute::{Bool, Number, Str};
    let gold = vec!["gold".into(), "platinum".into()];
    let cases: Vec<(Rule, Attribute<'_>, bool)> = vec![
        (rule("plan", "in", gold.clone()), Str("gold"), true),
        (rule("plan", "in", gold.clone()), Str("free"), false),
        (rule("plan", "not_in", gold.clone()), Str("free"), true),
        (rule("plan", "not_in", gold), Str("platinum"), false),
        (rule1("region", "eq", "cn-east"), Str("cn-east"), true),
        (rule1("region", "=", "cn-east"), Str("cn-west"), false),
        (rule1("seats", "eq", 40.0), Number(40.0), true),
        (rule1("beta", "eq", true), Bool(true), true),
        (rule1("beta", "eq", true), Bool(false), false),
        (rule1("seats", "lt", 10.0), Number(9.5), true),
        (rule1("seats", "<", 10.0), Number(10.0), false),
        (rule1("seats", "lte", 10.0), Number(10.0), true),
        (rule1("seats", ">", 10.0), Number(10.0), false),
        (rule1("seats", "gt", 10.0), Number(11.0), true),
        (rule1("seats", ">=", 10.0), Number(10.0), true),
        (rule1("seats", "gte", 10.0), Number(-3.0), false),
        (rule1("app", "semver_gte", "2.1.0"), Str("2.10.0"), true),
        (
            rule1("app", "semver_gte", "2.1.0"),
            Str("2.1.0-rc.1"),
            false,
        ),
        (rule1("app", "semver_lt", "2.1.0"), Str("v2.0.9"), true),
        (
            rule1("app", "semver_lte", "2.1"),
            Str("2.1.0+build.7"),
            true,
        ),
        (
            rule1("app", "semver_gt", "1.0.0-beta.2"),
            Str("1.0.0-beta.11"),
            true,
        ),
        (rule1("app", "semver_eq", "3.0.0"), Str("3.0.0"), true),
    ];
    for (rule, attribute, expected) in cases {
        let name = rule.attribute.clone();
        let text = format!("{rule:?} against {attribute:?}");
        let flag = ruled(vec![rule]);
        flag.validate_targeting()
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        let (enabled, reason) = outcome(&flag, &[(name.as_str(), attribute)]);
        assert_eq!(enabled, expected, "{text}");
        let expected_reason = if expected {
            Reason::TargetingMatch
        } else {
            Reason::RuleMismatch
        };
        assert_eq!(reason, expected_reason, "{text}");
    }
}

#[test]
fn a_missing_or_wrong_typed_attribute_is_off_with_its_reason() {
    use Attribute::{Bool, Number, Other, Str};
    let cases: Vec<(Rule, Option<Attribute<'_>>, Reason)> = vec![
        (rule1("plan", "in", "gold"), None, Reason::AttributeMissing),
        // A missing attribute does not satisfy `not_in` either.
        (
            rule1("plan", "not_in", "gold"),
            None,
            Reason::AttributeMissing,
        ),
        (
            rule1("plan", "in", "gold"),
            Some(Number(1.0)),
            Reason::AttributeType,
        ),
        (
            rule1("seats", "gt", 1.0),
            Some(Str("40")),
            Reason::AttributeType,
        ),
        (
            rule1("seats", "gt", 1.0),
            Some(Number(f64::NAN)),
            Reason::AttributeType,
        ),
        (
            rule1("app", "semver_gte", "2.0.0"),
            Some(Str("latest")),
            Reason::AttributeType,
        ),
        (
            rule1("app", "semver_gte", "2.0.0"),
            Some(Number(2.0)),
            Reason::AttributeType,
        ),
        (
            rule1("beta", "eq", true),
            Some(Str("true")),
            Reason::AttributeType,
        ),
        (
            rule1("beta", "eq", true),
            Some(Other),
            Reason::AttributeType,
        ),
        (
            rule1("region", "eq", "cn"),
            Some(Bool(true)),
            Reason::AttributeType,
        ),
    ];
    for (rule, attribute, reason) in cases {
        let name = rule.attribute.clone();
        let text = format!("{rule:?} against {attribute:?}");
        let flag = ruled(vec![rule]);
        let attributes: Vec<(&str, Attribute<'_>)> =
            attribute.map(|a| (name.as_str(), a)).into_iter().collect();
        assert_eq!(outcome(&flag, &attributes), (false, reason), "{text}");
    }
    // The boolean API has no attributes: a flag with rules is off there.
    let flag = ruled(vec![rule1("plan", "in", "gold")]);
    assert_eq!(flag.evaluate("tenant-1").reason, Reason::AttributeMissing);
}

#[test]
fn rules_come_after_the_switch_and_before_rollout_whitelist_and_variant() {
    let plan_gold = [("plan", Attribute::Str("gold"))];
    let plan_free = [("plan", Attribute::Str("free"))];
    let base = Flag {
        rules: vec![rule1("plan", "in", "gold"), rule1("seats", "gt", 10.0)],
        whitelist: Some(vec!["tenant-1".into()]),
        ..variant_flag("checkout.button", &[("blue", 50), ("green", 50)])
    };
    // The first rule that does not hold decides: `plan` mismatches before `seats` is looked at.
    assert_eq!(outcome(&base, &plan_free), (false, Reason::RuleMismatch));
    assert_eq!(
        outcome(&base, &plan_gold),
        (false, Reason::AttributeMissing)
    );
    let both = [
        ("plan", Attribute::Str("gold")),
        ("seats", Attribute::Number(40.0)),
    ];
    assert_eq!(outcome(&base, &both), (true, Reason::Split));
    // Disabled wins over rules.
    let disabled = Flag {
        enabled: false,
        ..base.clone()
    };
    assert_eq!(outcome(&disabled, &plan_free), (false, Reason::Disabled));
    // Rules hold, the whitelist still restricts at 100%.
    let resolution = base.resolve(&Context::new("tenant-2").with_attributes(&both));
    assert_eq!(
        (resolution.enabled, resolution.reason),
        (false, Reason::TargetingMatch)
    );
    // One variant: the targeting reason stays.
    let single = Flag {
        variants: vec![Variant::new("only", 100)],
        whitelist: None,
        ..base
    };
    assert_eq!(outcome(&single, &both), (true, Reason::TargetingMatch));
}

#[test]
fn rules_and_variants_read_and_write_the_documented_json() -> anyhow::Result<()> {
    let flag: Flag = serde_json::from_str(
        r##"{"name":"checkout.button","enabled":true,"rollout_pct":100,"whitelist":null,
            "variants":[{"name":"blue","weight":50,"payload":{"color":"#00f","sizes":[1,2.5,null]}},
                        {"name":"green","weight":50}],
            "rules":[{"attribute":"plan","operator":"in","values":["gold","platinum"]},
                     {"attribute":"app","operator":"semver_gte","value":"2.1.0"},
                     {"attribute":"seats","operator":">=","value":10}]}"##,
    )?;
    flag.validate_targeting()?;
    assert_eq!(flag.rules[2].operator, Operator::Gte);
    assert_eq!(flag.rules[2].values, vec![RuleValue::Number(10.0)]);
    let json = serde_json::to_value(&flag)?;
    assert_eq!(json["rules"][1]["value"], "2.1.0");
    assert_eq!(json["rules"][0]["values"][1], "platinum");
    assert_eq!(json["rules"][2]["operator"], "gte");
    assert_eq!(json["variants"][0]["payload"]["sizes"][1], 2.5);
    assert_eq!(serde_json::from_value::<Flag>(json)?, flag);

    // The seed's rows: no such columns, or NULL.
    let seed: Flag = serde_json::from_str(r#"{"name":"admin.v2","variants":null,"rules":null}"#)?;
    assert_eq!(seed, Flag::new("admin.v2"));
    assert!(!serde_json::to_string(&seed)?.contains("variants"));
    Ok(())
}

fn refused(flag: &Flag) -> String {
    match flag.validate_targeting() {
        Ok(()) => panic!("{flag:?} was accepted"),
        Err(problem @ InvalidFlag::Field { .. }) => problem.to_string(),
        Err(other) => panic!("unexpected problem {other:?}"),
    }
}

#[test]
fn bad_variants_and_rules_are_refused_naming_the_flag_and_field() -> anyhow::Result<()> {
    let weights = refused(&variant_flag(
        "checkout.button",
        &[("blue", 50), ("green", 40)],
    ));
    assert!(weights.contains(r#"flag "checkout.button""#), "{weights}");
    assert!(weights.contains("variants[].weight"), "{weights}");
    assert!(weights.contains("add up to 90"), "{weights}");

    let negative = refused(&variant_flag(
        "checkout.button",
        &[("blue", 150), ("green", -50)],
    ));
    assert!(negative.contains("variants[0].weight"), "{negative}");

    let twice = refused(&variant_flag(
        "checkout.button",
        &[("blue", 50), ("blue", 50)],
    ));
    assert!(twice.contains("variants[1].name"), "{twice}");

    let unknown: Flag = serde_json::from_str(
        r#"{"name":"matching.ai.boost","enabled":true,
            "rules":[{"attribute":"plan","operator":"in","values":["gold"]},
                     {"attribute":"plan","operator":"startswith","value":"go"}]}"#,
    )?;
    let message = refused(&unknown);
    assert!(message.contains(r#"flag "matching.ai.boost""#), "{message}");
    assert!(message.contains("rules[1].operator"), "{message}");
    assert!(
        message.contains("\"startswith\" is not an operator"),
        "{message}"
    );
    // Such a flag, if built anyway, is off and says why.
    assert_eq!(
        outcome(&unknown, &[("plan", Attribute::Str("gold"))]),
        (false, Reason::InvalidConfig)
    );

    let not_json = Flag {
        variants: vec![
            Variant::new("a", 50).with_payload(Payload::Object(vec![(
                "ratio".into(),
                Payload::Float(f64::NAN),
            )])),
            Variant::new("b", 50),
        ],
        ..variant_flag("pricing.page", &[])
    };
    let message = refused(&not_json);
    assert!(message.contains(r#"flag "pricing.page""#), "{message}");
    assert!(
        message.contains("variants[0].payload.ratio is not JSON"),
        "{message}"
    );

    for (rule, field) in [
        (rule("plan", "in", vec![]), "rules[0].values"),
        (rule1("plan", "in", 1.0), "rules[0].values"),
        (rule1("seats", "gt", "ten"), "rules[0].value"),
        (rule1("app", "semver_gt", "two"), "rules[0].value"),
        (
            rule("seats", "eq", vec![1.0.into(), 2.0.into()]),
            "rules[0].value",
        ),
        (rule1("", "eq", 1.0), "rules[0].attribute"),
    ] {
        let message = refused(&ruled(vec![rule]));
        assert!(message.contains(field), "{message} should name {field}");
    }

    // Out-of-sum weights evaluate to off rather than to a wrong variant.
    let bad = variant_flag("checkout.button", &[("blue", 50), ("green", 40)]);
    assert_eq!(
        bad.resolve(&Context::new("t")).reason,
        Reason::InvalidConfig
    );
    Ok(())
}

#[test]
fn usage_is_counted_per_flag_and_outcome_and_survives_reloads() {
    let flags = Flags::new(FlagSet::new([
        variant_flag("checkout.button", &[("blue", 50), ("green", 50)]),
        Flag {
            enabled: true,
            rollout_pct: 30,
            ..Flag::new("supplier.realtime.sync")
        },
    ]));
    let mut expected: HashMap<(String, String), u64> = HashMap::new();
    for tenant in tenants(1_000) {
        let variant = flags
            .resolve("checkout.button", &Context::new(&tenant))
            .variant_name()
            .to_owned();
        *expected
            .entry(("checkout.button".into(), variant))
            .or_default() += 1;
        let on = flags.is_enabled("supplier.realtime.sync", &tenant);
        let label = if on { "on" } else { "off" };
        *expected
            .entry(("supplier.realtime.sync".into(), label.into()))
            .or_default() += 1;
    }
    flags.is_enabled("no.such.flag", "tenant-1");
    // A reload keeps the counts.
    flags.replace(FlagSet::new(flags.snapshot().iter().cloned()));
    let usage: HashMap<(String, String), u64> = flags
        .usage()
        .into_iter()
        .filter(|u| u.count > 0)
        .map(|u| ((u.flag, u.variant), u.count))
        .collect();
    assert_eq!(usage, expected);
    assert_eq!(flags.unknown_evaluations(), 1);
    flags.is_enabled("supplier.realtime.sync", "tenant-1"); // bucket 13: on
    let on = flags
        .usage()
        .into_iter()
        .find(|u| u.flag == "supplier.realtime.sync" && u.variant == "on")
        .map(|u| u.count);
    assert_eq!(
        on,
        Some(expected[&("supplier.realtime.sync".into(), "on".into())] + 1)
    );
}

#[test]
fn listeners_hear_which_flags_changed() {
    let flags = Flags::new(FlagSet::new([Flag::new("a"), Flag::new("b")]));
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&heard);
    flags.on_change(move |change| {
        if let Ok(mut heard) = sink.lock() {
            heard.push(change.flags_changed.clone());
        }
    });
    // Same flags: nothing to tell.
    flags.replace(FlagSet::new([Flag::new("b"), Flag::new("a")]));
    flags.replace(FlagSet::new([
        Flag {
            enabled: true,
            ..Flag::new("a")
        },
        Flag::new("c"),
    ]));
    let heard = heard.lock().map(|h| h.clone()).unwrap_or_default();
    assert_eq!(
        heard,
        vec![vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]]
    );
}
