//! What a feed follows: a [`Table`] loaded whole, or a [`KeyedTable`] whose notifications name
//! the changed row.

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgPool;

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
/// that row instead of a reload of the whole table. Start it with [`start_keyed`](crate::start_keyed).
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

/// New rows for the application, from a feed started with [`start_keyed`](crate::start_keyed).
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

/// A plain [`Table`] as a [`KeyedTable`] whose every notification asks for a full reload.
pub(super) struct Whole<T>(pub(super) T);

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
