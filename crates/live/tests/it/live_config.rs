//! `LiveConfig` in memory, as a source drives it: typed reads, bad values, settings, key watches.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use groundwork_live::config::{ConfigEntry, ConfigSnapshot, LiveConfig};
use serde_json::{Value, json};

fn snapshot(values: &[(&str, Value, i64)]) -> ConfigSnapshot {
    ConfigSnapshot::new(
        "production",
        values.iter().map(|(key, value, revision)| ConfigEntry {
            key: (*key).to_owned(),
            value: value.clone(),
            revision: *revision,
            description: None,
            updated_by: None,
        }),
    )
}

#[test]
fn stale_value_is_kept_when_new_value_does_not_decode() {
    let config = LiveConfig::new(snapshot(&[("order.expiry.minutes", json!(30), 1)]));
    assert_eq!(config.get_or("order.expiry.minutes", 15_u32), 30);
    let as_text = config.setting("order.expiry.minutes", String::new());
    assert!(
        as_text.get().is_empty(),
        "a number is not a String: default"
    );

    config.replace(snapshot(&[(
        "order.expiry.minutes",
        json!("45 minutes"),
        2,
    )]));
    assert_eq!(config.get_or("order.expiry.minutes", 15_u32), 30, "kept");
    assert_eq!(*as_text.get(), "45 minutes", "now decodes as a String");
    let problems = config.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(
        (
            problems[0].revision,
            problems[0].expected,
            problems[0].serving
        ),
        (2, "u32", Some(1))
    );

    // Still bad, and another key changes: still kept, still reported.
    config.replace(snapshot(&[
        ("order.expiry.minutes", json!("45 minutes"), 2),
        ("other", json!(1), 3),
    ]));
    assert_eq!(config.get_or("order.expiry.minutes", 15_u32), 30);
    assert_eq!(config.problems().len(), 1);

    config.replace(snapshot(&[("order.expiry.minutes", json!(45), 4)]));
    assert_eq!(config.get_or("order.expiry.minutes", 15_u32), 45);
    assert!(config.problems().len() == 1 && config.problems()[0].expected.contains("String"));

    config.replace(snapshot(&[]));
    assert_eq!(
        config.get_or("order.expiry.minutes", 15_u32),
        15,
        "deleted: default"
    );
    assert!(config.problems().is_empty());
    assert!(as_text.get().is_empty());
}

#[test]
fn a_type_first_read_after_a_bad_edit_still_finds_the_last_good_value() {
    let config = LiveConfig::new(snapshot(&[("limit", json!(10), 1)]));
    let before = config.snapshot();
    assert_eq!(before.get::<u64>("limit").as_deref(), Some(&10));
    config.replace(snapshot(&[("limit", json!(-1), 2)]));
    // `u64` was decoded when the value changed; `i8` never read before: it decodes fine.
    assert_eq!(config.get::<u64>("limit").as_deref(), Some(&10));
    assert_eq!(config.get::<i8>("limit").as_deref(), Some(&-1));
    // The old snapshot is a consistent view: it still says 10.
    assert_eq!(before.get::<i64>("limit").as_deref(), Some(&10));
}

#[tokio::test]
async fn a_slow_key_watcher_gets_the_newest_value_and_never_blocks_the_updater() -> Result<()> {
    let config = LiveConfig::new(snapshot(&[("limit", json!(0), 1)]));
    let mut slow = config.watch("limit");
    let mut other = config.watch("other");
    // Nobody reads for 1,000 replacements: none of them waits.
    for i in 2..1_002 {
        config.replace(snapshot(&[("limit", json!(i), i)]));
    }
    let entry = tokio::time::timeout(Duration::from_secs(5), slow.changed())
        .await?
        .context("the key exists")?;
    assert_eq!(entry.value, json!(1_001), "intermediate values are skipped");
    assert!(
        tokio::time::timeout(Duration::from_millis(50), other.changed())
            .await
            .is_err(),
        "an unrelated key does not wake its watcher"
    );

    let waiting = tokio::spawn(async move { slow.changed().await });
    config.replace(snapshot(&[]));
    let deleted = tokio::time::timeout(Duration::from_secs(5), waiting).await??;
    assert!(deleted.is_none(), "a deleted key reports None");
    Ok(())
}

#[test]
fn readers_never_see_a_partial_snapshot() -> Result<()> {
    let config = LiveConfig::new(snapshot(&[("a", json!(0), 1), ("b", json!(0), 1)]));
    let reader = config.clone();
    let handle = std::thread::spawn(move || {
        (0..100_000).all(|_| {
            let view = reader.snapshot();
            view.get::<i64>("a") == view.get::<i64>("b")
        })
    });
    for i in 2..2_000 {
        config.replace(snapshot(&[("a", json!(i), i), ("b", json!(i), i)]));
    }
    let consistent = handle
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))?;
    assert!(consistent);
    let _: Option<Arc<i64>> = config.get("a");
    Ok(())
}

fn entry(key: &str, value: Value, revision: i64) -> ConfigEntry {
    ConfigEntry {
        key: key.to_owned(),
        value,
        revision,
        description: None,
        updated_by: None,
    }
}

#[test]
fn applying_changes_touches_only_the_keys_named() {
    let keys: Vec<(String, Value, i64)> = (0..1_000)
        .map(|i| (format!("service{}.setting{}", i / 20, i % 20), json!(i), i))
        .collect();
    let borrowed: Vec<(&str, Value, i64)> = keys
        .iter()
        .map(|(k, v, r)| (k.as_str(), v.clone(), *r))
        .collect();
    let config = LiveConfig::new(snapshot(&borrowed));
    let before = config.snapshot();
    let first = config.setting("service0.setting0", -1_i64);
    let last = config.setting("service49.setting19", -1_i64);
    let mut updates = config.updates();
    updates.mark_unchanged();

    config.apply(
        [
            entry("service0.setting0", json!(5_000), 5_000),
            entry("added", json!(true), 5_001),
        ],
        ["service1.setting1", "absent"],
    );
    assert!(
        updates.has_changed().unwrap_or(false),
        "an update is signalled"
    );
    assert_eq!(*first.get(), 5_000);
    assert_eq!(*last.get(), 999, "an untouched key keeps its value");
    assert!(config.get_or("added", false));
    assert_eq!(config.value("service1.setting1"), None);
    assert_eq!(config.snapshot().len(), 1_000);
    assert_eq!(config.snapshot().iter().count(), 1_000);
    // The previous snapshot is unchanged: a consistent view.
    assert_eq!(before.get::<i64>("service0.setting0").as_deref(), Some(&0));
    assert_eq!(before.len(), 1_000);
    assert!(before.value("service1.setting1").is_some());

    // A bad value keeps the last good one, as with `replace`.
    config.apply(
        [entry("service0.setting0", json!("five"), 5_002)],
        std::iter::empty::<&str>(),
    );
    assert_eq!(*first.get(), 5_000);
    assert_eq!(config.problems().len(), 1);
    // Deleting the key clears its problem and gives the default.
    config.apply([], ["service0.setting0"]);
    assert_eq!(*first.get(), -1);
    assert!(config.problems().is_empty());

    // Nothing differs: nothing is signalled.
    updates.mark_unchanged();
    config.apply([entry("added", json!(true), 5_001)], ["absent"]);
    assert!(!updates.has_changed().unwrap_or(true));
}

#[test]
fn many_configs_read_on_one_thread_each_see_their_own_latest_values() {
    // More instances than a thread keeps cached snapshots of, read in turns, each replaced in
    // between: every read must see its own instance's latest value.
    let configs: Vec<LiveConfig> = (0..7)
        .map(|n| LiveConfig::new(snapshot(&[("limit", json!(n), 1)])))
        .collect();
    for round in 1..=3_i64 {
        for (n, config) in (0_i64..).zip(&configs) {
            assert_eq!(config.get_or("limit", -1_i64), n + 10 * (round - 1));
            config.replace(snapshot(&[("limit", json!(n + 10 * round), round + 1)]));
            assert_eq!(
                config.get_or("limit", -1_i64),
                n + 10 * round,
                "right after replace"
            );
        }
    }
}

#[test]
fn a_change_made_on_another_thread_is_read_on_this_one() -> Result<()> {
    let config = LiveConfig::new(snapshot(&[("limit", json!(1), 1)]));
    assert_eq!(config.get_or("limit", 0_u32), 1);
    let writer = config.clone();
    std::thread::spawn(move || writer.replace(snapshot(&[("limit", json!(2), 2)])))
        .join()
        .map_err(|_| anyhow::anyhow!("the writer thread panicked"))?;
    assert_eq!(config.get_or("limit", 0_u32), 2);
    assert_eq!(config.value("limit"), Some(json!(2)));
    Ok(())
}
