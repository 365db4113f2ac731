//! Gauges of a feed's freshness, for alerting on a config feed that stopped following its table.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::FeedStatus;

/// 1 while a feed serves values it could not reload (its status is [`FeedStatus::Stale`]), else 0;
/// labelled `feed`.
pub const FEED_STALE: &str = "live_feed_stale";
/// Unix time of a feed's last successful load from the database, labelled `feed`. While the feed
/// is stale it keeps the last value set; a feed that has not loaded once since it started has
/// none.
pub const FEED_LAST_LOAD: &str = "live_feed_last_load_timestamp_seconds";
/// Seconds a feed has been stale (0 while fresh), labelled `feed`.
pub const FEED_STALE_SECONDS: &str = "live_feed_stale_seconds";

/// Sets the freshness gauges of the feed named `feed` from `status`, through the `metrics` facade
/// (so into whatever recorder is current; `groundwork-telemetry`'s `HttpMetrics::on_render` runs
/// it at every scrape):
///
/// ```no_run
/// # fn wire(feed: &groundwork_live::Feed) {
/// let statuses = feed.statuses();
/// // In a function `HttpMetrics::on_render` runs:
/// groundwork_live::record_feed_status("config", &statuses.borrow());
/// # }
/// ```
///
/// The database error of a stale feed is not recorded (it may name a host or a user).
pub fn record_feed_status(feed: &str, status: &FeedStatus) {
    metrics::describe_gauge!(
        FEED_STALE,
        "1 while the feed serves values it could not reload from the database, else 0."
    );
    metrics::describe_gauge!(
        FEED_LAST_LOAD,
        "Unix time of the feed's last successful load from the database."
    );
    metrics::describe_gauge!(
        FEED_STALE_SECONDS,
        "Seconds the feed has been stale; 0 while fresh."
    );
    let stale = metrics::gauge!(FEED_STALE, "feed" => feed.to_owned());
    let stale_seconds = metrics::gauge!(FEED_STALE_SECONDS, "feed" => feed.to_owned());
    match status {
        FeedStatus::Fresh { loaded_at } => {
            stale.set(0.0);
            stale_seconds.set(0.0);
            metrics::gauge!(FEED_LAST_LOAD, "feed" => feed.to_owned())
                .set(unix_seconds(*loaded_at));
        }
        FeedStatus::Stale { since, .. } => {
            stale.set(1.0);
            stale_seconds.set(
                SystemTime::now()
                    .duration_since(*since)
                    .unwrap_or_default()
                    .as_secs_f64(),
            );
        }
    }
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    fn gauges(status: &FeedStatus) -> Vec<(String, f64)> {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || record_feed_status("config", status));
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter_map(|(key, _, _, value)| match value {
                DebugValue::Gauge(value) => Some((key.key().name().to_owned(), value.into_inner())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_fresh_feed_reports_its_last_load_and_no_staleness() {
        let loaded_at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut gauges = gauges(&FeedStatus::Fresh { loaded_at });
        gauges.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            gauges,
            [
                (FEED_LAST_LOAD.to_owned(), 1_700_000_000.0),
                (FEED_STALE.to_owned(), 0.0),
                (FEED_STALE_SECONDS.to_owned(), 0.0),
            ]
        );
    }

    #[test]
    fn a_stale_feed_reports_how_long_and_no_new_load() {
        let since = SystemTime::now() - Duration::from_secs(90);
        let status = FeedStatus::Stale {
            since,
            error: "connection refused".into(),
        };
        let gauges = gauges(&status);
        assert!(
            gauges.iter().all(|(name, _)| name != FEED_LAST_LOAD),
            "{gauges:?}"
        );
        assert!(gauges.contains(&(FEED_STALE.to_owned(), 1.0)), "{gauges:?}");
        let seconds = gauges
            .iter()
            .find(|(name, _)| name == FEED_STALE_SECONDS)
            .map_or(0.0, |(_, value)| *value);
        assert!((90.0..120.0).contains(&seconds), "{gauges:?}");
    }
}
