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
    use groundwork_testkit::{ClusterTls, TestCa, TestCluster};

    let ca = TestCa::new("groundwork test CA")?;
    let server = ca.server(&["127.0.0.1"])?;
    let cluster =
        TestCluster::start_with_tls(ClusterTls::new(server.certificate_pem, server.key_pem))
            .await?;
    let dir = tempfile::tempdir()?;
    let wrong_ca = dir.path().join("other-ca.crt");
    std::fs::write(&wrong_ca, TestCa::new("another CA")?.certificate_pem())?;

    let output = Command::new(env!("CARGO_BIN_EXE_groundwork-live"))
        .env(
            "DATABASE_URL",
            format!(
                "{}?sslmode=verify-full&sslrootcert={}",
                cluster.url(),
                wrong_ca.display()
            ),
        )
        .env_remove("APP_ENV")
        .args(["--env", "production", "list"])
        .output()
        .context("running groundwork-live")?;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let error = stderr(&output);
    assert!(
        error.contains(&format!("127.0.0.1:{}", cluster.port()))
            && error.contains("invalid peer certificate: UnknownIssuer"),
        "{error}"
    );
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
