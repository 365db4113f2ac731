//! The task that hears of changes: its own `LISTEN` connection, or the subscriber of a relay's
//! NATS or Redis transport.

use std::sync::Arc;

use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::pending::lock_pending;
use super::worker::Worker;
use super::{KeyedTable, Notice, jittered};
use crate::fanout::{self, Transport};

impl<T: KeyedTable> Worker<T> {
    /// The listener runs on its own task so that waiting for a notification is never cancelled
    /// half-way by the poll timer. It records what each notification announces in `pending` and
    /// bumps `signal`; every (re)connection — after which notifications may have been missed —
    /// asks for a full reload. The worker takes everything pending at once, so a burst
    /// coalesces into one query.
    pub(super) fn spawn_listener(&self, signal: watch::Sender<u64>) -> JoinHandle<()> {
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

async fn connect(pool: &PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = own_listener(pool).await?;
    listener.listen(channel).await?;
    Ok(listener)
}

/// A `PgListener` on a connection of its own, made with `pool`'s connect options as sqlx's
/// `PgListener::connect` makes one from a URL. `PgListener::connect_with(pool)` would keep one of
/// the application's connections for as long as it listens, leaving one less for its queries
/// and the feed's loads (none, with a pool of one). It outlives a pool closed for maintenance.
pub(crate) async fn own_listener(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let own = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with((*pool.connect_options()).clone());
    let mut listener = PgListener::connect_with(&own).await?;
    listener.ignore_pool_close_event(true);
    Ok(listener)
}
