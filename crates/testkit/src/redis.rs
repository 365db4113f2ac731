//! A private key prefix per test on a shared Redis.

use std::fmt;

use deadpool_redis::redis;
use deadpool_redis::{Config, Pool, Runtime};

use crate::TestkitError;
use crate::cleanup::{self, CONNECT_TIMEOUT};
use crate::infra_env::{InfraEnv, Service};

/// Keys fetched per `SCAN` round trip during cleanup.
const SCAN_BATCH: usize = 500;

/// A unique key prefix (`gw:test:<random>:`) on a real Redis; every key under it is deleted on
/// drop.
///
/// Redis has no cheap per-test database (there are only 16 numbered ones), so isolation is by
/// convention: build every key with [`TestRedis::key`].
pub struct TestRedis {
    url: String,
    prefix: String,
    pool: Pool,
    cleaned: bool,
}

impl TestRedis {
    /// Connects to the server found by [`InfraEnv::discover`] (`REDIS_URL`).
    pub async fn create() -> Result<Self, TestkitError> {
        let env = InfraEnv::discover()?;
        Self::create_on(&env.url(Service::Redis)).await
    }

    /// Connects to the server at `url` and checks it answers `PING`.
    pub async fn create_on(url: &str) -> Result<Self, TestkitError> {
        let pool = connect(url).await?;
        Ok(Self {
            url: url.to_owned(),
            prefix: format!("gw:test:{}:", cleanup::unique_token()),
            pool,
            cleaned: false,
        })
    }

    /// The prefix all of this test's keys share, ending in `:`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `name` under this test's prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A pool of connections to the server.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The server URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Deletes this test's keys now and reports failure, instead of on drop where errors can
    /// only be printed.
    pub async fn cleanup(mut self) -> Result<(), TestkitError> {
        self.cleaned = true;
        delete_prefix(&self.pool, &self.url, &self.prefix).await
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let url = self.url.clone();
        let prefix = self.prefix.clone();
        cleanup::run_in_drop(&format!("redis keys {prefix}*"), move || async move {
            // The test's pool belongs to the test's runtime, which is blocked in this drop.
            let pool = connect(&url).await?;
            delete_prefix(&pool, &url, &prefix).await
        });
    }
}

impl fmt::Debug for TestRedis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestRedis")
            .field("url", &groundwork_config::redact_url(&self.url))
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

async fn connect(url: &str) -> Result<Pool, TestkitError> {
    let pool = Config::from_url(url)
        .create_pool(Some(Runtime::Tokio1))
        .map_err(|err| TestkitError::invalid_url(Service::Redis, url, err.to_string()))?;
    cleanup::within(
        CONNECT_TIMEOUT,
        async {
            let mut conn = pool
                .get()
                .await
                .map_err(|err| TestkitError::unreachable(Service::Redis, url, err))?;
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .map_err(|err| TestkitError::unreachable(Service::Redis, url, err))?;
            Ok(())
        },
        || {
            TestkitError::unreachable(
                Service::Redis,
                url,
                format!("no answer within {CONNECT_TIMEOUT:?}"),
            )
        },
    )
    .await?;
    Ok(pool)
}

/// Deletes every key starting with `prefix`, which contains no glob characters.
async fn delete_prefix(pool: &Pool, url: &str, prefix: &str) -> Result<(), TestkitError> {
    let failed = |err: redis::RedisError| {
        TestkitError::server(Service::Redis, url, format!("deleting keys {prefix}*"), err)
    };
    let mut conn = pool
        .get()
        .await
        .map_err(|err| TestkitError::unreachable(Service::Redis, url, err))?;
    let pattern = format!("{prefix}*");
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(SCAN_BATCH)
            .query_async(&mut conn)
            .await
            .map_err(failed)?;
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(&keys)
                .query_async::<u64>(&mut conn)
                .await
                .map_err(failed)?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}
