//! The PostgreSQL backend: a session-level advisory lock on one dedicated connection, each
//! migration and its row committed in one transaction, `-- no-transaction` files run statement
//! by statement with dirty state.

use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha384};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};

use crate::backend::{AppliedMigration, Backend, NewRecord, RecordState, TableName};
use crate::error::{FailedStatement, MigrateError};
use crate::source::{Migration, Script};
use crate::split::{Dialect, split_statements};
use groundwork_config::redact_url;

/// The advisory lock key guarding `table`: the first 8 bytes of
/// SHA-384(`groundwork-migrate:` + table name). Sets in different tables never block each
/// other; advisory locks are per database, so the same table name in two databases neither.
pub fn advisory_lock_key(table: &TableName) -> i64 {
    let digest = Sha384::digest(format!("groundwork-migrate:{table}"));
    let mut key = [0u8; 8];
    key.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(key)
}

const COLUMNS: [&str; 8] = [
    "version",
    "name",
    "script",
    "checksum",
    "state",
    "statements_done",
    "applied_at",
    "execution_ms",
];

/// A PostgreSQL database, migrated over one dedicated connection (never a pooled one: the lock
/// belongs to the session, and dropping this value closes it, which releases the lock even if
/// the task panicked).
#[derive(Debug)]
pub struct PgBackend {
    conn: PgConnection,
    lock_key: Option<i64>,
}

fn db_error(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> MigrateError {
    let context = context.into();
    move |e| MigrateError::database(context, e)
}

impl PgBackend {
    /// Opens a dedicated connection to `url`.
    pub async fn connect(url: &str) -> Result<Self, MigrateError> {
        let conn = PgConnection::connect(url)
            .await
            .map_err(db_error(format!("cannot connect to {}", redact_url(url))))?;
        Ok(Self::from_connection(conn))
    }

    /// Opens a dedicated connection with the options of `pool` (the pool's own connections are
    /// left alone).
    pub async fn connect_like(pool: &PgPool) -> Result<Self, MigrateError> {
        let options = pool.connect_options();
        let conn = PgConnection::connect_with(&options)
            .await
            .map_err(db_error("cannot open a connection for migrations"))?;
        Ok(Self::from_connection(conn))
    }

    /// Uses `conn`, which should not be shared with anything else during the run.
    pub fn from_connection(conn: PgConnection) -> Self {
        Self {
            conn,
            lock_key: None,
        }
    }

    /// Closes the connection cleanly (dropping it also ends the session).
    pub async fn close(self) -> Result<(), MigrateError> {
        self.conn
            .close()
            .await
            .map_err(db_error("cannot close the migration connection"))
    }

    /// Fails with [`MigrateError::IncompatibleTable`] if `table` exists without our columns;
    /// returns whether it exists.
    async fn check_table(&mut self, table: &TableName) -> Result<bool, MigrateError> {
        let columns: Vec<String> = sqlx::query_scalar(
            "SELECT attname::text FROM pg_attribute \
             WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
        )
        .bind(table.as_str())
        .fetch_all(&mut self.conn)
        .await
        .map_err(db_error(format!("cannot inspect table {table}")))?;
        if columns.is_empty() {
            return Ok(false);
        }
        let missing: Vec<&str> = COLUMNS
            .iter()
            .copied()
            .filter(|c| !columns.iter().any(|have| have == c))
            .collect();
        if missing.is_empty() {
            Ok(true)
        } else {
            Err(MigrateError::IncompatibleTable {
                table: table.to_string(),
                missing: missing.join(", "),
            })
        }
    }

    async fn upsert(
        conn: &mut PgConnection,
        table: &TableName,
        record: &NewRecord<'_>,
        statements_done: u64,
        elapsed: Duration,
    ) -> Result<(), sqlx::Error> {
        let sql = format!(
            "INSERT INTO {table} (version, name, script, checksum, state, statements_done, execution_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (version) DO UPDATE SET name = EXCLUDED.name, script = EXCLUDED.script, \
             checksum = EXCLUDED.checksum, state = EXCLUDED.state, \
             statements_done = EXCLUDED.statements_done, execution_ms = EXCLUDED.execution_ms, \
             applied_at = now()"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(record.version)
            .bind(record.name)
            .bind(record.script)
            .bind(record.checksum)
            .bind(record.state.as_str())
            .bind(i64::try_from(statements_done).unwrap_or(i64::MAX))
            .bind(millis(elapsed))
            .execute(conn)
            .await
            .map(drop)
    }

    /// Runs `script` in one transaction together with its bookkeeping.
    async fn run_in_transaction(
        &mut self,
        table: &TableName,
        migration: &Migration,
        script: &Script,
        revert: bool,
    ) -> Result<Duration, MigrateError> {
        let start = Instant::now();
        let mut tx = self
            .conn
            .begin()
            .await
            .map_err(db_error("cannot begin a transaction"))?;
        if let Err(e) = sqlx::raw_sql(AssertSqlSafe(script.sql.as_str()))
            .execute(&mut *tx)
            .await
        {
            let statement = locate_error(&script.sql, &e);
            // Roll back now so the connection is clean for the unlock that follows.
            let rolled_back = tx.rollback().await;
            return Err(match rolled_back {
                Ok(()) => MigrateError::MigrationFailed {
                    version: migration.version,
                    script: script.file_name.clone(),
                    statement,
                    left_dirty: false,
                    source: e.into(),
                },
                Err(rollback) => MigrateError::database(
                    format!(
                        "migration {} failed ({e}) and its rollback too",
                        script.file_name
                    ),
                    rollback,
                ),
            });
        }
        let elapsed = start.elapsed();
        let context = format!("cannot record migration {} in {table}", script.file_name);
        if revert {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE version = $1"
            )))
            .bind(migration.version)
            .execute(&mut *tx)
            .await
            .map_err(db_error(&context))?;
        } else {
            let statements = split_statements(&script.sql, Dialect::Postgres).len();
            Self::upsert(
                &mut tx,
                table,
                &applied_record(migration, script, RecordState::Applied),
                u64::try_from(statements).unwrap_or(u64::MAX),
                elapsed,
            )
            .await
            .map_err(db_error(&context))?;
        }
        tx.commit().await.map_err(db_error(context))?;
        Ok(elapsed)
    }

    /// Runs a `-- no-transaction` script statement by statement: the row is dirty from before
    /// the first statement until after the last, and counts the statements done.
    async fn run_statements(
        &mut self,
        table: &TableName,
        migration: &Migration,
        script: &Script,
        revert: bool,
    ) -> Result<Duration, MigrateError> {
        let start = Instant::now();
        let context = format!("cannot record progress of {} in {table}", script.file_name);
        let dirty = applied_record(migration, script, RecordState::Dirty);
        Self::upsert(&mut self.conn, table, &dirty, 0, Duration::ZERO)
            .await
            .map_err(db_error(&context))?;
        let statements = split_statements(&script.sql, Dialect::Postgres);
        let total = statements.len();
        let progress = format!("UPDATE {table} SET statements_done = $2 WHERE version = $1");
        for (i, statement) in statements.iter().enumerate() {
            if let Err(e) = sqlx::raw_sql(AssertSqlSafe(statement.sql.as_str()))
                .execute(&mut self.conn)
                .await
            {
                return Err(MigrateError::MigrationFailed {
                    version: migration.version,
                    script: script.file_name.clone(),
                    statement: Some(FailedStatement {
                        index: i + 1,
                        total,
                        line: statement.line,
                        sql: statement.sql.clone(),
                    }),
                    left_dirty: true,
                    source: e.into(),
                });
            }
            sqlx::query(AssertSqlSafe(progress.as_str()))
                .bind(migration.version)
                .bind(i64::try_from(i + 1).unwrap_or(i64::MAX))
                .execute(&mut self.conn)
                .await
                .map_err(db_error(&context))?;
        }
        let elapsed = start.elapsed();
        if revert {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE version = $1"
            )))
            .bind(migration.version)
            .execute(&mut self.conn)
            .await
            .map_err(db_error(context))?;
        } else {
            let done = applied_record(migration, script, RecordState::Applied);
            Self::upsert(&mut self.conn, table, &done, total as u64, elapsed)
                .await
                .map_err(db_error(context))?;
        }
        Ok(elapsed)
    }
}

fn applied_record<'a>(
    migration: &'a Migration,
    script: &'a Script,
    state: RecordState,
) -> NewRecord<'a> {
    NewRecord {
        version: migration.version,
        name: &migration.name,
        script: &script.file_name,
        checksum: &migration.checksum,
        state,
    }
}

/// `version, name, script, checksum, state, statements_done, applied_at (ms), execution_ms`.
type TrackingRow = (i64, String, String, Vec<u8>, String, i64, i64, i64);

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Finds the statement a PostgreSQL error points at (its `position`, in characters).
fn locate_error(sql: &str, error: &sqlx::Error) -> Option<FailedStatement> {
    let pg = error
        .as_database_error()?
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()?;
    let sqlx::postgres::PgErrorPosition::Original(position) = pg.position()? else {
        return None;
    };
    let offset = sql
        .char_indices()
        .nth(position.saturating_sub(1))
        .map_or(sql.len(), |(i, _)| i);
    let line = 1 + sql[..offset].bytes().filter(|&b| b == b'\n').count();
    let statements = split_statements(sql, Dialect::Postgres);
    let total = statements.len();
    let (index, statement) = statements
        .into_iter()
        .enumerate()
        .rev()
        .find(|(_, s)| s.line <= line)?;
    Some(FailedStatement {
        index: index + 1,
        total,
        line: statement.line,
        sql: statement.sql,
    })
}

impl Backend for PgBackend {
    async fn lock(&mut self, table: &TableName, timeout: Duration) -> Result<(), MigrateError> {
        let key = advisory_lock_key(table);
        let started = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(&mut self.conn)
                .await
                .map_err(db_error(format!(
                    "cannot take the migration lock for {table}"
                )))?;
            if taken {
                self.lock_key = Some(key);
                return Ok(());
            }
            let waited = started.elapsed();
            if waited >= timeout {
                return Err(MigrateError::LockTimeout {
                    table: table.to_string(),
                    key,
                    waited,
                });
            }
            tokio::time::sleep(pause.min(timeout.saturating_sub(waited))).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    async fn unlock(&mut self, table: &TableName) -> Result<(), MigrateError> {
        let Some(key) = self.lock_key.take() else {
            return Ok(());
        };
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(key)
            .execute(&mut self.conn)
            .await
            .map_err(db_error(format!(
                "cannot release the migration lock for {table}"
            )))?;
        Ok(())
    }

    async fn ensure_table(&mut self, table: &TableName) -> Result<(), MigrateError> {
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {table} (\
                version BIGINT PRIMARY KEY, \
                name TEXT NOT NULL, \
                script TEXT NOT NULL, \
                checksum BYTEA NOT NULL, \
                state TEXT NOT NULL CHECK (state IN ('applied', 'dirty', 'baseline')), \
                statements_done BIGINT NOT NULL DEFAULT 0, \
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), \
                execution_ms BIGINT NOT NULL DEFAULT 0)"
        );
        if self.check_table(table).await? {
            return Ok(());
        }
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut self.conn)
            .await
            .map_err(db_error(format!("cannot create table {table}")))?;
        Ok(())
    }

    async fn applied(&mut self, table: &TableName) -> Result<Vec<AppliedMigration>, MigrateError> {
        if !self.check_table(table).await? {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT version, name, script, checksum, state, statements_done, \
             (extract(epoch FROM applied_at) * 1000)::bigint, execution_ms \
             FROM {table} ORDER BY version"
        );
        let rows: Vec<TrackingRow> = sqlx::query_as(AssertSqlSafe(sql))
            .fetch_all(&mut self.conn)
            .await
            .map_err(db_error(format!("cannot read {table}")))?;
        rows.into_iter()
            .map(
                |(version, name, script, checksum, state, done, at_ms, exec_ms)| {
                    let state = RecordState::parse(&state).ok_or_else(|| {
                        MigrateError::database(
                            format!("cannot read {table}"),
                            format!("version {version} has unknown state {state:?}"),
                        )
                    })?;
                    Ok(AppliedMigration {
                        version,
                        name,
                        script,
                        checksum,
                        state,
                        statements_done: u64::try_from(done).unwrap_or(0),
                        applied_at: SystemTime::UNIX_EPOCH
                            + Duration::from_millis(u64::try_from(at_ms).unwrap_or(0)),
                        execution_time: Duration::from_millis(u64::try_from(exec_ms).unwrap_or(0)),
                    })
                },
            )
            .collect()
    }

    async fn apply(
        &mut self,
        table: &TableName,
        migration: &Migration,
    ) -> Result<Duration, MigrateError> {
        if migration.up.no_transaction {
            self.run_statements(table, migration, &migration.up, false)
                .await
        } else {
            self.run_in_transaction(table, migration, &migration.up, false)
                .await
        }
    }

    async fn revert(
        &mut self,
        table: &TableName,
        migration: &Migration,
        down: &Script,
    ) -> Result<Duration, MigrateError> {
        if down.no_transaction {
            self.run_statements(table, migration, down, true).await
        } else {
            self.run_in_transaction(table, migration, down, true).await
        }
    }

    async fn record(
        &mut self,
        table: &TableName,
        record: &NewRecord<'_>,
    ) -> Result<(), MigrateError> {
        Self::upsert(&mut self.conn, table, record, 0, Duration::ZERO)
            .await
            .map_err(db_error(format!(
                "cannot write version {} to {table}",
                record.version
            )))
    }

    async fn remove(&mut self, table: &TableName, version: i64) -> Result<(), MigrateError> {
        sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE version = $1"
        )))
        .bind(version)
        .execute(&mut self.conn)
        .await
        .map_err(db_error(format!(
            "cannot remove version {version} from {table}"
        )))?;
        Ok(())
    }
}
