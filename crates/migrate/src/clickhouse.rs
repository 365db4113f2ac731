//! The ClickHouse backend. ClickHouse has no transactions and no advisory locks: every script
//! runs statement by statement, the row is dirty from before the first statement until after
//! the last and records each statement done, and the lock methods do nothing — run ClickHouse
//! migrations from one place at a time (the CLI, or a single deploy job), never from every
//! replica.
//!
//! The tracking table is an append-only `MergeTree` log (no mutations, which are asynchronous
//! in ClickHouse): the newest row of a version, by `seq`, is its state, and a revert appends a
//! `removed` row. It works on ClickHouse 18.16 as well as current servers.

use std::time::{Duration, Instant, SystemTime};

use ::clickhouse::Client;

use crate::backend::{AppliedMigration, Backend, NewRecord, RecordState, TableName};
use crate::error::{FailedStatement, MigrateError};
use crate::source::{Migration, Script};
use crate::split::{Dialect, split_statements};
use groundwork_config::redact_url;

const REMOVED: &str = "removed";

/// A ClickHouse database, reached over HTTP.
#[derive(Clone)]
pub struct ClickHouseBackend {
    client: Client,
    next_seq: u64,
}

impl std::fmt::Debug for ClickHouseBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseBackend")
            .field("database", &self.client.database())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, ::clickhouse::Row, serde::Deserialize)]
struct LogRow {
    version: i64,
    name: String,
    script: String,
    checksum: String,
    state: String,
    statements_done: u64,
    applied_at: i64,
    execution_ms: u64,
    seq: u64,
}

fn db_error(context: impl Into<String>) -> impl FnOnce(::clickhouse::error::Error) -> MigrateError {
    let context = context.into();
    move |e| MigrateError::database(context, e)
}

impl ClickHouseBackend {
    /// Uses `client` as configured (URL, database, credentials). Turn schema validation off
    /// (`with_validation(false)`) for servers older than 24.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            next_seq: 1,
        }
    }

    /// A client for `http[s]://[user[:password]@]host:port[/database][?database=name]`;
    /// `clickhouse://` is read as `http://`. Schema validation is off, so old servers work.
    /// `https://` is verified against the system's roots; [`ClickHouseBackend::from_url_with_tls`]
    /// takes a CA and client certificate.
    pub fn from_url(url: &str) -> Result<Self, MigrateError> {
        Self::from_url_with_tls(url, &groundwork_connect::TlsSettings::default())
    }

    /// [`ClickHouseBackend::from_url`] with TLS settings for an `https://` URL. The user, the
    /// password and the database may also be given as `user`, `password` and `database` query
    /// parameters; percent-encoded user information is decoded.
    pub fn from_url_with_tls(
        url: &str,
        tls: &groundwork_connect::TlsSettings,
    ) -> Result<Self, MigrateError> {
        let invalid = |reason: &str| MigrateError::InvalidUrl {
            url: redact_url(url).into_owned(),
            reason: reason.to_owned(),
        };
        let normalized = match url.strip_prefix("clickhouse://") {
            Some(rest) => format!("http://{rest}"),
            None => url.to_owned(),
        };
        let client =
            groundwork_connect::clickhouse_client(&normalized, tls).map_err(
                |error| match error {
                    groundwork_connect::ConnectError::Url { reason, .. } => invalid(&reason),
                    other => invalid(&other.to_string()),
                },
            )?;
        Ok(Self::new(client.with_validation(false)))
    }

    /// The client in use.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn database_expr(table: &TableName) -> String {
        table
            .qualifier()
            .map_or_else(|| "currentDatabase()".to_owned(), |db| format!("'{db}'"))
    }

    /// Column names of `table`; empty when it does not exist.
    async fn columns(&self, table: &TableName) -> Result<Vec<String>, MigrateError> {
        let sql = format!(
            "SELECT name FROM system.columns WHERE database = {} AND table = ?",
            Self::database_expr(table)
        );
        self.client
            .query(&sql)
            .bind(table.table())
            .fetch_all::<String>()
            .await
            .map_err(db_error(format!("cannot inspect table {table}")))
    }

    async fn check_table(&self, table: &TableName) -> Result<bool, MigrateError> {
        let columns = self.columns(table).await?;
        if columns.is_empty() {
            return Ok(false);
        }
        let missing: Vec<&str> = [
            "version",
            "name",
            "script",
            "checksum",
            "state",
            "statements_done",
            "applied_at",
            "execution_ms",
            "seq",
        ]
        .into_iter()
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

    async fn append(
        &mut self,
        table: &TableName,
        record: &NewRecord<'_>,
        state: &str,
        statements_done: u64,
        elapsed: Duration,
    ) -> Result<(), MigrateError> {
        let seq = self.next_seq;
        let sql = format!(
            "INSERT INTO {table} (version, name, script, checksum, state, statements_done, execution_ms, seq) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        );
        self.client
            .query(&sql)
            .bind(record.version)
            .bind(record.name)
            .bind(record.script)
            .bind(hex(record.checksum))
            .bind(state)
            .bind(statements_done)
            .bind(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
            .bind(seq)
            .execute()
            .await
            .map_err(db_error(format!(
                "cannot record version {} ({}) in {table}",
                record.version, record.script
            )))?;
        self.next_seq = seq + 1;
        Ok(())
    }

    async fn run(
        &mut self,
        table: &TableName,
        migration: &Migration,
        script: &Script,
        revert: bool,
    ) -> Result<Duration, MigrateError> {
        let start = Instant::now();
        let record = NewRecord {
            version: migration.version,
            name: &migration.name,
            script: &script.file_name,
            checksum: &migration.checksum,
            state: RecordState::Dirty,
        };
        self.append(
            table,
            &record,
            RecordState::Dirty.as_str(),
            0,
            Duration::ZERO,
        )
        .await?;
        let statements = split_statements(&script.sql, Dialect::ClickHouse);
        let total = statements.len();
        for (i, statement) in statements.iter().enumerate() {
            if let Err(e) = self.client.query_raw(&statement.sql).execute().await {
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
            if i + 1 < total {
                self.append(
                    table,
                    &record,
                    RecordState::Dirty.as_str(),
                    (i + 1) as u64,
                    Duration::ZERO,
                )
                .await?;
            }
        }
        let elapsed = start.elapsed();
        let state = if revert {
            REMOVED
        } else {
            RecordState::Applied.as_str()
        };
        self.append(table, &record, state, total as u64, elapsed)
            .await?;
        Ok(elapsed)
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect()
}

impl Backend for ClickHouseBackend {
    /// ClickHouse has no advisory locks: this does nothing (see the module docs).
    async fn lock(&mut self, _table: &TableName, _timeout: Duration) -> Result<(), MigrateError> {
        Ok(())
    }

    async fn unlock(&mut self, _table: &TableName) -> Result<(), MigrateError> {
        Ok(())
    }

    async fn ensure_table(&mut self, table: &TableName) -> Result<(), MigrateError> {
        if !self.check_table(table).await? {
            self.create_table(table).await?;
        }
        // Appends continue after the newest row, whichever command wrote it.
        let newest: u64 = self
            .client
            .query_raw(&format!("SELECT max(seq) FROM {table}"))
            .fetch_one()
            .await
            .map_err(db_error(format!("cannot read {table}")))?;
        self.next_seq = self.next_seq.max(newest + 1);
        Ok(())
    }

    async fn applied(&mut self, table: &TableName) -> Result<Vec<AppliedMigration>, MigrateError> {
        self.read_applied(table).await
    }

    async fn apply(
        &mut self,
        table: &TableName,
        migration: &Migration,
    ) -> Result<Duration, MigrateError> {
        self.run(table, migration, &migration.up, false).await
    }

    async fn revert(
        &mut self,
        table: &TableName,
        migration: &Migration,
        down: &Script,
    ) -> Result<Duration, MigrateError> {
        self.run(table, migration, down, true).await
    }

    async fn record(
        &mut self,
        table: &TableName,
        record: &NewRecord<'_>,
    ) -> Result<(), MigrateError> {
        self.append(table, record, record.state.as_str(), 0, Duration::ZERO)
            .await
    }

    async fn remove(&mut self, table: &TableName, version: i64) -> Result<(), MigrateError> {
        let record = NewRecord {
            version,
            name: "",
            script: "",
            checksum: &[],
            state: RecordState::Applied,
        };
        self.append(table, &record, REMOVED, 0, Duration::ZERO)
            .await
    }
}

impl ClickHouseBackend {
    async fn create_table(&self, table: &TableName) -> Result<(), MigrateError> {
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {table} (\
                version Int64, \
                name String, \
                script String, \
                checksum String, \
                state String, \
                statements_done UInt64, \
                applied_at DateTime DEFAULT now(), \
                execution_ms UInt64, \
                seq UInt64\
             ) ENGINE = MergeTree() ORDER BY (version, seq)"
        );
        self.client
            .query_raw(&sql)
            .execute()
            .await
            .map_err(db_error(format!("cannot create table {table}")))
    }

    async fn read_applied(
        &mut self,
        table: &TableName,
    ) -> Result<Vec<AppliedMigration>, MigrateError> {
        if !self.check_table(table).await? {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT version, argMax(name, seq), argMax(script, seq), argMax(checksum, seq), \
             argMax(state, seq), argMax(statements_done, seq), toInt64(argMax(applied_at, seq)), \
             argMax(execution_ms, seq), max(seq) \
             FROM {table} GROUP BY version ORDER BY version"
        );
        let rows = self
            .client
            .query_raw(&sql)
            .fetch_all::<LogRow>()
            .await
            .map_err(db_error(format!("cannot read {table}")))?;
        self.next_seq = rows
            .iter()
            .map(|r| r.seq + 1)
            .max()
            .unwrap_or(1)
            .max(self.next_seq);
        rows.into_iter()
            .filter(|r| r.state != REMOVED)
            .map(|r| {
                let unreadable = |what: &str| {
                    MigrateError::database(
                        format!("cannot read {table}"),
                        format!("version {} has {what}", r.version),
                    )
                };
                let state = RecordState::parse(&r.state)
                    .ok_or_else(|| unreadable(&format!("unknown state {:?}", r.state)))?;
                let checksum =
                    unhex(&r.checksum).ok_or_else(|| unreadable("a checksum that is not hex"))?;
                Ok(AppliedMigration {
                    version: r.version,
                    name: r.name,
                    script: r.script,
                    checksum,
                    state,
                    statements_done: r.statements_done,
                    applied_at: SystemTime::UNIX_EPOCH
                        + Duration::from_secs(u64::try_from(r.applied_at).unwrap_or(0)),
                    execution_time: Duration::from_millis(r.execution_ms),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_round_trip_through_hex() {
        let bytes = vec![0, 1, 0xab, 0xff];
        assert_eq!(hex(&bytes), "0001abff");
        assert_eq!(unhex("0001abff"), Some(bytes));
        assert_eq!(unhex("0g"), None);
    }
}
