//! The `groundwork-live` binary against a real PostgreSQL, as an operator runs it.

use std::process::{Command, Output};

use anyhow::{Context, Result};
use groundwork_live::config;
use groundwork_testkit::TestDatabase;

fn run(db: &TestDatabase, args: &[&str]) -> Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_groundwork-live"))
        .env("DATABASE_URL", db.url())
        .env_remove("APP_ENV")
        .args(["--env", "production", "--by", "ops"])
        .args(args)
        .output()
        .context("running groundwork-live")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The revision printed by `get` (`<key> rev <n> ...`).
fn revision(output: &Output) -> Result<String> {
    let text = stdout(output);
    let mut words = text.split_whitespace().skip_while(|w| *w != "rev").skip(1);
    words
        .next()
        .map(str::to_owned)
        .context("no revision in output")
}

#[tokio::test]
async fn the_cli_sets_values_and_refuses_a_lost_update() -> Result<()> {
    let db = TestDatabase::create().await?;
    sqlx::raw_sql(config::MIGRATIONS[0].1)
        .execute(db.pool())
        .await?;

    let created = run(&db, &["set", "order.expiry.minutes", "30", "--create"])?;
    assert!(created.status.success(), "{}", stderr(&created));
    let first = revision(&created)?;

    let unguarded = run(&db, &["set", "order.expiry.minutes", "45"])?;
    assert_eq!(
        unguarded.status.code(),
        Some(2),
        "an expectation is required"
    );

    let not_json = run(&db, &["set", "order.expiry.minutes", "soon", "--force"])?;
    assert_eq!(not_json.status.code(), Some(1));
    assert!(
        stderr(&not_json).contains("not JSON"),
        "{}",
        stderr(&not_json)
    );

    let updated = run(
        &db,
        &["set", "order.expiry.minutes", "45", "--if-revision", &first],
    )?;
    assert!(updated.status.success(), "{}", stderr(&updated));
    let stale = run(
        &db,
        &["set", "order.expiry.minutes", "20", "--if-revision", &first],
    )?;
    assert_eq!(stale.status.code(), Some(3), "{}", stderr(&stale));
    assert!(
        stderr(&stale).contains("changed since you read it"),
        "{}",
        stderr(&stale)
    );

    let got = run(&db, &["get", "order.expiry.minutes"])?;
    assert!(stdout(&got).contains(" 45 "), "{}", stdout(&got));
    assert!(stdout(&got).contains("by ops"), "{}", stdout(&got));

    let history = run(&db, &["history", "order.expiry.minutes"])?;
    assert_eq!(stdout(&history).lines().count(), 2, "{}", stdout(&history));

    let rolled_back = run(
        &db,
        &[
            "rollback",
            "order.expiry.minutes",
            "--to",
            &first,
            "--force",
        ],
    )?;
    assert!(rolled_back.status.success(), "{}", stderr(&rolled_back));
    let listed = run(&db, &["list"])?;
    assert!(stdout(&listed).contains(" 30 "), "{}", stdout(&listed));

    let missing = run(&db, &["get", "no.such.key"])?;
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("no config key"),
        "{}",
        stderr(&missing)
    );
    Ok(())
}

#[tokio::test]
async fn a_refused_tls_connection_names_the_server_and_the_reason() -> Result<()> {
    let cluster = groundwork_testkit::TlsTestCluster::start().await?;
    let output = Command::new(env!("CARGO_BIN_EXE_groundwork-live"))
        .env("DATABASE_URL", cluster.untrusted_url())
        .env_remove("APP_ENV")
        .args(["--env", "production", "list"])
        .output()
        .context("running groundwork-live")?;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let error = stderr(&output);
    assert!(cluster.names_the_refusal(&error), "{error}");
    Ok(())
}

/// A secret planted in `DATABASE_URL` (userinfo and query parameters) never appears in what the
/// CLI prints, when it works and when it cannot connect.
#[tokio::test]
async fn the_cli_never_prints_a_secret_from_the_database_url() -> Result<()> {
    use groundwork_testkit::{Plant, plant_canary};
    const CANARY: &str = "Lv-Canary-7e1d";

    let db = TestDatabase::create().await?;
    sqlx::raw_sql(config::MIGRATIONS[0].1)
        .execute(db.pool())
        .await?;
    let reachable = plant_canary(db.url(), CANARY, Plant::EVERYWHERE)?;
    // The server answers at once that the database does not exist: an error path without
    // waiting for a pool timeout.
    let missing = db.url().replace(db.name(), "groundwork_no_such_database");
    let closed = plant_canary(&missing, CANARY, Plant::EVERYWHERE)?;
    let run = |url: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_groundwork-live"))
            .env("DATABASE_URL", url)
            .env_remove("APP_ENV")
            .args(["--env", "production", "--by", "ops"])
            .args(args)
            .output()
            .context("running groundwork-live")
    };
    let created = run(&reachable, &["set", "canary.key", "1", "--create"])?;
    let listed = run(&reachable, &["list"])?;
    let unreachable = run(&closed, &["list"])?;
    assert!(created.status.success(), "{}", stderr(&created));
    assert!(
        stdout(&listed).contains("canary.key"),
        "{}",
        stderr(&listed)
    );
    assert!(
        !unreachable.status.success(),
        "a missing database cannot be listed"
    );
    for (what, output) in [
        ("set", &created),
        ("list", &listed),
        ("unreachable", &unreachable),
    ] {
        let printed = format!("{}{}", stdout(output), stderr(output));
        assert!(
            !printed.contains(CANARY),
            "{what} shows a secret:\n{printed}"
        );
    }
    Ok(())
}

/// A port nothing listens on: bound, then released.
fn closed_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

#[tokio::test]
async fn values_come_from_a_file_or_stdin_and_data_prints_as_json() -> Result<()> {
    use std::io::Write as _;
    use std::process::Stdio;

    let db = TestDatabase::create().await?;
    sqlx::raw_sql(config::MIGRATIONS[0].1)
        .execute(db.pool())
        .await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("weights.json");
    std::fs::write(&file, r#"{"price_weight": 0.4, "distance_weight": 0.6}"#)?;
    let file_arg = file.display().to_string();
    let from_file = run(
        &db,
        &[
            "set",
            "matching.weights",
            "--value-file",
            &file_arg,
            "--create",
        ],
    )?;
    assert!(from_file.status.success(), "{}", stderr(&from_file));

    // A value larger than anyone would type, through stdin.
    let long_text = "x".repeat(200_000);
    let mut child = Command::new(env!("CARGO_BIN_EXE_groundwork-live"))
        .env("DATABASE_URL", db.url())
        .env_remove("APP_ENV")
        .args(["--env", "production", "--by", "ops"])
        .args(["set", "banner.text", "--value-file", "-", "--create"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running groundwork-live")?;
    let mut stdin = child.stdin.take().context("the child's stdin")?;
    stdin.write_all(serde_json::to_string(&long_text)?.as_bytes())?;
    drop(stdin);
    let from_stdin = child.wait_with_output()?;
    assert!(from_stdin.status.success(), "{}", stderr(&from_stdin));

    let got = run(&db, &["get", "banner.text", "--json"])?;
    assert!(got.status.success(), "{}", stderr(&got));
    let item: serde_json::Value = serde_json::from_slice(&got.stdout)?;
    assert_eq!(item["value"].as_str(), Some(long_text.as_str()));
    assert_eq!(item["key"], "banner.text");

    let listed = run(&db, &["list", "--json"])?;
    let items: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout)?;
    assert_eq!(items.len(), 2, "{}", stdout(&listed));
    let weights = items
        .iter()
        .find(|item| item["key"] == "matching.weights")
        .context("matching.weights in the list")?;
    assert_eq!(weights["value"]["price_weight"], 0.4);

    let history = run(&db, &["history", "matching.weights", "--json"])?;
    let changes: Vec<serde_json::Value> = serde_json::from_slice(&history.stdout)?;
    assert_eq!(changes.len(), 1, "{}", stdout(&history));
    assert_eq!(changes[0]["op"], "INSERT");

    // A value and a value file together, or neither, is a usage error; so is a missing file.
    let both = run(
        &db,
        &["set", "k", "1", "--value-file", &file_arg, "--force"],
    )?;
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
    let neither = run(&db, &["set", "k", "--force"])?;
    assert_eq!(neither.status.code(), Some(2), "{}", stderr(&neither));
    let missing_file = run(
        &db,
        &[
            "set",
            "k",
            "--value-file",
            "/nonexistent/value.json",
            "--force",
        ],
    )?;
    assert_eq!(
        missing_file.status.code(),
        Some(2),
        "{}",
        stderr(&missing_file)
    );
    assert!(
        stderr(&missing_file).contains("cannot read the value file /nonexistent/value.json"),
        "{}",
        stderr(&missing_file)
    );
    Ok(())
}

#[test]
fn bad_usage_exits_2_and_an_unreachable_database_exits_1_naming_the_cause_once() -> Result<()> {
    let bad_usage = Command::new(env!("CARGO_BIN_EXE_groundwork-live"))
        .args(["--env", "production", "list", "--no-such-option"])
        .output()?;
    assert_eq!(bad_usage.status.code(), Some(2), "{}", stderr(&bad_usage));

    let url = format!(
        "postgres://ops:Hunter2-secret@127.0.0.1:{}/app",
        closed_port()?
    );
    let unreachable = Command::new(env!("CARGO_BIN_EXE_groundwork-live"))
        .env("DATABASE_URL", &url)
        .args(["--env", "production", "--connect-timeout", "3", "list"])
        .output()?;
    let error = stderr(&unreachable);
    assert_eq!(unreachable.status.code(), Some(1), "{error}");
    assert!(
        error.starts_with("error: cannot connect to the database at postgres://ops:***@127.0.0.1:"),
        "{error}"
    );
    assert_eq!(error.matches("Connection refused").count(), 1, "{error}");
    assert_eq!(error.lines().count(), 1, "one line: {error}");
    assert!(!error.contains("Hunter2-secret"), "{error}");
    assert!(!error.contains("pool timed out"), "{error}");
    Ok(())
}

#[test]
fn a_database_that_never_answers_fails_at_the_connect_timeout() -> Result<()> {
    // The kernel accepts connections into the backlog; nothing ever answers them.
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("postgres://ops:Hunter2-secret@{}/app", silent.local_addr()?);
    let output = Command::new(env!("CARGO_BIN_EXE_groundwork-live"))
        .env("DATABASE_URL", &url)
        .args(["--env", "production", "--connect-timeout", "1", "list"])
        .output()?;
    let error = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{error}");
    assert!(
        error.contains("no answer within 1 s (--connect-timeout)"),
        "{error}"
    );
    assert!(!error.contains("Hunter2-secret"), "{error}");
    drop(silent);
    Ok(())
}
