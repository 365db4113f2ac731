//! One pool type for every topology: [`RedisPool`] hands out [`RedisConnection`]s that run any
//! command, whichever deployment is behind them.

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use deadpool_redis::redis::aio::{ConnectionLike, MultiplexedConnection};
use deadpool_redis::redis::cluster::{ClusterClient, ClusterClientBuilder};
use deadpool_redis::redis::cluster_async::ClusterConnection;
use deadpool_redis::redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use deadpool_redis::redis::{
    self, AsyncConnectionConfig, Cmd, ConnectionAddr, Pipeline, RedisError, RedisFuture,
    TlsCertificates, TlsMode, Value,
};
use deadpool_redis::{PoolError, Runtime, Status};
use tokio::sync::Mutex;

use super::RedisOptions;
use crate::RedisTopology;

/// A pool of Redis connections to one server, a Redis Cluster or the master Sentinel names.
///
/// Services hold this one type whatever the topology; [`RedisPool::get`] gives a
/// [`RedisConnection`], which runs commands like any `redis` connection
/// (`redis::cmd("GET").arg(key).query_async(&mut connection)`). A pool built elsewhere from
/// deadpool-redis converts with `RedisPool::from(pool)`.
#[derive(Clone)]
pub struct RedisPool {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Single(deadpool_redis::Pool),
    Cluster(managed::Pool<ClusterManager>),
    Sentinel(managed::Pool<SentinelManager>),
}

impl std::fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPool")
            .field("topology", &self.topology())
            .field("status", &self.status())
            .finish()
    }
}

impl From<deadpool_redis::Pool> for RedisPool {
    fn from(pool: deadpool_redis::Pool) -> Self {
        Self {
            inner: Inner::Single(pool),
        }
    }
}

impl RedisPool {
    /// A connection from the pool, made when none is idle; it goes back to the pool on drop.
    pub async fn get(&self) -> Result<RedisConnection, PoolError> {
        Ok(RedisConnection {
            inner: match &self.inner {
                Inner::Single(pool) => Connection::Single(pool.get().await?),
                Inner::Cluster(pool) => Connection::Cluster(pool.get().await?),
                Inner::Sentinel(pool) => Connection::Sentinel(pool.get().await?),
            },
        })
    }

    /// The pool's size, idle connections and waiting callers.
    pub fn status(&self) -> Status {
        match &self.inner {
            Inner::Single(pool) => pool.status(),
            Inner::Cluster(pool) => pool.status(),
            Inner::Sentinel(pool) => pool.status(),
        }
    }

    /// The deployment the pool connects to.
    pub fn topology(&self) -> RedisTopology {
        match &self.inner {
            Inner::Single(_) => RedisTopology::Single,
            Inner::Cluster(_) => RedisTopology::Cluster,
            Inner::Sentinel(_) => RedisTopology::Sentinel,
        }
    }
}

/// A connection of a [`RedisPool`]; runs commands through [`ConnectionLike`] and returns to the
/// pool on drop.
pub struct RedisConnection {
    inner: Connection,
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let topology = match &self.inner {
            Connection::Single(_) => RedisTopology::Single,
            Connection::Cluster(_) => RedisTopology::Cluster,
            Connection::Sentinel(_) => RedisTopology::Sentinel,
        };
        f.debug_struct("RedisConnection")
            .field("topology", &topology)
            .finish_non_exhaustive()
    }
}

enum Connection {
    Single(deadpool_redis::Connection),
    Cluster(managed::Object<ClusterManager>),
    Sentinel(managed::Object<SentinelManager>),
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.inner {
            Connection::Single(connection) => connection.req_packed_command(cmd),
            Connection::Cluster(connection) => connection.req_packed_command(cmd),
            Connection::Sentinel(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.inner {
            Connection::Single(connection) => connection.req_packed_commands(cmd, offset, count),
            Connection::Cluster(connection) => connection.req_packed_commands(cmd, offset, count),
            Connection::Sentinel(connection) => connection.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.inner {
            Connection::Single(connection) => connection.get_db(),
            Connection::Cluster(connection) => connection.get_db(),
            Connection::Sentinel(connection) => connection.get_db(),
        }
    }
}

fn build<M: managed::Manager>(
    manager: M,
    options: &RedisOptions,
) -> Result<managed::Pool<M>, String> {
    managed::Pool::builder(manager)
        .max_size(options.max_size)
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(options.connect_timeout))
        .wait_timeout(Some(options.connect_timeout))
        .recycle_timeout(Some(options.connect_timeout))
        .build()
        .map_err(|error| error.to_string())
}

/// Cluster connections: each one knows the slot map and reaches every master.
struct ClusterManager {
    client: ClusterClient,
}

pub(super) fn cluster(
    nodes: &[String],
    certificates: Option<TlsCertificates>,
    options: &RedisOptions,
) -> Result<RedisPool, String> {
    let mut builder = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
        .connection_timeout(options.connect_timeout);
    if let Some(certificates) = certificates {
        builder = builder.certs(certificates);
    }
    let client = builder.build().map_err(|error| error.to_string())?;
    Ok(RedisPool {
        inner: Inner::Cluster(build(ClusterManager { client }, options)?),
    })
}

impl managed::Manager for ClusterManager {
    type Type = ClusterConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<ClusterConnection, RedisError> {
        self.client.get_async_connection().await
    }

    async fn recycle(
        &self,
        connection: &mut ClusterConnection,
        _: &Metrics,
    ) -> RecycleResult<RedisError> {
        ping(connection).await
    }
}

/// What a sentinel pool is built from.
pub(super) struct SentinelSpec<'a> {
    /// The first sentinel's URL: its scheme, user, password and database are the master's.
    pub(super) url: &'a url::Url,
    pub(super) secure: bool,
    pub(super) sentinels: Vec<(String, u16)>,
    pub(super) master: &'a str,
    pub(super) sentinel_password: Option<String>,
    pub(super) certificates: Option<TlsCertificates>,
    pub(super) options: &'a RedisOptions,
}

/// Master connections found through the sentinels; asked again for every new connection.
struct SentinelManager {
    client: Mutex<SentinelClient>,
    config: AsyncConnectionConfig,
}

pub(super) fn sentinel(spec: &SentinelSpec<'_>) -> Result<RedisPool, String> {
    let addresses = spec.sentinels.iter().map(|(host, port)| {
        if spec.secure {
            ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(host.clone(), *port)
        }
    });
    let mut builder =
        SentinelClientBuilder::new(addresses, spec.master, SentinelServerType::Master)
            .map_err(|error| error.to_string())?;
    if spec.secure {
        builder = builder
            .set_client_to_redis_tls_mode(TlsMode::Secure)
            .set_client_to_sentinel_tls_mode(TlsMode::Secure);
    }
    if let Some(certificates) = &spec.certificates {
        builder = builder
            .set_client_to_redis_certificates(certificates.clone())
            .set_client_to_sentinel_certificates(certificates.clone());
    }
    let username = percent_decode(spec.url.username());
    if !username.is_empty() {
        builder = builder.set_client_to_redis_username(username);
    }
    if let Some(password) = spec.url.password() {
        builder = builder.set_client_to_redis_password(percent_decode(password));
    }
    if let Some(db) = database(spec.url)? {
        builder = builder.set_client_to_redis_db(db);
    }
    if let Some(password) = &spec.sentinel_password {
        builder = builder.set_client_to_sentinel_password(password);
    }
    let client = builder.build().map_err(|error| error.to_string())?;
    let manager = SentinelManager {
        client: Mutex::new(client),
        config: AsyncConnectionConfig::new()
            .set_connection_timeout(Some(spec.options.connect_timeout)),
    };
    Ok(RedisPool {
        inner: Inner::Sentinel(build(manager, spec.options)?),
    })
}

/// The database in the URL's path (`/2`), if any.
fn database(url: &url::Url) -> Result<Option<i64>, String> {
    match url.path().trim_start_matches('/') {
        "" => Ok(None),
        db => db
            .parse()
            .map(Some)
            .map_err(|_| format!("the database `{db}` in the URL's path is not a number")),
    }
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

impl managed::Manager for SentinelManager {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, RedisError> {
        self.client
            .lock()
            .await
            .get_async_connection_with_config(&self.config)
            .await
    }

    async fn recycle(
        &self,
        connection: &mut MultiplexedConnection,
        _: &Metrics,
    ) -> RecycleResult<RedisError> {
        // `ROLE` rather than `PING`: a master that a failover demoted still answers, but as a
        // replica, and would refuse every write.
        let role: Vec<Value> = redis::cmd("ROLE").query_async(connection).await?;
        match role.first() {
            Some(Value::BulkString(role)) if role.as_slice() == b"master" => Ok(()),
            _ => Err(RecycleError::message(
                "the server is no longer the master; asking the sentinels again",
            )),
        }
    }
}

async fn ping<C: ConnectionLike + Send>(connection: &mut C) -> RecycleResult<RedisError> {
    let reply: String = redis::cmd("PING").query_async(connection).await?;
    if reply == "PONG" {
        Ok(())
    } else {
        Err(RecycleError::message(format!("`PING` answered {reply:?}")))
    }
}
