//! The change feed: load a table whole, follow its NOTIFY channel, poll as a safety net.
//!
//! `table` is what a feed follows ([`Table`], [`KeyedTable`]); `worker` the task that loads and
//! publishes, `pending` what it has still to load, `listener` the task that hears of changes,
//! `status` whether what is served is current.

mod listener;
mod pending;
mod status;
mod table;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::fanout::{self, Transport};
use crate::snapshot;
use crate::stoppable::StoppableTask;

pub(crate) use listener::own_listener;
pub use status::FeedStatus;
pub(crate) use status::StatusCell;
use table::Whole;
pub use table::{KeyedTable, Notice, Table, Update};
use worker::{Worker, save_snapshot, sort_by_key};

/// How the feed behaves; [`FeedOptions::default`] is what services want.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FeedOptions {
    /// Full reload interval, the safety net behind notifications: it catches changes lost while
    /// the listener was down, deletes, and a listener connection that silently died. 30 s.
    pub poll_interval: Duration,
    /// Where the last good load is written (atomically, mode 0600, missing directories 0700) for
    /// a cold start while the database is down. `None` keeps no snapshot.
    pub snapshot_path: Option<PathBuf>,
    /// First delay after an error; doubles up to `max_backoff`, with ±50% jitter so replicas
    /// do not reconnect in lockstep. 100 ms.
    pub min_backoff: Duration,
    /// Longest delay between retries. 30 s.
    pub max_backoff: Duration,
    /// How changes reach the feed: its own `LISTEN` connection ([`Transport::Postgres`], the
    /// default), or a subscription to what a [`crate::Relay`] publishes on NATS or Redis — which
    /// works through PgBouncer in transaction pooling mode, since loads then use only the pool.
    pub transport: Transport,
    /// The prefix of the subjects (NATS) or channels (Redis) a relay publishes on: the relay
    /// and its subscribers must agree. One per database that shares a transport with others.
    /// `groundwork.live`.
    pub namespace: String,
    /// With a NATS or Redis transport: how long without a message from the relay (it sends a
    /// heartbeat every second) before the feed reports stale. 5 s.
    pub relay_timeout: Duration,
}

impl Default for FeedOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(30),
            snapshot_path: None,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            transport: Transport::Postgres,
            namespace: DEFAULT_NAMESPACE.to_owned(),
            relay_timeout: Duration::from_secs(5),
        }
    }
}

/// The default [`FeedOptions::namespace`] and [`crate::RelayOptions`] namespace.
pub const DEFAULT_NAMESPACE: &str = "groundwork.live";

impl FeedOptions {
    /// Sets [`FeedOptions::poll_interval`].
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Sets [`FeedOptions::snapshot_path`].
    #[must_use]
    pub fn snapshot_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.snapshot_path = Some(path.into());
        self
    }

    /// Sets [`FeedOptions::transport`].
    #[must_use]
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Sets [`FeedOptions::namespace`].
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Sets [`FeedOptions::relay_timeout`].
    #[must_use]
    pub fn relay_timeout(mut self, timeout: Duration) -> Self {
        self.relay_timeout = timeout;
        self
    }
}

/// The feed could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    /// Neither the database nor a snapshot file could provide the table.
    #[error(
        "cannot load table `{table}` from the database ({error}) and {snapshot}; start with the database reachable once, or configure a snapshot path"
    )]
    Unavailable {
        /// The table.
        table: String,
        /// The database error.
        error: sqlx::Error,
        /// What happened with the snapshot file.
        snapshot: String,
    },
    /// The namespace or the table's channel cannot name a NATS subject or Redis channel.
    #[error("cannot follow table `{table}` through {transport}: {reason}")]
    Subject {
        /// The table.
        table: String,
        /// The transport's kind.
        transport: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// A running feed. Dropping it stops the background task; [`Feed::shutdown`] does so and waits.
#[derive(Debug)]
pub struct Feed {
    status: watch::Receiver<FeedStatus>,
    generation: watch::Receiver<u64>,
    task: StoppableTask,
}

impl Feed {
    /// The current status.
    pub fn status(&self) -> FeedStatus {
        self.status.borrow().clone()
    }

    /// A receiver of status changes.
    pub fn statuses(&self) -> watch::Receiver<FeedStatus> {
        self.status.clone()
    }

    /// A receiver whose value increases every time new rows are published; await `changed()` on
    /// it to learn that the application's view moved.
    pub fn generations(&self) -> watch::Receiver<u64> {
        self.generation.clone()
    }

    /// Stops the feed and waits for its task to end.
    pub async fn shutdown(self) {
        self.task.stop().await;
    }
}

/// Loads `table` and keeps `publish` called with every new version of its rows.
///
/// At start the rows come from the database; if it cannot be read, from the snapshot file (and
/// the status is stale); with neither, start fails. `publish` runs on the feed's task and must not
/// block: store the rows (e.g. swap an `Arc`) and return. Every notification reloads the whole
/// table; [`start_keyed`] reloads only the rows a notification names.
pub async fn start<T, F>(
    pool: PgPool,
    table: T,
    options: FeedOptions,
    mut publish: F,
) -> Result<Feed, FeedError>
where
    T: Table,
    F: FnMut(&[T::Row]) + Send + 'static,
{
    start_keyed(pool, Whole(table), options, move |update| {
        // `Whole` announces no rows, so every update is a reload.
        if let Update::Reloaded(rows) = update {
            publish(rows);
        }
    })
    .await
}

/// Like [`start`], for a table whose notifications name the changed row: each change costs a
/// query for the rows named (bursts coalesce into one query for the set of keys), and `publish`
/// receives [`Update::Changed`] with only those rows. Notifications whose revision is not newer
/// than the row held are skipped. After a (re)connection of the listener, on every poll, and
/// after a burst naming more keys than the feed queues, the whole table is reloaded and
/// published as [`Update::Reloaded`].
pub async fn start_keyed<T, F>(
    pool: PgPool,
    table: T,
    options: FeedOptions,
    mut publish: F,
) -> Result<Feed, FeedError>
where
    T: KeyedTable,
    F: FnMut(Update<'_, T::Row>) + Send + 'static,
{
    if options.transport != Transport::Postgres {
        for (what, value) in [
            ("namespace", options.namespace.as_str()),
            ("channel", table.channel()),
        ] {
            fanout::check_subject_part(what, value).map_err(|reason| FeedError::Subject {
                table: table.name().to_owned(),
                transport: options.transport.kind(),
                reason,
            })?;
        }
    }
    let (mut rows, status) = match table.load(&pool).await {
        Ok(rows) => {
            save_snapshot(&options, &table, &rows).await;
            (
                rows,
                FeedStatus::Fresh {
                    loaded_at: SystemTime::now(),
                },
            )
        }
        Err(error) => {
            let Some(path) = &options.snapshot_path else {
                return Err(FeedError::Unavailable {
                    table: table.name().to_owned(),
                    error,
                    snapshot: "no snapshot path is configured".to_owned(),
                });
            };
            match snapshot::read(path, table.name()).await {
                Ok(rows) => {
                    tracing::warn!(table = table.name(), %error, snapshot = %path.display(), "database unreachable at start; serving the snapshot");
                    let status = FeedStatus::Stale {
                        since: SystemTime::now(),
                        error: error.to_string(),
                    };
                    (rows, status)
                }
                Err(reason) => {
                    return Err(FeedError::Unavailable {
                        table: table.name().to_owned(),
                        error,
                        snapshot: format!(
                            "the snapshot {} cannot be used: {reason}",
                            path.display()
                        ),
                    });
                }
            }
        }
    };
    publish(Update::Reloaded(&rows));
    sort_by_key::<T>(&mut rows);
    let (status_tx, status_rx) = watch::channel(status.clone());
    let status_tx = Arc::new(StatusCell::new(status_tx, status));
    let (generation_tx, generation_rx) = watch::channel(1);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let worker = Worker {
        pool,
        table: Arc::new(table),
        options,
        publish: Box::new(publish),
        current: rows,
        pending: Arc::default(),
        status: status_tx,
        generation: generation_tx,
    };
    let task = tokio::spawn(worker.run(stop_rx));
    Ok(Feed::new(status_rx, generation_rx, stop_tx, task))
}

impl Feed {
    /// A feed driven by `task`, which publishes on `status` and `generation` and ends when `stop`
    /// fires: for sources other than a table (a config file).
    pub(crate) fn new(
        status: watch::Receiver<FeedStatus>,
        generation: watch::Receiver<u64>,
        stop: tokio::sync::oneshot::Sender<()>,
        task: JoinHandle<()>,
    ) -> Self {
        Self {
            status,
            generation,
            task: StoppableTask::new(stop, task),
        }
    }
}

pub(crate) fn jittered(delay: Duration) -> Duration {
    delay.mul_f64(rand::random_range(0.5..1.5))
}
