//! groundwork-testkit's integration tests against real servers, in one test binary.

mod amqp;
mod clickhouse;
mod cluster;
mod cluster_tls;
mod infra_env;
mod postgres;
mod redis;
mod s3;
mod unreachable;
