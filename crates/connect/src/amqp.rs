//! RabbitMQ connections over `amqp://` or `amqps://`.

use std::time::Duration;

use groundwork_config::ExposeSecret as _;
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::{Connection, ConnectionProperties};

use crate::TlsSettings;
use crate::error::{ConnectError, Service, describe, host_of, parse, reason};

/// Connects to RabbitMQ at `url` within `connect_timeout`.
///
/// `amqps://` connects over TLS, verified against the system's roots plus `tls.ca_cert` (lapin
/// adds a configured CA to the system's roots rather than replacing them), with
/// `tls.client_cert`/`client_key` for brokers that require a client certificate (for example the
/// `EXTERNAL` mechanism). TLS settings with a plain `amqp://` URL are refused.
pub async fn amqp_connect(
    url: &str,
    tls: &TlsSettings,
    properties: ConnectionProperties,
    connect_timeout: Duration,
) -> Result<Connection, ConnectError> {
    let parsed = parse(Service::RabbitMq, url)?;
    let url_error = |reason: String| ConnectError::Url {
        service: Service::RabbitMq,
        url: groundwork_config::redact_url(url).into_owned(),
        reason,
    };
    let secure = match parsed.scheme() {
        "amqp" => false,
        "amqps" => true,
        other => {
            return Err(url_error(format!(
                "the scheme `{other}` is not `amqp` or `amqps`"
            )));
        }
    };
    if tls.is_configured() && !secure {
        return Err(url_error(
            "TLS settings are given but the URL is plain-text `amqp://`; use `amqps://`".into(),
        ));
    }
    tls.validate().map_err(|source| ConnectError::Tls {
        service: Service::RabbitMq,
        source,
    })?;
    let config = OwnedTLSConfig {
        identity: match (&tls.client_cert, &tls.client_key) {
            (Some(cert), Some(key)) => Some(OwnedIdentity::PKCS8 {
                pem: cert.clone().into_bytes(),
                key: key.expose_secret().as_bytes().to_vec(),
            }),
            _ => None,
        },
        cert_chain: tls.ca_cert.clone(),
    };
    let host = host_of(&parsed);
    let runtime = lapin::runtime::default_runtime().map_err(|error| ConnectError::Connect {
        service: Service::RabbitMq,
        host: host.clone(),
        reason: error.to_string(),
    })?;
    let attempt = Connection::connect_with_config(url, properties, config, runtime);
    match tokio::time::timeout(connect_timeout, attempt).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(ConnectError::Connect {
            service: Service::RabbitMq,
            host,
            reason: reason(secure, &describe(&error)),
        }),
        Err(_) => Err(ConnectError::Timeout {
            service: Service::RabbitMq,
            host,
            timeout: connect_timeout,
            expected: if secure { "TLS" } else { "plain-text" },
        }),
    }
}

/// How an [`AmqpLink`] watches and remakes its connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AmqpLinkOptions {
    /// Time allowed for one connection attempt (TCP, TLS, AMQP handshake).
    pub connect_timeout: Duration,
    /// How often the link looks at its connection's state.
    pub check_interval: Duration,
    /// First wait after a failed attempt; doubled per failure up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for AmqpLinkOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            check_interval: Duration::from_millis(200),
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// A RabbitMQ connection that is made again whenever it is lost: the broker restarted, a node
/// failed over, or an operator closed it (`rabbitmqctl close_connection`).
///
/// [`AmqpLink::connect`] makes the first connection and fails if it cannot, so a wrong URL or
/// password stops start-up. From then on a task looks at the connection every
/// `check_interval` and, once it is no longer usable, connects again with back-off until it
/// succeeds, and hands the new connection to [`AmqpLink::current`] and every
/// [`AmqpLink::subscribe`]r. Channels and consumers belong to a connection, so a consumer whose
/// stream ends takes the current connection and declares and consumes again on it.
///
/// ```no_run
/// # async fn demo() -> Result<(), groundwork_connect::ConnectError> {
/// use groundwork_connect::{AmqpLink, AmqpLinkOptions, TlsSettings};
///
/// let link = AmqpLink::connect(
///     "amqp://guest:guest@localhost:5672/%2f",
///     &TlsSettings::default(),
///     AmqpLinkOptions::default(),
/// )
/// .await?;
/// let connection = link.current(); // an Arc<lapin::Connection>
/// # Ok(()) }
/// ```
pub struct AmqpLink {
    current: tokio::sync::watch::Receiver<std::sync::Arc<Connection>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for AmqpLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpLink")
            .field("connected", &self.current.borrow().status().connected())
            .finish_non_exhaustive()
    }
}

impl AmqpLink {
    /// Connects to `url` and starts keeping the connection up on the current Tokio runtime.
    pub async fn connect(
        url: &str,
        tls: &TlsSettings,
        options: AmqpLinkOptions,
    ) -> Result<Self, ConnectError> {
        let first = amqp_connect(
            url,
            tls,
            ConnectionProperties::default(),
            options.connect_timeout,
        )
        .await?;
        let (sender, current) = tokio::sync::watch::channel(std::sync::Arc::new(first));
        let task = tokio::spawn(keep_up(url.to_owned(), tls.clone(), options, sender));
        Ok(Self { current, task })
    }

    /// The connection as of now; it may have been lost since (see `status()`).
    pub fn current(&self) -> std::sync::Arc<Connection> {
        std::sync::Arc::clone(&self.current.borrow())
    }

    /// Follows the connection: `changed()` wakes whenever a new connection replaced a lost one.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<std::sync::Arc<Connection>> {
        self.current.clone()
    }

    /// Stops remaking the connection and closes the current one.
    pub async fn close(self, reply_text: &str) -> Result<(), lapin::Error> {
        self.task.abort();
        let connection = self.current();
        if connection.status().connected() {
            connection.close(200, reply_text.into()).await?;
        }
        Ok(())
    }
}

impl Drop for AmqpLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Looks at the connection every `check_interval`; once it is not usable, connects again with
/// back-off and publishes the new one. Ends when every receiver is gone.
async fn keep_up(
    url: String,
    tls: TlsSettings,
    options: AmqpLinkOptions,
    sender: tokio::sync::watch::Sender<std::sync::Arc<Connection>>,
) {
    let mut backoff = options.min_backoff;
    loop {
        tokio::time::sleep(options.check_interval).await;
        if sender.is_closed() {
            return;
        }
        let connection = std::sync::Arc::clone(&sender.borrow());
        let status = connection.status();
        if status.connected() || status.connecting() || status.reconnecting() {
            continue;
        }
        loop {
            match amqp_connect(
                &url,
                &tls,
                ConnectionProperties::default(),
                options.connect_timeout,
            )
            .await
            {
                Ok(connection) => {
                    tracing::info!("reconnected to RabbitMQ");
                    sender.send_replace(std::sync::Arc::new(connection));
                    backoff = options.min_backoff;
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "RabbitMQ connection lost; reconnecting");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(options.max_backoff);
                    if sender.is_closed() {
                        return;
                    }
                }
            }
        }
    }
}
