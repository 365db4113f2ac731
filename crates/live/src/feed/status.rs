//! Whether what a feed serves is current.

use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use tokio::sync::watch;

/// Whether the values a feed serves are current: what a health check reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FeedStatus {
    /// The last load from the database succeeded.
    Fresh {
        /// When the last successful load finished.
        loaded_at: SystemTime,
    },
    /// Serving older values: the database could not be read since `since`, or (with a NATS or
    /// Redis transport) the transport is down or the relay silent.
    Stale {
        /// When the feed could first not reload, or stopped hearing from the relay.
        since: SystemTime,
        /// The most recent error.
        error: String,
    },
}

impl FeedStatus {
    /// Whether the status is [`FeedStatus::Fresh`].
    pub fn is_fresh(&self) -> bool {
        matches!(self, Self::Fresh { .. })
    }

    pub(crate) fn stale(previous: &Self, error: String) -> Self {
        let since = match previous {
            Self::Stale { since, .. } => *since,
            Self::Fresh { .. } => SystemTime::now(),
        };
        Self::Stale { since, error }
    }
}

/// The feed's status from two sources: the last load from the database (the worker) and, with
/// a NATS or Redis transport, whether the relay is heard from (the subscriber). Stale when
/// either is; fresh when both are fine.
#[derive(Debug)]
pub(crate) struct StatusCell {
    sender: watch::Sender<FeedStatus>,
    state: Mutex<StatusState>,
}

#[derive(Debug)]
struct StatusState {
    /// The database part: fresh or stale.
    database: FeedStatus,
    /// Since when and why the transport or relay is a problem.
    transport: Option<(SystemTime, String)>,
}

impl StatusCell {
    pub(super) fn new(sender: watch::Sender<FeedStatus>, database: FeedStatus) -> Self {
        Self {
            sender,
            state: Mutex::new(StatusState {
                database,
                transport: None,
            }),
        }
    }

    fn update(&self, change: impl FnOnce(&mut StatusState)) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut state);
        let combined = match (&state.database, &state.transport) {
            (database, None) => database.clone(),
            (FeedStatus::Fresh { .. }, Some((since, error))) => FeedStatus::Stale {
                since: *since,
                error: error.clone(),
            },
            (FeedStatus::Stale { since, error }, Some((transport_since, transport_error))) => {
                FeedStatus::Stale {
                    since: (*since).min(*transport_since),
                    error: format!("{error}; {transport_error}"),
                }
            }
        };
        self.sender.send_if_modified(|status| {
            let changed = *status != combined;
            *status = combined;
            changed
        });
    }

    /// A load from the database succeeded.
    pub(super) fn loaded(&self) {
        self.update(|state| {
            state.database = FeedStatus::Fresh {
                loaded_at: SystemTime::now(),
            };
        });
    }

    /// A load from the database failed.
    pub(super) fn load_failed(&self, error: String) {
        self.update(|state| state.database = FeedStatus::stale(&state.database, error));
    }

    /// The transport is down or the relay silent.
    pub(crate) fn transport_failed(&self, error: String) {
        self.update(|state| {
            let since = state
                .transport
                .as_ref()
                .map_or_else(SystemTime::now, |(since, _)| *since);
            state.transport = Some((since, error));
        });
    }

    /// The relay is heard from.
    pub(crate) fn transport_ok(&self) {
        let is_problem = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .transport
            .is_some();
        if is_problem {
            self.update(|state| state.transport = None);
        }
    }
}
