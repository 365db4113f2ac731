//! The change feed: load a table whole, follow its NOTIFY channel, poll as a safety net.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::snapshot;

/// A table the feed follows: loaded whole, announcing every change with `pg_notify` on a channel
/// (the tables Groundwork ships do this from a trigger, so plain SQL by an operator counts too).
pub trait Table: Send + Sync + 'static {
    /// One row as the application sees it.
    type Row: Clone + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static;

    /// The table's name, for logs and the snapshot file.
    fn name(&self) -> &str;

    /// The NOTIFY channel the table's trigger announces changes on.
    fn channel(&self) -> &str;

    /// Loads every row the application should see.
    fn load(
        &self,
        pool: &PgPool,
    ) -> impl Future<Output = Result<Vec<Self::Row>, sqlx::Error>> + Send;
}

/// How the feed behaves; [`FeedOptions::default`] is what services want.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FeedOptions {
    /// Full reload interval, the safety net behind notifications: it catches changes lost while
    /// the listener was down, deletes, and a listener connection that silently died. 30 s.
    pub poll_interval: Duration,
    /// Where the last good load is written (atomically) for a cold start while the database is
    /// down. `None` keeps no snapshot.
    pub snapshot_path: Option<PathBuf>,
    /// First delay after an error; doubles up to `max_backoff`, with ±50% jitter so replicas
    /// do not reconnect in lockstep. 100 ms.
    pub min_backoff: Duration,
    /// Longest delay between retries. 30 s.
    pub max_backoff: Duration,
}

impl Default for FeedOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(30),
            snapshot_path: None,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
        }
    }
}

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
}

/// Whether the values a feed serves are current: what a health check reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FeedStatus {
    /// The last load from the database succeeded.
    Fresh {
        /// When the last successful load finished.
        loaded_at: SystemTime,
    },
    /// Serving older values: the database could not be read since `since`.
    Stale {
        /// When the feed could first not reload.
        since: SystemTime,
        /// The most recent error.
        error: String,
    },
}

impl FeedStatus {
    /// Whether the status is [`FeedStatus::Fresh`].
    pub fn is_fresh(&self) -> bool {
        matches!(self, Self::Fresh { .. })
    }

    fn stale(previous: &Self, error: String) -> Self {
        let since = match previous {
            Self::Stale { since, .. } => *since,
            Self::Fresh { .. } => SystemTime::now(),
        };
        Self::Stale { since, error }
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
}

/// A running feed. Dropping it stops the background task; [`Feed::shutdown`] does so and waits.
#[derive(Debug)]
pub struct Feed {
    status: watch::Receiver<FeedStatus>,
    generation: watch::Receiver<u64>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
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
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Loads `table` and keeps `publish` called with every new version of its rows.
///
/// At start the rows come from the database; if it cannot be read, from the snapshot file (and
/// the status is stale); with neither, start fails. `publish` runs on the feed's task and must not
/// block: store the rows (e.g. swap an `Arc`) and return.
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
    let (rows, status) = match table.load(&pool).await {
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
    publish(&rows);
    let (status_tx, status_rx) = watch::channel(status);
    let (generation_tx, generation_rx) = watch::channel(1);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let worker = Worker {
        pool,
        table: Arc::new(table),
        options,
        publish: Box::new(publish),
        current: rows,
        status: status_tx,
        generation: generation_tx,
    };
    let task = tokio::spawn(worker.run(stop_rx));
    Ok(Feed {
        status: status_rx,
        generation: generation_rx,
        shutdown: Some(stop_tx),
        task: Some(task),
    })
}

async fn save_snapshot<T: Table>(options: &FeedOptions, table: &T, rows: &[T::Row]) {
    if let Some(path) = &options.snapshot_path
        && let Err(error) = snapshot::write(path, table.name(), rows).await
    {
        // A snapshot is a convenience for cold starts; failing to write one must not stop updates.
        tracing::warn!(table = table.name(), snapshot = %path.display(), %error, "cannot write the snapshot file");
    }
}

type Publish<R> = Box<dyn FnMut(&[R]) + Send>;

struct Worker<T: Table> {
    pool: PgPool,
    table: Arc<T>,
    options: FeedOptions,
    publish: Publish<T::Row>,
    current: Vec<T::Row>,
    status: watch::Sender<FeedStatus>,
    generation: watch::Sender<u64>,
}

fn jittered(delay: Duration) -> Duration {
    delay.mul_f64(rand::random_range(0.5..1.5))
}

impl<T: Table> Worker<T> {
    async fn run(mut self, mut stop: tokio::sync::oneshot::Receiver<()>) {
        let (signal_tx, mut signal_rx) = watch::channel(0u64);
        let mut listener = self.spawn_listener(signal_tx.clone());
        let start = tokio::time::Instant::now() + self.options.poll_interval;
        let mut poll = tokio::time::interval_at(start, self.options.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => break,
                changed = signal_rx.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    if !self.sync_with_retry(&mut stop).await {
                        break;
                    }
                }
                _ = poll.tick() => {
                    if let Ok(true) = self.sync().await {
                        // A change that no notification announced: the listener may be on a
                        // half-open connection that will never deliver again. Replace it.
                        tracing::warn!(table = self.table.name(), "poll found a change no notification announced; reconnecting the listener");
                        listener.abort();
                        listener = self.spawn_listener(signal_tx.clone());
                    }
                }
            }
        }
        listener.abort();
    }

    /// Reloads until it succeeds, backing off between attempts. False when asked to stop.
    async fn sync_with_retry(&mut self, stop: &mut tokio::sync::oneshot::Receiver<()>) -> bool {
        let mut backoff = self.options.min_backoff;
        while self.sync().await.is_err() {
            tokio::select! {
                _ = &mut *stop => return false,
                () = tokio::time::sleep(jittered(backoff)) => {}
            }
            backoff = (backoff * 2).min(self.options.max_backoff);
        }
        true
    }

    /// Loads the table; publishes and snapshots when the rows differ. Ok(true) when they did.
    async fn sync(&mut self) -> Result<bool, ()> {
        match self.table.load(&self.pool).await {
            Ok(rows) => {
                self.status.send_replace(FeedStatus::Fresh {
                    loaded_at: SystemTime::now(),
                });
                if rows == self.current {
                    return Ok(false);
                }
                (self.publish)(&rows);
                save_snapshot(&self.options, &*self.table, &rows).await;
                self.current = rows;
                self.generation.send_modify(|g| *g += 1);
                Ok(true)
            }
            Err(error) => {
                tracing::warn!(table = self.table.name(), %error, "cannot reload; serving the previous values");
                self.status
                    .send_modify(|status| *status = FeedStatus::stale(status, error.to_string()));
                Err(())
            }
        }
    }

    /// The listener runs on its own task so that waiting for a notification is never cancelled
    /// half-way by the poll timer. Every notification, and every (re)connection — after which
    /// notifications may have been missed — bumps `signal`, which coalesces bursts into one reload.
    fn spawn_listener(&self, signal: watch::Sender<u64>) -> JoinHandle<()> {
        let pool = self.pool.clone();
        let table = Arc::clone(&self.table);
        let options = self.options.clone();
        tokio::spawn(async move {
            let mut backoff = options.min_backoff;
            loop {
                let mut listener = match connect(&pool, table.channel()).await {
                    Ok(listener) => listener,
                    Err(error) => {
                        tracing::warn!(table = table.name(), %error, "cannot listen for changes; retrying");
                        // Without a listener nothing else would reload before the next poll: ask
                        // for a reload, so a database that is down shows as stale at once.
                        signal.send_modify(|n| *n += 1);
                        tokio::time::sleep(jittered(backoff)).await;
                        backoff = (backoff * 2).min(options.max_backoff);
                        continue;
                    }
                };
                backoff = options.min_backoff;
                // Connected: anything sent while we were not listening is unknown, so resync.
                signal.send_modify(|n| *n += 1);
                loop {
                    match listener.try_recv().await {
                        Ok(Some(_)) => {
                            while listener.next_buffered().is_some() {}
                            signal.send_modify(|n| *n += 1);
                        }
                        // Reconnected (eager reconnect); notifications may have been lost.
                        Ok(None) => signal.send_modify(|n| *n += 1),
                        Err(error) => {
                            tracing::warn!(table = table.name(), %error, "listener connection failed; reconnecting");
                            // The database may be gone: reload now, so that the status turns
                            // stale at once instead of at the next poll, and the worker's retry
                            // loop picks the database up again as soon as it is back.
                            signal.send_modify(|n| *n += 1);
                            break;
                        }
                    }
                }
                tokio::time::sleep(jittered(backoff)).await;
            }
        })
    }
}

async fn connect(pool: &PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // The pool is the application's; the listener must outlive a pool closed for maintenance.
    listener.ignore_pool_close_event(true);
    listener.listen(channel).await?;
    Ok(listener)
}
