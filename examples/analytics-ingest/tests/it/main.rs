//! The analytics-ingest's integration tests, in one test binary. `secrets.rs` stays a binary of its
//! own: it installs the process-wide subscriber.

mod ingest;
mod pipeline;
