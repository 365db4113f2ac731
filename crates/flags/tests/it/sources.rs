//! The file source and the demo data, and the admin CLI against a real database.

#![cfg(all(feature = "file", feature = "cli"))]

use std::process::Command;

use anyhow::{Context, Result};
use groundwork_flags::{FileSource, load_file, store};
use groundwork_testkit::TestDatabase;

const SEED_FLAGS: [&str; 5] = [
    "supplier.realtime.sync",
    "risk.auto.reject",
    "matching.ai.boost",
    "settlement.auto.reconcile",
    "admin.v2",
];

fn demo(file: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/quickstart/demo")
        .join(file)
}

#[test]
fn the_demo_file_holds_the_five_seed_flags_all_off() -> Result<()> {
    let set = load_file(&demo("flags.toml"))?;
    assert_eq!(set.len(), 5);
    for name in SEED_FLAGS {
        let flag = set
            .get(name)
            .with_context(|| format!("{name} is missing"))?;
        assert!(!flag.enabled, "{name} must start off");
    }
    Ok(())
}

#[test]
fn a_file_source_reloads_edits_and_keeps_the_last_good_set_on_errors() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("flags.json");
    std::fs::write(&path, r#"[{"name":"admin.v2","enabled":false}]"#)?;
    let mut source = FileSource::open(&path)?;
    let flags = source.flags();
    assert!(!flags.is_enabled("admin.v2", "t"));
    assert!(!source.reload_if_changed()?, "unchanged file, no reload");

    std::fs::write(&path, r#"{"flags":[{"name":"admin.v2","enabled":true}]}"#)?;
    bump_mtime(&path)?;
    assert!(source.reload_if_changed()?);
    assert!(flags.is_enabled("admin.v2", "t"));

    std::fs::write(&path, "{ not json")?;
    bump_mtime(&path)?;
    let error = source
        .reload_if_changed()
        .err()
        .context("a broken file must be reported")?;
    assert!(error.to_string().contains("flags.json"), "{error}");
    assert!(flags.is_enabled("admin.v2", "t"), "the last good set stays");
    Ok(())
}

/// Sets the modification time a second ahead, so a change is visible on coarse file systems.
fn bump_mtime(path: &std::path::Path) -> Result<()> {
    let file = std::fs::File::options().write(true).open(path)?;
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(1);
    file.set_modified(later)?;
    Ok(())
}

#[tokio::test]
async fn the_seed_sql_inserts_the_five_flags_off_and_is_idempotent() -> Result<()> {
    let db = TestDatabase::create().await?;
    store::migrate(db.pool()).await?;
    let seed = std::fs::read_to_string(demo("feature_flags.sql"))?;
    for _ in 0..2 {
        sqlx::raw_sql(sqlx::AssertSqlSafe(seed.clone()))
            .execute(db.pool())
            .await?;
    }
    let flags = store::load_all(db.pool()).await?;
    let mut names: Vec<&str> = flags.iter().map(|f| f.name.as_str()).collect();
    names.sort_unstable();
    let mut expected = SEED_FLAGS.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected);
    assert!(flags.iter().all(|f| !f.enabled));
    Ok(())
}

fn cli(db: &TestDatabase, args: &[&str]) -> Result<std::process::Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_groundwork-flags"))
        .env("DATABASE_URL", db.url())
        .env("USER", "cli-test")
        .args(args)
        .output()?)
}

#[tokio::test]
async fn the_cli_creates_changes_evaluates_and_rolls_back() -> Result<()> {
    let db = TestDatabase::create().await?;
    store::migrate(db.pool()).await?;

    let ok = |output: std::process::Output| -> Result<String> {
        let stdout = String::from_utf8(output.stdout)?;
        anyhow::ensure!(
            output.status.success(),
            "failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(stdout)
    };
    ok(cli(
        &db,
        &["create", "supplier.realtime.sync", "--description", "push"],
    )?)?;
    ok(cli(&db, &["rollout", "supplier.realtime.sync", "14"])?)?;
    let enabled = ok(cli(&db, &["enable", "supplier.realtime.sync"])?)?;
    assert!(
        enabled.contains("enabled") && enabled.contains("14%"),
        "{enabled}"
    );
    let eval = ok(cli(&db, &["eval", "supplier.realtime.sync", "tenant-1"])?)?;
    assert!(eval.contains(": on (Split, bucket 13)"), "{eval}");

    let history = ok(cli(&db, &["history", "supplier.realtime.sync"])?)?;
    assert_eq!(history.lines().count(), 3, "{history}");
    assert!(history.contains("by cli-test"), "{history}");
    let first: i64 = history
        .lines()
        .last()
        .and_then(|line| line.split_whitespace().next())
        .context("a revision column")?
        .parse()?;
    let rolled = ok(cli(
        &db,
        &[
            "rollback",
            "supplier.realtime.sync",
            "--to",
            &first.to_string(),
        ],
    )?)?;
    assert!(
        rolled.contains("disabled") && rolled.contains("100%"),
        "{rolled}"
    );

    let unknown = cli(&db, &["enable", "no.such.flag"])?;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no feature flag named `no.such.flag`")
    );
    let usage = cli(&db, &["rollout", "supplier.realtime.sync", "150"])?;
    assert_eq!(
        usage.status.code(),
        Some(2),
        "an out-of-range rollout is a usage error"
    );
    Ok(())
}

#[tokio::test]
async fn a_refused_tls_connection_names_the_server_and_the_reason() -> Result<()> {
    let cluster = groundwork_testkit::TlsTestCluster::start().await?;
    let output = Command::new(env!("CARGO_BIN_EXE_groundwork-flags"))
        .env("DATABASE_URL", cluster.untrusted_url())
        .env("USER", "cli-test")
        .arg("list")
        .output()
        .context("running groundwork-flags")?;
    let error = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{error}");
    assert!(cluster.names_the_refusal(&error), "{error}");
    Ok(())
}

/// A secret planted in `DATABASE_URL` (userinfo and query parameters) never appears in what the
/// CLI prints, when it works and when it cannot connect.
#[tokio::test]
async fn the_cli_never_prints_a_secret_from_the_database_url() -> Result<()> {
    use groundwork_testkit::{Plant, plant_canary};
    const CANARY: &str = "Fl-Canary-3b9e";

    let db = TestDatabase::create().await?;
    store::migrate(db.pool()).await?;
    let reachable = plant_canary(db.url(), CANARY, Plant::EVERYWHERE)?;
    // The server answers at once that the database does not exist: an error path without
    // waiting for a pool timeout.
    let missing = db.url().replace(db.name(), "groundwork_no_such_database");
    let closed = plant_canary(&missing, CANARY, Plant::EVERYWHERE)?;
    let run = |url: &str, args: &[&str]| -> Result<std::process::Output> {
        Ok(Command::new(env!("CARGO_BIN_EXE_groundwork-flags"))
            .env("DATABASE_URL", url)
            .env("USER", "cli-test")
            .args(args)
            .output()?)
    };
    let created = run(&reachable, &["create", "canary.flag"])?;
    let listed = run(&reachable, &["list"])?;
    let unreachable = run(&closed, &["list"])?;
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("canary.flag"),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(
        !unreachable.status.success(),
        "a missing database cannot be listed"
    );
    for (what, output) in [
        ("create", &created),
        ("list", &listed),
        ("unreachable", &unreachable),
    ] {
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !printed.contains(CANARY),
            "{what} shows a secret:\n{printed}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_cli_refuses_a_change_from_a_stale_revision_with_exit_code_3() -> Result<()> {
    let db = TestDatabase::create().await?;
    store::migrate(db.pool()).await?;
    let created = cli(&db, &["create", "matching.ai.boost"])?;
    anyhow::ensure!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let history = String::from_utf8(cli(&db, &["history", "matching.ai.boost"])?.stdout)?;
    let read: i64 = history
        .split_whitespace()
        .next()
        .context("a revision column")?
        .parse()?;

    let first = cli(
        &db,
        &[
            "rollout",
            "matching.ai.boost",
            "30",
            "--if-revision",
            &read.to_string(),
        ],
    )?;
    anyhow::ensure!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let actual: i64 = sqlx::query_scalar("SELECT revision FROM feature_flags WHERE name = $1")
        .bind("matching.ai.boost")
        .fetch_one(db.pool())
        .await?;

    let stale = cli(
        &db,
        &[
            "enable",
            "matching.ai.boost",
            "--if-revision",
            &read.to_string(),
        ],
    )?;
    let stderr = String::from_utf8_lossy(&stale.stderr);
    assert_eq!(stale.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("`matching.ai.boost`")
            && stderr.contains(&format!("revision {actual}, not {read}")),
        "{stderr}"
    );
    let enabled: bool = sqlx::query_scalar("SELECT enabled FROM feature_flags WHERE name = $1")
        .bind("matching.ai.boost")
        .fetch_one(db.pool())
        .await?;
    assert!(!enabled, "the refused change was not made");
    Ok(())
}

#[tokio::test]
async fn a_followed_flags_file_reloads_edits_and_reports_a_broken_one_as_stale() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("flags.toml");
    std::fs::write(&path, "[[flags]]\nname = \"admin.v2\"\n")?;
    let source = FileSource::open(&path)?;
    let flags = source.flags();
    assert!(!flags.is_enabled("admin.v2", "t"));
    let feed = source.follow(std::time::Duration::from_millis(10));
    let wait = std::time::Duration::from_secs(10);

    std::fs::write(&path, "[[flags]]\nname = \"admin.v2\"\nenabled = true\n")?;
    bump_mtime(&path)?;
    groundwork_testkit::until_changed(feed.generations(), wait, "the edit is loaded", || {
        flags.is_enabled("admin.v2", "t")
    })
    .await?;
    assert!(feed.status().is_fresh());

    std::fs::write(&path, "[[flags]]\nname = ")?;
    let file = std::fs::File::options().write(true).open(&path)?;
    file.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(2))?;
    let mut statuses = feed.statuses();
    tokio::time::timeout(wait, statuses.wait_for(|status| !status.is_fresh())).await??;
    let status = format!("{:?}", feed.status());
    assert!(status.contains("flags.toml"), "names the file: {status}");
    assert!(flags.is_enabled("admin.v2", "t"), "the last good set stays");

    let unknown = dir.path().join("flags.yaml");
    std::fs::write(&unknown, "flags: []")?;
    let error = FileSource::open(&unknown)
        .err()
        .context("an unknown extension is refused")?;
    assert!(
        error.to_string().contains("must end in .json or .toml"),
        "{error}"
    );
    feed.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn the_cli_prints_json_for_list_eval_and_history() -> Result<()> {
    let db = TestDatabase::create().await?;
    store::migrate(db.pool()).await?;
    let created = cli(
        &db,
        &[
            "create",
            "supplier.realtime.sync",
            "--enabled",
            "--rollout",
            "14",
        ],
    )?;
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );

    let listed = cli(&db, &["list", "--json"])?;
    let flags: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout)?;
    assert_eq!(flags.len(), 1);
    assert_eq!(flags[0]["name"], "supplier.realtime.sync");
    assert_eq!(flags[0]["rollout_pct"], 14);

    let eval = cli(
        &db,
        &["eval", "supplier.realtime.sync", "tenant-1", "--json"],
    )?;
    let answer: serde_json::Value = serde_json::from_slice(&eval.stdout)?;
    assert_eq!(answer["enabled"], true);
    assert_eq!(answer["bucket"], 13);
    assert_eq!(answer["reason"], "Split");

    let history = cli(&db, &["history", "supplier.realtime.sync", "--json"])?;
    let changes: Vec<serde_json::Value> = serde_json::from_slice(&history.stdout)?;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["changed_by"], "cli-test");

    // Creating it again is refused as a conflict.
    let again = cli(&db, &["create", "supplier.realtime.sync"])?;
    assert_eq!(
        again.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    Ok(())
}

#[test]
fn an_unreachable_database_exits_1_naming_the_cause_once() -> Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let output = Command::new(env!("CARGO_BIN_EXE_groundwork-flags"))
        .env(
            "DATABASE_URL",
            format!("postgres://ops:Hunter2-secret@127.0.0.1:{port}/app"),
        )
        .args(["list", "--connect-timeout", "3"])
        .output()
        .context("running groundwork-flags")?;
    let error = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{error}");
    assert!(
        error.contains("cannot connect to the database at postgres://ops:***@"),
        "{error}"
    );
    assert_eq!(error.matches("Connection refused").count(), 1, "{error}");
    assert!(
        !error.contains("Hunter2-secret") && !error.contains("pool timed out"),
        "{error}"
    );

    let usage = Command::new(env!("CARGO_BIN_EXE_groundwork-flags"))
        .args(["list", "--connect-timeout", "soon"])
        .output()
        .context("running groundwork-flags")?;
    assert_eq!(usage.status.code(), Some(2));
    Ok(())
}
