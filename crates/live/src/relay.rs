//! The relay: one process per database `LISTEN`s on the tables' channels and publishes every
//! notice to NATS or Redis, so that any number of instances follow changes without a
//! PostgreSQL connection of their own.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::postgres::PgConnection;
use sqlx::{Connection as _, PgPool};
use tokio::sync::{mpsc, watch};

use crate::fanout::{self, Message, Publisher, Transport};
use crate::feed::{DEFAULT_NAMESPACE, jittered, own_listener};
use crate::stoppable::StoppableTask;

/// How a relay runs; [`RelayOptions::new`] has the defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RelayOptions {
    /// Where to publish: [`Transport::Nats`] or [`Transport::Redis`].
    pub transport: Transport,
    /// The subject prefix; subscribers' [`crate::FeedOptions::namespace`] must match.
    /// `groundwork.live`.
    pub namespace: String,
    /// The NOTIFY channels to relay. `platform_config`'s ([`crate::config::CHANNEL`]) by
    /// default; add `groundwork_flags::store::CHANNEL` for feature flags.
    pub channels: Vec<String>,
    /// How often the leader publishes a heartbeat on every channel's subject (and checks its
    /// lock connection). 1 s.
    pub heartbeat_interval: Duration,
    /// How often a standby tries to take the lock. 500 ms.
    pub takeover_interval: Duration,
    /// First delay after an error, doubling up to `max_backoff`, with jitter. 100 ms.
    pub min_backoff: Duration,
    /// Longest delay between retries. 10 s.
    pub max_backoff: Duration,
}

impl RelayOptions {
    /// Defaults for relaying `platform_config` through `transport`.
    pub fn new(transport: Transport) -> Self {
        Self {
            transport,
            namespace: DEFAULT_NAMESPACE.to_owned(),
            channels: vec![crate::config::CHANNEL.to_owned()],
            heartbeat_interval: Duration::from_secs(1),
            takeover_interval: Duration::from_millis(500),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }

    /// Sets [`RelayOptions::namespace`].
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Sets [`RelayOptions::channels`].
    #[must_use]
    pub fn channels<S: Into<String>>(mut self, channels: impl IntoIterator<Item = S>) -> Self {
        self.channels = channels.into_iter().map(Into::into).collect();
        self
    }

    /// Sets [`RelayOptions::heartbeat_interval`].
    #[must_use]
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// Sets [`RelayOptions::takeover_interval`].
    #[must_use]
    pub fn takeover_interval(mut self, interval: Duration) -> Self {
        self.takeover_interval = interval;
        self
    }

    /// The advisory lock key the relays of this namespace contend for: derived from the
    /// namespace, so relays of different namespaces on one database do not exclude each other.
    pub fn lock_key(&self) -> i64 {
        // FNV-1a: stable across builds and platforms, unlike the std hasher.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in b"groundwork-live relay "
            .iter()
            .chain(self.namespace.as_bytes())
        {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        i64::from_ne_bytes(hash.to_ne_bytes())
    }
}

/// The relay's options cannot work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The transport is `postgres`, which needs no relay.
    #[error(
        "a relay publishes to NATS or Redis; the transport is `postgres`, which needs no relay"
    )]
    NoFanOut,
    /// No channel to relay.
    #[error("a relay needs at least one channel")]
    NoChannels,
    /// The namespace or a channel cannot name a subject.
    #[error("{0}")]
    Subject(String),
}

/// What a relay is doing, from [`Relay::roles`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayRole {
    /// Connecting to the transport or the database, or waiting after an error (the reason).
    Starting(String),
    /// Connected, waiting for the lock another relay holds.
    Standby,
    /// Holding the lock, relaying.
    Leader,
}

/// A running relay. Dropping it stops the relay (and releases the lock, which a standby then
/// takes); [`Relay::shutdown`] does so and waits.
#[derive(Debug)]
pub struct Relay {
    role: watch::Receiver<RelayRole>,
    task: StoppableTask,
}

impl Relay {
    /// Starts a relay for the database `pool` connects to. Its two connections (the lock and
    /// `LISTEN`) are dedicated ones made with the pool's options, so they must reach PostgreSQL
    /// directly or through session pooling, not through PgBouncer in transaction mode.
    ///
    /// Any number of relays may run (in every service instance, or as `groundwork-live relay`
    /// processes): one holds a PostgreSQL advisory lock and relays; the others wait and take
    /// over within `takeover_interval` when it dies or loses its connection. A relay contends
    /// for the lock only while its transport is connected, so a relay that cannot publish never
    /// blocks one that can. Errors after start are logged and retried with backoff.
    pub fn start(pool: PgPool, options: RelayOptions) -> Result<Self, RelayError> {
        if options.transport == Transport::Postgres {
            return Err(RelayError::NoFanOut);
        }
        if options.channels.is_empty() {
            return Err(RelayError::NoChannels);
        }
        fanout::check_subject_part("namespace", &options.namespace).map_err(RelayError::Subject)?;
        for channel in &options.channels {
            fanout::check_subject_part("channel", channel).map_err(RelayError::Subject)?;
        }
        let (role_tx, role_rx) = watch::channel(RelayRole::Starting("starting".to_owned()));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(run(pool, options, role_tx, stop_rx));
        Ok(Self {
            role: role_rx,
            task: StoppableTask::new(stop_tx, task),
        })
    }

    /// What the relay is doing now.
    pub fn role(&self) -> RelayRole {
        self.role.borrow().clone()
    }

    /// A receiver of role changes.
    pub fn roles(&self) -> watch::Receiver<RelayRole> {
        self.role.clone()
    }

    /// Stops the relay and waits for it to release its connections.
    pub async fn shutdown(self) {
        self.task.stop().await;
    }
}

/// Why a leadership term or an attempt at one ended.
enum Ended {
    Stopped,
    Failed(String),
}

async fn run(
    pool: PgPool,
    options: RelayOptions,
    role: watch::Sender<RelayRole>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut backoff = options.min_backoff;
    loop {
        let term = tokio::select! {
            _ = &mut stop => Ended::Stopped,
            ended = term(&pool, &options, &role) => ended,
        };
        match term {
            Ended::Stopped => return,
            Ended::Failed(error) => {
                tracing::warn!(%error, "relay: retrying");
                role.send_replace(RelayRole::Starting(error));
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(jittered(backoff)) => {}
        }
        backoff = (backoff * 2).min(options.max_backoff);
    }
}

/// Connects, waits for the lock, relays until something fails. Every term has its own relay id,
/// so subscribers resync when leadership changes hands.
async fn term(pool: &PgPool, options: &RelayOptions, role: &watch::Sender<RelayRole>) -> Ended {
    let mut publisher = match Publisher::connect(&options.transport).await {
        Ok(publisher) => publisher,
        Err(error) => return Ended::Failed(error),
    };
    let connect_options = pool.connect_options();
    let mut lock = match PgConnection::connect_with(&connect_options).await {
        Ok(connection) => connection,
        Err(error) => {
            return Ended::Failed(format!(
                "cannot connect to PostgreSQL for the relay lock: {error}"
            ));
        }
    };
    role.send_replace(RelayRole::Standby);
    loop {
        let locked: Result<bool, _> = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(options.lock_key())
            .fetch_one(&mut lock)
            .await;
        match locked {
            Ok(true) => break,
            Ok(false) => tokio::time::sleep(options.takeover_interval).await,
            Err(error) => return Ended::Failed(format!("lost the relay lock connection: {error}")),
        }
    }
    let relay_id = format!("{:016x}", rand::random::<u64>());
    tracing::info!(
        relay = relay_id,
        namespace = options.namespace,
        "relay: leading"
    );
    // The listener lives on its own task, so that waiting for a notification is never
    // cancelled half-way; losing it ends the term (notifications may have been missed).
    let (notices_tx, mut notices) = mpsc::channel::<Relayed>(1024);
    let listener = tokio::spawn(listen(pool.clone(), options.channels.clone(), notices_tx));
    // Heartbeats (which make subscribers resync when the relay id is new) only once LISTEN is
    // in place, so that no change falls between a subscriber's resync and the listening.
    match notices.recv().await {
        Some(Relayed::Listening) => {}
        Some(Relayed::Failed(error)) => return Ended::Failed(error),
        _ => return Ended::Failed("the relay's listener stopped".to_owned()),
    }
    role.send_replace(RelayRole::Leader);
    let mut seqs: HashMap<String, u64> = HashMap::new();
    let mut heartbeat = tokio::time::interval(options.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ended = loop {
        tokio::select! {
            notice = notices.recv() => {
                let (channel, payload) = match notice {
                    Some(Relayed::Notice(channel, payload)) => (channel, payload),
                    Some(Relayed::Failed(error)) => break Ended::Failed(error),
                    Some(Relayed::Listening) | None => break Ended::Failed("the relay's listener stopped".to_owned()),
                };
                let seq = seqs.entry(channel.clone()).or_insert(0);
                *seq += 1;
                let message = Message { relay: relay_id.clone(), seq: *seq, payload: Some(payload) };
                if let Err(error) = publisher.publish(&fanout::subject(&options.namespace, &channel), &message).await {
                    // Subscribers see the gap at the next heartbeat (of this relay or the next).
                    break Ended::Failed(error);
                }
            }
            _ = heartbeat.tick() => {
                // The lock is held for as long as its session lives: check that it does.
                let alive = tokio::time::timeout(options.heartbeat_interval.max(Duration::from_secs(1)) * 2, sqlx::query("SELECT 1").execute(&mut lock)).await;
                match alive {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => break Ended::Failed(format!("lost the relay lock connection: {error}")),
                    Err(_) => break Ended::Failed("the relay lock connection does not answer".to_owned()),
                }
                let mut failed = None;
                for channel in &options.channels {
                    let message = Message { relay: relay_id.clone(), seq: seqs.get(channel).copied().unwrap_or(0), payload: None };
                    if let Err(error) = publisher.publish(&fanout::subject(&options.namespace, channel), &message).await {
                        failed = Some(error);
                        break;
                    }
                }
                if let Some(error) = failed {
                    break Ended::Failed(error);
                }
            }
        }
    };
    listener.abort();
    // Closing the session releases the lock at once; a standby takes over.
    let _ = lock.close().await;
    ended
}

/// What the relay's listener task reports.
enum Relayed {
    Listening,
    Notice(String, String),
    Failed(String),
}

async fn listen(pool: PgPool, channels: Vec<String>, notices: mpsc::Sender<Relayed>) {
    let connected = async {
        // Not one of the service's connections: it stays taken for as long as the relay leads.
        let mut listener = own_listener(&pool).await?;
        listener
            .listen_all(channels.iter().map(String::as_str))
            .await?;
        Ok::<_, sqlx::Error>(listener)
    }
    .await;
    let mut listener = match connected {
        Ok(listener) => listener,
        Err(error) => {
            let _ = notices
                .send(Relayed::Failed(format!(
                    "cannot LISTEN for the relay: {error}"
                )))
                .await;
            return;
        }
    };
    if notices.send(Relayed::Listening).await.is_err() {
        return;
    }
    loop {
        let notice = match listener.try_recv().await {
            Ok(Some(notification)) => Relayed::Notice(
                notification.channel().to_owned(),
                notification.payload().to_owned(),
            ),
            Ok(None) => Relayed::Failed("the relay's LISTEN connection was lost".to_owned()),
            Err(error) => Relayed::Failed(format!("the relay's LISTEN connection failed: {error}")),
        };
        let failed = matches!(notice, Relayed::Failed(_));
        if notices.send(notice).await.is_err() || failed {
            return;
        }
    }
}
