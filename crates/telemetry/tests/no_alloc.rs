//! Writing a log line never touches the heap once the thread's buffers have grown: this test binary
//! counts every allocation.
//!
//! The counter is process-wide, so this file is a plain program (`harness = false`): the standard
//! test harness allocates on its own threads while a test runs.

use std::alloc::System;
use std::hint::black_box;

use groundwork_telemetry::{Telemetry, TelemetrySettings, TracingBridge};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

type Test = fn() -> Result<(), String>;

/// The bridge to measure: `TELEMETRY_BRIDGE=standard` runs these tests on the standard path.
fn bridge() -> TracingBridge {
    match std::env::var("TELEMETRY_BRIDGE").as_deref() {
        Ok("standard") => TracingBridge::Standard,
        _ => TracingBridge::Fast,
    }
}

fn main() {
    let tests: [(&str, Test); 2] = [
        (
            "info_events_in_nested_spans_allocate_nothing",
            info_events_in_nested_spans_allocate_nothing,
        ),
        (
            "the_access_log_line_adds_no_allocation_to_a_request",
            the_access_log_line_adds_no_allocation_to_a_request,
        ),
    ];
    let mut failed = 0;
    for (name, test) in tests {
        if let Err(error) = test() {
            eprintln!("no_alloc: {name} FAILED: {error}");
            failed += 1;
        }
    }
    println!("no_alloc: {} passed, {failed} failed", tests.len() - failed);
    if failed > 0 {
        std::process::exit(1);
    }
}

/// Requests through `TelemetryLayer` with and without the access log allocate the same: the line
/// is written into the thread's reused buffer.
fn the_access_log_line_adds_no_allocation_to_a_request() -> Result<(), String> {
    use std::future::Future as _;
    use std::task::{Context, Waker};

    use groundwork_telemetry::http::{AccessLog, TelemetryLayer};
    use tower::{Layer as _, Service as _};

    let mut settings = TelemetrySettings::default();
    settings.bridge = bridge();
    settings.service_name = Some("api-gateway".into());
    let telemetry = Telemetry::builder(&settings)
        .writer(std::io::sink)
        .build()
        .map_err(|error| error.to_string())?;
    let allocations = |access_log: AccessLog| {
        let handler = tower::service_fn(|_request: http::Request<()>| {
            std::future::ready(Ok::<_, std::convert::Infallible>(http::Response::new(
                String::from("{\"price\":0.4}"),
            )))
        });
        let mut service = TelemetryLayer::new()
            .with_access_log(access_log)
            .layer(handler);
        let mut context = Context::from_waker(Waker::noop());
        let mut request = |count: u32| {
            for _ in 0..count {
                let request = http::Request::get("/v1/matching/weights")
                    .header("x-request-id", "req-1")
                    .body(())
                    .unwrap_or_default();
                let mut future = std::pin::pin!(service.call(request));
                while future.as_mut().poll(&mut context).is_pending() {}
            }
        };
        // Warm-up: the thread's line buffers grow to the size of the largest line.
        request(100);
        let region = Region::new(ALLOCATOR);
        request(1_000);
        let stats = region.change();
        stats.allocations + stats.reallocations
    };
    tracing::dispatcher::with_default(telemetry.dispatch(), || {
        let without = allocations(AccessLog::off());
        let with = allocations(AccessLog::default());
        if with == without {
            Ok(())
        } else {
            Err(format!(
                "1,000 requests allocated {with} times with the access log, {without} without"
            ))
        }
    })
}

fn info_events_in_nested_spans_allocate_nothing() -> Result<(), String> {
    let mut settings = TelemetrySettings::default();
    settings.bridge = bridge();
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
