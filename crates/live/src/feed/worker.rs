//! The feed's task: loads what was announced (the named rows or the whole table), publishes what
//! changed, writes the snapshot file and keeps the status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlx::PgPool;
use tokio::sync::watch;

use super::pending::{Pending, lock_pending};
use super::{FeedOptions, KeyedTable, StatusCell, Table, Update, jittered};
use crate::fanout::Transport;
use crate::snapshot;

pub(super) fn sort_by_key<T: KeyedTable>(rows: &mut [T::Row]) {
    // Stable: rows of a `Whole` table (all keyed "") keep the table's order.
    rows.sort_by(|a, b| T::key(a).cmp(T::key(b)));
}

pub(super) async fn save_snapshot<T: Table>(options: &FeedOptions, table: &T, rows: &[T::Row]) {
    if let Some(path) = &options.snapshot_path
        && let Err(error) = snapshot::write(path, table.name(), rows).await
    {
        // A snapshot is a convenience for cold starts; failing to write one must not stop updates.
        tracing::warn!(table = table.name(), snapshot = %path.display(), %error, "cannot write the snapshot file");
    }
}

type Publish<R> = Box<dyn for<'a> FnMut(Update<'a, R>) + Send>;

pub(super) struct Worker<T: KeyedTable> {
    pub(super) pool: PgPool,
    pub(super) table: Arc<T>,
    pub(super) options: FeedOptions,
    pub(super) publish: Publish<T::Row>,
    /// The rows published last, sorted by key.
    pub(super) current: Vec<T::Row>,
    pub(super) pending: Arc<Mutex<Pending>>,
    pub(super) status: Arc<StatusCell>,
    pub(super) generation: watch::Sender<u64>,
}

impl<T: KeyedTable> Worker<T> {
    pub(super) async fn run(mut self, mut stop: tokio::sync::oneshot::Receiver<()>) {
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

#[cfg(test)]
mod tests {
    use serde::Serialize;
    use sqlx::PgPool;

    use super::merge;
    use crate::feed::{KeyedTable, Notice, Table};

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
