use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::TelemetryError;

/// Changes the log filter of a running service without a restart.
///
/// Cheap to clone; hand it to whatever drives the level, e.g. a `groundwork-live` watch on the
/// `log.level` key. Changing the level rebuilds `tracing`'s callsite cache, so a disabled event stays
/// a single load and branch.
#[derive(Debug, Clone)]
pub struct LogLevelHandle {
    inner: reload::Handle<EnvFilter, Registry>,
}

impl LogLevelHandle {
    pub(crate) fn new(inner: reload::Handle<EnvFilter, Registry>) -> Self {
        Self { inner }
    }

    /// Replaces the filter with `directives`: a level (`debug`) or `RUST_LOG`-style directives
    /// (`info,sqlx=warn`). On a parse error the current filter stays in place.
    pub fn set(&self, directives: &str) -> Result<(), TelemetryError> {
        let filter = parse_filter(directives)?;
        self.inner
            .reload(filter)
            .map_err(|_| TelemetryError::SubscriberGone)
    }

    /// The directives in force, as `EnvFilter` prints them.
    pub fn current(&self) -> Result<String, TelemetryError> {
        self.inner
            .with_current(ToString::to_string)
            .map_err(|_| TelemetryError::SubscriberGone)
    }
}

pub(crate) fn parse_filter(directives: &str) -> Result<EnvFilter, TelemetryError> {
    let trimmed = directives.trim();
    let directives_or_level = match trimmed.to_ascii_lowercase().as_str() {
        level @ ("error" | "warn" | "info" | "debug" | "trace" | "off") => level.to_owned(),
        _ => trimmed.to_owned(),
    };
    EnvFilter::builder()
        .parse(&directives_or_level)
        .map_err(|error| TelemetryError::Filter {
            directives: trimmed.to_owned(),
            reason: error.to_string(),
        })
}
