//! groundwork-backup's integration tests against real servers, in one test binary.

mod clickhouse;
mod common;
mod drills;
mod pitr;
mod postgres;
mod redis;
mod wal;
