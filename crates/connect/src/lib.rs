#![doc = include_str!("../README.md")]

mod error;
mod redis_topology;
mod tls;

#[cfg(feature = "amqp")]
mod amqp;
#[cfg(feature = "clickhouse")]
mod clickhouse;
#[cfg(feature = "http")]
mod http;
#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "amqp")]
pub use amqp::{AmqpLink, AmqpLinkOptions, amqp_connect};
#[cfg(feature = "clickhouse")]
pub use clickhouse::clickhouse_client;
pub use error::{ConnectError, Service};
#[cfg(feature = "http")]
pub use http::http_client;
#[cfg(feature = "redis")]
pub use redis::{RedisConnection, RedisOptions, RedisPool, redis_pool, redis_topology_pool};
pub use redis_topology::{RedisTopology, RedisTopologySettings};
pub use tls::{TlsError, TlsSettings};
