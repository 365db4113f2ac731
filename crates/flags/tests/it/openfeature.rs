//! The OpenFeature provider, exercised through the `open-feature` SDK's client as a service would
//! call it.
#![cfg(feature = "openfeature")]

use std::fmt::Debug;

use groundwork_flags::{Flag, FlagSet, Flags, FlagsProvider, bucket};
use open_feature::{
    Client, EvaluationContext, EvaluationError, EvaluationErrorCode, EvaluationReason,
    EvaluationResult, FlagMetadataValue, OpenFeature, StructValue,
};

/// At 30%: tenant-1 (bucket 13) is on, tenant-3 (bucket 81) is off.
const SPLIT: &str = "supplier.realtime.sync";

fn flags() -> Flags {
    Flags::new(FlagSet::new([
        Flag {
            enabled: true,
            rollout_pct: 30,
            ..Flag::new(SPLIT)
        },
        Flag {
            enabled: true,
            whitelist: Some(vec!["tenant-7".into(), "tenant-9".into()]),
            ..Flag::new("admin.v2")
        },
        Flag {
            enabled: true,
            ..Flag::new("billing.invoice.pdf")
        },
        Flag {
            enabled: true,
            whitelist: Some(vec![]),
            ..Flag::new("billing.invoice.csv")
        },
        Flag {
            enabled: false,
            rollout_pct: 100,
            ..Flag::new("search.semantic")
        },
        Flag {
            enabled: true,
            rollout_pct: 150,
            ..Flag::new("legacy.broken.row")
        },
    ]))
}

/// A client of a fresh OpenFeature API (not the process-wide singleton, so tests stay independent)
/// whose default provider reads `flags`.
async fn client(flags: Flags) -> Client {
    let mut api = OpenFeature::default();
    api.set_provider(FlagsProvider::new(flags)).await;
    api.create_client()
}

fn tenant(id: &str) -> EvaluationContext {
    EvaluationContext::default().with_targeting_key(id)
}

fn error<T: Debug>(result: EvaluationResult<T>) -> EvaluationError {
    match result {
        Ok(value) => panic!("expected an evaluation error, got {value:?}"),
        Err(error) => error,
    }
}

#[tokio::test]
async fn rollout_below_full_is_a_split_decided_by_the_tenants_bucket() -> EvaluationResult<()> {
    let client = client(flags()).await;
    assert_eq!(bucket("tenant-1", SPLIT), 13);

    let on = client
        .get_bool_details(SPLIT, Some(&tenant("tenant-1")), None)
        .await?;
    assert!(on.value);
    assert_eq!(on.reason, Some(EvaluationReason::Split));
    assert_eq!(on.variant.as_deref(), Some("on"));

    assert_eq!(bucket("tenant-3", SPLIT), 81);
    let off = client
        .get_bool_details(SPLIT, Some(&tenant("tenant-3")), None)
        .await?;
    assert!(!off.value);
    assert_eq!(off.reason, Some(EvaluationReason::Split));
    assert_eq!(off.variant.as_deref(), Some("off"));

    // Every tenant gets exactly the core evaluation.
    for n in 0..200 {
        let id = format!("tenant-{n}");
        let value = client
            .get_bool_value(SPLIT, Some(&tenant(&id)), None)
            .await?;
        assert_eq!(value, bucket(&id, SPLIT) < 30, "{id}");
    }
    Ok(())
}

#[tokio::test]
async fn whitelist_at_full_rollout_is_a_targeting_match() -> EvaluationResult<()> {
    let client = client(flags()).await;

    let listed = client
        .get_bool_details("admin.v2", Some(&tenant("tenant-7")), None)
        .await?;
    assert!(listed.value);
    assert_eq!(listed.reason, Some(EvaluationReason::TargetingMatch));
    assert_eq!(listed.variant.as_deref(), Some("on"));

    let unlisted = client
        .get_bool_details("admin.v2", Some(&tenant("tenant-1")), None)
        .await?;
    assert!(!unlisted.value);
    assert_eq!(unlisted.reason, Some(EvaluationReason::TargetingMatch));
    assert_eq!(unlisted.variant.as_deref(), Some("off"));
    Ok(())
}

#[tokio::test]
async fn full_rollout_without_whitelist_is_static() -> EvaluationResult<()> {
    let client = client(flags()).await;
    for name in ["billing.invoice.pdf", "billing.invoice.csv"] {
        let details = client
            .get_bool_details(name, Some(&tenant("tenant-1")), None)
            .await?;
        assert!(details.value, "{name}");
        assert_eq!(details.reason, Some(EvaluationReason::Static), "{name}");
        assert_eq!(details.variant.as_deref(), Some("on"), "{name}");
    }
    Ok(())
}

#[tokio::test]
async fn disabled_flag_is_off_with_reason_disabled() -> EvaluationResult<()> {
    let client = client(flags()).await;
    let details = client
        .get_bool_details("search.semantic", Some(&tenant("tenant-1")), None)
        .await?;
    assert!(!details.value);
    assert_eq!(details.reason, Some(EvaluationReason::Disabled));
    assert_eq!(details.variant.as_deref(), Some("off"));
    assert!(details.flag_metadata.values.is_empty());
    Ok(())
}

#[tokio::test]
async fn invalid_rollout_is_disabled_and_says_why_in_flag_metadata() -> EvaluationResult<()> {
    let client = client(flags()).await;
    let details = client
        .get_bool_details("legacy.broken.row", Some(&tenant("tenant-1")), None)
        .await?;
    assert!(!details.value);
    assert_eq!(details.reason, Some(EvaluationReason::Disabled));
    assert_eq!(details.variant.as_deref(), Some("off"));
    let metadata = &details.flag_metadata.values;
    assert_eq!(
        metadata.get("error_code"),
        Some(&FlagMetadataValue::String("PARSE_ERROR".into()))
    );
    assert_eq!(
        metadata.get("rollout_pct"),
        Some(&FlagMetadataValue::Int(150))
    );
    assert!(
        matches!(metadata.get("error_message"), Some(FlagMetadataValue::String(m)) if m.contains("outside 0..=100")),
        "{metadata:?}"
    );
    Ok(())
}

#[tokio::test]
async fn unknown_flag_is_flag_not_found_and_the_callers_default_applies() {
    let client = client(flags()).await;
    let context = tenant("tenant-1");

    let error = error(
        client
            .get_bool_details("no.such.flag", Some(&context), None)
            .await,
    );
    assert_eq!(error.code, EvaluationErrorCode::FlagNotFound);
    assert!(
        error
            .message
            .as_deref()
            .is_some_and(|m| m.contains("no.such.flag")),
        "{error:?}"
    );

    for default in [false, true] {
        let value = client
            .get_bool_value("no.such.flag", Some(&context), None)
            .await
            .unwrap_or(default);
        assert_eq!(value, default);
    }
}

#[tokio::test]
async fn tenant_dependent_flags_need_a_targeting_key() {
    let client = client(flags()).await;
    let no_key = EvaluationContext::default();
    let empty_key = tenant("");

    for name in [SPLIT, "admin.v2"] {
        for context in [None, Some(&no_key), Some(&empty_key)] {
            let error = error(client.get_bool_details(name, context, None).await);
            assert_eq!(
                error.code,
                EvaluationErrorCode::TargetingKeyMissing,
                "{name} with {context:?}"
            );
        }
    }
    // An unknown flag is reported as unknown whether or not a key is given.
    let error = error(client.get_bool_details("no.such.flag", None, None).await);
    assert_eq!(error.code, EvaluationErrorCode::FlagNotFound);
}

#[tokio::test]
async fn tenant_independent_flags_resolve_without_a_targeting_key() -> EvaluationResult<()> {
    let client = client(flags()).await;
    let cases = [
        ("billing.invoice.pdf", true, EvaluationReason::Static),
        ("search.semantic", false, EvaluationReason::Disabled),
        ("legacy.broken.row", false, EvaluationReason::Disabled),
    ];
    for (name, value, reason) in cases {
        let details = client.get_bool_details(name, None, None).await?;
        assert_eq!(details.value, value, "{name}");
        assert_eq!(details.reason, Some(reason), "{name}");
    }
    Ok(())
}

#[tokio::test]
async fn targeting_key_set_on_the_client_is_the_tenant() -> EvaluationResult<()> {
    let mut client = client(flags()).await;
    client.set_evaluation_context(tenant("tenant-9"));
    let details = client.get_bool_details("admin.v2", None, None).await?;
    assert!(details.value);
    assert_eq!(details.reason, Some(EvaluationReason::TargetingMatch));
    Ok(())
}

#[tokio::test]
async fn non_boolean_resolutions_are_type_mismatches() {
    let client = client(flags()).await;
    let context = tenant("tenant-1");
    let ctx = Some(&context);

    let errors = [
        error(client.get_int_value(SPLIT, ctx, None).await),
        error(client.get_float_value(SPLIT, ctx, None).await),
        error(client.get_string_value(SPLIT, ctx, None).await),
        error(
            client
                .get_struct_value::<StructValue>(SPLIT, ctx, None)
                .await,
        ),
    ];
    for error in errors {
        assert_eq!(error.code, EvaluationErrorCode::TypeMismatch, "{error:?}");
    }

    let unknown = error(client.get_string_value("no.such.flag", ctx, None).await);
    assert_eq!(unknown.code, EvaluationErrorCode::FlagNotFound);
}

#[tokio::test]
async fn replaced_flags_are_seen_by_the_provider() -> EvaluationResult<()> {
    let flags = flags();
    let client = client(flags.clone()).await;
    let context = tenant("tenant-1");
    assert!(
        !client
            .get_bool_value("search.semantic", Some(&context), None)
            .await?
    );

    flags.replace(FlagSet::new([Flag {
        enabled: true,
        ..Flag::new("search.semantic")
    }]));
    let details = client
        .get_bool_details("search.semantic", Some(&context), None)
        .await?;
    assert!(details.value);
    assert_eq!(details.reason, Some(EvaluationReason::Static));
    Ok(())
}

#[tokio::test]
async fn provider_metadata_names_groundwork_flags() {
    let mut api = OpenFeature::default();
    api.set_provider(FlagsProvider::new(flags())).await;
    assert_eq!(api.provider_metadata().await.name, "groundwork-flags");
    assert_eq!(FlagsProvider::NAME, "groundwork-flags");
}

/// Flags with variants and rules: `checkout.button` (blue/green, gold and platinum plans only),
/// `search.limit` (integer payloads), `pricing.theme` (object payloads, one variant).
fn variant_flags() -> Flags {
    use groundwork_flags::{Operator, Payload, Rule, Variant};
    Flags::new(FlagSet::new([
        Flag {
            enabled: true,
            rules: vec![Rule::new(
                "plan",
                Operator::In,
                vec!["gold".into(), "platinum".into()],
            )],
            variants: vec![
                Variant::new("blue", 50).with_payload(Payload::String("#0000ff".into())),
                Variant::new("green", 50),
            ],
            ..Flag::new("checkout.button")
        },
        Flag {
            enabled: true,
            rules: vec![Rule::new("seats", Operator::Gte, vec![10.0.into()])],
            variants: vec![
                Variant::new("small", 50).with_payload(Payload::Int(20)),
                Variant::new("large", 50).with_payload(Payload::Int(100)),
            ],
            ..Flag::new("search.limit")
        },
        Flag {
            enabled: true,
            variants: vec![Variant::new("dark", 100).with_payload(Payload::Object(vec![
                ("background".into(), Payload::String("#111".into())),
                ("contrast".into(), Payload::Float(1.5)),
                ("legacy".into(), Payload::Null),
            ]))],
            ..Flag::new("pricing.theme")
        },
        Flag {
            enabled: false,
            variants: vec![Variant::new("a", 100)],
            ..Flag::new("pricing.disabled")
        },
    ]))
}

fn gold(id: &str) -> EvaluationContext {
    tenant(id).with_custom_field("plan", "gold")
}

#[tokio::test]
async fn string_flags_serve_the_variant_with_its_name_and_split() -> EvaluationResult<()> {
    let flags = variant_flags();
    let client = client(flags.clone()).await;
    let mut seen = std::collections::HashSet::new();
    for n in 0..50 {
        let id = format!("tenant-{n}");
        let details = client
            .get_string_details("checkout.button", Some(&gold(&id)), None)
            .await?;
        let expected = flags
            .resolve(
                "checkout.button",
                &groundwork_flags::Context::new(&id)
                    .with_attributes(&[("plan", groundwork_flags::Attribute::Str("gold"))]),
            )
            .variant_name()
            .to_owned();
        assert_eq!(details.variant.as_deref(), Some(expected.as_str()));
        assert_eq!(details.reason, Some(EvaluationReason::Split));
        // blue has a string payload; green none, so its name is the value.
        let value = if expected == "blue" {
            "#0000ff"
        } else {
            "green"
        };
        assert_eq!(details.value, value);
        seen.insert(expected);
        // The boolean view of the same flag: on, with the variant's name.
        let on = client
            .get_bool_details("checkout.button", Some(&gold(&id)), None)
            .await?;
        assert!(on.value);
        assert_eq!(on.variant, details.variant);
    }
    assert_eq!(seen.len(), 2, "both variants are served: {seen:?}");
    Ok(())
}

#[tokio::test]
async fn integer_float_and_object_flags_serve_their_payloads() -> EvaluationResult<()> {
    let client = client(variant_flags()).await;
    let seats = tenant("tenant-1").with_custom_field("seats", 40);
    let limit = client
        .get_int_details("search.limit", Some(&seats), None)
        .await?;
    assert!([20, 100].contains(&limit.value), "{limit:?}");
    let as_float = client
        .get_float_value("search.limit", Some(&seats), None)
        .await?;
    assert!((as_float - f64::from(u8::try_from(limit.value).unwrap_or(0))).abs() < f64::EPSILON);

    let theme = client
        .get_struct_details::<StructValue>("pricing.theme", Some(&tenant("tenant-1")), None)
        .await?;
    assert_eq!(theme.variant.as_deref(), Some("dark"));
    // One variant: nothing was split, no rule, full rollout.
    assert_eq!(theme.reason, Some(EvaluationReason::Static));
    let fields = &theme.value.fields;
    assert_eq!(
        fields.get("background").and_then(|v| v.as_str()),
        Some("#111")
    );
    assert_eq!(
        fields.get("contrast").and_then(open_feature::Value::as_f64),
        Some(1.5)
    );
    assert!(!fields.contains_key("legacy"), "JSON null is left out");

    // One variant needs no targeting key.
    let no_key = client
        .get_struct_details::<StructValue>("pricing.theme", None, None)
        .await?;
    assert_eq!(no_key.variant.as_deref(), Some("dark"));
    Ok(())
}

#[tokio::test]
async fn a_rule_that_does_not_hold_is_default_and_typed_values_fall_back() {
    let client = client(variant_flags()).await;
    let free = tenant("tenant-1").with_custom_field("plan", "free");
    let no_plan = tenant("tenant-1");
    for context in [&free, &no_plan] {
        let details = client
            .get_bool_details("checkout.button", Some(context), None)
            .await;
        let details = details.unwrap_or_else(|e| panic!("{e:?}"));
        assert!(!details.value);
        assert_eq!(details.reason, Some(EvaluationReason::Default));
        assert_eq!(details.variant.as_deref(), Some("off"));

        let typed = error(
            client
                .get_string_details("checkout.button", Some(context), None)
                .await,
        );
        assert_eq!(typed.code, EvaluationErrorCode::General("DEFAULT".into()));
        let value = client
            .get_string_value("checkout.button", Some(context), None)
            .await
            .unwrap_or_else(|_| "grey".into());
        assert_eq!(value, "grey");
    }
    let disabled = error(
        client
            .get_string_details("pricing.disabled", Some(&no_plan), None)
            .await,
    );
    assert_eq!(
        disabled.code,
        EvaluationErrorCode::General("DISABLED".into())
    );
}

#[tokio::test]
async fn wrong_types_are_invalid_context_or_type_mismatch() {
    let client = client(variant_flags()).await;
    let text_seats = tenant("tenant-1").with_custom_field("seats", "forty");
    let invalid = error(
        client
            .get_int_details("search.limit", Some(&text_seats), None)
            .await,
    );
    assert_eq!(invalid.code, EvaluationErrorCode::InvalidContext);
    let message = invalid.message.unwrap_or_default();
    assert!(
        message.contains("`seats`") && message.contains("`gte`"),
        "{message}"
    );

    let seats = tenant("tenant-1").with_custom_field("seats", 40);
    let mismatch = error(
        client
            .get_string_details("search.limit", Some(&seats), None)
            .await,
    );
    assert_eq!(mismatch.code, EvaluationErrorCode::TypeMismatch);
    let mismatch = error(
        client
            .get_int_details("checkout.button", Some(&gold("tenant-1")), None)
            .await,
    );
    assert_eq!(mismatch.code, EvaluationErrorCode::TypeMismatch);
}

#[tokio::test]
async fn a_hot_reload_is_announced_as_configuration_changed() -> anyhow::Result<()> {
    use groundwork_flags::ConfigurationChanged;
    let flags = variant_flags();
    let provider = FlagsProvider::new(flags.clone());
    let mut events = provider.subscribe();
    let mut next = flags.snapshot().iter().cloned().collect::<Vec<_>>();
    next.retain(|flag| flag.name != "pricing.disabled");
    next.push(Flag::new("brand.new"));
    flags.replace(FlagSet::new(next));
    // Listeners run inside `replace`, so the event is there when it returns.
    let event = events.try_recv()?;
    assert_eq!(
        event,
        ConfigurationChanged {
            provider_name: FlagsProvider::NAME,
            flags_changed: vec!["brand.new".into(), "pricing.disabled".into()],
        }
    );
    // A reload that changes nothing is not announced.
    flags.replace(FlagSet::new(flags.snapshot().iter().cloned()));
    assert!(events.try_recv().is_err());
    Ok(())
}
