//! Evaluating a flag never touches the heap: this test binary counts every allocation.
//!
//! The counter is process-wide, so this file is a plain program (`harness = false`): with the
//! standard test harness, its main thread still does bookkeeping for the test it just started —
//! and allocates — while the test measures, which made the count flaky on a loaded machine.

use std::alloc::System;
use std::hint::black_box;

use groundwork_flags::{Flag, FlagSet, Flags, Reason};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const TENANTS: [&str; 4] = [
    "0b6f4e2a-3c1d-4f8e-9a7b-5d2c1e0f9a31",
    "tenant-1",
    "tenant-7",
    "acme-logistics-eu",
];

fn main() {
    evaluations_after_warm_up_allocate_nothing();
    println!("no_alloc: 1 passed, 0 failed");
}

fn evaluations_after_warm_up_allocate_nothing() {
    let flags = Flags::new(FlagSet::new([
        Flag {
            enabled: true,
            rollout_pct: 30,
            ..Flag::new("supplier.realtime.sync")
        },
        Flag {
            enabled: true,
            whitelist: Some(vec!["tenant-7".into()]),
            ..Flag::new("admin.v2")
        },
        Flag {
            enabled: true,
            ..Flag::new("billing.invoice.pdf")
        },
        Flag::new("search.semantic"),
        Flag {
            enabled: true,
            rollout_pct: 150,
            ..Flag::new("legacy.broken.row")
        },
    ]));
    // Every reason, including an unknown name, whose first evaluation records it for logging.
    let names = [
        ("supplier.realtime.sync", Reason::Split),
        ("admin.v2", Reason::TargetingMatch),
        ("billing.invoice.pdf", Reason::Static),
        ("search.semantic", Reason::Disabled),
        ("legacy.broken.row", Reason::InvalidRollout),
        ("no.such.flag", Reason::NotFound),
    ];

    // Warm-up: the first load on a thread may set up arc-swap's per-thread state, and the first
    // evaluation of an unknown name remembers it.
    for (name, reason) in names {
        for tenant in TENANTS {
            assert_eq!(flags.evaluate(name, tenant).reason, reason, "{name}");
        }
    }

    let region = Region::new(ALLOCATOR);
    let mut on = 0_u32;
    for i in 0..10_000 {
        let (name, _) = names[i % names.len()];
        let tenant = TENANTS[i % TENANTS.len()];
        if flags.is_enabled(black_box(name), black_box(tenant)) {
            on += 1;
        }
        black_box(flags.evaluate(black_box(name), black_box(tenant)));
    }
    let change = region.change();

    assert!(on > 0, "the loop evaluated nothing to on");
    assert_eq!(change.allocations, 0, "{change:?}");
    assert_eq!(change.reallocations, 0, "{change:?}");

    // The counter is live: one allocation is seen.
    let control = Region::new(ALLOCATOR);
    black_box(String::from(black_box("tenant-1")));
    assert_eq!(control.change().allocations, 1);
}
