//! OTLP span export, and the wrapper that turns a failing collector into one warning a minute.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use crate::TelemetryError;
use crate::settings::TelemetrySettings;

/// Failures are reported at most this often; the report counts what was dropped in between.
const REPORT_INTERVAL: Duration = Duration::from_mins(1);

pub(crate) fn exporter(
    settings: &TelemetrySettings,
    endpoint: &str,
) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _};

    use crate::settings::OtlpProtocol;

    let exporter_error = |reason: String| TelemetryError::Exporter {
        endpoint: groundwork_config::redact_url(endpoint).into_owned(),
        reason,
    };
    let headers = settings.export_headers()?;
    let timeout = settings.export_timeout();
    match settings.protocol()? {
        OtlpProtocol::Grpc => {
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(TelemetryError::NoRuntime);
            }
            let mut header_map = http::HeaderMap::new();
            for (key, value) in headers {
                let name = http::HeaderName::from_bytes(key.as_bytes()).map_err(|_| {
                    TelemetryError::Setting {
                        variable: "OTEL_EXPORTER_OTLP_HEADERS",
                        reason: format!("`{key}` is not a valid header name"),
                    }
                })?;
                let value =
                    http::HeaderValue::from_str(&value).map_err(|_| TelemetryError::Setting {
                        variable: "OTEL_EXPORTER_OTLP_HEADERS",
                        reason: format!("the value of `{key}` is not a valid header value"),
                    })?;
                header_map.insert(name, value);
            }
            let metadata =
                opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(header_map);
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(timeout)
                .with_metadata(metadata)
                .build()
                .map_err(|error| exporter_error(error.to_string()))
        }
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(endpoint)
            .with_timeout(timeout)
            .with_headers(headers.into_iter().collect())
            .build()
            .map_err(|error| exporter_error(error.to_string())),
    }
}

/// Wraps an exporter so that failures are reported as one warning per interval instead of one per
/// batch, and recovery is reported once.
#[derive(Debug)]
pub(crate) struct ReportingExporter<E> {
    inner: E,
    endpoint: String,
    last_report: Mutex<Option<Instant>>,
    failed_batches: AtomicU64,
    dropped_spans: AtomicU64,
}

impl<E> ReportingExporter<E> {
    pub(crate) fn new(inner: E, endpoint: &str) -> Self {
        Self {
            inner,
            endpoint: groundwork_config::redact_url(endpoint).into_owned(),
            last_report: Mutex::new(None),
            failed_batches: AtomicU64::new(0),
            dropped_spans: AtomicU64::new(0),
        }
    }

    fn failed(&self, spans: usize, error: &dyn std::fmt::Display) {
        self.failed_batches.fetch_add(1, Ordering::Relaxed);
        self.dropped_spans
            .fetch_add(u64::try_from(spans).unwrap_or(u64::MAX), Ordering::Relaxed);
        let Ok(mut last) = self.last_report.lock() else {
            return;
        };
        if last.is_some_and(|at| at.elapsed() < REPORT_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        let batches = self.failed_batches.swap(0, Ordering::Relaxed);
        let dropped = self.dropped_spans.swap(0, Ordering::Relaxed);
        tracing::warn!(
            endpoint = %self.endpoint,
            dropped_spans = dropped,
            failed_batches = batches,
            "spans dropped: cannot export to the OTLP collector ({error}); requests are not affected, next report in 60 s at most"
        );
    }

    fn succeeded(&self) {
        let Ok(mut last) = self.last_report.lock() else {
            return;
        };
        if last.take().is_some() {
            let dropped = self.dropped_spans.swap(0, Ordering::Relaxed);
            self.failed_batches.store(0, Ordering::Relaxed);
            tracing::info!(
                endpoint = %self.endpoint,
                dropped_spans = dropped,
                "span export to the OTLP collector recovered"
            );
        }
    }
}

impl<E: SpanExporter> SpanExporter for ReportingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => self.succeeded(),
            Err(error) => self.failed(spans, error),
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
