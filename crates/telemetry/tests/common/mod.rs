//! Shared by the telemetry test binaries: a writer that captures log lines, and line parsing.

#![allow(dead_code, unreachable_pub)]

pub mod tls;

use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use groundwork_telemetry::{Telemetry, TelemetrySettings, TracingBridge};
use serde_json::{Map, Value};
use tracing_subscriber::fmt::MakeWriter;

/// Collects everything written to it; clones share the buffer.
#[derive(Debug, Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Every line written so far, parsed as JSON; a line that does not parse fails the test.
    pub fn lines(&self) -> anyhow::Result<Vec<Map<String, Value>>> {
        let bytes = self
            .0
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .clone();
        let text = String::from_utf8(bytes)?;
        text.lines()
            .map(|line| match serde_json::from_str::<Value>(line) {
                Ok(Value::Object(map)) => Ok(map),
                Ok(other) => Err(anyhow::anyhow!("line is not an object: {other}")),
                Err(error) => Err(anyhow::anyhow!("line is not JSON ({error}): {line}")),
            })
            .collect()
    }

    /// The raw text written so far.
    pub fn text(&self) -> String {
        self.0
            .lock()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The lines whose message equals `message`.
    pub fn with_message(&self, message: &str) -> anyhow::Result<Vec<Map<String, Value>>> {
        Ok(self
            .lines()?
            .into_iter()
            .filter(|line| line.get("message").and_then(Value::as_str) == Some(message))
            .collect())
    }
}

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The bridge these tests run on: `TELEMETRY_BRIDGE=standard cargo test -p groundwork-telemetry`
/// runs the same tests on the standard path (tracing-opentelemetry's layer); unset or `fast`, on
/// Groundwork's own bridge.
pub fn bridge() -> TracingBridge {
    match std::env::var("TELEMETRY_BRIDGE").as_deref() {
        Ok("standard") => TracingBridge::Standard,
        _ => TracingBridge::Fast,
    }
}

/// Whether these tests run on the standard path (see [`bridge`]).
pub fn standard() -> bool {
    bridge() == TracingBridge::Standard
}

/// Default settings on the bridge these tests run on (see [`bridge`]).
pub fn default_settings() -> TelemetrySettings {
    let mut settings = TelemetrySettings::default();
    settings.bridge = bridge();
    settings
}

/// Settings for the service `query-engine`, everything else default.
pub fn settings() -> TelemetrySettings {
    let mut settings = default_settings();
    settings.service_name = Some("query-engine".into());
    settings
}

/// Telemetry built (not installed) from `settings`, writing its lines into the returned capture.
pub fn telemetry(settings: &TelemetrySettings) -> anyhow::Result<(Telemetry, Captured)> {
    let captured = Captured::default();
    let telemetry = Telemetry::builder(settings)
        .writer(captured.clone())
        .build()?;
    Ok((telemetry, captured))
}

/// Telemetry built (not installed) from `settings`, writing its lines into the returned capture
/// and the spans of `OTEL_TRACES_EXPORTER=console` into `console`.
pub fn telemetry_with_console(
    settings: &TelemetrySettings,
    console: &Captured,
) -> anyhow::Result<(Telemetry, Captured)> {
    let captured = Captured::default();
    let telemetry = Telemetry::builder(settings)
        .writer(captured.clone())
        .console_writer(console.clone())
        .build()?;
    Ok((telemetry, captured))
}

/// The string at `key` of a line.
pub fn str_at<'a>(line: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    line.get(key).and_then(Value::as_str)
}

/// Runs the tests of one binary one at a time. `tracing` caches each callsite's interest
/// process-wide, combined over every live subscriber; tests that create and drop subscribers on
/// parallel threads can catch that cache mid-rebuild and lose a span or an event.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A single-threaded runtime for a test that holds [`serial`]'s guard outside its async body.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
