//! Putting the pieces together: filter, OpenTelemetry bridge and log formatter in one subscriber.

use std::io::IsTerminal as _;
use std::time::Duration;

use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Dispatch;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Layer, Layered, SubscriberExt as _};
use tracing_subscriber::{Registry, reload};

use crate::bridge::OtelBridge;
use crate::console::SpanWriter;
use crate::json::JsonLayer;
use crate::level::{LogLevelHandle, parse_filter};
use crate::settings::{LogFormat, TelemetrySettings, TracingBridge};
use crate::{TelemetryError, export, propagation};

/// How long [`Telemetry::shutdown`] and drop wait for the last spans to reach the collector.
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The registry with Groundwork's OpenTelemetry bridge, present on the fast path.
type Bridged = Layered<Option<OtelBridge>, Registry>;
/// With tracing-opentelemetry's layer, present on the standard path.
#[cfg(feature = "otel-standard")]
type Standard = Layered<Option<crate::standard::StandardLayer<Bridged>>, Bridged>;
#[cfg(not(feature = "otel-standard"))]
type Standard = Bridged;
/// Everything below the level filter: bridge and formatter.
pub(crate) type Formatted = Layered<Box<dyn Layer<Standard> + Send + Sync>, Standard>;

/// Sets up telemetry from `settings` and installs it for the whole process: the global `tracing`
/// subscriber, OpenTelemetry's global tracer provider and propagator.
///
/// Call it once, at the start of `main`, inside the Tokio runtime when spans go out over gRPC. Keep
/// the returned [`Telemetry`] alive for the life of the service: dropping it (or calling
/// [`Telemetry::shutdown`]) flushes the spans not yet exported, waiting at most 5 seconds.
pub fn init(settings: &TelemetrySettings) -> Result<Telemetry, TelemetryError> {
    Telemetry::builder(settings).build()?.install()
}

/// Builds a [`Telemetry`] without installing it globally; for tests and for services that scope
/// subscribers themselves.
#[derive(Debug)]
#[must_use]
pub struct TelemetryBuilder<'a, W = fn() -> std::io::Stdout> {
    settings: &'a TelemetrySettings,
    make_writer: W,
    shutdown_timeout: Duration,
    console: Option<SpanWriter>,
}

impl<'a> TelemetryBuilder<'a> {
    fn new(settings: &'a TelemetrySettings) -> Self {
        Self {
            settings,
            make_writer: std::io::stdout,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            console: None,
        }
    }
}

impl<'a, W> TelemetryBuilder<'a, W>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    /// Writes log lines somewhere other than stdout.
    pub fn writer<W2>(self, make_writer: W2) -> TelemetryBuilder<'a, W2>
    where
        W2: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        TelemetryBuilder {
            settings: self.settings,
            make_writer,
            shutdown_timeout: self.shutdown_timeout,
            console: self.console,
        }
    }

    /// Writes the spans of `OTEL_TRACES_EXPORTER=console` somewhere other than stderr.
    pub fn console_writer(mut self, writer: impl std::io::Write + Send + 'static) -> Self {
        self.console = Some(SpanWriter(Box::new(writer)));
        self
    }

    /// How long shutdown waits for unexported spans (default 5 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Validates the settings and builds the subscriber. Sets OpenTelemetry's global propagator,
    /// which [`crate::inject`] and [`crate::extract`] use.
    pub fn build(self) -> Result<Telemetry, TelemetryError> {
        let settings = self.settings;
        let filter = parse_filter(&settings.log_directives())?;
        propagation::install(&settings.propagator_list());
        let export::Pipeline { provider, exporter } = export::pipeline(settings, self.console)?;

        let (filter, reload_handle) = reload::Layer::new(filter);
        // One of the two bridges; the other layer is absent (`None`), which costs a branch.
        let bridge = match settings.bridge {
            TracingBridge::Fast => Some(OtelBridge::new(
                settings.sampler(),
                exporter,
                settings.span_limits(),
            )),
            TracingBridge::Standard => None,
        };
        #[cfg(feature = "otel-standard")]
        let standard = (settings.bridge == TracingBridge::Standard)
            .then(|| crate::standard::layer::<Bridged>(&provider));
        #[cfg(not(feature = "otel-standard"))]
        if settings.bridge == TracingBridge::Standard {
            return Err(TelemetryError::setting(
                "TELEMETRY_BRIDGE",
                "this build has no standard path; enable groundwork-telemetry's `otel-standard` \
                 feature",
            ));
        }
        let formatter: Box<dyn Layer<Standard> + Send + Sync> = match settings.log_format {
            LogFormat::Pretty => Box::new(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(crate::pretty::PrettyFields::default())
                    .with_ansi(std::io::stdout().is_terminal())
                    .with_writer(self.make_writer),
            ),
            LogFormat::Json => {
                Box::new(JsonLayer::new(&settings.service()).with_writer(self.make_writer))
            }
        };
        // One global level filter and no per-layer filters: a disabled event is then one cached
        // callsite check, and spans skip per-layer filter bookkeeping on every callback. The
        // bridge itself ignores events below WARN.
        let subscriber = Registry::default().with(bridge);
        #[cfg(feature = "otel-standard")]
        let subscriber = subscriber.with(standard);
        let subscriber = subscriber.with(formatter).with(filter);
        Ok(Telemetry {
            dispatch: Dispatch::new(subscriber),
            provider,
            level: LogLevelHandle::new(reload_handle),
            shutdown_timeout: self.shutdown_timeout,
            shut_down: false,
        })
    }
}

/// Live telemetry: the subscriber, the span pipeline and the log level handle.
///
/// Dropping it flushes unexported spans (bounded by the shutdown timeout).
#[derive(Debug)]
pub struct Telemetry {
    dispatch: Dispatch,
    provider: SdkTracerProvider,
    level: LogLevelHandle,
    shutdown_timeout: Duration,
    shut_down: bool,
}

impl Telemetry {
    /// Starts building telemetry from `settings`.
    pub fn builder(settings: &TelemetrySettings) -> TelemetryBuilder<'_> {
        TelemetryBuilder::new(settings)
    }

    /// Installs this telemetry for the whole process, as [`init`] does: the global `tracing`
    /// subscriber and OpenTelemetry's global tracer provider.
    pub fn install(self) -> Result<Self, TelemetryError> {
        tracing::dispatcher::set_global_default(self.dispatch.clone())
            .map_err(|_| TelemetryError::AlreadyInstalled)?;
        opentelemetry::global::set_tracer_provider(self.provider.clone());
        Ok(self)
    }

    /// The subscriber, for `tracing::dispatcher::with_default` or `set_default`.
    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }

    /// The handle that changes the log level at run time.
    pub fn log_level(&self) -> &LogLevelHandle {
        &self.level
    }

    /// Sends the spans finished so far to the collector now, waiting for the export.
    ///
    /// This blocks; from async code call it through `tokio::task::spawn_blocking` when the runtime
    /// has a single thread, since the gRPC exporter needs the runtime to make progress.
    pub fn force_flush(&self) -> Result<(), TelemetryError> {
        self.provider
            .force_flush()
            .map_err(|error| TelemetryError::Shutdown {
                reason: error.to_string(),
            })
    }

    /// Flushes unexported spans and stops the span pipeline, waiting at most the shutdown timeout.
    /// Log lines keep being written; new spans are no longer exported.
    pub fn shutdown(mut self) -> Result<(), TelemetryError> {
        self.shut_down = true;
        self.provider
            .shutdown_with_timeout(self.shutdown_timeout)
            .map_err(|error| TelemetryError::Shutdown {
                reason: error.to_string(),
            })
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if !self.shut_down {
            // Nothing can be reported from a drop; `shutdown()` returns the error instead.
            let _ = self.provider.shutdown_with_timeout(self.shutdown_timeout);
        }
    }
}
