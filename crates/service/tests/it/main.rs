//! groundwork-service's integration tests on real sockets, in one test binary.

mod edge;
mod edge_telemetry;
mod serve;
