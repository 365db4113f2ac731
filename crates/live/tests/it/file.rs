//! Config values from a JSON or TOML file, without a database.

use anyhow::Result;
use groundwork_live::config::{FileError, FileSource};

#[test]
fn a_file_source_follows_edits_and_keeps_values_through_a_broken_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("config.json");
    std::fs::write(
        &path,
        r#"{"order.expiry.minutes": 30, "matching.algorithm.weights": {"price_weight": 0.4}}"#,
    )?;
    let mut source = FileSource::open(&path, "development")?;
    let config = source.config();
    let expiry = config.setting("order.expiry.minutes", 15_u32);
    assert_eq!(*expiry.get(), 30);
    assert_eq!(config.snapshot().env(), "development");
    assert!(!source.reload_if_changed()?, "unchanged file, no reload");

    // A new modification time, set explicitly: two writes within the file system's timestamp
    // granularity would otherwise look unchanged.
    let bump = |seconds| -> Result<()> {
        let file = std::fs::File::options().write(true).open(&path)?;
        file.set_modified(
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(seconds),
        )?;
        Ok(())
    };
    std::fs::write(&path, r#"{"order.expiry.minutes": 45}"#)?;
    bump(1)?;
    assert!(source.reload_if_changed()?);
    assert_eq!(*expiry.get(), 45);
    assert_eq!(config.value("matching.algorithm.weights"), None);

    std::fs::write(&path, r#"{"order.expiry.minutes": "#)?;
    bump(2)?;
    let error = source.reload_if_changed().err();
    assert!(matches!(error, Some(FileError::Parse { .. })), "{error:?}");
    assert_eq!(*expiry.get(), 45, "a broken file keeps the previous values");

    std::fs::write(&path, r#"["not", "an", "object"]"#)?;
    bump(3)?;
    assert!(matches!(
        source.reload_if_changed(),
        Err(FileError::Parse { .. })
    ));
    assert!(matches!(
        FileSource::open(dir.path().join("missing.json"), "development"),
        Err(FileError::Read { .. })
    ));
    Ok(())
}

#[tokio::test]
async fn a_toml_file_is_reloaded_by_its_background_reloader() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "\"order.expiry.minutes\" = 30\n\n[\"matching.algorithm.weights\"]\nprice_weight = 0.4\n",
    )?;
    let source = FileSource::open(&path, "development")?;
    let config = source.config();
    let expiry = config.setting("order.expiry.minutes", 15_u32);
    assert_eq!(*expiry.get(), 30);
    assert_eq!(
        config.value("matching.algorithm.weights"),
        Some(serde_json::json!({"price_weight": 0.4}))
    );

    let mut updates = config.updates();
    let reloader = source.spawn_reloader(std::time::Duration::from_millis(10));
    std::fs::write(&path, "\"order.expiry.minutes\" = 45\n")?;
    let file = std::fs::File::options().write(true).open(&path)?;
    file.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(7))?;
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while *expiry.get() != 45 {
            updates.changed().await?;
        }
        anyhow::Ok(())
    })
    .await??;
    reloader.abort();

    std::fs::write(dir.path().join("bad.toml"), "\"order.expiry.minutes\" = \n")?;
    assert!(matches!(
        FileSource::open(dir.path().join("bad.toml"), "development"),
        Err(FileError::Parse { format: "TOML", .. })
    ));
    Ok(())
}

/// Gives `path` a modification time of `seconds` after the epoch: two writes within the file
/// system's timestamp granularity would otherwise look unchanged.
fn touch(path: &std::path::Path, seconds: u64) -> Result<()> {
    let file = std::fs::File::options().write(true).open(path)?;
    file.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(seconds))?;
    Ok(())
}

#[tokio::test]
async fn a_file_source_reports_a_broken_edit_as_stale_and_recovers() -> Result<()> {
    use groundwork_live::config::{Source, SourceError};
    use std::time::Duration;

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("config.json");
    std::fs::write(&path, r#"{"order.expiry.minutes": 30}"#)?;
    let (config, feed) = Source::file(&path, Duration::from_millis(10))
        .start("development")
        .await?;
    let expiry = config.setting("order.expiry.minutes", 15_u32);
    assert_eq!(*expiry.get(), 30);
    assert!(feed.status().is_fresh());
    let mut statuses = feed.statuses();
    let wait = Duration::from_secs(10);

    std::fs::write(&path, r#"{"order.expiry.minutes": "#)?;
    touch(&path, 1)?;
    tokio::time::timeout(wait, statuses.wait_for(|s| !s.is_fresh())).await??;
    assert_eq!(*expiry.get(), 30, "the previous values are served");
    let status = format!("{:?}", feed.status());
    assert!(status.contains("config.json"), "names the file: {status}");

    std::fs::write(&path, r#"{"order.expiry.minutes": 45}"#)?;
    touch(&path, 2)?;
    tokio::time::timeout(
        wait,
        statuses.wait_for(groundwork_live::FeedStatus::is_fresh),
    )
    .await??;
    assert_eq!(*expiry.get(), 45);
    assert!(*feed.generations().borrow() >= 2);
    feed.shutdown().await;

    let missing = Source::file(dir.path().join("missing.json"), Duration::from_secs(1))
        .start("development")
        .await;
    assert!(
        matches!(missing, Err(SourceError::File(FileError::Read { .. }))),
        "{missing:?}"
    );
    Ok(())
}

/// JSON has no NaN or infinities: a TOML config holding one is refused naming the key, and a
/// running source keeps its values, rather than reading `null` in its place.
#[test]
fn a_toml_number_json_cannot_hold_is_refused_naming_the_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[\"matching.algorithm.weights\"]\nprice_weight = 0.4\n",
    )?;
    let mut source = FileSource::open(&path, "development")?;
    let config = source.config();
    for (bad, expected) in [
        (
            "[\"matching.algorithm.weights\"]\nprice_weight = nan\n",
            "matching.algorithm.weights.price_weight is nan",
        ),
        ("limits = [1, 2, -inf]\n", "limits[2] is -inf"),
    ] {
        std::fs::write(&path, bad)?;
        touch(&path, 100 + bad.len() as u64)?;
        let error = source.reload_if_changed().err();
        let message = error.as_ref().map(ToString::to_string).unwrap_or_default();
        assert!(
            matches!(error, Some(FileError::Invalid { .. })) && message.contains(expected),
            "{message:?} should name {expected}"
        );
        assert_eq!(
            config.value("matching.algorithm.weights"),
            Some(serde_json::json!({"price_weight": 0.4})),
            "the last good values stay"
        );
    }
    Ok(())
}
