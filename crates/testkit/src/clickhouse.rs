//! A fresh ClickHouse database per test.

use std::fmt;

use clickhouse::Client;

use crate::TestkitError;
use crate::cleanup::{self, CONNECT_TIMEOUT};
use crate::infra_env::{InfraEnv, Service, UrlParts};

/// An empty ClickHouse database (`gw_test_<random>`) of its own for one test, dropped on drop.
pub struct TestClickHouse {
    url: String,
    database: String,
    client: Client,
    cleaned: bool,
}

impl TestClickHouse {
    /// Creates a database on the server found by [`InfraEnv::discover`] (`CLICKHOUSE_URL`).
    pub async fn create() -> Result<Self, TestkitError> {
        let env = InfraEnv::discover()?;
        Self::create_on(&env.url(Service::ClickHouse)).await
    }

    /// Creates a database on the server at `url` (`http://[user[:password]@]host:port`).
    pub async fn create_on(url: &str) -> Result<Self, TestkitError> {
        let admin = admin_client(url)?;
        ping(&admin, url).await?;

        let database = format!("gw_test_{}", cleanup::unique_token());
        admin
            .query(&format!("CREATE DATABASE `{database}`"))
            .execute()
            .await
            .map_err(|err| {
                TestkitError::server(
                    Service::ClickHouse,
                    url,
                    format!("creating database {database}"),
                    err,
                )
            })?;
        Ok(Self {
            url: url.to_owned(),
            client: admin.with_database(&database),
            database,
            cleaned: false,
        })
    }

    /// A client whose queries run in this test's database.
    ///
    /// Schema validation is off: it relies on `RowBinaryWithNamesAndTypes`, which older servers
    /// (such as Debian's ClickHouse 18.16) lack, and tests check their results anyway.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The database name, `gw_test_<random>`.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The server URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the database now and reports failure, instead of on drop where errors can only be
    /// printed.
    pub async fn cleanup(mut self) -> Result<(), TestkitError> {
        self.cleaned = true;
        drop_database(&self.url, &self.database).await
    }
}

impl Drop for TestClickHouse {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let url = self.url.clone();
        let database = self.database.clone();
        cleanup::run_in_drop(
            &format!("clickhouse database {database}"),
            move || async move { drop_database(&url, &database).await },
        );
    }
}

impl fmt::Debug for TestClickHouse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestClickHouse")
            .field("url", &groundwork_config::redact_url(&self.url))
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

/// A client for `url` with no database selected. Credentials in the URL become the client's
/// user and password, because the HTTP client does not read userinfo.
fn admin_client(url: &str) -> Result<Client, TestkitError> {
    let Some(parts) = UrlParts::parse(url) else {
        return Err(TestkitError::invalid_url(
            Service::ClickHouse,
            url,
            "expected http://[user[:password]@]host:port",
        ));
    };
    let mut client = Client::default()
        .with_url(parts.without_userinfo())
        .with_validation(false);
    let (user, password) = parts.credentials();
    if let Some(user) = user.filter(|user| !user.is_empty()) {
        client = client.with_user(user);
    }
    if let Some(password) = password {
        client = client.with_password(password);
    }
    Ok(client)
}

async fn ping(client: &Client, url: &str) -> Result<(), TestkitError> {
    cleanup::within(
        CONNECT_TIMEOUT,
        async {
            client
                .query("SELECT 1")
                .fetch_one::<u8>()
                .await
                .map(drop)
                .map_err(|err| TestkitError::unreachable(Service::ClickHouse, url, err))
        },
        || {
            TestkitError::unreachable(
                Service::ClickHouse,
                url,
                format!("no answer within {CONNECT_TIMEOUT:?}"),
            )
        },
    )
    .await
}

async fn drop_database(url: &str, database: &str) -> Result<(), TestkitError> {
    // A fresh client: the test's one may hold pooled connections of a runtime that is blocked.
    admin_client(url)?
        .query(&format!("DROP DATABASE IF EXISTS `{database}`"))
        .execute()
        .await
        .map_err(|err| {
            TestkitError::server(
                Service::ClickHouse,
                url,
                format!("dropping database {database}"),
                err,
            )
        })
}
