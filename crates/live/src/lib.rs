#![doc = include_str!("../README.md")]

mod feed;
mod snapshot;

pub use feed::{Feed, FeedError, FeedOptions, FeedStatus, Table, start};
