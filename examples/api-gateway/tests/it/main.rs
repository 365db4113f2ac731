//! The api-gateway's integration tests, in one test binary. `secrets.rs` stays a binary of its own:
//! it installs the process-wide subscriber.

mod gateway;
mod migrate_command;
mod redis_topologies;
