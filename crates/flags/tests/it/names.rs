//! Flag names with control characters and whitelist entries that are empty or hold a `,` are
//! refused where they are written or loaded, with the character named; rows that already hold
//! one do not stop a service.

#![cfg(feature = "postgres")]

use std::time::Duration;

use crate::common::migrated;
use anyhow::Result;
use groundwork_flags::admin::FlagAdmin;
use groundwork_flags::{Flag, store};
use groundwork_live::FeedOptions;

fn message<T>(result: Result<T, impl std::fmt::Display>, what: &str) -> String {
    match result {
        Ok(_) => panic!("{what} must be refused"),
        Err(error) => error.to_string(),
    }
}

#[tokio::test]
async fn the_admin_api_refuses_control_characters_in_flag_names() -> Result<()> {
    let db = migrated().await?;
    let admin = FlagAdmin::new(db.pool().clone());
    for (name, expected) in [
        ("admin\nv2", "newline (U+000A) at byte 5"),
        ("admin.v2\r", "carriage return (U+000D) at byte 8"),
        ("\u{1b}[2Jadmin", "escape (U+001B) at byte 0"),
    ] {
        let text = message(admin.create(&Flag::new(name), "test").await, name);
        assert!(text.contains(expected), "{text}");
        assert!(text.contains("flag name"), "{text}");
    }
    assert!(admin.list().await?.is_empty(), "nothing was written");
    Ok(())
}

#[tokio::test]
async fn the_admin_api_refuses_empty_and_comma_holding_whitelist_entries() -> Result<()> {
    let db = migrated().await?;
    let admin = FlagAdmin::new(db.pool().clone());
    admin.create(&Flag::new("admin.v2"), "test").await?;
    let cases: [(&[&str], &str); 3] = [
        (&["tenant-1", ""], "whitelist entry 2 is empty"),
        (&["tenant-1,tenant-2"], "',' (U+002C) at byte 8"),
        (&["tenant\t1"], "tab (U+0009) at byte 6"),
    ];
    for (tenants, expected) in cases {
        let whitelist = Some(tenants.iter().map(|t| (*t).to_owned()).collect());
        let text = message(
            admin.set_whitelist("admin.v2", whitelist, "test").await,
            "the whitelist",
        );
        assert!(text.contains(expected), "{text}");
    }
    let created = Flag {
        whitelist: Some(vec![String::new()]),
        ..Flag::new("risk.auto.reject")
    };
    let text = message(admin.create(&created, "test").await, "an empty tenant");
    assert!(text.contains("whitelist entry 1 is empty"), "{text}");
    assert_eq!(admin.get("admin.v2").await?.whitelist, None);
    Ok(())
}

#[test]
fn a_flags_file_with_a_bad_name_or_tenant_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("flags.json");
    std::fs::write(&path, r#"[{"name":"admin\u001bv2","enabled":true}]"#)?;
    let text = message(groundwork_flags::load_file(&path), "a name with ESC");
    assert!(text.contains("escape (U+001B) at byte 5"), "{text}");

    std::fs::write(
        &path,
        r#"[{"name":"admin.v2","enabled":true,"whitelist":["a,b"]}]"#,
    )?;
    let text = message(groundwork_flags::load_file(&path), "a tenant with a comma");
    assert!(text.contains("',' (U+002C) at byte 1"), "{text}");
    Ok(())
}

#[tokio::test]
async fn rows_with_bad_names_or_tenants_do_not_stop_the_service() -> Result<()> {
    let db = migrated().await?;
    sqlx::raw_sql(
        "INSERT INTO feature_flags (name, enabled, whitelist) VALUES
             (E'bad\\nname', true, NULL),
             ('admin.v2', true, ARRAY['', 'a,b', 'tenant-1']),
             ('matching.ai.boost', true, NULL);",
    )
    .execute(db.pool())
    .await?;
    let options = FeedOptions::default().poll_interval(Duration::from_hours(1));
    let (flags, _feed) = store::watch(db.pool().clone(), options).await?;
    assert!(flags.is_enabled("matching.ai.boost", "tenant-9"));
    assert!(flags.is_enabled("admin.v2", "tenant-1"));
    assert!(!flags.is_enabled("admin.v2", "a"));
    let snapshot = flags.snapshot();
    assert_eq!(snapshot.len(), 3, "bad rows are kept");
    let mut reported: Vec<String> = snapshot
        .iter()
        .filter_map(|flag| flag.validate().err())
        .map(|problem| problem.to_string())
        .collect();
    reported.sort();
    assert_eq!(reported.len(), 2, "{reported:?}");
    assert!(
        reported[0].contains("flag name \"bad\\nname\" contains a newline"),
        "{reported:?}"
    );
    assert!(
        reported[1].contains("whitelist entry 1 is empty"),
        "{reported:?}"
    );
    Ok(())
}

#[cfg(feature = "cli")]
#[tokio::test]
async fn the_cli_refuses_an_empty_tenant_and_a_name_with_a_carriage_return() -> Result<()> {
    let db = migrated().await?;
    FlagAdmin::new(db.pool().clone())
        .create(&Flag::new("admin.v2"), "test")
        .await?;
    let run = |args: &[&str]| crate::common::flags_cli(db.url(), args);
    for (args, expected) in [
        (
            &["whitelist", "admin.v2", "tenant-1", ""][..],
            "whitelist entry 2 is empty",
        ),
        (
            &["create", "admin\rv3"][..],
            "carriage return (U+000D) at byte 5",
        ),
    ] {
        let output = run(args)?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(
            !stderr.contains('\r'),
            "the raw character is not echoed: {stderr:?}"
        );
    }
    Ok(())
}
