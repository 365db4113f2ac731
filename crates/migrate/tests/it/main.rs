//! groundwork-migrate's integration tests against real servers, in one test binary.

mod clickhouse;
mod common;
mod postgres;
mod postgres_tls;
