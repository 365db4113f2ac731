//! groundwork-connect's integration tests against real TLS servers, in one test binary.

mod certificates;
mod tls;
mod topologies;
