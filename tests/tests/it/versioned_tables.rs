//! `VersionedDdl`'s SQL for `platform_config` and `feature_flags` behaves as their deployed
//! migrations do: the same history tables, indexes and triggers, the same actor and stamp
//! functions, and, for one script of writes (authors set and unset, plain SQL, a moved key, a
//! delete, a refused write), the same rows, history and NOTIFY payloads. The deployed migrations
//! stay as they are; this is what lets a new table take the generated SQL instead of a copy.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use groundwork_live::versioned::{self, VersionedDdl};
use groundwork_testkit::TestDatabase;
use serde_json::Value;
use sqlx::postgres::PgListener;
use sqlx::{AssertSqlSafe, PgPool};

/// One table: how it is deployed, how it is generated, and a script of writes to replay on both.
struct Case {
    ddl: VersionedDdl<'static>,
    /// The deployed migrations, `(file name, SQL)`; the `.up.sql` ones are applied in order.
    deployed: &'static [(&'static str, &'static str)],
    /// Each write: the author set with `groundwork.actor` (or none), and the SQL.
    script: &'static [(Option<&'static str>, &'static str)],
}

const PLATFORM_CONFIG: Case = Case {
    ddl: VersionedDdl {
        table: "platform_config",
        key: &[("env", "VARCHAR(20)"), ("key", "VARCHAR(255)")],
        columns: &[
            ("id", "SERIAL PRIMARY KEY"),
            ("value", "JSONB NOT NULL"),
            ("description", "TEXT"),
        ],
        announce_moves: true,
    },
    deployed: groundwork_live::config::MIGRATIONS,
    script: &[
        (
            Some("alice"),
            "INSERT INTO platform_config (env, key, value) VALUES ('production', 'a', '1')",
        ),
        (
            None,
            "INSERT INTO platform_config (env, key, value) VALUES ('staging', 'a', '{\"x\": 2}')",
        ),
        (
            Some("bob"),
            "UPDATE platform_config SET value = '3' WHERE env = 'production' AND key = 'a'",
        ),
        (
            None,
            "UPDATE platform_config SET value = '4', updated_by = 'carol' WHERE env = 'staging'",
        ),
        (
            None,
            "UPDATE platform_config SET description = 'by hand' WHERE env = 'staging'",
        ),
        (
            Some("dave"),
            "UPDATE platform_config SET key = 'b' WHERE env = 'production' AND key = 'a'",
        ),
        (
            Some("erin"),
            "DELETE FROM platform_config WHERE env = 'staging'",
        ),
        (
            Some("frank"),
            "INSERT INTO platform_config (env, key, value, updated_by) VALUES ('production', 'c', '5', '')",
        ),
        (
            None,
            "INSERT INTO platform_config (env, key, value) VALUES ('production', 'b', '6')",
        ),
    ],
};

const FEATURE_FLAGS: Case = Case {
    ddl: VersionedDdl {
        table: "feature_flags",
        key: &[("name", "VARCHAR(100)")],
        columns: &[
            ("id", "SERIAL PRIMARY KEY"),
            ("enabled", "BOOLEAN NOT NULL DEFAULT false"),
            (
                "rollout_pct",
                "INTEGER NOT NULL DEFAULT 100 CHECK (rollout_pct BETWEEN 0 AND 100)",
            ),
            ("whitelist", "TEXT[]"),
            ("description", "TEXT"),
            ("created_at", "TIMESTAMPTZ DEFAULT NOW()"),
            (
                "variants",
                "JSONB CHECK (variants IS NULL OR jsonb_typeof(variants) = 'array')",
            ),
            (
                "rules",
                "JSONB CHECK (rules IS NULL OR jsonb_typeof(rules) = 'array')",
            ),
        ],
        announce_moves: false,
    },
    deployed: groundwork_flags::store::MIGRATIONS,
    script: &[
        (
            Some("alice"),
            "INSERT INTO feature_flags (name, enabled) VALUES ('new-checkout', true)",
        ),
        (
            None,
            "INSERT INTO feature_flags (name, rollout_pct, whitelist) VALUES ('beta', 50, ARRAY['t1'])",
        ),
        (
            Some("bob"),
            "UPDATE feature_flags SET rollout_pct = 25 WHERE name = 'beta'",
        ),
        (
            None,
            "UPDATE feature_flags SET enabled = false, updated_by = 'carol' WHERE name = 'new-checkout'",
        ),
        (
            None,
            "UPDATE feature_flags SET description = 'by hand' WHERE name = 'new-checkout'",
        ),
        (
            Some("dave"),
            "UPDATE feature_flags SET name = 'beta-2' WHERE name = 'beta'",
        ),
        (
            Some("erin"),
            "UPDATE feature_flags SET variants = '[{\"name\": \"a\", \"weight\": 100}]' WHERE name = 'beta-2'",
        ),
        (
            Some("erin"),
            "UPDATE feature_flags SET rollout_pct = 101 WHERE name = 'beta-2'",
        ),
        (
            Some("frank"),
            "DELETE FROM feature_flags WHERE name = 'new-checkout'",
        ),
    ],
};

/// What a database holds and said after the script: comparable between the two.
#[derive(Debug, PartialEq)]
struct Outcome {
    history_columns: Vec<Value>,
    indexes: Vec<String>,
    triggers: Vec<Value>,
    functions: Vec<String>,
    refused: Vec<bool>,
    rows: Vec<Value>,
    history: Vec<Value>,
    notices: Vec<Value>,
}

/// One JSON value per row of `sql`, with `$1` bound to `name` when given.
async fn query_json(pool: &PgPool, sql: String, name: Option<&str>) -> Result<Vec<Value>> {
    let mut query = sqlx::query_scalar::<_, Value>(AssertSqlSafe(sql));
    if let Some(name) = name {
        query = query.bind(name.to_owned());
    }
    Ok(query.fetch_all(pool).await?)
}

/// Runs the script on a database whose table `case` describes was made by `setup`, and reads
/// back everything the two ways of making it must agree on.
// Reads everything the comparison needs in one place, in the order the outcome lists it.
#[allow(clippy::too_many_lines)]
async fn replay(case: &Case, setup: &str) -> Result<Outcome> {
    let db = TestDatabase::create().await?;
    let pool = db.pool().clone();
    sqlx::raw_sql(AssertSqlSafe(setup.to_owned()))
        .execute(&pool)
        .await
        .context("creating the table")?;
    let table = case.ddl.table;
    let history = case.ddl.history();

    let mut listener = PgListener::connect(db.url()).await?;
    listener.listen(&case.ddl.channel()).await?;
    let mut refused = Vec::new();
    let mut changes = 0;
    for (actor, sql) in case.script {
        let mut tx = match actor {
            Some(actor) => versioned::begin(&pool, actor).await?,
            None => pool.begin().await?,
        };
        if let Ok(done) = sqlx::query(AssertSqlSafe(*sql)).execute(&mut *tx).await {
            tx.commit().await?;
            refused.push(false);
            changes += done.rows_affected();
        } else {
            tx.rollback().await?;
            refused.push(true);
        }
    }
    // Every change announces itself; a moved key once more on platform_config.
    let expected_notices: i64 =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {history}")))
            .fetch_one(&pool)
            .await?;
    // Each script moves one key, which platform_config announces twice.
    let moves = i64::from(case.ddl.announce_moves);
    let mut notices = Vec::new();
    for _ in 0..expected_notices + moves {
        // A guard against a hang, not a measurement: the notices were sent before this runs.
        let Ok(notice) = tokio::time::timeout(Duration::from_secs(10), listener.recv()).await
        else {
            bail!(
                "{table}: {} notices arrived, more were expected",
                notices.len()
            );
        };
        notices.push(serde_json::from_str(notice?.payload())?);
    }
    assert_eq!(
        u64::try_from(expected_notices)?,
        changes,
        "{table}: one history row per changed row"
    );

    let history_columns = query_json(
        &pool,
        "SELECT jsonb_build_array(column_name, data_type, character_maximum_length, is_nullable, column_default)
         FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position"
            .to_owned(),
        Some(&history),
    )
    .await?;
    let indexes = sqlx::query_scalar(
        "SELECT indexdef::text FROM pg_indexes WHERE tablename = $1 ORDER BY indexname",
    )
    .bind(&history)
    .fetch_all(&pool)
    .await?;
    let triggers = query_json(
        &pool,
        "SELECT jsonb_build_array(trigger_name, event_manipulation, action_timing, action_orientation, action_statement)
         FROM information_schema.triggers WHERE event_object_table = $1
         ORDER BY trigger_name, event_manipulation"
            .to_owned(),
        Some(table),
    )
    .await?;
    let mut functions = Vec::new();
    for function in ["actor", "stamp"] {
        let definition: String = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT pg_get_functiondef('{table}_{function}'::regproc)"
        )))
        .fetch_one(&pool)
        .await?;
        functions.push(definition);
    }
    // Timestamps differ between any two runs; everything else must not.
    let rows = query_json(
        &pool,
        format!(
            "SELECT to_jsonb(t) - 'updated_at' - 'created_at' FROM {table} AS t
             ORDER BY id"
        ),
        None,
    )
    .await?;
    let history_rows = query_json(
        &pool,
        format!(
            "SELECT to_jsonb(h) - 'changed_at' || jsonb_build_object(
                 'old_row', h.old_row - 'updated_at' - 'created_at',
                 'new_row', h.new_row - 'updated_at' - 'created_at')
             FROM {history} AS h ORDER BY id"
        ),
        None,
    )
    .await?;
    listener.unlisten_all().await?;
    drop(listener);
    db.cleanup().await?;
    Ok(Outcome {
        history_columns,
        indexes,
        triggers,
        functions,
        refused,
        rows,
        history: history_rows,
        notices,
    })
}

/// The deployed migrations' `.up.sql` files, in order, as one script.
fn deployed_sql(case: &Case) -> String {
    case.deployed
        .iter()
        .filter(|(name, _)| name.ends_with(".up.sql"))
        .map(|(_, sql)| *sql)
        .collect::<Vec<_>>()
        .join("\n")
}

async fn the_generated_table_behaves_as_the_deployed_one(case: &Case) -> Result<()> {
    let deployed = replay(case, &deployed_sql(case)).await?;
    let generated = replay(case, &case.ddl.sql()?).await?;
    let table = case.ddl.table;
    // Not vacuous: the script changed rows, named authors and was announced.
    assert!(
        deployed.history.len() >= 7 && deployed.notices.len() >= 7,
        "{table}: {deployed:#?}"
    );
    let authors: Vec<&str> = deployed
        .history
        .iter()
        .filter_map(|entry| entry["changed_by"].as_str())
        .collect();
    for author in ["alice", "bob", "carol", "dave"] {
        assert!(authors.contains(&author), "{table}: {authors:?}");
    }
    assert_eq!(deployed.functions.len(), 2);
    // Field by field, so a difference names what differs.
    assert_eq!(
        generated.history_columns, deployed.history_columns,
        "{table}: history columns"
    );
    assert_eq!(
        generated.indexes, deployed.indexes,
        "{table}: history indexes"
    );
    assert_eq!(generated.triggers, deployed.triggers, "{table}: triggers");
    assert_eq!(
        generated.functions, deployed.functions,
        "{table}: actor and stamp functions"
    );
    assert_eq!(
        generated.refused, deployed.refused,
        "{table}: refused writes"
    );
    assert_eq!(generated.rows, deployed.rows, "{table}: rows");
    assert_eq!(generated.history, deployed.history, "{table}: history");
    assert_eq!(generated.notices, deployed.notices, "{table}: notices");
    Ok(())
}

#[tokio::test]
async fn generated_platform_config_behaves_as_its_deployed_migration() -> Result<()> {
    the_generated_table_behaves_as_the_deployed_one(&PLATFORM_CONFIG).await
}

#[tokio::test]
async fn generated_feature_flags_behave_as_their_deployed_migrations() -> Result<()> {
    the_generated_table_behaves_as_the_deployed_one(&FEATURE_FLAGS).await
}
