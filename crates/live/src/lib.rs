#![doc = include_str!("../README.md")]

pub mod config;
mod feed;
mod name;
mod snapshot;

pub use feed::{
    Feed, FeedError, FeedOptions, FeedStatus, KeyedTable, Notice, Table, Update, start, start_keyed,
};
pub use name::ControlCharacter;
