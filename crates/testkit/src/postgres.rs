//! A fresh PostgreSQL database per test.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection as _};

use crate::TestkitError;
use crate::cleanup::{self, CONNECT_TIMEOUT};
use crate::infra_env::{InfraEnv, Service, UrlParts};

/// Connections per test pool: enough for concurrent queries in one test, few enough that many
/// parallel tests stay far below the server's `max_connections`.
const POOL_SIZE: u32 = 5;

/// Set once this process has looked for databases left behind by dead test processes.
static LEFTOVERS_REAPED: AtomicBool = AtomicBool::new(false);

/// An empty database of its own for one test, dropped (with every connection to it) on drop.
///
/// The name is `gw_test_<pid>_<random>`, so tests run in parallel without sharing tables and a
/// database left behind by a killed process can be recognised and removed.
pub struct TestDatabase {
    name: String,
    url: String,
    pool: PgPool,
    /// The URL of the server's maintenance database; `None` once cleaned up.
    server_url: Option<String>,
}

impl TestDatabase {
    /// Creates a database on the server found by [`InfraEnv::discover`] (`DATABASE_URL`).
    pub async fn create() -> Result<Self, TestkitError> {
        let env = InfraEnv::discover()?;
        Self::create_on(&env.url(Service::Postgres)).await
    }

    /// Creates a database on the server at `server_url`, whose database is only used to run
    /// `CREATE DATABASE` and `DROP DATABASE`.
    pub async fn create_on(server_url: &str) -> Result<Self, TestkitError> {
        let Some(parts) = UrlParts::parse(server_url) else {
            return Err(TestkitError::invalid_url(
                Service::Postgres,
                server_url,
                "expected postgres://[user[:password]@]host[:port]/database",
            ));
        };
        let mut admin = connect_admin(server_url).await?;
        reap_leftovers_once(&mut admin).await;

        let name = format!("gw_test_{}_{}", std::process::id(), cleanup::unique_token());
        sqlx::raw_sql(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
            .execute(&mut admin)
            .await
            .map_err(|err| {
                TestkitError::server(
                    Service::Postgres,
                    server_url,
                    format!("creating database {name}"),
                    err,
                )
            })?;
        // Closing politely is best effort; the database exists either way.
        let _ = admin.close().await;

        let url = parts.with_path(&format!("/{name}"));
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect(&url)
            .await;
        let pool = match pool {
            Ok(pool) => pool,
            Err(err) => {
                // Do not leave the database behind just because the pool could not connect.
                let _ = drop_database(server_url, &name).await;
                return Err(TestkitError::server(
                    Service::Postgres,
                    &url,
                    "connecting to the new database",
                    err,
                ));
            }
        };
        Ok(Self {
            name,
            url,
            pool,
            server_url: Some(server_url.to_owned()),
        })
    }

    /// The database name, `gw_test_<pid>_<random>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A connection URL for this database, with the server URL's credentials.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A small pool connected to this database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Terminates the connections to this database that are listening (their last statement a
    /// `LISTEN`), as a failover or an operator would; how many it terminated.
    pub async fn terminate_listeners(&self) -> Result<i64, TestkitError> {
        sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND query ILIKE 'LISTEN%') AS t",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            TestkitError::server(
                Service::Postgres,
                &self.url,
                "terminating the listening connections",
                e,
            )
        })
    }

    /// A connection URL for this database through PgBouncer in transaction pooling mode
    /// (`PGBOUNCER_URL`, found like every server URL; `cargo xtask infra up` starts one in front
    /// of the test PostgreSQL), with the PgBouncer URL's credentials. The database must be the
    /// one behind that PgBouncer; an unusable URL is an error.
    ///
    /// Through transaction pooling every transaction may run on another server connection:
    /// `LISTEN` never delivers, and statements prepared outside a transaction may be missing
    /// on the next one (connect with `statement_cache_capacity(0)` and query inside
    /// transactions, or use unprepared statements).
    pub fn pgbouncer_url(&self) -> Result<String, TestkitError> {
        let env = InfraEnv::discover()?;
        let url = env.url(Service::PgBouncer);
        let Some(parts) = UrlParts::parse(&url) else {
            return Err(TestkitError::invalid_url(
                Service::PgBouncer,
                &url,
                "expected postgres://[user[:password]@]host[:port]/database",
            ));
        };
        Ok(parts.with_path(&format!("/{}", self.name)))
    }

    /// Drops the database now and reports failure, instead of on drop where errors can only be
    /// printed.
    pub async fn cleanup(mut self) -> Result<(), TestkitError> {
        self.pool.close().await;
        match self.server_url.take() {
            Some(server_url) => drop_database(&server_url, &self.name).await,
            None => Ok(()),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(server_url) = self.server_url.take() else {
            return;
        };
        let name = self.name.clone();
        cleanup::run_in_drop(
            &format!("postgresql database {}", self.name),
            move || async move { drop_database(&server_url, &name).await },
        );
    }
}

impl fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestDatabase")
            .field("name", &self.name)
            .field("url", &groundwork_config::redact_url(&self.url))
            .finish_non_exhaustive()
    }
}

async fn connect_admin(server_url: &str) -> Result<PgConnection, TestkitError> {
    cleanup::within(
        CONNECT_TIMEOUT,
        async {
            PgConnection::connect(server_url)
                .await
                .map_err(|err| TestkitError::unreachable(Service::Postgres, server_url, err))
        },
        || {
            TestkitError::unreachable(
                Service::Postgres,
                server_url,
                format!("no answer within {CONNECT_TIMEOUT:?}"),
            )
        },
    )
    .await
}

/// Drops `name`, first disconnecting whoever still uses it (`WITH (FORCE)`, PostgreSQL 13+).
async fn drop_database(server_url: &str, name: &str) -> Result<(), TestkitError> {
    let mut admin = connect_admin(server_url).await?;
    let result = sqlx::raw_sql(AssertSqlSafe(format!(
        r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
    )))
    .execute(&mut admin)
    .await;
    let _ = admin.close().await;
    result.map(drop).map_err(|err| {
        TestkitError::server(
            Service::Postgres,
            server_url,
            format!("dropping database {name}"),
            err,
        )
    })
}

/// Drops `gw_test_<pid>_*` databases whose process no longer runs on this machine, once per
/// process. Best effort: errors are ignored, and the plain `DROP DATABASE` (without `FORCE`)
/// refuses databases someone is connected to, so a database of a live test on another machine
/// sharing the server (where our pid check means nothing) survives.
async fn reap_leftovers_once(admin: &mut PgConnection) {
    if LEFTOVERS_REAPED.swap(true, Ordering::SeqCst) || !Path::new("/proc/self").exists() {
        return;
    }
    let names: Vec<String> = match sqlx::query_scalar(
        r"SELECT datname FROM pg_database WHERE datname LIKE 'gw\_test\_%'",
    )
    .fetch_all(&mut *admin)
    .await
    {
        Ok(names) => names,
        Err(_) => return,
    };
    let own_pid = std::process::id();
    for name in names {
        let Some(pid) = leftover_pid(&name) else {
            continue;
        };
        if pid == own_pid || Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        let drop_one = sqlx::raw_sql(AssertSqlSafe(format!(
            r#"DROP DATABASE IF EXISTS "{name}""#
        )))
        .execute(&mut *admin);
        let _ = tokio::time::timeout(Duration::from_secs(10), drop_one).await;
    }
}

/// The pid in a `gw_test_<pid>_<random>` name.
fn leftover_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("gw_test_")?;
    let (pid, _random) = rest.split_once('_')?;
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::leftover_pid;

    #[test]
    fn pid_is_read_from_test_database_names_only() {
        assert_eq!(leftover_pid("gw_test_4242_abc123"), Some(4242));
        assert_eq!(leftover_pid("gw_test_abc"), None);
        assert_eq!(leftover_pid("gw_test_x_abc"), None);
        assert_eq!(leftover_pid("app"), None);
    }
}
