//! The ClickHouse runner against a real server (ClickHouse 18.16 in CI, 24 in production);
//! each test owns its database.
#![cfg(all(feature = "clickhouse", feature = "cli"))]

use crate::common;

use anyhow::Result;
use common::{cli, dir_with, fixture, text};
use groundwork_migrate::clickhouse::ClickHouseBackend;
use groundwork_migrate::{DownTarget, MigrateError, Migrator, State};
use groundwork_testkit::TestClickHouse;

fn backend(ch: &TestClickHouse) -> Result<ClickHouseBackend> {
    Ok(ClickHouseBackend::from_url(&format!(
        "{}/?database={}",
        ch.url().trim_end_matches('/'),
        ch.database()
    ))?)
}

async fn tables(ch: &TestClickHouse) -> Result<Vec<String>> {
    Ok(ch
        .client()
        .query("SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name")
        .fetch_all::<String>()
        .await?)
}

#[tokio::test]
async fn up_down_up_round_trips_on_clickhouse() -> Result<()> {
    let ch = TestClickHouse::create().await?;
    let migrator = Migrator::from_dir(fixture("clickhouse"))?;
    let mut db = backend(&ch)?;

    assert_eq!(migrator.up(&mut db, None).await?.steps.len(), 2);
    assert_eq!(
        tables(&ch).await?,
        ["events", "rollups", "schema_migrations"]
    );
    let kind: String = ch
        .client()
        .query("SELECT kind FROM rollups")
        .fetch_one()
        .await?;
    assert_eq!(kind, "seed; with a semicolon");

    migrator.down(&mut db, DownTarget::To(0)).await?;
    assert_eq!(tables(&ch).await?, ["schema_migrations"]);
    let status = migrator.status(&mut db).await?;
    assert!(
        status.iter().all(|s| s.state == State::Pending),
        "{status:?}"
    );

    assert_eq!(migrator.up(&mut db, None).await?.steps.len(), 2);
    let status = migrator.status(&mut backend(&ch)?).await?;
    assert!(
        status.iter().all(|s| s.state == State::Applied),
        "{status:?}"
    );
    assert!(
        migrator
            .up(&mut backend(&ch)?, None)
            .await?
            .steps
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn failing_statement_is_named_and_leaves_the_migration_dirty() -> Result<()> {
    let ch = TestClickHouse::create().await?;
    let dir = dir_with(&[
        (
            "001_events.up.sql",
            "CREATE TABLE events (id UInt64) ENGINE = MergeTree() ORDER BY id;",
        ),
        (
            "002_more.up.sql",
            "CREATE TABLE a (id UInt64) ENGINE = MergeTree() ORDER BY id;\n\
             INSERT INTO a VALUES (1);\n\
             INSERT INTO no_such_table VALUES (1);\n\
             CREATE TABLE never (id UInt64) ENGINE = MergeTree() ORDER BY id;\n",
        ),
        (
            "003_later.sql",
            "CREATE TABLE later (id UInt64) ENGINE = MergeTree() ORDER BY id;",
        ),
    ]);
    let migrator = Migrator::from_dir(dir.path())?;
    let err = migrator.up(&mut backend(&ch)?, None).await.err();
    let message = err.as_ref().map(ToString::to_string).unwrap_or_default();
    let Some(MigrateError::MigrationFailed {
        script,
        statement: Some(statement),
        left_dirty,
        ..
    }) = &err
    else {
        panic!("expected a failed statement, got {message}");
    };
    assert_eq!(script, "002_more.up.sql");
    assert!(*left_dirty);
    assert_eq!(
        (statement.index, statement.total, statement.line),
        (3, 4, 3)
    );
    assert_eq!(statement.sql, "INSERT INTO no_such_table VALUES (1)");
    assert!(
        message.contains("statement 3 of 4")
            && message.contains("no_such_table")
            && message.contains("dirty"),
        "{message}"
    );
    assert_eq!(tables(&ch).await?, ["a", "events", "schema_migrations"]);

    // Every later run refuses until an operator acts, and says so.
    let refused = migrator.up(&mut backend(&ch)?, None).await.err();
    assert!(
        matches!(
            refused,
            Some(MigrateError::Dirty {
                version: 2,
                statements_done: 2,
                ..
            })
        ),
        "{refused:?}"
    );
    let status = migrator.status(&mut backend(&ch)?).await?;
    let found: Vec<_> = status.iter().map(|s| s.state).collect();
    assert_eq!(found, [State::Applied, State::Dirty, State::Pending]);

    // The operator undoes the partial change and repairs; the fixed file then applies.
    ch.client().query("DROP TABLE a").execute().await?;
    migrator.repair(&mut backend(&ch)?).await?;
    common::write(
        dir.path(),
        "002_more.up.sql",
        "CREATE TABLE a (id UInt64) ENGINE = MergeTree() ORDER BY id;\nINSERT INTO a VALUES (1);\n",
    );
    let fixed = Migrator::from_dir(dir.path())?;
    assert_eq!(fixed.up(&mut backend(&ch)?, None).await?.steps.len(), 2);
    assert_eq!(
        tables(&ch).await?,
        ["a", "events", "later", "schema_migrations"]
    );
    Ok(())
}

#[tokio::test]
async fn cli_migrates_clickhouse_from_clickhouse_url() -> Result<()> {
    let ch = TestClickHouse::create().await?;
    let url = format!("{}/{}", ch.url().trim_end_matches('/'), ch.database());
    let dir = fixture("clickhouse").to_string_lossy().into_owned();
    let up = cli(&["--dir", &dir, "up"], &[("CLICKHOUSE_URL", &url)]);
    assert_eq!(up.status.code(), Some(0), "{:?}", text(&up));
    let status = cli(&["--dir", &dir, "status"], &[("CLICKHOUSE_URL", &url)]);
    let (out, _) = text(&status);
    assert!(
        out.contains("create_rollups") && out.contains("applied"),
        "{out}"
    );
    let down = cli(
        &["--dir", &dir, "down", "--steps", "2"],
        &[("CLICKHOUSE_URL", &url)],
    );
    assert_eq!(down.status.code(), Some(0), "{:?}", text(&down));
    assert_eq!(tables(&ch).await?, ["schema_migrations"]);
    Ok(())
}

/// Over `https://` (stunnel in front of the same server, `cargo xtask infra up`) with the test CA,
/// the database named as a query parameter; a wrong CA fails the first statement with the reason.
#[tokio::test]
async fn migrations_run_over_tls_with_the_configured_ca() -> Result<()> {
    let ch = TestClickHouse::create().await?;
    let tls = groundwork_testkit::TestTls::discover()?;
    let url = format!("{}/?database={}", tls.clickhouse_url, ch.database());
    let trusted = groundwork_connect::TlsSettings {
        ca_cert: Some(tls.ca_cert.clone()),
        ..groundwork_connect::TlsSettings::default()
    };
    let migrator = Migrator::from_dir(fixture("clickhouse"))?;
    let mut db = ClickHouseBackend::from_url_with_tls(&url, &trusted)?;
    assert_eq!(migrator.up(&mut db, None).await?.steps.len(), 2);
    assert_eq!(
        tables(&ch).await?,
        ["events", "rollups", "schema_migrations"]
    );

    let other = groundwork_testkit::TestCa::new("another CA")?;
    let untrusted = groundwork_connect::TlsSettings {
        ca_cert: Some(other.certificate_pem().to_owned()),
        ..groundwork_connect::TlsSettings::default()
    };
    let mut db = ClickHouseBackend::from_url_with_tls(&url, &untrusted)?;
    let error = migrator
        .status(&mut db)
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("a wrong CA must be refused"))?;
    let mut chain = error.to_string();
    let mut cause = std::error::Error::source(&error);
    while let Some(inner) = cause {
        chain = format!("{chain} / {inner:?}");
        cause = inner.source();
    }
    assert!(chain.contains("UnknownIssuer"), "{chain}");
    Ok(())
}
