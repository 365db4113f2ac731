//! Freshness of a hot-reloaded table, such as `platform_config`, served by a groundwork-live feed.

use std::time::{Duration, SystemTime};

use groundwork_live::FeedStatus;
use tokio::sync::watch;

use crate::check::{CheckResult, Component, ComponentType, HealthCheck};
use crate::output;

/// Warns when a feed has served stale values for longer than a number of poll intervals.
///
/// A feed that cannot reach its database keeps serving its last values, which is right for a
/// short outage and worth a warning for a long one; it is never a failure, because the service
/// still serves with the values it has. Component name `config`.
///
/// | Feed status | Result |
/// |---|---|
/// | fresh | pass, `config:age` = seconds since the last load |
/// | stale up to N poll intervals | pass, `config:staleFor` in seconds |
/// | stale longer | warn, with the feed's error |
/// | the feed stopped (its sender was dropped) | warn |
pub struct ConfigFreshnessCheck {
    status: Box<dyn Fn() -> Option<FeedStatus> + Send + Sync>,
    poll_interval: Duration,
    stale_after_polls: u32,
}

impl ConfigFreshnessCheck {
    /// A check on the statuses of a feed, from [`Feed::statuses`](groundwork_live::Feed::statuses),
    /// polled every `poll_interval` (its `FeedOptions::poll_interval`).
    pub fn new(statuses: watch::Receiver<FeedStatus>, poll_interval: Duration) -> Self {
        Self::from_fn(
            move || {
                // An error here means the sender is gone: the feed's task ended.
                statuses.has_changed().ok()?;
                Some(statuses.borrow().clone())
            },
            poll_interval,
        )
    }

    /// A check on whatever `status` returns; `None` means the feed stopped.
    pub fn from_fn(
        status: impl Fn() -> Option<FeedStatus> + Send + Sync + 'static,
        poll_interval: Duration,
    ) -> Self {
        Self {
            status: Box::new(status),
            poll_interval,
            stale_after_polls: 3,
        }
    }

    /// After how many poll intervals of staleness the check warns. 3.
    #[must_use]
    pub fn stale_after_polls(mut self, polls: u32) -> Self {
        self.stale_after_polls = polls;
        self
    }
}

impl std::fmt::Debug for ConfigFreshnessCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigFreshnessCheck")
            .field("poll_interval", &self.poll_interval)
            .field("stale_after_polls", &self.stale_after_polls)
            .finish_non_exhaustive()
    }
}

impl HealthCheck for ConfigFreshnessCheck {
    fn component(&self) -> Component {
        Component::new("config", ComponentType::Component)
    }

    async fn check(&self) -> CheckResult {
        let now = SystemTime::now();
        let seconds_since = |then: SystemTime| {
            now.duration_since(then)
                .unwrap_or(Duration::ZERO)
                .as_secs_f64()
        };
        match (self.status)() {
            None => {
                CheckResult::warn("the feed stopped: the values it served last no longer change")
            }
            Some(FeedStatus::Fresh { loaded_at }) => {
                CheckResult::pass().with_observation("age", seconds_since(loaded_at), Some("s"))
            }
            Some(FeedStatus::Stale { since, error }) => {
                let stale_for = seconds_since(since);
                let limit = self.poll_interval * self.stale_after_polls;
                let result = if stale_for > limit.as_secs_f64() {
                    CheckResult::warn(format!(
                        "stale for {stale_for:.0} s, longer than {} poll intervals of {}: {}",
                        self.stale_after_polls,
                        humantime::format_duration(self.poll_interval),
                        output::scrub(&error)
                    ))
                } else {
                    CheckResult::pass()
                };
                result.with_observation("staleFor", stale_for, Some("s"))
            }
            Some(_) => CheckResult::warn("the feed reports a status this check does not know"),
        }
    }
}
