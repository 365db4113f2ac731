//! Evaluating a flag never touches the heap — with variants, context rules and the usage counters
//! too: this test binary counts every allocation.
//!
//! The counter is process-wide, so this file is a plain program (`harness = false`): with the
//! standard test harness, its main thread still does bookkeeping for the test it just started —
//! and allocates — while the test measures, which made the count flaky on a loaded machine.

use std::alloc::System;
use std::hint::black_box;

use groundwork_flags::{Attribute, Context, Flag, FlagSet, Flags, Operator, Reason, Rule, Variant};
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
    variant_resolutions_with_rules_allocate_nothing();
    println!("no_alloc: 2 passed, 0 failed");
}

fn variant_resolutions_with_rules_allocate_nothing() {
    let flags = Flags::new(FlagSet::new([Flag {
        enabled: true,
        rules: vec![
            Rule::new("plan", Operator::In, vec!["gold".into(), "platinum".into()]),
            Rule::new("app", Operator::SemverGte, vec!["2.1.0".into()]),
        ],
        variants: vec![
            Variant::new("blue", 34),
            Variant::new("green", 33),
            Variant::new("red", 33),
        ],
        ..Flag::new("checkout.button")
    }]));
    let gold = [
        ("plan", Attribute::Str("gold")),
        ("app", Attribute::Str("2.4.1")),
    ];
    let free = [
        ("plan", Attribute::Str("free")),
        ("app", Attribute::Str("2.4.1")),
    ];
    let old = [
        ("plan", Attribute::Str("gold")),
        ("app", Attribute::Str("1.9.0")),
    ];
    let wrong = [("plan", Attribute::Number(3.0))];
    let contexts: [(&[(&str, Attribute<'_>)], Reason); 4] = [
        (&gold, Reason::Split),
        (&free, Reason::RuleMismatch),
        (&old, Reason::RuleMismatch),
        (&wrong, Reason::AttributeType),
    ];
    for (attributes, reason) in &contexts {
        let context = Context::new("tenant-1").with_attributes(attributes);
        assert_eq!(flags.resolve("checkout.button", &context).reason, *reason);
    }

    let region = Region::new(ALLOCATOR);
    let mut served = 0_u32;
    for i in 0..10_000 {
        let (attributes, _) = &contexts[i % contexts.len()];
        let context =
            Context::new(black_box(TENANTS[i % TENANTS.len()])).with_attributes(attributes);
        let resolved = flags.resolve(black_box("checkout.button"), &context);
        if resolved.variant().is_some() {
            served += 1;
        }
        black_box(resolved.variant_name());
    }
    let change = region.change();

    assert!(served > 0, "the loop served no variant");
    assert_eq!(change.allocations, 0, "{change:?}");
    assert_eq!(change.reallocations, 0, "{change:?}");
    // Every resolution was counted, by variant.
    let counted: u64 = flags
        .usage()
        .iter()
        .filter(|u| u.flag == "checkout.button")
        .map(|u| u.count)
        .sum();
    assert_eq!(counted, 10_000 + contexts.len() as u64);
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
    // The usage counters were live during the loop: the on-count of the split flag moved.
    assert!(
        flags
            .usage()
            .iter()
            .any(|u| u.flag == "supplier.realtime.sync" && u.variant == "on" && u.count > 0)
    );

    // The counter is live: one allocation is seen.
    let control = Region::new(ALLOCATOR);
    black_box(String::from(black_box("tenant-1")));
    assert_eq!(control.change().allocations, 1);
}
