//! The PostgreSQL runner and CLI against a real server; each test owns its database.
#![cfg(all(feature = "postgres", feature = "cli"))]

use crate::common;

use std::time::Duration;

use anyhow::Result;
use common::{cli, dir_with, fixture, text, write};
use groundwork_migrate::postgres::{PgBackend, advisory_lock_key};
use groundwork_migrate::{
    Backend, DownTarget, MigrateError, MigrateOptions, Migration, Migrator, NewRecord, Script,
    State, TableName,
};
use groundwork_testkit::TestDatabase;

async fn connect(db: &TestDatabase) -> Result<PgBackend> {
    Ok(PgBackend::connect(db.url()).await?)
}

async fn table_exists(db: &TestDatabase, name: &str) -> Result<bool> {
    Ok(sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(name)
        .fetch_one(db.pool())
        .await?)
}

fn states(statuses: &[groundwork_migrate::MigrationStatus]) -> Vec<(i64, State)> {
    statuses.iter().map(|s| (s.version, s.state)).collect()
}

#[tokio::test]
async fn seed_layout_applies_and_its_schema_migrations_sql_is_ignored() -> Result<()> {
    let db = TestDatabase::create().await?;
    let migrator = Migrator::from_dir(fixture("seed"))?;
    assert_eq!(migrator.migrations().ignored, ["schema_migrations.sql"]);

    let report = groundwork_migrate::migrate_on_startup(db.pool(), fixture("seed")).await?;
    let files: Vec<_> = report.steps.iter().map(|s| s.file.as_str()).collect();
    assert_eq!(
        files,
        ["001_create_suppliers.up.sql", "002_create_hotels.up.sql"]
    );
    assert!(table_exists(&db, "hotels").await?);

    let mut pg = connect(&db).await?;
    let status = migrator.status(&mut pg).await?;
    assert_eq!(states(&status), [(1, State::Applied), (2, State::Applied)]);
    assert!(status.iter().all(|s| s.applied_at.is_some()));

    // A second start-up finds nothing to do.
    let again = groundwork_migrate::migrate_on_startup(db.pool(), fixture("seed")).await?;
    assert!(again.steps.is_empty());
    Ok(())
}

#[tokio::test]
async fn sqlx_style_single_file_timestamp_migrations_apply() -> Result<()> {
    let db = TestDatabase::create().await?;
    let migrator = Migrator::from_dir(fixture("sqlx_style"))?;
    let mut pg = connect(&db).await?;
    let report = migrator.up(&mut pg, None).await?;
    assert_eq!(report.steps.len(), 2);
    let err = migrator.down(&mut pg, DownTarget::Steps(1)).await.err();
    assert!(
        matches!(&err, Some(MigrateError::Irreversible { file, down_file, .. })
            if file == "20240502090000_add_users_name.sql"
            && down_file == "20240502090000_add_users_name.down.sql"),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn up_down_up_round_trips() -> Result<()> {
    let db = TestDatabase::create().await?;
    let migrator = Migrator::from_dir(fixture("seed"))?;
    let mut pg = connect(&db).await?;

    migrator.up(&mut pg, Some(1)).await?;
    assert!(table_exists(&db, "suppliers").await? && !table_exists(&db, "hotels").await?);
    migrator.up(&mut pg, None).await?;

    let down = migrator.down(&mut pg, DownTarget::Steps(1)).await?;
    assert_eq!(down.steps[0].file, "002_create_hotels.down.sql");
    assert!(!table_exists(&db, "hotels").await?);
    migrator.down(&mut pg, DownTarget::To(0)).await?;
    assert!(!table_exists(&db, "suppliers").await?);
    let status = migrator.status(&mut pg).await?;
    assert_eq!(states(&status), [(1, State::Pending), (2, State::Pending)]);

    let up = migrator.up(&mut pg, None).await?;
    assert_eq!(up.steps.len(), 2);
    assert!(table_exists(&db, "hotels").await?);
    Ok(())
}

#[tokio::test]
async fn failing_migration_leaves_no_trace_and_releases_the_lock() -> Result<()> {
    let db = TestDatabase::create().await?;
    let dir = dir_with(&[
        ("001_a.up.sql", "CREATE TABLE a (id INT);"),
        ("001_a.down.sql", "DROP TABLE a;"),
        (
            "002_b.up.sql",
            "CREATE TABLE b (id INT);\nINSERT INTO a VALUES (1);\n\nINSERT INTO nope VALUES (1);\n",
        ),
        ("002_b.down.sql", "DROP TABLE b;"),
        ("003_c.sql", "CREATE TABLE c (id INT);"),
    ]);
    let migrator = Migrator::from_dir(dir.path())?;
    let mut pg = connect(&db).await?;
    let err = migrator.up(&mut pg, None).await.err();
    let Some(MigrateError::MigrationFailed {
        version,
        script,
        statement,
        left_dirty,
        ..
    }) = &err
    else {
        panic!("expected a failed migration, got {err:?}");
    };
    assert_eq!(
        (*version, script.as_str(), *left_dirty),
        (2, "002_b.up.sql", false)
    );
    let statement = statement
        .as_ref()
        .unwrap_or_else(|| panic!("no statement in {err:?}"));
    assert_eq!((statement.index, statement.line), (3, 4));
    let message = err.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(
        message.contains("002_b.up.sql") && message.contains("rolled back"),
        "{message}"
    );

    // Schema unchanged by 002, 003 never ran, 001 stays applied.
    assert!(!table_exists(&db, "b").await? && !table_exists(&db, "c").await?);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM a")
        .fetch_one(db.pool())
        .await?;
    assert_eq!(rows, 0);
    let status = migrator.status(&mut pg).await?;
    assert_eq!(
        states(&status),
        [
            (1, State::Applied),
            (2, State::Pending),
            (3, State::Pending)
        ]
    );

    // The lock is free: another session takes it at once.
    let key = advisory_lock_key(&TableName::default());
    let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(key)
        .fetch_one(&mut *db.pool().acquire().await?)
        .await?;
    assert!(taken);
    Ok(())
}

/// Wraps a backend and panics in the middle of `apply`, as a bug would.
struct PanicsInApply(PgBackend);

impl Backend for PanicsInApply {
    async fn lock(&mut self, table: &TableName, timeout: Duration) -> Result<(), MigrateError> {
        self.0.lock(table, timeout).await
    }
    async fn unlock(&mut self, table: &TableName) -> Result<(), MigrateError> {
        self.0.unlock(table).await
    }
    async fn ensure_table(&mut self, table: &TableName) -> Result<(), MigrateError> {
        self.0.ensure_table(table).await
    }
    async fn applied(
        &mut self,
        table: &TableName,
    ) -> Result<Vec<groundwork_migrate::AppliedMigration>, MigrateError> {
        self.0.applied(table).await
    }
    async fn apply(&mut self, _: &TableName, m: &Migration) -> Result<Duration, MigrateError> {
        panic!("bug while applying {}", m.up.file_name)
    }
    async fn revert(
        &mut self,
        t: &TableName,
        m: &Migration,
        d: &Script,
    ) -> Result<Duration, MigrateError> {
        self.0.revert(t, m, d).await
    }
    async fn record(&mut self, t: &TableName, r: &NewRecord<'_>) -> Result<(), MigrateError> {
        self.0.record(t, r).await
    }
    async fn remove(&mut self, t: &TableName, v: i64) -> Result<(), MigrateError> {
        self.0.remove(t, v).await
    }
}

#[tokio::test]
async fn a_panicking_runner_does_not_keep_the_lock() -> Result<()> {
    let db = TestDatabase::create().await?;
    let migrator = Migrator::from_dir(fixture("seed"))?;
    let mut panicking = PanicsInApply(connect(&db).await?);
    let runner = migrator.clone();
    let outcome = tokio::spawn(async move { runner.up(&mut panicking, None).await }).await;
    assert!(outcome.is_err_and(|e| e.is_panic()));

    // The panic dropped the connection, which ends the session and frees the lock.
    let mut options = MigrateOptions::default();
    options.lock_timeout = Duration::from_secs(10);
    let report = migrator
        .with_options(options)
        .up(&mut connect(&db).await?, None)
        .await?;
    assert_eq!(report.steps.len(), 2);
    Ok(())
}

#[tokio::test]
async fn a_held_lock_times_out_with_a_message_naming_the_table() -> Result<()> {
    let db = TestDatabase::create().await?;
    let mut holder = db.pool().acquire().await?;
    let key = advisory_lock_key(&TableName::default());
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(key)
        .execute(&mut *holder)
        .await?;

    let mut options = MigrateOptions::default();
    options.lock_timeout = Duration::from_millis(300);
    let migrator = Migrator::from_dir(fixture("seed"))?.with_options(options.clone());
    let err = migrator.up(&mut connect(&db).await?, None).await.err();
    assert!(
        matches!(&err, Some(MigrateError::LockTimeout { table, .. }) if table == "schema_migrations"),
        "{err:?}"
    );

    // Another migration set, in another table, has another lock and is not blocked.
    options.table = TableName::new("app_migrations")?;
    let other = Migrator::from_dir(fixture("seed"))?.with_options(options);
    assert_eq!(
        other.up(&mut connect(&db).await?, None).await?.steps.len(),
        2
    );
    Ok(())
}

#[tokio::test]
async fn no_transaction_failure_is_dirty_until_forced() -> Result<()> {
    let db = TestDatabase::create().await?;
    let dir = dir_with(&[
        ("001_t.up.sql", "CREATE TABLE t (id INT);"),
        ("001_t.down.sql", "DROP TABLE t;"),
        (
            "002_index.up.sql",
            "-- no-transaction\nCREATE INDEX CONCURRENTLY t_id ON t (id);\nCREATE INDEX CONCURRENTLY t_x ON t (missing_column);\n",
        ),
        (
            "002_index.down.sql",
            "-- no-transaction\nDROP INDEX CONCURRENTLY t_id;\n",
        ),
    ]);
    let migrator = Migrator::from_dir(dir.path())?;
    let mut pg = connect(&db).await?;
    let err = migrator.up(&mut pg, None).await.err();
    assert!(
        matches!(&err, Some(MigrateError::MigrationFailed { left_dirty: true, statement: Some(s), .. })
            if s.index == 2 && s.total == 2 && s.line == 3),
        "{err:?}"
    );
    let status = migrator.status(&mut pg).await?;
    assert_eq!(states(&status), [(1, State::Applied), (2, State::Dirty)]);

    // Every later run refuses, naming the script and the fix.
    let refused = migrator.up(&mut pg, None).await.err();
    let message = refused
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        matches!(
            refused,
            Some(MigrateError::Dirty {
                version: 2,
                statements_done: 1,
                ..
            })
        ),
        "{message}"
    );
    assert!(
        message.contains("002_index.up.sql") && message.contains("force 2"),
        "{message}"
    );
    assert!(migrator.down(&mut pg, DownTarget::Steps(1)).await.is_err());

    // The operator finishes by hand, then forces.
    sqlx::raw_sql("CREATE INDEX t_x ON t (id)")
        .execute(db.pool())
        .await?;
    migrator.force(&mut pg, 2).await?;
    assert_eq!(
        states(&migrator.status(&mut pg).await?),
        [(1, State::Applied), (2, State::Applied)]
    );
    assert!(migrator.up(&mut pg, None).await?.steps.is_empty());
    // The no-transaction down runs too.
    migrator.down(&mut pg, DownTarget::Steps(1)).await?;
    Ok(())
}

#[tokio::test]
async fn changed_checksum_is_refused_but_crlf_is_not() -> Result<()> {
    let db = TestDatabase::create().await?;
    let dir = dir_with(&[
        (
            "001_a.up.sql",
            "CREATE TABLE a (id INT);\nCREATE TABLE a2 (id INT);\n",
        ),
        ("001_a.down.sql", "DROP TABLE a, a2;"),
    ]);
    let mut pg = connect(&db).await?;
    Migrator::from_dir(dir.path())?.up(&mut pg, None).await?;

    write(
        dir.path(),
        "001_a.up.sql",
        "CREATE TABLE a (id INT);\r\nCREATE TABLE a2 (id INT);\r\n",
    );
    let crlf = Migrator::from_dir(dir.path())?;
    assert!(crlf.validate(&mut pg).await?.is_empty());
    assert!(crlf.up(&mut pg, None).await?.steps.is_empty());

    write(
        dir.path(),
        "001_a.up.sql",
        "CREATE TABLE a (id BIGINT);\nCREATE TABLE a2 (id INT);\n",
    );
    let changed = Migrator::from_dir(dir.path())?;
    let err = changed.up(&mut pg, None).await.err();
    let message = err.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(
        matches!(err, Some(MigrateError::Modified { version: 1, .. })),
        "{message}"
    );
    assert!(
        message.contains("001_a.up.sql") && message.contains("repair"),
        "{message}"
    );
    assert_eq!(
        states(&changed.status(&mut pg).await?),
        [(1, State::Modified)]
    );

    let repaired = changed.repair(&mut pg).await?;
    assert_eq!(repaired.steps.len(), 1);
    assert!(changed.validate(&mut pg).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn out_of_order_is_refused_unless_allowed() -> Result<()> {
    let db = TestDatabase::create().await?;
    let dir = dir_with(&[
        ("001_a.sql", "CREATE TABLE a ();"),
        ("003_c.sql", "CREATE TABLE c ();"),
    ]);
    let mut pg = connect(&db).await?;
    Migrator::from_dir(dir.path())?.up(&mut pg, None).await?;
    write(dir.path(), "002_b.sql", "CREATE TABLE b ();");

    let err = Migrator::from_dir(dir.path())?
        .up(&mut pg, None)
        .await
        .err();
    let message = err.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(
        matches!(
            err,
            Some(MigrateError::OutOfOrder {
                version: 2,
                latest: 3,
                ..
            })
        ),
        "{message}"
    );
    assert!(
        message.contains("002_b.sql") && message.contains("--allow-out-of-order"),
        "{message}"
    );

    let mut options = MigrateOptions::default();
    options.allow_out_of_order = true;
    let report = Migrator::from_dir(dir.path())?
        .with_options(options)
        .up(&mut pg, None)
        .await?;
    assert_eq!(report.steps[0].file, "002_b.sql");
    Ok(())
}

#[tokio::test]
async fn missing_files_and_down_scripts_are_refused_with_the_file_named() -> Result<()> {
    let db = TestDatabase::create().await?;
    let dir = dir_with(&[
        ("001_a.up.sql", "CREATE TABLE a ();"),
        ("002_b.up.sql", "CREATE TABLE b ();"),
        ("002_b.down.sql", "DROP TABLE b;"),
    ]);
    let mut pg = connect(&db).await?;
    let migrator = Migrator::from_dir(dir.path())?;
    migrator.up(&mut pg, None).await?;
    migrator.down(&mut pg, DownTarget::Steps(1)).await?;
    let err = migrator.down(&mut pg, DownTarget::Steps(1)).await.err();
    assert!(
        matches!(&err, Some(MigrateError::MissingDown { down_file, .. }) if down_file == "001_a.down.sql"),
        "{err:?}"
    );

    std::fs::remove_file(dir.path().join("001_a.up.sql"))?;
    let without = Migrator::from_dir(dir.path())?;
    let err = without.up(&mut pg, None).await.err();
    let message = err.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(
        matches!(err, Some(MigrateError::Missing { version: 1, .. })),
        "{message}"
    );
    assert!(
        message.contains("(a)") && message.contains("missing"),
        "{message}"
    );
    assert_eq!(
        states(&without.status(&mut pg).await?),
        [(1, State::Missing), (2, State::Pending)]
    );
    Ok(())
}

#[tokio::test]
async fn dry_run_prints_the_plan_and_changes_nothing() -> Result<()> {
    let db = TestDatabase::create().await?;
    let mut options = MigrateOptions::default();
    options.dry_run = true;
    let migrator = Migrator::from_dir(fixture("seed"))?.with_options(options);
    let report = migrator.up(&mut connect(&db).await?, None).await?;
    assert!(report.dry_run);
    assert!(
        report.steps[1]
            .sql
            .as_deref()
            .is_some_and(|s| s.contains("CREATE TABLE hotels"))
    );
    assert!(
        !table_exists(&db, "schema_migrations").await? && !table_exists(&db, "suppliers").await?
    );
    Ok(())
}

#[tokio::test]
async fn baseline_adopts_an_existing_database() -> Result<()> {
    let db = TestDatabase::create().await?;
    sqlx::raw_sql("CREATE TABLE suppliers (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL)")
        .execute(db.pool())
        .await?;
    let migrator = Migrator::from_dir(fixture("seed"))?;
    let mut pg = connect(&db).await?;
    migrator.baseline(&mut pg, 1).await?;
    let report = migrator.up(&mut pg, None).await?;
    assert_eq!(report.steps.len(), 1);
    assert_eq!(
        states(&migrator.status(&mut pg).await?),
        [(1, State::Baseline), (2, State::Applied)]
    );
    assert!(matches!(
        migrator.baseline(&mut pg, 1).await,
        Err(MigrateError::NotEmpty { .. })
    ));
    assert!(matches!(
        migrator.down(&mut pg, DownTarget::Steps(2)).await,
        Err(MigrateError::BelowBaseline { baseline: 1 })
    ));
    Ok(())
}

#[tokio::test]
async fn a_golang_migrate_table_is_not_taken_over() -> Result<()> {
    let db = TestDatabase::create().await?;
    sqlx::raw_sql(
        "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, dirty BOOLEAN NOT NULL)",
    )
    .execute(db.pool())
    .await?;
    let err = Migrator::from_dir(fixture("seed"))?
        .up(&mut connect(&db).await?, None)
        .await
        .err();
    let message = err.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(
        matches!(err, Some(MigrateError::IncompatibleTable { .. })),
        "{message}"
    );
    assert!(message.contains("--table"), "{message}");
    Ok(())
}

#[tokio::test]
async fn two_cli_processes_started_together_apply_each_migration_once() -> Result<()> {
    let db = TestDatabase::create().await?;
    let mut files = vec![(
        "001_runs.up.sql".to_owned(),
        "CREATE TABLE runs (version INT NOT NULL, pid INT NOT NULL DEFAULT pg_backend_pid());\nINSERT INTO runs (version) VALUES (1);\n".to_owned(),
    )];
    for v in 2..=10 {
        files.push((
            format!("{v:03}_step.up.sql"),
            format!("SELECT pg_sleep(0.05);\nINSERT INTO runs (version) VALUES ({v});\n"),
        ));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_str()))
        .collect();
    let dir = dir_with(&refs);
    let dir_arg = dir.path().to_string_lossy().into_owned();

    let spawn = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_groundwork-migrate"))
            .args(["--dir", &dir_arg, "--database-url", db.url(), "up"])
            .env_remove("CLICKHOUSE_URL")
            .output()
    };
    let (a, b) = tokio::join!(spawn(), spawn());
    let (a, b) = (a?, b?);
    assert!(
        a.status.success() && b.status.success(),
        "{:?}\n{:?}",
        text(&a),
        text(&b)
    );

    let per_version: Vec<(i32, i64)> =
        sqlx::query_as("SELECT version, count(*) FROM runs GROUP BY version ORDER BY version")
            .fetch_all(db.pool())
            .await?;
    assert_eq!(per_version, (1..=10).map(|v| (v, 1)).collect::<Vec<_>>());
    // One process did all the work; the other waited, then found nothing to do.
    let outputs = [text(&a).0, text(&b).0];
    assert!(
        outputs.iter().any(|o| o.contains("up to date")),
        "{outputs:?}"
    );
    Ok(())
}

#[tokio::test]
async fn cli_status_exit_codes_and_masked_passwords() -> Result<()> {
    let db = TestDatabase::create().await?;
    let seed = fixture("seed").to_string_lossy().into_owned();
    let url = db.url();

    let up = cli(&["--dir", &seed, "up"], &[("DATABASE_URL", url)]);
    assert_eq!(up.status.code(), Some(0), "{:?}", text(&up));
    assert!(
        text(&up).1.contains("schema_migrations.sql"),
        "the ignored file is noted"
    );

    let status = cli(&["status", "--dir", &seed, "--database-url", url], &[]);
    let (out, _) = text(&status);
    assert_eq!(status.status.code(), Some(0));
    assert!(
        out.contains("001  ") && out.contains("create_hotels") && out.contains("applied"),
        "{out}"
    );

    let dry = cli(
        &["--dir", &seed, "--dry-run", "down", "--to", "0"],
        &[("DATABASE_URL", url)],
    );
    let (out, _) = text(&dry);
    assert!(
        out.contains("-- would revert 002_create_hotels.down.sql")
            && out.contains("DROP TABLE hotels"),
        "{out}"
    );
    assert!(
        table_exists(&db, "hotels").await?,
        "dry run changed nothing"
    );

    let validate = cli(&["--dir", &seed, "validate"], &[("DATABASE_URL", url)]);
    assert_eq!(validate.status.code(), Some(0), "{:?}", text(&validate));

    // Usage errors exit 2: no URL, bad flags, an invalid table name.
    assert_eq!(cli(&["--dir", &seed, "up"], &[]).status.code(), Some(2));
    assert_eq!(cli(&["up", "--steps", "1"], &[]).status.code(), Some(2));
    assert_eq!(
        cli(&["--table", "x;drop", "status"], &[("DATABASE_URL", url)])
            .status
            .code(),
        Some(2)
    );

    // Failures exit 1 and never print the password.
    let bad = cli(
        &[
            "--dir",
            &seed,
            "status",
            "--database-url",
            "postgres://app:hunter2@127.0.0.1:1/db",
        ],
        &[],
    );
    let (_, err) = text(&bad);
    assert_eq!(bad.status.code(), Some(1), "{err}");
    assert!(
        err.contains("app:***@") && !err.contains("hunter2"),
        "{err}"
    );
    // A password given as a query parameter is masked the same way.
    let bad = cli(
        &[
            "--dir",
            &seed,
            "status",
            "--database-url",
            "postgres://app@127.0.0.1:1/db?sslmode=disable&password=hunter2",
        ],
        &[],
    );
    let (_, err) = text(&bad);
    assert_eq!(bad.status.code(), Some(1), "{err}");
    assert!(
        err.contains("db?sslmode=disable&password=***") && !err.contains("hunter2"),
        "{err}"
    );
    Ok(())
}

#[test]
fn create_numbers_files_to_the_directory_width() -> Result<()> {
    let empty = tempfile::tempdir()?;
    let new_dir = empty.path().join("db-migrations");
    let new_dir_arg = new_dir.to_string_lossy().into_owned();
    let first = cli(&["--dir", &new_dir_arg, "create", "Create Suppliers"], &[]);
    assert_eq!(first.status.code(), Some(0), "{:?}", text(&first));
    assert!(new_dir.join("001_create_suppliers.up.sql").is_file());
    assert!(new_dir.join("001_create_suppliers.down.sql").is_file());
    let second = cli(&["--dir", &new_dir_arg, "create", "create_hotels"], &[]);
    assert_eq!(second.status.code(), Some(0));
    assert!(new_dir.join("002_create_hotels.up.sql").is_file());

    let wide = dir_with(&[
        ("0009_a.sql", ""),
        ("0010_b.up.sql", ""),
        ("0010_b.down.sql", ""),
    ]);
    let made = groundwork_migrate::MigrationSet::load(wide.path())?.create("add index")?;
    assert!(
        made[0].ends_with("0011_add_index.up.sql") && made[1].ends_with("0011_add_index.down.sql")
    );
    Ok(())
}

#[tokio::test]
async fn cli_status_prints_json_and_an_empty_migration_is_warned_about() -> Result<()> {
    let db = TestDatabase::create().await?;
    let dir = dir_with(&[
        ("001_hotels.up.sql", "CREATE TABLE hotels (id int);"),
        ("001_hotels.down.sql", "DROP TABLE hotels;"),
        ("002_forgotten.up.sql", "-- forgotten: apply\n\n"),
        ("002_forgotten.down.sql", "DROP TABLE IF EXISTS nothing;"),
    ]);
    let dir_arg = dir.path().to_string_lossy().into_owned();
    let up = cli(
        &["--dir", &dir_arg, "up", "--to", "1"],
        &[("DATABASE_URL", db.url())],
    );
    let (_, err) = text(&up);
    assert_eq!(up.status.code(), Some(0), "{err}");
    assert_eq!(
        err.matches("warning: 002_forgotten.up.sql").count(),
        1,
        "the empty file is named once: {err}"
    );
    assert!(err.contains("is empty"), "{err}");
    assert!(
        !err.contains("001_hotels"),
        "files with SQL are not warned about: {err}"
    );

    let status = cli(
        &["--dir", &dir_arg, "status", "--json"],
        &[("DATABASE_URL", db.url())],
    );
    let (out, err) = text(&status);
    assert_eq!(status.status.code(), Some(0), "{err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out)?;
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!(rows[0]["version"], 1);
    assert_eq!(rows[0]["state"], "applied");
    assert!(
        rows[0]["applied_at"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z')),
        "{out}"
    );
    assert_eq!(rows[1]["state"], "pending");
    assert!(rows[1]["applied_at"].is_null(), "{out}");
    Ok(())
}

#[test]
fn cli_unreachable_database_names_the_cause_once() -> Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let seed = fixture("seed").to_string_lossy().into_owned();
    let url = format!("postgres://app:hunter2@127.0.0.1:{port}/db");
    let bad = cli(
        &["--dir", &seed, "status", "--connect-timeout", "3"],
        &[("DATABASE_URL", &url)],
    );
    let (_, err) = text(&bad);
    assert_eq!(bad.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: cannot connect to the database at postgres://app:***@"),
        "{err}"
    );
    assert_eq!(err.matches("Connection refused").count(), 1, "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    Ok(())
}
