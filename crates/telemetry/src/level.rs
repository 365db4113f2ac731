use tracing_subscriber::{EnvFilter, reload};

use crate::TelemetryError;
use crate::subscriber::Formatted;

/// Changes the log filter of a running service without a restart.
///
/// Cheap to clone; hand it to whatever drives the level, e.g. a `groundwork-live` watch on the
/// `log.level` key. Changing the level rebuilds `tracing`'s callsite cache, so a disabled event stays
/// a single load and branch.
#[derive(Clone)]
pub struct LogLevelHandle {
    inner: reload::Handle<EnvFilter, Formatted>,
}

impl std::fmt::Debug for LogLevelHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = f.debug_struct("LogLevelHandle");
        match self.current() {
            Ok(directives) => debug.field("directives", &directives),
            Err(_) => debug.field("directives", &"<subscriber dropped>"),
        };
        debug.finish()
    }
}

impl LogLevelHandle {
    pub(crate) fn new(inner: reload::Handle<EnvFilter, Formatted>) -> Self {
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
