//! RabbitMQ through lapin.

use std::sync::Arc;
use std::time::Duration;

use groundwork_connect::TlsSettings;
use lapin::{Connection, ConnectionProperties};
use tokio::sync::{Mutex, watch};

use crate::check::{CheckResult, Component, ComponentType, HealthCheck};
use crate::output::error_chain;

/// Checks that a connection is open, opens a channel on it and closes the channel again.
/// A connection the broker blocked (a memory or disk alarm stops publishing) is a warning.
/// Component name `rabbitmq`.
///
/// [`RabbitMqCheck::new`] watches the application's own connection, which is what its
/// publishers and consumers depend on; [`RabbitMqCheck::connect`] keeps a connection of the
/// check's own and reconnects it when it is lost, for services that connect per use;
/// [`RabbitMqCheck::following`] checks whichever connection a reconnecting holder (such as
/// `groundwork-connect`'s `AmqpLink`) has now.
pub struct RabbitMqCheck {
    source: Source,
}

enum Source {
    Shared(Arc<Connection>),
    Following(watch::Receiver<Arc<Connection>>),
    Own {
        uri: String,
        tls: Box<TlsSettings>,
        connection: Box<Mutex<Option<Connection>>>,
    },
}

/// Time the check's own connection may take; the check's timeout usually ends it first.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl RabbitMqCheck {
    /// A check on the application's `connection`.
    pub fn new(connection: Arc<Connection>) -> Self {
        Self {
            source: Source::Shared(connection),
        }
    }

    /// A check on the latest connection `current` holds, for a service that replaces its
    /// connection when it is lost (`AmqpLink::subscribe` in `groundwork-connect`): it fails while
    /// the latest connection is down and passes again once a new one is up.
    pub fn following(current: watch::Receiver<Arc<Connection>>) -> Self {
        Self {
            source: Source::Following(current),
        }
    }

    /// A check with its own connection to `uri` (`amqp://user:password@host:5672/%2f`, or
    /// `amqps://` for TLS verified against the system's roots), made at the first check and again
    /// whenever it is found closed. A connection that fails reports the reason, TLS ones included
    /// (`cannot connect to RabbitMQ at host:5671: TLS: the certificate is not signed by a trusted
    /// CA ...`).
    pub fn connect(uri: impl Into<String>) -> Self {
        Self {
            source: Source::Own {
                uri: uri.into(),
                tls: Box::default(),
                connection: Box::new(Mutex::new(None)),
            },
        }
    }

    /// The CA and client certificate of the check's own `amqps://` connection (see
    /// [`RabbitMqCheck::connect`]); no effect on a check of a shared connection.
    #[must_use]
    pub fn with_tls(mut self, settings: TlsSettings) -> Self {
        if let Source::Own { tls, .. } = &mut self.source {
            **tls = settings;
        }
        self
    }
}

impl std::fmt::Debug for RabbitMqCheck {
    // The URI holds the password; say only which kind of source this is.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match self.source {
            Source::Shared(_) => "shared connection",
            Source::Following(_) => "followed connection",
            Source::Own { .. } => "own connection",
        };
        f.debug_struct("RabbitMqCheck")
            .field("source", &source)
            .finish_non_exhaustive()
    }
}

impl HealthCheck for RabbitMqCheck {
    fn component(&self) -> Component {
        Component::new("rabbitmq", ComponentType::Component)
    }

    async fn check(&self) -> CheckResult {
        match &self.source {
            Source::Shared(connection) => check_connection(connection).await,
            Source::Following(current) => {
                let connection = Arc::clone(&current.borrow());
                check_connection(&connection).await
            }
            Source::Own {
                uri,
                tls,
                connection,
            } => {
                // Checks of one `Health` never overlap (single-flight), so this lock only
                // serialises direct callers.
                let mut slot = connection.lock().await;
                if !slot.as_ref().is_some_and(|c| c.status().connected()) {
                    let attempt = groundwork_connect::amqp_connect(
                        uri,
                        tls,
                        ConnectionProperties::default(),
                        CONNECT_TIMEOUT,
                    );
                    match attempt.await {
                        Ok(connected) => *slot = Some(connected),
                        Err(error) => {
                            *slot = None;
                            return CheckResult::fail(error_chain(&error));
                        }
                    }
                }
                match slot.as_ref() {
                    Some(connection) => check_connection(connection).await,
                    None => CheckResult::fail("no connection"),
                }
            }
        }
    }
}

async fn check_connection(connection: &Connection) -> CheckResult {
    let state = connection.status();
    if !state.connected() {
        let condition = if state.connecting() || state.reconnecting() {
            "connecting"
        } else if state.closing() {
            "closing"
        } else if state.errored() {
            "failed"
        } else {
            "closed"
        };
        return CheckResult::fail(format!("the connection is {condition}"));
    }
    let channel = match connection.create_channel().await {
        Ok(channel) => channel,
        Err(error) => {
            return CheckResult::fail(format!("cannot open a channel: {}", error_chain(&error)));
        }
    };
    if let Err(error) = channel.close(200, "health check done".into()).await {
        return CheckResult::fail(format!(
            "cannot close the check's channel: {}",
            error_chain(&error)
        ));
    }
    if state.blocked() {
        return CheckResult::warn(
            "the broker blocked this connection (a memory or disk alarm stops publishing)",
        );
    }
    CheckResult::pass()
}
