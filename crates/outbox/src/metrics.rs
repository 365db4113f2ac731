//! The relay's counters and gauges, set through the `metrics` facade at scrape time.

use crate::RelayStats;

/// Events published, confirmed by the broker and deleted from the outbox (counter), labelled
/// `relay`.
pub const OUTBOX_PUBLISHED: &str = "outbox_published_total";
/// Events the broker refused, unroutable (no queue bound) or nacked, kept for a later retry
/// (counter), labelled `relay`.
pub const OUTBOX_REFUSED: &str = "outbox_refused_total";
/// Failed relay rounds (counter), labelled `relay` and `kind` (`broker`: connection, channel or
/// confirm timeout; `database`), after which the round's events stay in the outbox.
pub const OUTBOX_FAILURES: &str = "outbox_failures_total";
/// Events in the outbox at the relay's last count (gauge), labelled `relay`.
pub const OUTBOX_BACKLOG: &str = "outbox_backlog";
/// Age in seconds of the oldest event in the outbox at the relay's last count, 0 when empty
/// (gauge), labelled `relay`.
pub const OUTBOX_OLDEST_AGE: &str = "outbox_oldest_age_seconds";
/// 1 while the relay holds a broker connection, else 0 (gauge), labelled `relay`.
pub const OUTBOX_BROKER_CONNECTED: &str = "outbox_broker_connected";

/// Sets the relay's metrics from `stats`, labelled `relay` = `relay`, through the `metrics`
/// facade (so into whatever recorder is current; `groundwork-telemetry`'s `HttpMetrics::on_render`
/// runs it at every scrape):
///
/// ```no_run
/// # fn wire(relay: &groundwork_outbox::Relay) {
/// let stats = relay.stats();
/// // In a function `HttpMetrics::on_render` runs:
/// groundwork_outbox::record_relay_metrics("orders", &stats.borrow());
/// # }
/// ```
pub fn record_relay_metrics(relay: &str, stats: &RelayStats) {
    metrics::describe_counter!(
        OUTBOX_PUBLISHED,
        "Outbox events published, confirmed by the broker and deleted."
    );
    metrics::describe_counter!(
        OUTBOX_REFUSED,
        "Outbox events the broker refused (unroutable or nacked), kept for a retry."
    );
    metrics::describe_counter!(
        OUTBOX_FAILURES,
        "Failed outbox relay rounds by kind (broker, database); their events stay in the outbox."
    );
    metrics::describe_gauge!(
        OUTBOX_BACKLOG,
        "Events waiting in the outbox at the relay's last count."
    );
    metrics::describe_gauge!(
        OUTBOX_OLDEST_AGE,
        "Age of the oldest event in the outbox at the relay's last count, in seconds."
    );
    metrics::describe_gauge!(
        OUTBOX_BROKER_CONNECTED,
        "1 while the outbox relay holds a broker connection, else 0."
    );
    let label = || relay.to_owned();
    metrics::counter!(OUTBOX_PUBLISHED, "relay" => label()).absolute(stats.published);
    metrics::counter!(OUTBOX_REFUSED, "relay" => label()).absolute(stats.refused);
    metrics::counter!(OUTBOX_FAILURES, "relay" => label(), "kind" => "broker")
        .absolute(stats.broker_failures);
    metrics::counter!(OUTBOX_FAILURES, "relay" => label(), "kind" => "database")
        .absolute(stats.database_failures);
    #[allow(
        clippy::cast_precision_loss,
        reason = "a backlog beyond 2^52 rows is not a concern"
    )]
    metrics::gauge!(OUTBOX_BACKLOG, "relay" => label()).set(stats.backlog as f64);
    metrics::gauge!(OUTBOX_OLDEST_AGE, "relay" => label()).set(stats.oldest_age.as_secs_f64());
    metrics::gauge!(OUTBOX_BROKER_CONNECTED, "relay" => label()).set(if stats.connected {
        1.0
    } else {
        0.0
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    #[test]
    fn every_metric_is_set_from_the_stats() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let stats = RelayStats {
            published: 7,
            refused: 2,
            broker_failures: 3,
            database_failures: 1,
            backlog: 5,
            oldest_age: Duration::from_millis(1500),
            connected: true,
        };
        metrics::with_local_recorder(&recorder, || record_relay_metrics("orders", &stats));
        let mut seen: Vec<(String, String)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let key = key.key();
                let kind = key
                    .labels()
                    .find(|label| label.key() == "kind")
                    .map(|label| format!("{{kind={}}}", label.value()))
                    .unwrap_or_default();
                let value = match value {
                    DebugValue::Counter(value) => value.to_string(),
                    DebugValue::Gauge(value) => value.into_inner().to_string(),
                    DebugValue::Histogram(_) => "histogram".to_owned(),
                };
                (format!("{}{kind}", key.name()), value)
            })
            .collect();
        seen.sort();
        let expected: Vec<(String, String)> = [
            ("outbox_backlog", "5"),
            ("outbox_broker_connected", "1"),
            ("outbox_failures_total{kind=broker}", "3"),
            ("outbox_failures_total{kind=database}", "1"),
            ("outbox_oldest_age_seconds", "1.5"),
            ("outbox_published_total", "7"),
            ("outbox_refused_total", "2"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        assert_eq!(seen, expected);
    }
}
