//! Redis pools over `redis://` or `rediss://`, to one server, a Redis Cluster or a master found
//! through Sentinel.

mod pool;

use std::time::Duration;

use deadpool_redis::redis::{self, ClientTlsConfig, TlsCertificates};
use deadpool_redis::{Manager, Pool, Runtime};
use groundwork_config::ExposeSecret as _;

pub use pool::{RedisConnection, RedisPool};

use crate::error::{ConnectError, Service, describe, host_of, parse, reason};
use crate::{RedisTopology, RedisTopologySettings, TlsSettings};

/// How a Redis pool connects.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisOptions {
    /// Connections kept at most. Default 16.
    pub max_size: usize,
    /// Time allowed for one connection (TCP, TLS handshake, `HELLO`/`AUTH`). Default 5 s.
    pub connect_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            max_size: 16,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// A checked Redis URL: parsed, its scheme known, its TLS settings consistent with it.
struct Target {
    url: url::Url,
    secure: bool,
    host: String,
    redacted: String,
}

impl Target {
    fn check(url: &str, tls: &TlsSettings) -> Result<Self, ConnectError> {
        let parsed = parse(Service::Redis, url)?;
        let target = Self {
            secure: parsed.scheme() == "rediss",
            host: host_of(&parsed),
            redacted: groundwork_config::redact_url(url).into_owned(),
            url: parsed,
        };
        if !matches!(target.url.scheme(), "redis" | "rediss") {
            return Err(target.url_error(format!(
                "the scheme `{}` is not `redis` or `rediss`",
                target.url.scheme()
            )));
        }
        if tls.is_configured() && !target.secure {
            return Err(target.url_error(
                "TLS settings are given but the URL is plain-text `redis://`; use `rediss://`"
                    .into(),
            ));
        }
        if target.secure && tls.is_configured() {
            tls.validate().map_err(|source| ConnectError::Tls {
                service: Service::Redis,
                source,
            })?;
        }
        Ok(target)
    }

    fn url_error(&self, reason: String) -> ConnectError {
        ConnectError::Url {
            service: Service::Redis,
            url: self.redacted.clone(),
            reason,
        }
    }

    /// The certificates to use on TLS connections, when any are configured.
    fn certificates(&self, tls: &TlsSettings) -> Option<TlsCertificates> {
        (self.secure && tls.is_configured()).then(|| TlsCertificates {
            client_tls: match (&tls.client_cert, &tls.client_key) {
                (Some(cert), Some(key)) => Some(ClientTlsConfig {
                    client_cert: cert.clone().into_bytes(),
                    client_key: key.expose_secret().as_bytes().to_vec(),
                }),
                _ => None,
            },
            root_cert: tls.ca_cert.clone().map(String::into_bytes),
        })
    }

    /// The URL's host and the extra `nodes`, as `(host, port)`.
    fn addresses(
        &self,
        topology: &RedisTopologySettings,
    ) -> Result<Vec<(String, u16)>, ConnectError> {
        let mut addresses = vec![(
            self.url.host_str().unwrap_or_default().to_owned(),
            self.url
                .port()
                .unwrap_or(if topology.topology == RedisTopology::Sentinel {
                    26379
                } else {
                    6379
                }),
        )];
        addresses.extend(
            topology
                .node_addresses()
                .map_err(|reason| self.url_error(reason))?,
        );
        Ok(addresses)
    }

    /// This URL with another host and port: the URL of another node with the same scheme,
    /// credentials and database.
    fn at(&self, host: &str, port: u16) -> Result<String, ConnectError> {
        let mut url = self.url.clone();
        url.set_host(Some(host))
            .map_err(|error| self.url_error(format!("node host `{host}`: {error}")))?;
        url.set_port(Some(port))
            .map_err(|()| self.url_error(format!("node `{host}:{port}` cannot take a port")))?;
        Ok(url.into())
    }
}

/// Builds a Redis pool for `url` and takes one connection from it, so that a wrong URL, password,
/// certificate or port fails here, naming the host and the reason, not at the first command.
///
/// `rediss://` connects over TLS, verified against `tls.ca_cert` or else the system's roots, with
/// `tls.client_cert`/`client_key` when the server asks for a client certificate. TLS settings
/// with a plain `redis://` URL are refused: the scheme decides, so nothing falls back to plain
/// text silently.
///
/// This is the single-server pool; [`redis_topology_pool`] builds one for any
/// [`RedisTopology`].
pub async fn redis_pool(
    url: &str,
    tls: &TlsSettings,
    options: &RedisOptions,
) -> Result<Pool, ConnectError> {
    let target = Target::check(url, tls)?;
    let pool = single_pool(url, &target, tls, options)?;
    first_connection(&RedisPool::from(pool.clone()), &target, options).await?;
    Ok(pool)
}

/// Builds a pool for the deployment `topology` describes and takes one connection from it, like
/// [`redis_pool`] does for one server.
///
/// - [`RedisTopology::Single`]: `url` is the server; `nodes` must be empty.
/// - [`RedisTopology::Cluster`]: `url` and `nodes` are seed nodes. One connection of the pool
///   reaches every master and routes each command to the slot's owner, following `MOVED` and
///   `ASK` redirections. A command naming several keys must keep them in one slot (a hash tag,
///   `{tenant}:a` and `{tenant}:b`), or the cluster answers `CROSSSLOT`.
/// - [`RedisTopology::Sentinel`]: `url` and `nodes` are sentinels (port 26379 when the URL has
///   none); the URL's user, password and database are the master's. A new connection asks the
///   sentinels for the current master, and a pooled connection that no longer reaches a master
///   (the server died, or a failover demoted it) is dropped when it comes back to the pool, so
///   the pool follows a failover without a restart.
///
/// TLS works alike in every topology: `rediss://` and `tls` apply to every node, sentinels
/// included.
pub async fn redis_topology_pool(
    url: &str,
    tls: &TlsSettings,
    topology: &RedisTopologySettings,
    options: &RedisOptions,
) -> Result<RedisPool, ConnectError> {
    let target = Target::check(url, tls)?;
    let pool = match topology.topology {
        RedisTopology::Single => {
            if !topology
                .node_addresses()
                .map_err(|r| target.url_error(r))?
                .is_empty()
            {
                return Err(target.url_error(
                    "the topology is `single` but `nodes` names more nodes; set the topology to \
                     `cluster` or `sentinel`, or remove the nodes"
                        .into(),
                ));
            }
            RedisPool::from(single_pool(url, &target, tls, options)?)
        }
        RedisTopology::Cluster => {
            let nodes = target
                .addresses(topology)?
                .iter()
                .map(|(host, port)| target.at(host, *port))
                .collect::<Result<Vec<_>, _>>()?;
            pool::cluster(&nodes, target.certificates(tls), options)
                .map_err(|error| target.url_error(error))?
        }
        RedisTopology::Sentinel => {
            let sentinels = target.addresses(topology)?;
            pool::sentinel(&pool::SentinelSpec {
                url: &target.url,
                secure: target.secure,
                sentinels,
                master: &topology.sentinel_master,
                sentinel_password: topology
                    .sentinel_password
                    .as_ref()
                    .map(|secret| secret.expose_secret().to_owned()),
                certificates: target.certificates(tls),
                options,
            })
            .map_err(|error| target.url_error(error))?
        }
    };
    first_connection(&pool, &target, options).await?;
    Ok(pool)
}

fn single_pool(
    url: &str,
    target: &Target,
    tls: &TlsSettings,
    options: &RedisOptions,
) -> Result<Pool, ConnectError> {
    let client = match target.certificates(tls) {
        Some(certificates) => redis::Client::build_with_tls(url, certificates),
        None => redis::Client::open(url),
    }
    .map_err(|error| target.url_error(error.to_string()))?;

    let config =
        redis::AsyncConnectionConfig::new().set_connection_timeout(Some(options.connect_timeout));
    let manager = Manager::new_with_config(client.get_connection_info().clone(), config)
        .map_err(|error| target.url_error(error.to_string()))?;
    Pool::builder(manager)
        .max_size(options.max_size)
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(options.connect_timeout))
        .wait_timeout(Some(options.connect_timeout))
        .build()
        .map_err(|error| target.url_error(error.to_string()))
}

async fn first_connection(
    pool: &RedisPool,
    target: &Target,
    options: &RedisOptions,
) -> Result<(), ConnectError> {
    let timeout = || ConnectError::Timeout {
        service: Service::Redis,
        host: target.host.clone(),
        timeout: options.connect_timeout,
        expected: if target.secure { "TLS" } else { "plain-text" },
    };
    match tokio::time::timeout(options.connect_timeout, pool.get()).await {
        Ok(Ok(connection)) => {
            drop(connection);
            Ok(())
        }
        Ok(Err(error)) => {
            let text = describe(&error);
            // A plain server given a TLS hello (or the reverse) waits for more bytes: the
            // connection timeout is how that ends.
            if matches!(error, deadpool_redis::PoolError::Timeout(_)) || text.contains("timed out")
            {
                Err(timeout())
            } else {
                Err(ConnectError::Connect {
                    service: Service::Redis,
                    host: target.host.clone(),
                    reason: reason(target.secure, &text),
                })
            }
        }
        Err(_) => Err(timeout()),
    }
}
