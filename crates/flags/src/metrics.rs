//! Usage counters of a [`Flags`] handle as Prometheus metrics, through the `metrics` facade.

use crate::Flags;

/// Evaluations by flag and outcome, labelled `flag` and `variant` (`on`/`off`, or the variant's
/// name). A counter.
pub const EVALUATIONS: &str = "feature_flag_evaluations_total";
/// Evaluations of flag names no flag has. A counter.
pub const UNKNOWN_EVALUATIONS: &str = "feature_flag_unknown_evaluations_total";

/// Sets the usage counters of `flags` through the `metrics` facade, into whatever recorder is
/// current. Evaluations count on atomics inside the handle; this copies them out, so call it
/// when the page is scraped — with `groundwork-telemetry`,
/// `metrics.on_render(move || groundwork_flags::record_usage(&flags))`:
///
/// ```
/// use groundwork_flags::{Flag, FlagSet, Flags};
///
/// let flags = Flags::new(FlagSet::new([Flag::new("admin.v2")]));
/// assert!(!flags.is_enabled("admin.v2", "tenant-1"));
/// // At every scrape, with the page's recorder current:
/// groundwork_flags::record_usage(&flags);
/// ```
///
/// Flag names become label values: a service with many thousands of flags makes as many series.
pub fn record_usage(flags: &Flags) {
    metrics::describe_counter!(
        EVALUATIONS,
        "Feature flag evaluations by flag and outcome (variant, or on/off)."
    );
    metrics::describe_counter!(
        UNKNOWN_EVALUATIONS,
        "Evaluations of feature flag names that no flag has; they are off."
    );
    for usage in flags.usage() {
        metrics::counter!(EVALUATIONS, "flag" => usage.flag, "variant" => usage.variant)
            .absolute(usage.count);
    }
    metrics::counter!(UNKNOWN_EVALUATIONS).absolute(flags.unknown_evaluations());
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;
    use crate::{Flag, FlagSet, Variant};

    #[test]
    fn counters_carry_flag_and_variant_labels() {
        let flags = Flags::new(FlagSet::new([
            Flag {
                enabled: true,
                variants: vec![Variant::new("blue", 100)],
                ..Flag::new("checkout.button")
            },
            Flag::new("admin.v2"),
        ]));
        for _ in 0..3 {
            flags.is_enabled("checkout.button", "tenant-1");
        }
        flags.is_enabled("admin.v2", "tenant-1");
        flags.is_enabled("no.such.flag", "tenant-1");

        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || record_usage(&flags));
        let mut counters: Vec<(String, Vec<String>, u64)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter_map(|(key, _, _, value)| match value {
                DebugValue::Counter(count) => Some((
                    key.key().name().to_owned(),
                    key.key()
                        .labels()
                        .map(|l| format!("{}={}", l.key(), l.value()))
                        .collect(),
                    count,
                )),
                _ => None,
            })
            .collect();
        counters.sort();
        let label =
            |flag: &str, variant: &str| vec![format!("flag={flag}"), format!("variant={variant}")];
        assert_eq!(
            counters,
            [
                (EVALUATIONS.to_owned(), label("admin.v2", "off"), 1),
                (EVALUATIONS.to_owned(), label("admin.v2", "on"), 0),
                (EVALUATIONS.to_owned(), label("checkout.button", "blue"), 3),
                (EVALUATIONS.to_owned(), label("checkout.button", "off"), 0),
                (UNKNOWN_EVALUATIONS.to_owned(), vec![], 1),
            ]
        );
    }
}
