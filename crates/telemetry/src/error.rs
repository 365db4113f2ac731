/// Why telemetry could not be set up or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A setting has a value Groundwork cannot use. Secret settings are described, never quoted.
    #[error("{variable}: {reason}")]
    Setting {
        /// The environment variable the setting is read from.
        variable: &'static str,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// Log filter directives do not parse.
    #[error(
        "invalid log filter `{directives}`: {reason}; use a level (error, warn, info, debug, trace) or directives like `info,sqlx=warn`"
    )]
    Filter {
        /// The directives as given.
        directives: String,
        /// The parser's explanation.
        reason: String,
    },
    /// The OTLP exporter could not be built.
    #[error("cannot set up OTLP export to {endpoint}: {reason}")]
    Exporter {
        /// The endpoint, with any password hidden.
        endpoint: String,
        /// What failed.
        reason: String,
    },
    /// The gRPC exporter was asked for outside a Tokio runtime.
    #[error(
        "OTLP over gRPC needs a Tokio runtime: call groundwork_telemetry::init from inside the runtime (e.g. in #[tokio::main]), or use OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"
    )]
    NoRuntime,
    /// Another global subscriber is already installed.
    #[error(
        "a global tracing subscriber is already installed; call groundwork_telemetry::init once, at the start of main"
    )]
    AlreadyInstalled,
    /// The subscriber a [`crate::LogLevelHandle`] controls has been dropped.
    #[error("the log level cannot be changed: its subscriber has been dropped")]
    SubscriberGone,
    /// Flushing spans at shutdown failed or timed out; spans not yet sent are lost.
    #[error("flushing spans at shutdown failed: {reason}")]
    Shutdown {
        /// What failed.
        reason: String,
    },
}

impl TelemetryError {
    pub(crate) fn setting(variable: &'static str, reason: &str) -> Self {
        Self::Setting {
            variable,
            reason: reason.to_owned(),
        }
    }
}
