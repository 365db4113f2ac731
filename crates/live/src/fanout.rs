//! Fan-out of a table's change notices through NATS or Redis: the transports, the message a
//! relay publishes, and the subscriber a feed runs instead of a `LISTEN` connection.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::feed::{Notice, StatusCell, jittered};

/// How a feed learns of changes, and where a relay publishes them. Chosen by settings, e.g.
/// [`Transport::parse`] of a `LIVE_TRANSPORT` variable; [`Transport::Postgres`] is the default.
#[derive(Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Transport {
    /// Each feed holds its own `LISTEN` connection to PostgreSQL; no relay.
    #[default]
    Postgres,
    /// Core NATS subjects (`nats://host:port`); a relay publishes, feeds subscribe.
    Nats {
        /// The server URL, e.g. `nats://127.0.0.1:4222` (`tls://` for TLS).
        url: String,
    },
    /// Redis pub/sub (`redis://host:port`, `rediss://` for TLS); a relay publishes, feeds
    /// subscribe.
    Redis {
        /// The server URL.
        url: String,
    },
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // URLs may carry a password: masked.
        match self {
            Self::Postgres => f.write_str("Postgres"),
            Self::Nats { url } => write!(f, "Nats({})", endpoint(url)),
            Self::Redis { url } => write!(f, "Redis({})", endpoint(url)),
        }
    }
}

/// A transport setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid live transport {value:?}: {reason}")]
pub struct TransportError {
    /// The setting, any password masked.
    value: String,
    reason: &'static str,
}

impl Transport {
    /// Reads a setting: `postgres` (or an empty value), a `nats://` or `tls://` URL, or a
    /// `redis://` or `rediss://` URL. Anything else is an error naming the value (without its
    /// password).
    pub fn parse(setting: &str) -> Result<Self, TransportError> {
        let setting = setting.trim();
        if setting.is_empty() || setting.eq_ignore_ascii_case("postgres") {
            return Ok(Self::Postgres);
        }
        let scheme = setting
            .split_once("://")
            .map(|(scheme, _)| scheme.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("nats" | "tls") => Ok(Self::Nats {
                url: setting.to_owned(),
            }),
            Some("redis" | "rediss") => Ok(Self::Redis {
                url: setting.to_owned(),
            }),
            _ => Err(TransportError {
                value: endpoint(setting),
                reason: "expected `postgres`, a nats:// or tls:// URL, or a redis:// or rediss:// URL",
            }),
        }
    }

    /// `postgres`, `nats` or `redis`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Nats { .. } => "nats",
            Self::Redis { .. } => "redis",
        }
    }
}

/// A transport URL as it may be logged or shown in a status: through the workspace's one URL
/// redactor, so a password (in the userinfo or a query parameter) never shows.
pub(crate) fn endpoint(url: &str) -> String {
    groundwork_config::redact_url(url).into_owned()
}

/// The subject (NATS) or channel (Redis) a relay publishes a table's notices on.
pub(crate) fn subject(namespace: &str, channel: &str) -> String {
    format!("{namespace}.{channel}")
}

/// Checks a namespace or channel name for use in a subject: ASCII letters, digits, `_`, `-`,
/// and `.` between non-empty parts.
pub(crate) fn check_subject_part(what: &str, value: &str) -> Result<(), String> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-');
    if value.is_empty()
        || value
            .split('.')
            .any(|part| part.is_empty() || !part.chars().all(valid_char))
    {
        return Err(format!(
            "{what} {value:?} cannot be part of a NATS subject or Redis channel: use ASCII letters, digits, `_` and `-`, with `.` between parts"
        ));
    }
    Ok(())
}

/// What a relay publishes: a table's notice (the `NOTIFY` payload, which names a row and its
/// revision, never a value) or, without `payload`, a heartbeat. `seq` numbers a relay's messages
/// on one subject without gaps (a heartbeat repeats the last number), so a subscriber that
/// misses one sees a gap; `relay` changes with every leadership term.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Message {
    pub(crate) relay: String,
    pub(crate) seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) payload: Option<String>,
}

/// A connected publisher, used by the relay.
pub(crate) enum Publisher {
    Nats(async_nats::Client),
    Redis(deadpool_redis::redis::aio::MultiplexedConnection),
}

impl Publisher {
    pub(crate) async fn connect(transport: &Transport) -> Result<Self, String> {
        match transport {
            Transport::Postgres => Err("the postgres transport has no relay".to_owned()),
            Transport::Nats { url } => {
                let client = nats_options(None)
                    .connect(url.as_str())
                    .await
                    .map_err(|error| {
                        format!("cannot connect to NATS at {}: {error}", endpoint(url))
                    })?;
                Ok(Self::Nats(client))
            }
            Transport::Redis { url } => {
                let connection = async {
                    deadpool_redis::redis::Client::open(url.as_str())?
                        .get_multiplexed_async_connection()
                        .await
                }
                .await
                .map_err(|error| {
                    format!("cannot connect to Redis at {}: {error}", endpoint(url))
                })?;
                Ok(Self::Redis(connection))
            }
        }
    }

    pub(crate) async fn publish(&mut self, subject: &str, message: &Message) -> Result<(), String> {
        let body = serde_json::to_vec(message).map_err(|error| error.to_string())?;
        match self {
            Self::Nats(client) => {
                client
                    .publish(subject.to_owned(), body.into())
                    .await
                    .map_err(|error| format!("cannot publish to NATS: {error}"))?;
                // Publishing only queues; a flush reports a connection that is gone.
                tokio::time::timeout(Duration::from_secs(5), client.flush())
                    .await
                    .map_err(|_| "NATS did not confirm a flush within 5 s".to_owned())?
                    .map_err(|error| format!("cannot publish to NATS: {error}"))
            }
            Self::Redis(connection) => deadpool_redis::redis::cmd("PUBLISH")
                .arg(subject)
                .arg(body)
                .query_async::<i64>(connection)
                .await
                .map(drop)
                .map_err(|error| format!("cannot publish to Redis: {error}")),
        }
    }
}

fn nats_options(
    events: Option<mpsc::UnboundedSender<TransportEvent>>,
) -> async_nats::ConnectOptions {
    let options = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        // Reconnect quickly: a subscriber resyncs after every reconnect anyway.
        .reconnect_delay_callback(|attempts| {
            let attempts = u32::try_from(attempts.min(5)).unwrap_or(5);
            Duration::from_millis(100 * 2_u64.pow(attempts)).min(Duration::from_secs(2))
        });
    match events {
        None => options,
        Some(events) => options.event_callback(move |event| {
            let events = events.clone();
            async move {
                let event = match event {
                    async_nats::Event::Connected => Some(TransportEvent::Connected),
                    async_nats::Event::Disconnected => Some(TransportEvent::Disconnected),
                    _ => None,
                };
                if let Some(event) = event {
                    let _ = events.send(event);
                }
            }
        }),
    }
}

enum TransportEvent {
    Connected,
    Disconnected,
}

/// What a subscriber tells the feed's worker, as the LISTEN task does.
pub(crate) type Announce = Arc<dyn Fn(&mut dyn Iterator<Item = Notice>) + Send + Sync>;

/// The subscriber's view of the relay's numbering.
#[derive(Debug, Default)]
struct Sequence {
    relay: Option<String>,
    seq: u64,
}

impl Sequence {
    /// Whether `message` shows that something may have been missed, after which the subscriber
    /// resyncs; records it either way. The first message since (re)subscribing counts: a
    /// change committed after the resync at subscription but before the relay was listening
    /// (a relay that just took over) reached no one, and the relay sends nothing before it
    /// listens, so a resync now covers it. Then: a gap in `seq`, or another relay.
    fn missed(&mut self, message: &Message) -> bool {
        let same_relay = self.relay.as_deref() == Some(message.relay.as_str());
        let expected = if message.payload.is_some() {
            self.seq + 1
        } else {
            self.seq
        };
        let missed = !same_relay || message.seq != expected;
        if !same_relay {
            self.relay = Some(message.relay.clone());
        }
        self.seq = message.seq;
        missed
    }
}

/// Settings of a subscriber, from the feed's options.
pub(crate) struct SubscriberSettings {
    pub(crate) transport: Transport,
    pub(crate) subject: String,
    pub(crate) relay_timeout: Duration,
    pub(crate) min_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) table: String,
}

/// The subscriber: connects, subscribes, resyncs (a full reload) after every (re)connection
/// and on every gap, announces each notice, and reports on `status` when the transport is down
/// or the relay silent for longer than `relay_timeout`.
pub(crate) async fn run_subscriber(
    settings: SubscriberSettings,
    notice: impl Fn(&str) -> Notice + Send + Sync + 'static,
    announce: Announce,
    status: Arc<StatusCell>,
) {
    let reload = || announce(&mut std::iter::once(Notice::Reload));
    let mut backoff = settings.min_backoff;
    loop {
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let mut messages = match subscribe(&settings, events_tx).await {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(table = settings.table, %error, "cannot subscribe to changes; retrying");
                status.transport_failed(error);
                // Without a subscription only the poll catches changes: reload now.
                reload();
                tokio::time::sleep(jittered(backoff)).await;
                backoff = (backoff * 2).min(settings.max_backoff);
                continue;
            }
        };
        backoff = settings.min_backoff;
        // Subscribed: anything published before is unknown, so resync.
        let mut sequence = Sequence::default();
        reload();
        // Fresh once the relay is heard from (a message proves both transport and relay).
        let mut deadline = tokio::time::Instant::now() + settings.relay_timeout;
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(body) = message else {
                        let error = format!("lost the {} subscription to {}", settings.transport.kind(), settings.subject);
                        tracing::warn!(table = settings.table, %error, "resubscribing");
                        status.transport_failed(error);
                        reload();
                        break;
                    };
                    let message = match serde_json::from_slice::<Message>(&body) {
                        Ok(message) => message,
                        Err(error) => {
                            // Not a relay's message; the next heartbeat shows whether a change
                            // was missed.
                            tracing::warn!(table = settings.table, subject = settings.subject, %error, "malformed message on the change subject; ignored");
                            continue;
                        }
                    };
                    deadline = tokio::time::Instant::now() + settings.relay_timeout;
                    status.transport_ok();
                    if sequence.missed(&message) {
                        tracing::info!(table = settings.table, relay = message.relay, seq = message.seq, "missed a change or a new relay took over; reloading");
                        reload();
                    } else if let Some(payload) = &message.payload {
                        announce(&mut std::iter::once(notice(payload)));
                    }
                }
                event = events.recv() => match event {
                    Some(TransportEvent::Disconnected) => {
                        status.transport_failed(format!("disconnected from {} at {}", settings.transport.kind(), transport_endpoint(&settings.transport)));
                    }
                    Some(TransportEvent::Connected) => {
                        // The client reconnected and resubscribed by itself: resync, and wait
                        // for the relay again.
                        sequence = Sequence::default();
                        reload();
                        deadline = tokio::time::Instant::now() + settings.relay_timeout;
                    }
                    None => {}
                },
                () = tokio::time::sleep_until(deadline) => {
                    status.transport_failed(format!(
                        "no message from a relay on {} for {} s: is a relay running for this database, with the same transport and namespace?",
                        settings.subject,
                        settings.relay_timeout.as_secs_f64()
                    ));
                    deadline = tokio::time::Instant::now() + settings.relay_timeout;
                }
            }
        }
        tokio::time::sleep(jittered(backoff)).await;
    }
}

fn transport_endpoint(transport: &Transport) -> String {
    match transport {
        Transport::Postgres => "postgres".to_owned(),
        Transport::Nats { url } | Transport::Redis { url } => endpoint(url),
    }
}

type Messages = futures_util::stream::BoxStream<'static, Vec<u8>>;

async fn subscribe(
    settings: &SubscriberSettings,
    events: mpsc::UnboundedSender<TransportEvent>,
) -> Result<Messages, String> {
    match &settings.transport {
        Transport::Postgres => Err("the postgres transport has no subscription".to_owned()),
        Transport::Nats { url } => {
            let client = nats_options(Some(events))
                .connect(url.as_str())
                .await
                .map_err(|error| format!("cannot connect to NATS at {}: {error}", endpoint(url)))?;
            let subscriber = client
                .subscribe(settings.subject.clone())
                .await
                .map_err(|error| {
                    format!("cannot subscribe to {} on NATS: {error}", settings.subject)
                })?;
            // The client lives as long as the stream: dropping it would close the connection.
            Ok(subscriber
                .map(move |message| {
                    let _ = &client;
                    message.payload.to_vec()
                })
                .boxed())
        }
        Transport::Redis { url } => {
            let mut pubsub = async {
                deadpool_redis::redis::Client::open(url.as_str())?
                    .get_async_pubsub()
                    .await
            }
            .await
            .map_err(|error| format!("cannot connect to Redis at {}: {error}", endpoint(url)))?;
            pubsub.subscribe(&settings.subject).await.map_err(|error| {
                format!("cannot subscribe to {} on Redis: {error}", settings.subject)
            })?;
            Ok(pubsub
                .into_on_message()
                .map(|message| message.get_payload_bytes().to_vec())
                .boxed())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(relay: &str, seq: u64, change: bool) -> Message {
        Message {
            relay: relay.to_owned(),
            seq,
            payload: change.then(|| "{}".to_owned()),
        }
    }

    #[test]
    fn a_gap_or_another_relay_is_a_miss() {
        let mut sequence = Sequence::default();
        assert!(
            sequence.missed(&message("a", 7, false)),
            "first message: resync once more"
        );
        assert!(!sequence.missed(&message("a", 8, true)));
        assert!(
            !sequence.missed(&message("a", 8, false)),
            "heartbeat repeats"
        );
        assert!(sequence.missed(&message("a", 10, true)), "9 was lost");
        assert!(!sequence.missed(&message("a", 11, true)));
        assert!(
            sequence.missed(&message("a", 12, false)),
            "a lost last change shows in the heartbeat"
        );
        assert!(sequence.missed(&message("b", 1, false)), "a new relay");
        assert!(!sequence.missed(&message("b", 2, true)));
    }

    #[test]
    fn settings_choose_the_transport_and_errors_hide_passwords() -> Result<(), TransportError> {
        assert_eq!(Transport::parse("postgres")?, Transport::Postgres);
        assert_eq!(Transport::parse("")?, Transport::Postgres);
        assert_eq!(Transport::parse("nats://127.0.0.1:4222")?.kind(), "nats");
        assert_eq!(Transport::parse("rediss://:pw@cache:6380")?.kind(), "redis");
        let Err(error) = Transport::parse("kafka://user:hunter2@broker:9092") else {
            panic!("kafka is not a transport");
        };
        let text = error.to_string();
        assert!(
            text.contains(&*groundwork_config::redact_url(
                "kafka://user:hunter2@broker:9092"
            )) && !text.contains("hunter2"),
            "{text}"
        );
        let shown = format!("{:?}", Transport::parse("redis://:hunter2@cache:6379")?);
        assert_eq!(
            shown,
            format!(
                "Redis({})",
                groundwork_config::redact_url("redis://:hunter2@cache:6379")
            )
        );
        assert!(
            !shown.contains("hunter2") && shown.contains("@cache:6379"),
            "{shown}"
        );
        let shown = format!(
            "{:?}",
            Transport::parse("nats://127.0.0.1:4222/?token=hunter2&name=relay")?
        );
        assert!(
            !shown.contains("hunter2") && shown.contains("name=relay"),
            "{shown}"
        );
        Ok(())
    }

    #[test]
    fn subject_parts_are_checked() {
        assert!(check_subject_part("namespace", "groundwork.live").is_ok());
        for bad in ["", "a..b", "a b", "a.*", "x>"] {
            assert!(check_subject_part("namespace", bad).is_err(), "{bad:?}");
        }
    }
}
