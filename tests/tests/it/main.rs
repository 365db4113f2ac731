//! groundwork-tests' integration tests, in one test binary with a module per concern.
//!
//! Several tests run cargo themselves (`new_service` builds and tests generated services,
//! `stack` builds the example services, `readme` runs the README's commands) into this
//! workspace's target directory, and then run services against time limits. Cargo's lock keeps
//! two builds in one target directory apart, but not a build from starving a running service of
//! the machine's cores: they take [`HEAVY`] for their whole run, so they run one after another as
//! when they were binaries of their own, while the light tests run beside them. No test here
//! holds other process-global state (no global subscriber or allocator, no environment
//! variables set), so none needs a binary of its own.
//!
//! `tests/drill.rs` stays a binary of its own: the fault drill stops servers and kills services
//! while it counts failed requests and times recoveries, figures the load of other tests would
//! change.

mod config_to_servers;
mod invariants;
mod k8s;
mod new_service;
mod prometheus;
mod readme;
mod stack;
mod versioned_tables;
mod xtask_canary;

/// Held by each test that builds with cargo or runs services against time limits, for its whole
/// run.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
