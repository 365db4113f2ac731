#![doc = include_str!("../README.md")]

mod canary;
#[cfg(any(
    feature = "postgres",
    feature = "redis",
    feature = "amqp",
    feature = "clickhouse",
    feature = "s3"
))]
mod cleanup;
mod error;
mod files;
mod http;
mod infra_env;
mod tls;
mod wait;

#[cfg(feature = "amqp")]
mod amqp;
#[cfg(feature = "certs")]
mod certs;
#[cfg(feature = "clickhouse")]
mod clickhouse;
#[cfg(feature = "clickhouse")]
mod clickhouse_config;
#[cfg(feature = "clickhouse")]
mod clickhouse_server;
#[cfg(feature = "postgres")]
mod cluster;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
mod redis_servers;
#[cfg(feature = "s3")]
mod s3;

pub use canary::{
    CapturedOutput, Plant, SECRET_QUERY_PARAMETERS, http_get, outputs_showing, plant_canary,
};
pub use error::TestkitError;
pub use files::{same_files, writes_same_files};
pub use http::http_request;
pub use infra_env::{INFRA_ENV_VAR, InfraEnv, Service, UrlOrigin};
pub use tls::{TEST_CA_ENV_VAR, TestTls};
pub use wait::until_changed;

#[cfg(feature = "amqp")]
pub use amqp::TestAmqp;
#[cfg(feature = "certs")]
pub use certs::{TestCa, TestCertificate};
#[cfg(feature = "clickhouse")]
pub use clickhouse::TestClickHouse;
#[cfg(feature = "clickhouse")]
pub use clickhouse_server::TestClickHouseServer;
#[cfg(all(feature = "postgres", feature = "certs"))]
pub use cluster::TlsTestCluster;
#[cfg(feature = "postgres")]
pub use cluster::{ClusterTls, TestCluster};
#[cfg(feature = "postgres")]
pub use postgres::TestDatabase;
#[cfg(feature = "redis")]
pub use redis::TestRedis;
#[cfg(feature = "redis")]
pub use redis_servers::{
    RedisServerTls, SENTINEL_MASTER, TestRedisCluster, TestRedisSentinel, TestRedisServer,
};
#[cfg(feature = "s3")]
pub use s3::TestBucket;
