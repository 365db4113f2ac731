//! Redis pools over `redis://` or `rediss://`.

use std::time::Duration;

use deadpool_redis::redis::{self, ClientTlsConfig, TlsCertificates};
use deadpool_redis::{Manager, Pool, Runtime};
use groundwork_config::ExposeSecret as _;

use crate::TlsSettings;
use crate::error::{ConnectError, Service, describe, host_of, parse, reason};

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

/// Builds a Redis pool for `url` and takes one connection from it, so that a wrong URL, password,
/// certificate or port fails here, naming the host and the reason, not at the first command.
///
/// `rediss://` connects over TLS, verified against `tls.ca_cert` or else the system's roots, with
/// `tls.client_cert`/`client_key` when the server asks for a client certificate. TLS settings
/// with a plain `redis://` URL are refused: the scheme decides, so nothing falls back to plain
/// text silently.
pub async fn redis_pool(
    url: &str,
    tls: &TlsSettings,
    options: &RedisOptions,
) -> Result<Pool, ConnectError> {
    let parsed = parse(Service::Redis, url)?;
    let secure = parsed.scheme() == "rediss";
    let host = host_of(&parsed);
    let url_error = |reason: String| ConnectError::Url {
        service: Service::Redis,
        url: groundwork_config::redact_url(url).into_owned(),
        reason,
    };
    if !matches!(parsed.scheme(), "redis" | "rediss") {
        return Err(url_error(format!(
            "the scheme `{}` is not `redis` or `rediss`",
            parsed.scheme()
        )));
    }
    if tls.is_configured() && !secure {
        return Err(url_error(
            "TLS settings are given but the URL is plain-text `redis://`; use `rediss://`".into(),
        ));
    }
    let client = if secure && tls.is_configured() {
        tls.validate().map_err(|source| ConnectError::Tls {
            service: Service::Redis,
            source,
        })?;
        let certificates = TlsCertificates {
            client_tls: match (&tls.client_cert, &tls.client_key) {
                (Some(cert), Some(key)) => Some(ClientTlsConfig {
                    client_cert: cert.clone().into_bytes(),
                    client_key: key.expose_secret().as_bytes().to_vec(),
                }),
                _ => None,
            },
            root_cert: tls.ca_cert.clone().map(String::into_bytes),
        };
        redis::Client::build_with_tls(url, certificates)
    } else {
        redis::Client::open(url)
    }
    .map_err(|error| url_error(error.to_string()))?;

    let config =
        redis::AsyncConnectionConfig::new().set_connection_timeout(Some(options.connect_timeout));
    let manager = Manager::new_with_config(client.get_connection_info().clone(), config)
        .map_err(|error| url_error(error.to_string()))?;
    let pool = Pool::builder(manager)
        .max_size(options.max_size)
        .runtime(Runtime::Tokio1)
        .create_timeout(Some(options.connect_timeout))
        .wait_timeout(Some(options.connect_timeout))
        .build()
        .map_err(|error| url_error(error.to_string()))?;

    let timeout = |host: String| ConnectError::Timeout {
        service: Service::Redis,
        host,
        timeout: options.connect_timeout,
        expected: if secure { "TLS" } else { "plain-text" },
    };
    let first = tokio::time::timeout(options.connect_timeout, pool.get()).await;
    match first {
        Ok(Ok(connection)) => {
            drop(connection);
            Ok(pool)
        }
        Ok(Err(error)) => {
            let text = describe(&error);
            // A plain server given a TLS hello (or the reverse) waits for more bytes: the
            // connection timeout is how that ends.
            if matches!(error, deadpool_redis::PoolError::Timeout(_)) || text.contains("timed out")
            {
                Err(timeout(host))
            } else {
                Err(ConnectError::Connect {
                    service: Service::Redis,
                    host,
                    reason: reason(secure, &text),
                })
            }
        }
        Err(_) => Err(timeout(host)),
    }
}
