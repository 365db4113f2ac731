//! Writing a log line never touches the heap once the thread's buffers have grown: this test binary
//! counts every allocation.
//!
//! The counter is process-wide, so this file is a plain program (`harness = false`): the standard
//! test harness allocates on its own threads while a test runs.

use std::alloc::System;
use std::hint::black_box;

use groundwork_telemetry::{Telemetry, TelemetrySettings};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn main() {
    if let Err(error) = info_events_in_nested_spans_allocate_nothing() {
        eprintln!("no_alloc: FAILED: {error}");
        std::process::exit(1);
    }
    println!("no_alloc: 1 passed, 0 failed");
}

fn info_events_in_nested_spans_allocate_nothing() -> Result<(), String> {
    let mut settings = TelemetrySettings::default();
    settings.service_name = Some("query-engine".into());
    let telemetry = Telemetry::builder(&settings)
        .writer(std::io::sink)
        .build()
        .map_err(|error| error.to_string())?;
    tracing::dispatcher::with_default(telemetry.dispatch(), || {
        let outer = tracing::info_span!("request", tenant = "acme", requestId = "req-1");
        let _outer = outer.enter();
        let inner = tracing::info_span!("query", supplierCount = 5);
        let _inner = inner.enter();
        let event = |n: u64| {
            tracing::info!(
                resultCount = black_box(n),
                durationMs = black_box(342.5),
                cached = black_box(false),
                "Query completed successfully"
            );
            tracing::debug!(value = black_box(n), "filtered out at info");
        };
        // Warm-up: the thread's line buffers grow to the size of the largest line.
        for n in 0..100 {
            event(n);
        }
        let region = Region::new(ALLOCATOR);
        for n in 0..10_000 {
            event(n);
        }
        let stats = region.change();
        if stats.allocations == 0 && stats.reallocations == 0 {
            Ok(())
        } else {
            Err(format!(
                "10,000 events allocated {} times and reallocated {} times",
                stats.allocations, stats.reallocations
            ))
        }
    })
}
