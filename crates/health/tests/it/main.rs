//! groundwork-health's integration tests, in one test binary.

mod common;
mod dependencies;
mod endpoints;
mod freshness;
mod redis_topologies;
mod schema;
