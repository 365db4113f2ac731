//! A new versioned table made from `VersionedDdl`'s SQL, in a schema of its own, works through the
//! same generic layer as `platform_config` and `feature_flags`: revisions, `Expect`, history with
//! authors, the row at a revision, and one NOTIFY per change naming the key and revision.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use groundwork_live::versioned::{
    self, Columns, Expect, RowChange, VersionedDdl, VersionedError, VersionedTable,
};
use groundwork_testkit::TestDatabase;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};

const SCHEMA: &str = "inventory";

const DDL: VersionedDdl<'static> = VersionedDdl {
    table: "widgets",
    key: &[("shop", "VARCHAR(20)"), ("sku", "TEXT")],
    columns: &[("payload", "JSONB NOT NULL"), ("note", "TEXT")],
    announce_moves: true,
};

const WIDGETS: VersionedTable = VersionedTable {
    table: "widgets",
    history: "widgets_history",
    key: &["shop", "sku"],
    select: "to_jsonb(widgets.*) - 'updated_at'",
    json_columns: &["payload"],
};

/// A pool whose connections find `widgets` in the private schema.
async fn schema_pool(db: &TestDatabase) -> Result<PgPool> {
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {SCHEMA}")))
        .execute(db.pool())
        .await?;
    let options: PgConnectOptions = db.url().parse()?;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options.options([("search_path", SCHEMA)]))
        .await?;
    sqlx::raw_sql(AssertSqlSafe(DDL.sql()?))
        .execute(&pool)
        .await
        .context("applying the generated DDL")?;
    Ok(pool)
}

fn columns(value: Value) -> Columns {
    match value {
        Value::Object(map) => map,
        _ => Columns::new(),
    }
}

async fn write(
    pool: &PgPool,
    sku: &str,
    row: Value,
    expect: Expect,
    actor: &str,
) -> Result<Value, VersionedError> {
    let columns = columns(row);
    let change = RowChange {
        key: &["north", sku],
        columns: &columns,
        creates: true,
    };
    WIDGETS
        .write::<(Value,)>(pool, &change, expect, actor)
        .await
        .map(|(row,)| row)
}

fn revision(row: &Value) -> Result<i64> {
    row["revision"].as_i64().context("a revision")
}

/// The next notification on the listener, as JSON.
async fn next_notice(listener: &mut PgListener) -> Result<Value> {
    // A guard against a hang, not a measurement: the notices were sent before this is called.
    let Ok(notice) = tokio::time::timeout(Duration::from_secs(10), listener.recv()).await else {
        bail!("no notification arrived");
    };
    Ok(serde_json::from_str(notice?.payload())?)
}

// One scenario, read top to bottom: each step's revision is the next step's expectation.
#[allow(clippy::too_many_lines)]
#[tokio::test]
async fn a_table_from_the_generated_ddl_is_versioned_audited_and_announced() -> Result<()> {
    let db = TestDatabase::create().await?;
    let pool = schema_pool(&db).await?;
    let in_schema: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = $1 ORDER BY table_name",
    )
    .bind(SCHEMA)
    .fetch_all(db.pool())
    .await?;
    assert_eq!(in_schema, ["widgets", "widgets_history"]);
    let mut listener = PgListener::connect(db.url()).await?;
    listener.listen(&DDL.channel()).await?;

    // Created with its author, then changed at the revision read.
    let created = write(
        &pool,
        "w-1",
        json!({"payload": {"size": 1}}),
        Expect::Absent,
        "alice",
    )
    .await?;
    assert_eq!(created["updated_by"], "alice");
    let first = revision(&created)?;
    let changed = write(
        &pool,
        "w-1",
        json!({"payload": {"size": 2}}),
        Expect::Revision(first),
        "bob",
    )
    .await?;
    let second = revision(&changed)?;
    assert!(second > first, "{first} then {second}");
    assert_eq!(changed["updated_by"], "bob");

    // A stale write and a second create are refused with the revision that won.
    match write(
        &pool,
        "w-1",
        json!({"payload": {"size": 9}}),
        Expect::Revision(first),
        "carol",
    )
    .await
    {
        Err(VersionedError::Conflict { expected, actual }) => {
            assert_eq!((expected, actual), (first, second));
        }
        other => bail!("a stale write must conflict, got {other:?}"),
    }
    match write(
        &pool,
        "w-1",
        json!({"payload": {}}),
        Expect::Absent,
        "carol",
    )
    .await
    {
        Err(VersionedError::Exists { revision }) => assert_eq!(revision, second),
        other => bail!("a second create must be refused, got {other:?}"),
    }

    // A plain UPDATE that leaves updated_by alone is the database user's, not bob's.
    sqlx::query("UPDATE widgets SET note = 'by hand' WHERE sku = 'w-1'")
        .execute(&pool)
        .await?;
    let user: String = sqlx::query_scalar("SELECT session_user::text")
        .fetch_one(&pool)
        .await?;

    // Rolled back to the first revision's payload, then deleted by carol.
    let old = WIDGETS.row_at(&pool, &["north", "w-1"], first).await?;
    let current: Option<(Value,)> = WIDGETS.get(&pool, &["north", "w-1"]).await?;
    let third = current
        .map(|(row,)| revision(&row))
        .transpose()?
        .context("the row")?;
    let restored = write(
        &pool,
        "w-1",
        json!({"payload": old["payload"]}),
        Expect::Revision(third),
        "dave",
    )
    .await?;
    assert_eq!(restored["payload"], json!({"size": 1}));
    let fourth = revision(&restored)?;
    WIDGETS
        .delete(&pool, &["north", "w-1"], Expect::Revision(fourth), "carol")
        .await?;

    let history = WIDGETS.history(&pool, &["north", "w-1"]).await?;
    let seen: Vec<(&str, Option<&str>)> = history
        .iter()
        .map(|change| (change.op.as_str(), change.changed_by.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            ("DELETE", Some("carol")),
            ("UPDATE", Some("dave")),
            ("UPDATE", Some(user.as_str())),
            ("UPDATE", Some("bob")),
            ("INSERT", Some("alice")),
        ]
    );
    let revisions: Vec<i64> = history.iter().map(|change| change.revision).collect();
    assert!(
        revisions.windows(2).all(|pair| pair[0] > pair[1]),
        "{revisions:?}"
    );

    // One notice per change, in order, naming the key and the revision, never the value.
    let mut notices = Vec::new();
    for _ in 0..revisions.len() {
        notices.push(next_notice(&mut listener).await?);
    }
    let expected: Vec<Value> = history
        .iter()
        .rev()
        .map(|change| json!({"shop": "north", "sku": "w-1", "revision": change.revision, "op": change.op}))
        .collect();
    assert_eq!(notices, expected);

    // Moving a row to another key announces the old key as deleted.
    write(
        &pool,
        "w-2",
        json!({"payload": {"size": 3}}),
        Expect::Absent,
        "alice",
    )
    .await?;
    sqlx::query("UPDATE widgets SET sku = 'w-3' WHERE sku = 'w-2'")
        .execute(&pool)
        .await?;
    let mut moved = Vec::new();
    for _ in 0..3 {
        let notice = next_notice(&mut listener).await?;
        moved.push((notice["sku"].clone(), notice["op"].clone()));
    }
    assert_eq!(
        moved,
        [
            (json!("w-2"), json!("INSERT")),
            (json!("w-2"), json!("DELETE")),
            (json!("w-3"), json!("UPDATE")),
        ]
    );

    // A transaction with an actor covers writes made with plain SQL.
    let mut tx = versioned::begin(&pool, "erin").await?;
    sqlx::query("DELETE FROM widgets WHERE sku = 'w-3'")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let last = WIDGETS.history(&pool, &["north", "w-3"]).await?;
    assert_eq!(
        last.first().and_then(|change| change.changed_by.as_deref()),
        Some("erin")
    );

    pool.close().await;
    db.cleanup().await?;
    Ok(())
}
