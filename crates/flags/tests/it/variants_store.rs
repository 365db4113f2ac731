//! Variants and rules in the `feature_flags` table against a real PostgreSQL: the seed's rows keep
//! working, variants stay sticky across restarts, and a row no write path accepts is never served.
//! Each test owns a fresh database.

#![cfg(feature = "postgres")]

use std::time::Duration;

use crate::common::migrated;
use anyhow::Result;
use groundwork_flags::{Attribute, Context, Flags, Reason, store};
use groundwork_live::{Feed, FeedOptions, FeedStatus};

fn options() -> FeedOptions {
    // A long poll so tests prove notifications, not the safety net, deliver changes.
    FeedOptions::default().poll_interval(Duration::from_hours(1))
}

async fn until(feed: &Feed, what: &str, check: impl Fn() -> bool) -> Result<()> {
    groundwork_testkit::until_changed(feed.generations(), Duration::from_secs(10), what, check)
        .await?;
    Ok(())
}

async fn until_status(feed: &Feed, what: &str, check: impl Fn(&FeedStatus) -> bool) -> Result<()> {
    let statuses = feed.statuses();
    let watched = statuses.clone();
    groundwork_testkit::until_changed(statuses, Duration::from_secs(10), what, move || {
        check(&watched.borrow())
    })
    .await?;
    Ok(())
}

const BUTTON: &str = r##"[{"name":"blue","weight":34,"payload":{"color":"#00f"}},
                         {"name":"green","weight":33},{"name":"red","weight":33}]"##;

/// The variant each tenant gets, on the gold plan (a plan the rule of the second test admits).
fn variants_of(flags: &Flags, tenants: &[String]) -> Vec<String> {
    let gold = [("plan", Attribute::Str("gold"))];
    tenants
        .iter()
        .map(|t| {
            flags
                .resolve("checkout.button", &Context::new(t).with_attributes(&gold))
                .variant_name()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn rows_of_the_seed_ddl_and_the_typescript_service_still_work() -> Result<()> {
    let db = migrated().await?;
    // What the TypeScript service writes: the seed's columns only.
    sqlx::query(
        "INSERT INTO feature_flags (name, enabled, rollout_pct, whitelist, description) \
         VALUES ('supplier.realtime.sync', true, 30, NULL, 'seed row')",
    )
    .execute(db.pool())
    .await?;
    let (variants, rules): (Option<serde_json::Value>, Option<serde_json::Value>) =
        sqlx::query_as("SELECT variants, rules FROM feature_flags")
            .fetch_one(db.pool())
            .await?;
    assert_eq!((variants, rules), (None, None));
    let flags = store::load_all(db.pool()).await?;
    assert_eq!(flags.len(), 1);
    let flag = &flags[0];
    assert!(flag.variants.is_empty() && flag.rules.is_empty());
    assert!(flag.is_enabled_for("tenant-1")); // bucket 13 < 30
    assert_eq!(flag.evaluate("tenant-1").reason, Reason::Split);
    Ok(())
}

#[tokio::test]
async fn variants_are_sticky_across_restarts_and_rules_apply() -> Result<()> {
    let db = migrated().await?;
    sqlx::query(
        "INSERT INTO feature_flags (name, enabled, variants, rules) VALUES \
         ('checkout.button', true, $1::jsonb, \
          '[{\"attribute\":\"plan\",\"operator\":\"not_in\",\"values\":[\"free\"]}]'::jsonb)",
    )
    .bind(BUTTON)
    .execute(db.pool())
    .await?;
    let tenants: Vec<String> = (0..300).map(|i| format!("tenant-{i}")).collect();

    // Two services (or one restarted) loading the same table.
    let (first, first_feed) = store::watch(db.pool().clone(), options()).await?;
    let before = variants_of(&first, &tenants);
    first_feed.shutdown().await;
    drop(first);
    let (second, second_feed) = store::watch(db.pool().clone(), options()).await?;
    assert_eq!(variants_of(&second, &tenants), before);
    for name in ["blue", "green", "red"] {
        assert!(before.iter().any(|v| v == name), "{name} is never served");
    }
    // The rule: a free-plan context is off, by the rule.
    let free = [("plan", Attribute::Str("free"))];
    let resolved = second.resolve(
        "checkout.button",
        &Context::new("tenant-1").with_attributes(&free),
    );
    assert_eq!(
        (resolved.enabled, resolved.reason),
        (false, Reason::RuleMismatch)
    );
    // A change to another column keeps every tenant's variant.
    sqlx::query(
        "UPDATE feature_flags SET description = 'button colour' WHERE name = 'checkout.button'",
    )
    .execute(db.pool())
    .await?;
    until(&second_feed, "the description change", || {
        second
            .snapshot()
            .get("checkout.button")
            .is_some_and(|f| f.description.is_some())
    })
    .await?;
    assert_eq!(variants_of(&second, &tenants), before);
    second_feed.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_bad_row_written_by_sql_is_never_served_and_is_reported() -> Result<()> {
    let db = migrated().await?;
    sqlx::query("INSERT INTO feature_flags (name, enabled, variants) VALUES ('checkout.button', true, $1::jsonb)")
        .bind(BUTTON)
        .execute(db.pool())
        .await?;
    let (flags, feed) = store::watch(db.pool().clone(), options()).await?;
    let tenants: Vec<String> = (0..100).map(|i| format!("tenant-{i}")).collect();
    let good = variants_of(&flags, &tenants);

    let bad_writes = [
        // Weights adding up to 90.
        (
            r#"UPDATE feature_flags SET variants = '[{"name":"blue","weight":50},{"name":"green","weight":40}]' WHERE name = 'checkout.button'"#,
            "variants[].weight",
        ),
        // An operator no rule knows.
        (
            r#"UPDATE feature_flags SET variants = NULL, rules = '[{"attribute":"plan","operator":"startswith","value":"go"}]' WHERE name = 'checkout.button'"#,
            "rules[0].operator",
        ),
        // Variants that are not variants.
        (
            r#"UPDATE feature_flags SET rules = NULL, variants = '[{"name":"blue","weight":"half"}]' WHERE name = 'checkout.button'"#,
            "column variants",
        ),
    ];
    for (sql, field) in bad_writes {
        sqlx::query(sql).execute(db.pool()).await?;
        until_status(&feed, field, |status| !status.is_fresh()).await?;
        let FeedStatus::Stale { error, .. } = feed.status() else {
            anyhow::bail!("the feed should be stale after {sql}");
        };
        assert!(error.contains("checkout.button"), "{error}");
        assert!(error.contains(field), "{error} should name {field}");
        // The last good set stays.
        assert_eq!(variants_of(&flags, &tenants), good, "after {sql}");
        // Put the good row back; the feed recovers.
        sqlx::query("UPDATE feature_flags SET variants = $1::jsonb, rules = NULL WHERE name = 'checkout.button'")
            .bind(BUTTON)
            .execute(db.pool())
            .await?;
        until_status(&feed, "recovery", FeedStatus::is_fresh).await?;
    }

    // The database itself refuses a column that is not an array.
    let not_array = sqlx::query(
        "UPDATE feature_flags SET variants = '{\"blue\":50}' WHERE name = 'checkout.button'",
    )
    .execute(db.pool())
    .await;
    assert!(
        not_array.is_err(),
        "the CHECK constraint must refuse an object"
    );
    feed.shutdown().await;
    Ok(())
}
