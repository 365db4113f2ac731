//! groundwork-telemetry's integration tests whose subscribers are scoped to a thread and filter at
//! `info`, in one test binary. The others are binaries of their own: those that install the
//! process-wide subscriber (`amqp.rs`, `collector_down.rs`, `otlp.rs`, `otlp_tls_warning.rs`,
//! `standard_interop.rs`), `levels.rs` (level changes rebuild `tracing`'s process-wide callsite
//! cache), and the plain programs `no_alloc.rs` (counts the process's allocations) and
//! `otlp_system_roots.rs` (sets `SSL_CERT_FILE` for a child run of itself).

mod access_log;
mod bridge;
#[path = "../common/mod.rs"]
mod common;
mod log_lines;
mod metrics_page;
mod otel_env;
mod otlp_tls;
mod readme_tables;
mod settings;
