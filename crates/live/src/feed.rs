//! The change feed: load a table whole, follow its NOTIFY channel, poll as a safety net.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::fanout::{self, Transport};
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

/// A [`Table`] whose notifications name the row that changed, so that a change costs a query for
/// that row instead of a reload of the whole table. Start it with [`start_keyed`].
///
/// Rows have a unique text key and a revision that grows with every change (the tables Groundwork
/// ships take it from a sequence in a trigger). Full reloads remain the safety net: after every
/// (re)connection of the listener, on every poll, and when notifications arrive faster than they
/// can be followed one by one.
pub trait KeyedTable: Table {
    /// What a notification's payload announces.
    fn notice(&self, payload: &str) -> Notice;

    /// The row's unique key.
    fn key(row: &Self::Row) -> &str;

    /// The row's revision.
    fn revision(row: &Self::Row) -> i64;

    /// Loads the current rows with these keys; a key without a row was deleted.
    fn load_keys(
        &self,
        pool: &PgPool,
        keys: &[String],
    ) -> impl Future<Output = Result<Vec<Self::Row>, sqlx::Error>> + Send;
}

/// What one notification announces, from [`KeyedTable::notice`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notice {
    /// The row `key` changed at `revision`; `deleted` when the change removed it.
    Row {
        /// The row's key.
        key: String,
        /// The revision of the change.
        revision: i64,
        /// Whether the change deleted the row.
        deleted: bool,
    },
    /// Not a change this feed serves (e.g. another environment's row).
    Ignore,
    /// Unknown: reload the whole table.
    Reload,
}

/// New rows for the application, from a feed started with [`start_keyed`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Update<'a, R> {
    /// The whole table, freshly loaded: replace everything.
    Reloaded(&'a [R]),
    /// Some rows changed: `changed` are the new versions of new or changed rows, `deleted` the
    /// keys of rows that are gone; every other row is as before.
    Changed {
        /// New or changed rows.
        changed: &'a [R],
        /// Keys of deleted rows.
        deleted: &'a [String],
    },
}

/// At most this many distinct keys wait for a keyed reload; a burst that names more turns into
/// one full reload, so memory stays bounded whatever the rate of notifications.
const MAX_PENDING_KEYS: usize = 1_024;

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

/// Whether the values a feed serves are current: what a health check reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FeedStatus {
    /// The last load from the database succeeded.
    Fresh {
        /// When the last successful load finished.
        loaded_at: SystemTime,
    },
    /// Serving older values: the database could not be read since `since`, or (with a NATS or
    /// Redis transport) the transport is down or the relay silent.
    Stale {
        /// When the feed could first not reload, or stopped hearing from the relay.
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

    pub(crate) fn stale(previous: &Self, error: String) -> Self {
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
            shutdown: Some(stop),
            task: Some(task),
        }
    }
}

/// A plain [`Table`] as a [`KeyedTable`] whose every notification asks for a full reload.
struct Whole<T>(T);

impl<T: Table> Table for Whole<T> {
    type Row = T::Row;

    fn name(&self) -> &str {
        self.0.name()
    }

    fn channel(&self) -> &str {
        self.0.channel()
    }

    fn load(
        &self,
        pool: &PgPool,
    ) -> impl Future<Output = Result<Vec<Self::Row>, sqlx::Error>> + Send {
        self.0.load(pool)
    }
}

impl<T: Table> KeyedTable for Whole<T> {
    fn notice(&self, _payload: &str) -> Notice {
        Notice::Reload
    }

    // Rows have no key: they all sort equal, so the table's own order is kept.
    fn key(_row: &Self::Row) -> &'static str {
        ""
    }

    fn revision(_row: &Self::Row) -> i64 {
        0
    }

    fn load_keys(
        &self,
        pool: &PgPool,
        _keys: &[String],
    ) -> impl Future<Output = Result<Vec<Self::Row>, sqlx::Error>> + Send {
        // Never called: `notice` names no rows.
        self.0.load(pool)
    }
}

fn sort_by_key<T: KeyedTable>(rows: &mut [T::Row]) {
    // Stable: rows of a `Whole` table (all keyed "") keep the table's order.
    rows.sort_by(|a, b| T::key(a).cmp(T::key(b)));
}

async fn save_snapshot<T: Table>(options: &FeedOptions, table: &T, rows: &[T::Row]) {
    if let Some(path) = &options.snapshot_path
        && let Err(error) = snapshot::write(path, table.name(), rows).await
    {
        // A snapshot is a convenience for cold starts; failing to write one must not stop updates.
        tracing::warn!(table = table.name(), snapshot = %path.display(), %error, "cannot write the snapshot file");
    }
}

type Publish<R> = Box<dyn for<'a> FnMut(Update<'a, R>) + Send>;

/// What the listener has announced and the worker has not yet loaded. Bounded: at most
/// [`MAX_PENDING_KEYS`] keys, beyond which it asks for a full reload instead.
#[derive(Debug, Default)]
struct Pending {
    full: bool,
    /// Key → the newest revision announced for it, and whether that change was a delete.
    rows: HashMap<String, (i64, bool), foldhash::fast::RandomState>,
}

impl Pending {
    fn add(&mut self, notice: Notice) {
        match notice {
            Notice::Ignore => {}
            Notice::Reload => self.full_reload(),
            Notice::Row { .. } if self.full => {}
            Notice::Row {
                key,
                revision,
                deleted,
            } => {
                if self.rows.len() >= MAX_PENDING_KEYS && !self.rows.contains_key(&key) {
                    self.full_reload();
                    return;
                }
                let newest = self.rows.entry(key).or_insert((revision, deleted));
                if revision > newest.0 {
                    *newest = (revision, deleted);
                }
            }
        }
    }

    fn full_reload(&mut self) {
        self.full = true;
        // Released, not just cleared: a burst must not leave a large table behind.
        self.rows = HashMap::default();
    }
}

fn lock_pending(pending: &Mutex<Pending>) -> MutexGuard<'_, Pending> {
    // Pending is a set of keys: a panic while holding the lock cannot leave it inconsistent.
    pending.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Worker<T: KeyedTable> {
    pool: PgPool,
    table: Arc<T>,
    options: FeedOptions,
    publish: Publish<T::Row>,
    /// The rows published last, sorted by key.
    current: Vec<T::Row>,
    pending: Arc<Mutex<Pending>>,
    status: Arc<StatusCell>,
    generation: watch::Sender<u64>,
}

/// The feed's status from two sources: the last load from the database (the worker) and, with
/// a NATS or Redis transport, whether the relay is heard from (the subscriber). Stale when
/// either is; fresh when both are fine.
#[derive(Debug)]
pub(crate) struct StatusCell {
    sender: watch::Sender<FeedStatus>,
    state: Mutex<StatusState>,
}

#[derive(Debug)]
struct StatusState {
    /// The database part: fresh or stale.
    database: FeedStatus,
    /// Since when and why the transport or relay is a problem.
    transport: Option<(SystemTime, String)>,
}

impl StatusCell {
    fn new(sender: watch::Sender<FeedStatus>, database: FeedStatus) -> Self {
        Self {
            sender,
            state: Mutex::new(StatusState {
                database,
                transport: None,
            }),
        }
    }

    fn update(&self, change: impl FnOnce(&mut StatusState)) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut state);
        let combined = match (&state.database, &state.transport) {
            (database, None) => database.clone(),
            (FeedStatus::Fresh { .. }, Some((since, error))) => FeedStatus::Stale {
                since: *since,
                error: error.clone(),
            },
            (FeedStatus::Stale { since, error }, Some((transport_since, transport_error))) => {
                FeedStatus::Stale {
                    since: (*since).min(*transport_since),
                    error: format!("{error}; {transport_error}"),
                }
            }
        };
        self.sender.send_if_modified(|status| {
            let changed = *status != combined;
            *status = combined;
            changed
        });
    }

    /// A load from the database succeeded.
    fn loaded(&self) {
        self.update(|state| {
            state.database = FeedStatus::Fresh {
                loaded_at: SystemTime::now(),
            };
        });
    }

    /// A load from the database failed.
    fn load_failed(&self, error: String) {
        self.update(|state| state.database = FeedStatus::stale(&state.database, error));
    }

    /// The transport is down or the relay silent.
    pub(crate) fn transport_failed(&self, error: String) {
        self.update(|state| {
            let since = state
                .transport
                .as_ref()
                .map_or_else(SystemTime::now, |(since, _)| *since);
            state.transport = Some((since, error));
        });
    }

    /// The relay is heard from.
    pub(crate) fn transport_ok(&self) {
        let is_problem = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .transport
            .is_some();
        if is_problem {
            self.update(|state| state.transport = None);
        }
    }
}

pub(crate) fn jittered(delay: Duration) -> Duration {
    delay.mul_f64(rand::random_range(0.5..1.5))
}

impl<T: KeyedTable> Worker<T> {
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
                    if !self.catch_up(&mut stop).await {
                        break;
                    }
                }
                _ = poll.tick() => {
                    if let Ok(true) = self.sync().await
                        && self.options.transport == Transport::Postgres
                    {
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

    /// Loads what the listener announced since the last call: the named rows, or the whole
    /// table. False when asked to stop.
    async fn catch_up(&mut self, stop: &mut tokio::sync::oneshot::Receiver<()>) -> bool {
        let pending = std::mem::take(&mut *lock_pending(&self.pending));
        if !pending.full && self.sync_keys(pending.rows).await.is_ok() {
            return true;
        }
        // A full reload was asked for, or loading the named rows failed: reload everything
        // until it works, which also covers the rows named.
        self.sync_with_retry(stop).await
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

    fn held(&self, key: &str) -> Option<&T::Row> {
        self.current
            .binary_search_by(|row| T::key(row).cmp(key))
            .ok()
            .map(|at| &self.current[at])
    }

    /// Loads the rows named by notifications, skipping those the feed already holds at the
    /// announced revision or newer; publishes and snapshots what changed.
    async fn sync_keys(
        &mut self,
        announced: HashMap<String, (i64, bool), foldhash::fast::RandomState>,
    ) -> Result<(), ()> {
        let mut keys: Vec<String> = announced
            .into_iter()
            .filter(|(key, (revision, deleted))| match self.held(key) {
                Some(row) => T::revision(row) < *revision,
                // Nothing held: an insert must be loaded, a delete is already in effect.
                None => !deleted,
            })
            .map(|(key, _)| key)
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        keys.sort_unstable();
        let loaded = match self.table.load_keys(&self.pool, &keys).await {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(table = self.table.name(), %error, "cannot load changed rows; serving the previous values");
                self.status.load_failed(error.to_string());
                return Err(());
            }
        };
        self.status.loaded();
        // Only the keys asked for, once each: the rows now in the table.
        let mut loaded: Vec<T::Row> = loaded
            .into_iter()
            .filter(|row| {
                keys.binary_search_by(|k| k.as_str().cmp(T::key(row)))
                    .is_ok()
            })
            .collect();
        sort_by_key::<T>(&mut loaded);
        loaded.dedup_by(|a, b| T::key(a) == T::key(b));
        // Asked for, held, and no longer in the table: deleted. Sorted, as `keys` is.
        let deleted: Vec<String> = keys
            .into_iter()
            .filter(|key| {
                self.held(key).is_some()
                    && loaded.binary_search_by(|row| T::key(row).cmp(key)).is_err()
            })
            .collect();
        let changed: Vec<T::Row> = loaded
            .into_iter()
            .filter(|row| self.held(T::key(row)) != Some(row))
            .collect();
        if changed.is_empty() && deleted.is_empty() {
            return Ok(());
        }
        (self.publish)(Update::Changed {
            changed: &changed,
            deleted: &deleted,
        });
        merge::<T>(&mut self.current, changed, &deleted);
        save_snapshot(&self.options, &*self.table, &self.current).await;
        self.generation.send_modify(|g| *g += 1);
        Ok(())
    }

    /// Loads the table; publishes and snapshots when the rows differ. Ok(true) when they did.
    async fn sync(&mut self) -> Result<bool, ()> {
        match self.table.load(&self.pool).await {
            Ok(mut rows) => {
                self.status.loaded();
                sort_by_key::<T>(&mut rows);
                if rows == self.current {
                    return Ok(false);
                }
                (self.publish)(Update::Reloaded(&rows));
                save_snapshot(&self.options, &*self.table, &rows).await;
                self.current = rows;
                self.generation.send_modify(|g| *g += 1);
                Ok(true)
            }
            Err(error) => {
                tracing::warn!(table = self.table.name(), %error, "cannot reload; serving the previous values");
                self.status.load_failed(error.to_string());
                Err(())
            }
        }
    }

    /// The listener runs on its own task so that waiting for a notification is never cancelled
    /// half-way by the poll timer. It records what each notification announces in `pending` and
    /// bumps `signal`; every (re)connection — after which notifications may have been missed —
    /// asks for a full reload. The worker takes everything pending at once, so a burst
    /// coalesces into one query.
    fn spawn_listener(&self, signal: watch::Sender<u64>) -> JoinHandle<()> {
        let pool = self.pool.clone();
        let table = Arc::clone(&self.table);
        let options = self.options.clone();
        let pending = Arc::clone(&self.pending);
        let announce = move |notices: &mut dyn Iterator<Item = Notice>| {
            let mut queued = lock_pending(&pending);
            for notice in notices {
                queued.add(notice);
            }
            drop(queued);
            // The receiver lives as long as the worker, which outlives this task.
            signal.send_modify(|n| *n += 1);
        };
        if self.options.transport != Transport::Postgres {
            let settings = fanout::SubscriberSettings {
                transport: self.options.transport.clone(),
                subject: fanout::subject(&self.options.namespace, self.table.channel()),
                relay_timeout: self.options.relay_timeout,
                min_backoff: self.options.min_backoff,
                max_backoff: self.options.max_backoff,
                table: self.table.name().to_owned(),
            };
            let notice = move |payload: &str| table.notice(payload);
            return tokio::spawn(fanout::run_subscriber(
                settings,
                notice,
                Arc::new(announce),
                Arc::clone(&self.status),
            ));
        }
        tokio::spawn(async move {
            let reload = || announce(&mut std::iter::once(Notice::Reload));
            let mut backoff = options.min_backoff;
            loop {
                let mut listener = match connect(&pool, table.channel()).await {
                    Ok(listener) => listener,
                    Err(error) => {
                        tracing::warn!(table = table.name(), %error, "cannot listen for changes; retrying");
                        // Without a listener nothing else would reload before the next poll: ask
                        // for a reload, so a database that is down shows as stale at once.
                        reload();
                        tokio::time::sleep(jittered(backoff)).await;
                        backoff = (backoff * 2).min(options.max_backoff);
                        continue;
                    }
                };
                backoff = options.min_backoff;
                // Connected: anything sent while we were not listening is unknown, so resync.
                reload();
                loop {
                    match listener.try_recv().await {
                        Ok(Some(first)) => {
                            let buffered = std::iter::from_fn(|| listener.next_buffered());
                            let mut notices = std::iter::once(first)
                                .chain(buffered)
                                .map(|n| table.notice(n.payload()));
                            announce(&mut notices);
                        }
                        // Reconnected (eager reconnect); notifications may have been lost.
                        Ok(None) => reload(),
                        Err(error) => {
                            tracing::warn!(table = table.name(), %error, "listener connection failed; reconnecting");
                            // The database may be gone: reload now, so that the status turns
                            // stale at once instead of at the next poll, and the worker's retry
                            // loop picks the database up again as soon as it is back.
                            reload();
                            break;
                        }
                    }
                }
                tokio::time::sleep(jittered(backoff)).await;
            }
        })
    }
}

/// Replaces or adds the `changed` rows in `current` and removes the `deleted` keys; all three
/// sorted by key, and so is the result.
fn merge<T: KeyedTable>(current: &mut Vec<T::Row>, changed: Vec<T::Row>, deleted: &[String]) {
    // A few changes (the usual case: one) are made in place, so that an update of one row
    // costs a binary search, not a copy of the table.
    if changed.len() + deleted.len() <= 16 {
        for key in deleted {
            if let Ok(at) = current.binary_search_by(|row| T::key(row).cmp(key)) {
                current.remove(at);
            }
        }
        for row in changed {
            match current.binary_search_by(|held| T::key(held).cmp(T::key(&row))) {
                Ok(at) => current[at] = row,
                Err(at) => current.insert(at, row),
            }
        }
        return;
    }
    let current_rows = std::mem::take(current);
    let mut merged = Vec::with_capacity(current_rows.len() + changed.len());
    let mut changed = changed.into_iter().peekable();
    for row in current_rows {
        while let Some(new) = changed.next_if(|new| T::key(new) < T::key(&row)) {
            merged.push(new);
        }
        if let Some(new) = changed.next_if(|new| T::key(new) == T::key(&row)) {
            merged.push(new);
        } else if deleted
            .binary_search_by(|key| key.as_str().cmp(T::key(&row)))
            .is_err()
        {
            merged.push(row);
        }
    }
    merged.extend(changed);
    *current = merged;
}

async fn connect(pool: &PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // The pool is the application's; the listener must outlive a pool closed for maintenance.
    listener.ignore_pool_close_event(true);
    listener.listen(channel).await?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
    struct Row {
        key: String,
        revision: i64,
    }

    struct Rows;

    impl Table for Rows {
        type Row = Row;

        fn name(&self) -> &'static str {
            "rows"
        }

        fn channel(&self) -> &'static str {
            "rows"
        }

        async fn load(&self, _pool: &PgPool) -> Result<Vec<Row>, sqlx::Error> {
            Ok(Vec::new())
        }
    }

    impl KeyedTable for Rows {
        fn notice(&self, _payload: &str) -> Notice {
            Notice::Reload
        }

        fn key(row: &Row) -> &str {
            &row.key
        }

        fn revision(row: &Row) -> i64 {
            row.revision
        }

        async fn load_keys(
            &self,
            _pool: &PgPool,
            _keys: &[String],
        ) -> Result<Vec<Row>, sqlx::Error> {
            Ok(Vec::new())
        }
    }

    fn row(key: &str, revision: i64) -> Row {
        Row {
            key: key.to_owned(),
            revision,
        }
    }

    fn changed(key: &str, revision: i64) -> Notice {
        Notice::Row {
            key: key.to_owned(),
            revision,
            deleted: false,
        }
    }

    #[test]
    fn pending_keeps_the_newest_revision_of_each_key() {
        let mut pending = Pending::default();
        for revision in [3, 9, 5] {
            pending.add(changed("a", revision));
        }
        pending.add(Notice::Ignore);
        pending.add(Notice::Row {
            key: "b".to_owned(),
            revision: 4,
            deleted: true,
        });
        assert!(!pending.full);
        assert_eq!(pending.rows.get("a"), Some(&(9, false)));
        assert_eq!(pending.rows.get("b"), Some(&(4, true)));
    }

    #[test]
    fn a_burst_of_distinct_keys_is_bounded_and_becomes_a_full_reload() {
        let mut pending = Pending::default();
        for i in 0..10_000 {
            pending.add(changed(&format!("key{i}"), i));
            assert!(pending.rows.len() <= MAX_PENDING_KEYS);
        }
        assert!(pending.full);
        assert!(pending.rows.is_empty());
        // Nothing is queued after that: the reload covers it.
        pending.add(changed("later", 1));
        assert!(pending.rows.is_empty());
    }

    #[test]
    fn merge_replaces_adds_and_deletes_in_key_order() {
        let current = vec![row("a", 1), row("c", 2), row("e", 3), row("g", 4)];
        let changed = vec![row("b", 5), row("c", 6), row("h", 7)];
        let deleted = vec!["e".to_owned(), "x".to_owned()];
        let expected = vec![
            row("a", 1),
            row("b", 5),
            row("c", 6),
            row("g", 4),
            row("h", 7),
        ];
        let mut small = current.clone();
        merge::<Rows>(&mut small, changed.clone(), &deleted);
        assert_eq!(small, expected, "in place");

        // Past the in-place limit, the same result by merging.
        let many: Vec<Row> = (0..40).map(|i| row(&format!("z{i:02}"), 8)).collect();
        let mut large = current;
        merge::<Rows>(&mut large, [changed, many.clone()].concat(), &deleted);
        assert_eq!(large, [expected, many].concat(), "merged");
    }
}
