//! Bad variants and rules — weights that do not add up to 100, an unknown operator, a payload
//! that is not JSON — are refused by the admin API, the CLI and the file source with a message
//! naming the flag and the field, and never reach a running service. Real PostgreSQL; each test
//! owns a fresh database.

#![cfg(feature = "postgres")]

use crate::common::migrated;
use anyhow::{Context as _, Result};
use groundwork_flags::admin::{AdminError, Expect, FlagAdmin, FlagUpdate};
use groundwork_flags::{Context, Flag, Operator, Payload, Rule, Variant, load_file};

fn refusal<T: std::fmt::Debug>(result: Result<T, AdminError>) -> String {
    match result {
        Ok(value) => panic!("accepted: {value:?}"),
        Err(error @ AdminError::Invalid(_)) => error.to_string(),
        Err(other) => panic!("refused for another reason: {other}"),
    }
}

#[tokio::test]
async fn the_admin_api_refuses_bad_variants_and_rules_naming_flag_and_field() -> Result<()> {
    let db = migrated().await?;
    let admin = FlagAdmin::new(db.pool().clone());
    admin.create(&Flag::new("checkout.button"), "test").await?;
    let update = |variants: Option<Vec<Variant>>, rules: Option<Vec<Rule>>| FlagUpdate {
        variants,
        rules,
        ..FlagUpdate::default()
    };
    let cases = [
        (
            update(
                Some(vec![Variant::new("blue", 60), Variant::new("green", 50)]),
                None,
            ),
            "variants[].weight",
        ),
        (
            update(
                None,
                Some(vec![Rule::new(
                    "plan",
                    Operator::Unknown("startswith".into()),
                    vec!["go".into()],
                )]),
            ),
            "rules[0].operator",
        ),
        (
            update(
                Some(vec![
                    Variant::new("blue", 50).with_payload(Payload::Float(f64::INFINITY)),
                    Variant::new("green", 50),
                ]),
                None,
            ),
            "variants[0].payload is not JSON",
        ),
    ];
    for (change, field) in cases {
        let message = refusal(
            admin
                .update("checkout.button", &change, Expect::Any, "test")
                .await,
        );
        assert!(message.contains(r#"flag "checkout.button""#), "{message}");
        assert!(message.contains(field), "{message} should name {field}");
    }
    // The text entry points refuse a payload that is not JSON before anything is written.
    let not_json = groundwork_flags::admin::parse_variants(
        "checkout.button",
        &["blue=50".into(), "green=50".into()],
        &["blue={\"color\":".into()],
    );
    let message = not_json.map_or_else(|e| e.to_string(), |v| format!("accepted {v:?}"));
    assert!(
        message.contains("variants[0].payload is not JSON"),
        "{message}"
    );
    // Nothing was written: one history entry, the create.
    assert_eq!(admin.history("checkout.button").await?.len(), 1);
    assert!(admin.get("checkout.button").await?.variants.is_empty());
    Ok(())
}

#[cfg(feature = "cli")]
#[tokio::test]
// One scenario from refusal to rollback, in the order an operator meets it.
#[allow(clippy::too_many_lines)]
async fn the_cli_sets_variants_and_rules_and_refuses_bad_ones() -> Result<()> {
    let db = migrated().await?;
    let admin = FlagAdmin::new(db.pool().clone());
    admin
        .create(
            &Flag {
                enabled: true,
                ..Flag::new("checkout.button")
            },
            "test",
        )
        .await?;
    let run = |args: &[&str]| crate::common::flags_cli(db.url(), args);
    let refused: [(&[&str], &str); 4] = [
        (
            &["variants", "checkout.button", "blue=50", "green=40"],
            "variants[].weight the weights add up to 90",
        ),
        (
            &[
                "variants",
                "checkout.button",
                "blue=50",
                "green=50",
                "--payload",
                "blue={bad",
            ],
            "variants[0].payload is not JSON",
        ),
        (
            &["rules", "checkout.button", "plan like gold%"],
            "rules[0].operator \"like\" is not an operator",
        ),
        (
            &["rules", "checkout.button", "seats >= ten"],
            "rules[0].value \"ten\" is not a number",
        ),
    ];
    for (args, expected) in refused {
        let output = run(args)?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(r#"flag "checkout.button""#),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let flag = admin.get("checkout.button").await?;
    assert!(
        flag.variants.is_empty() && flag.rules.is_empty(),
        "nothing was written"
    );

    let set = run(&[
        "variants",
        "checkout.button",
        "blue=50",
        "green=50",
        "--payload",
        r##"blue={"color":"#00f"}"##,
    ])?;
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let set = run(&[
        "rules",
        "checkout.button",
        "plan in gold,platinum",
        "seats >= 10",
    ])?;
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let flag = admin.get("checkout.button").await?;
    assert_eq!(flag.variants.len(), 2);
    assert_eq!(
        flag.variants[0].payload,
        Some(Payload::Object(vec![(
            "color".into(),
            Payload::String("#00f".into())
        )]))
    );
    assert_eq!(flag.rules.len(), 2);

    // eval agrees with the library.
    let expected = groundwork_flags::Flags::new(groundwork_flags::FlagSet::new([flag]))
        .resolve(
            "checkout.button",
            &Context::new("tenant-1").with_attributes(&[
                ("plan", groundwork_flags::Attribute::Str("gold")),
                ("seats", groundwork_flags::Attribute::Number(40.0)),
            ]),
        )
        .variant_name()
        .to_owned();
    let eval = run(&[
        "eval",
        "checkout.button",
        "tenant-1",
        "--attr",
        "plan=gold",
        "--attr",
        "seats=40",
    ])?;
    let stdout = String::from_utf8_lossy(&eval.stdout);
    assert!(stdout.contains(&format!("variant {expected}")), "{stdout}");
    let eval = run(&["eval", "checkout.button", "tenant-1", "--attr", "plan=free"])?;
    let stdout = String::from_utf8_lossy(&eval.stdout);
    assert!(stdout.contains("off (RuleMismatch"), "{stdout}");

    // History and rollback: back to before the variants.
    let history = admin.history("checkout.button").await?;
    let before_variants = history
        .iter()
        .find(|c| c.flag.as_ref().is_some_and(|f| f.variants.is_empty()))
        .map(|c| c.revision)
        .context("a revision without variants")?;
    let rolled = run(&[
        "rollback",
        "checkout.button",
        "--to",
        &before_variants.to_string(),
    ])?;
    assert!(
        rolled.status.success(),
        "{}",
        String::from_utf8_lossy(&rolled.stderr)
    );
    let flag = admin.get("checkout.button").await?;
    assert!(flag.variants.is_empty() && flag.rules.is_empty());
    Ok(())
}

#[test]
fn the_file_source_refuses_bad_variants_and_keeps_the_last_good_set() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("flags.toml");
    let good = r##"
[[flags]]
name = "checkout.button"
enabled = true
variants = [{ name = "blue", weight = 50, payload = { color = "#00f" } }, { name = "green", weight = 50 }]
rules = [{ attribute = "plan", operator = "in", values = ["gold"] }]
"##;
    std::fs::write(&path, good)?;
    let set = load_file(&path)?;
    let flag = set.get("checkout.button").context("the flag")?;
    assert_eq!(flag.variants.len(), 2);
    assert_eq!(flag.rules.len(), 1);

    let mut source = groundwork_flags::FileSource::open(&path)?;
    let flags = source.flags();
    let before = flags.snapshot().get("checkout.button").cloned();
    for (bad, field) in [
        (
            good.replace("weight = 50 }]", "weight = 40 }]"),
            "variants[].weight",
        ),
        (
            good.replace("operator = \"in\"", "operator = \"like\""),
            "rules[0].operator",
        ),
        // JSON has no NaN or infinities: TOML's must not turn into `null` on the way.
        (
            good.replace(
                "payload = { color = \"#00f\" }",
                "payload = { ratio = nan }",
            ),
            "variants[0].payload.ratio is nan",
        ),
        (
            good.replace("payload = { color = \"#00f\" }", "payload = -inf"),
            "variants[0].payload is -inf",
        ),
        (
            good.replace(
                "payload = { color = \"#00f\" }",
                "payload = { steps = [1.5, inf] }",
            ),
            "variants[0].payload.steps[1] is inf",
        ),
    ] {
        // A different length, so the change is seen whatever the file system's clock.
        std::fs::write(&path, format!("{bad}\n# edit {field}\n"))?;
        let message =
            load_file(&path).map_or_else(|e| e.to_string(), |_| format!("{field}: accepted"));
        assert!(
            message.contains(r#"flag "checkout.button""#)
                || message.contains(r#"named "checkout.button""#),
            "{message}"
        );
        assert!(message.contains(field), "{message} should name {field}");
        let reloaded = source.reload_if_changed();
        assert!(reloaded.is_err(), "the edit with {field} must be reported");
        assert_eq!(
            flags.snapshot().get("checkout.button").cloned(),
            before,
            "the last good set stays"
        );
    }
    Ok(())
}
