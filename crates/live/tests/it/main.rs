//! groundwork-live's integration tests, in one test binary. `burst.rs` stays a binary of its own:
//! it measures the process's memory.

mod cli;
mod common;
mod config;
mod drills;
mod fanout;
mod file;
mod live_config;
mod names;
mod pgbouncer;
mod versioned_ddl;
