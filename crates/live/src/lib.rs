#![doc = include_str!("../README.md")]

pub mod config;
mod fanout;
mod feed;
mod feed_metrics;
mod migration_files;
mod name;
mod relay;
mod snapshot;
mod stoppable;
pub mod versioned;

pub use fanout::{Transport, TransportError};
pub use feed::{
    DEFAULT_NAMESPACE, Feed, FeedError, FeedOptions, FeedStatus, KeyedTable, Notice, Table, Update,
    start, start_keyed,
};
pub use feed_metrics::{FEED_LAST_LOAD, FEED_STALE, FEED_STALE_SECONDS, record_feed_status};
pub use migration_files::write_migration_files;
pub use name::ControlCharacter;
pub use relay::{Relay, RelayError, RelayOptions, RelayRole};
