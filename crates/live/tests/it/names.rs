//! Config keys and environment names with control characters are refused where they are written
//! or loaded, with the character named; rows that already hold one do not stop a service.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use groundwork_live::FeedOptions;
use groundwork_live::config::{self, admin::ConfigAdmin, admin::Expect, admin::NewValue};

use crate::common::migrated;

#[tokio::test]
async fn the_admin_api_refuses_control_characters_in_keys_and_environments() -> Result<()> {
    let db = migrated().await?;
    let admin = ConfigAdmin::new(db.pool().clone());
    let value = serde_json::json!(1);
    let cases = [
        ("production", "log\nlevel", "newline (U+000A) at byte 3"),
        (
            "production",
            "log.level\r",
            "carriage return (U+000D) at byte 9",
        ),
        ("production", "\u{1b}[31mred", "escape (U+001B) at byte 0"),
        ("production", "del\u{7f}", "U+007F"),
        ("production", "c1\u{85}", "U+0085"),
        ("prod\nuction", "log.level", "environment name"),
    ];
    for (env, key, expected) in cases {
        let new = NewValue {
            env,
            key,
            value: &value,
            description: None,
        };
        let Err(error) = admin.set(&new, Expect::Any, "test").await else {
            panic!("{key:?} in {env:?} must be refused");
        };
        let message = error.to_string();
        assert!(message.contains(expected), "{message}");
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM platform_config")
        .fetch_one(db.pool())
        .await?;
    assert_eq!(rows, 0, "nothing was written");
    Ok(())
}

#[tokio::test]
async fn the_cli_refuses_a_key_with_an_escape_character() -> Result<()> {
    let db = migrated().await?;
    let output = Command::new(env!("CARGO_BIN_EXE_groundwork-live"))
        .env("DATABASE_URL", db.url())
        .args(["--env", "production", "--by", "ops"])
        .args(["set", "log\u{1b}level", "1", "--force"])
        .output()
        .context("running groundwork-live")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("escape (U+001B) at byte 3"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "the raw character is not echoed: {stderr:?}"
    );
    Ok(())
}

#[test]
fn a_config_file_with_a_control_character_in_a_key_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("config.json");
    std::fs::write(&path, r#"{"ok.key": 1, "bad\nkey": 2}"#)?;
    let Err(error) = config::load_file(&path, "development", 1) else {
        panic!("a key with a newline must be refused");
    };
    let message = error.to_string();
    assert!(message.contains("newline (U+000A) at byte 3"), "{message}");
    Ok(())
}

#[tokio::test]
async fn a_row_with_a_control_character_in_its_key_does_not_stop_the_service() -> Result<()> {
    let db = migrated().await?;
    sqlx::raw_sql(
        "INSERT INTO platform_config (env, key, value) VALUES
             ('production', E'bad\\nkey', '1'), ('production', 'good.key', '2');",
    )
    .execute(db.pool())
    .await?;
    let options = FeedOptions::default().poll_interval(Duration::from_hours(1));
    let (live, _feed) = config::watch(db.pool().clone(), "production", options).await?;
    assert_eq!(live.get_or("good.key", 0), 2);
    assert_eq!(
        live.snapshot().len(),
        2,
        "the bad row is kept, and reported"
    );
    Ok(())
}
