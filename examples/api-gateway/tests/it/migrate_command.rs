//! `api-gateway migrate`, the deploy step `deploy/k8s` runs as an init container: it applies every
//! migration set and exits, needs only PostgreSQL, and pods starting together apply each
//! migration once under the advisory locks.

use std::process::{Command, Output, Stdio};

use anyhow::{Result, ensure};
use groundwork_testkit::TestDatabase;

fn gateway(args: &[&str], database_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_groundwork-example-api-gateway"));
    command
        .args(args)
        .env_clear()
        .env("APP_ENV", "test")
        .env("DATABASE_URL", database_url)
        // Required settings, never connected to by `migrate`: nothing listens on port 1.
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_pods_migrating_at_once_apply_every_migration_once_and_exit_0() -> Result<()> {
    let db = TestDatabase::create().await?;
    let url = db.url().to_owned();
    let outputs = tokio::task::spawn_blocking(move || -> Result<Vec<Output>> {
        let children = (0..3)
            .map(|_| gateway(&["migrate"], &url).spawn())
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(children
            .into_iter()
            .map(std::process::Child::wait_with_output)
            .collect::<std::io::Result<Vec<_>>>()?)
    })
    .await??;
    for output in &outputs {
        ensure!(output.status.success(), "{}", describe(output));
        ensure!(
            String::from_utf8_lossy(&output.stdout).contains("api-gateway migrations applied"),
            "{}",
            describe(output)
        );
    }

    for table in ["orders", "platform_config", "feature_flags"] {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(table)
            .fetch_one(db.pool())
            .await?;
        ensure!(exists, "table {table} was not created");
    }
    for (tracking, query) in [
        (
            "schema_migrations",
            "SELECT count(*), count(DISTINCT version) FROM schema_migrations",
        ),
        (
            "groundwork_live_migrations",
            "SELECT count(*), count(DISTINCT version) FROM groundwork_live_migrations",
        ),
        (
            "groundwork_flags_migrations",
            "SELECT count(*), count(DISTINCT version) FROM groundwork_flags_migrations",
        ),
    ] {
        let (rows, versions): (i64, i64) = sqlx::query_as(query).fetch_one(db.pool()).await?;
        ensure!(
            rows > 0 && rows == versions,
            "{tracking}: {rows} rows for {versions} versions"
        );
    }

    // Once more on the migrated database: nothing pending, still success.
    let again = gateway(&["migrate"], db.url()).output()?;
    ensure!(again.status.success(), "{}", describe(&again));
    db.cleanup().await?;
    Ok(())
}

#[test]
fn an_unknown_argument_exits_2_naming_it() -> Result<()> {
    let output = gateway(&["migrate", "--all"], "postgres://127.0.0.1:1/none").output()?;
    ensure!(output.status.code() == Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        stderr.contains("unexpected argument `--all`") && stderr.contains("api-gateway [migrate]"),
        "{}",
        describe(&output)
    );
    let output = gateway(&["serve"], "postgres://127.0.0.1:1/none").output()?;
    ensure!(output.status.code() == Some(2), "{}", describe(&output));
    Ok(())
}

#[test]
fn migrate_without_a_reachable_database_fails_naming_it_without_the_password() -> Result<()> {
    let output = gateway(
        &["migrate"],
        "postgres://app:Hunter2-Secret@127.0.0.1:1/app",
    )
    .output()?;
    ensure!(!output.status.success(), "{}", describe(&output));
    let all = describe(&output);
    ensure!(all.contains("cannot connect to PostgreSQL"), "{all}");
    ensure!(
        !all.contains("Hunter2-Secret"),
        "the password was printed:\n{all}"
    );
    Ok(())
}
