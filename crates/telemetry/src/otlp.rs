//! OTLP span export, and the wrapper that turns a failing collector into one warning a minute.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use crate::TelemetryError;
use crate::settings::TelemetrySettings;
use crate::tls;

/// Failures are reported at most this often; the report counts what was dropped in between.
const REPORT_INTERVAL: Duration = Duration::from_mins(1);

/// The OTLP exporter for `endpoint`, wrapped to report failures.
pub(crate) fn exporter(
    settings: &TelemetrySettings,
    endpoint: &str,
) -> Result<ReportingExporter<opentelemetry_otlp::SpanExporter>, TelemetryError> {
    use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _};

    use crate::settings::{OtlpCompression, OtlpProtocol};

    let exporter_error = |reason: String| TelemetryError::Exporter {
        endpoint: groundwork_config::redact_url(endpoint).into_owned(),
        reason,
    };
    let headers = settings.export_headers()?;
    let timeout = settings.export_timeout();
    // The exporter reads the same variables from the process environment when nothing is set
    // here; gzip is set explicitly so a value from a config file or `.env` applies too.
    let gzip = settings.compression() == OtlpCompression::Gzip;
    let headers_variable = if settings.otlp_traces_headers.is_some() {
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
    } else {
        "OTEL_EXPORTER_OTLP_HEADERS"
    };
    let transport = tls::transport(settings, endpoint)?;
    match settings.protocol() {
        OtlpProtocol::Grpc => {
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(TelemetryError::NoRuntime);
            }
            let mut header_map = http::HeaderMap::new();
            for (key, value) in headers {
                let name = http::HeaderName::from_bytes(key.as_bytes()).map_err(|_| {
                    TelemetryError::Setting {
                        variable: headers_variable,
                        reason: format!("`{key}` is not a valid header name"),
                    }
                })?;
                let value =
                    http::HeaderValue::from_str(&value).map_err(|_| TelemetryError::Setting {
                        variable: headers_variable,
                        reason: format!("the value of `{key}` is not a valid header value"),
                    })?;
                header_map.insert(name, value);
            }
            let metadata =
                opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(header_map);
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(timeout)
                .with_metadata(metadata);
            if gzip {
                builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
            }
            if let tls::Transport::Tls(files) = transport {
                builder = builder.with_tls_config(grpc_tls(files, timeout));
            }
            let exporter = builder
                .build()
                .map_err(|error| exporter_error(error.to_string()))?;
            Ok(ReportingExporter::new(exporter, endpoint))
        }
        OtlpProtocol::HttpProtobuf => {
            let failure = Arc::new(LastFailure::default());
            let client =
                http_client(transport, timeout, Arc::clone(&failure)).map_err(exporter_error)?;
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(endpoint)
                .with_timeout(timeout)
                .with_headers(headers.into_iter().collect());
            if gzip {
                builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
            }
            let exporter = builder
                .build()
                .map_err(|error| exporter_error(error.to_string()))?;
            Ok(ReportingExporter::new(exporter, endpoint).with_failure_detail(failure))
        }
    }
}

/// tonic's TLS settings: the configured CA, else the system's roots; the client identity if any.
/// The handshake is bounded by the export timeout, so a server that never answers cannot hold an
/// export.
fn grpc_tls(
    files: tls::TlsFiles,
    timeout: Duration,
) -> opentelemetry_otlp::tonic_types::transport::ClientTlsConfig {
    use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};

    let config = ClientTlsConfig::new().timeout(timeout);
    let config = match files.ca {
        Some(ca) => config.ca_certificate(Certificate::from_pem(ca)),
        None => config.with_native_roots(),
    };
    match files.identity {
        Some(identity) => config.identity(Identity::from_pem(identity.certificate, identity.key)),
        None => config,
    }
}

/// The blocking reqwest client of the http/protobuf exporter: the configured CA only (else the
/// system's roots), the client identity if any, and the export timeout.
fn http_client(
    transport: tls::Transport,
    timeout: Duration,
    failure: Arc<LastFailure>,
) -> Result<RecordingClient, String> {
    // The blocking client owns a runtime of its own, which must not be created (nor dropped) on a
    // thread that runs async code; build it on a thread of its own, as the exporter itself does.
    let client = std::thread::Builder::new()
        .name("otlp-http-client".to_owned())
        .spawn(move || {
            let mut builder = reqwest::blocking::Client::builder().timeout(timeout);
            if let tls::Transport::Tls(files) = transport {
                if let Some(ca) = files.ca {
                    let roots = reqwest::Certificate::from_pem_bundle(&ca)
                        .map_err(|error| format!("cannot use the CA certificates: {error}"))?;
                    builder = builder.tls_certs_only(roots);
                }
                if let Some(identity) = files.identity {
                    let pem = [identity.key.as_slice(), b"\n", &identity.certificate].concat();
                    let identity = reqwest::Identity::from_pem(&pem)
                        .map_err(|error| format!("cannot use the client certificate: {error}"))?;
                    builder = builder.identity(identity);
                }
            }
            builder
                .build()
                .map_err(|error| format!("cannot build the HTTP client: {error}"))
        })
        .map_err(|error| format!("cannot start the HTTP client's thread: {error}"))?
        .join()
        .map_err(|_| "building the HTTP client panicked".to_owned())??;
    Ok(RecordingClient { client, failure })
}

/// The reason of the last failed request. The http/protobuf exporter reports every transport
/// failure as "network error"; the reason (an unknown certificate issuer, a refused connection)
/// is kept here for the warning.
#[derive(Debug, Default)]
pub(crate) struct LastFailure(Mutex<Option<String>>);

impl LastFailure {
    fn set(&self, reason: Option<String>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = reason;
        }
    }

    fn take(&self) -> Option<String> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// The blocking reqwest client, recording why a request failed.
#[derive(Debug)]
struct RecordingClient {
    client: reqwest::blocking::Client,
    failure: Arc<LastFailure>,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for RecordingClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        match self.client.send_bytes(request).await {
            Ok(response) => {
                self.failure.set(None);
                Ok(response)
            }
            Err(error) => {
                // reqwest's message names the URL, which may hold credentials; the warning names
                // the (redacted) endpoint already.
                let error = match error.downcast::<reqwest::Error>() {
                    Ok(error) => Box::new(error.without_url()),
                    Err(error) => error,
                };
                self.failure.set(Some(source_chain(error.as_ref())));
                Err(error)
            }
        }
    }
}

/// `error: cause: cause ...`, skipping a cause whose text its parent already shows.
fn source_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        next = cause.source();
    }
    text
}

/// Wraps an exporter so that failures are reported as one warning per interval instead of one per
/// batch, and recovery is reported once.
#[derive(Debug)]
pub(crate) struct ReportingExporter<E> {
    inner: E,
    endpoint: String,
    detail: Option<Arc<LastFailure>>,
    last_report: Mutex<Option<Instant>>,
    failed_batches: AtomicU64,
    dropped_spans: AtomicU64,
}

impl<E> ReportingExporter<E> {
    pub(crate) fn new(inner: E, endpoint: &str) -> Self {
        Self {
            inner,
            endpoint: groundwork_config::redact_url(endpoint).into_owned(),
            detail: None,
            last_report: Mutex::new(None),
            failed_batches: AtomicU64::new(0),
            dropped_spans: AtomicU64::new(0),
        }
    }

    /// Adds the transport's own reason to the warning, for an exporter whose errors lack it.
    pub(crate) fn with_failure_detail(mut self, detail: Arc<LastFailure>) -> Self {
        self.detail = Some(detail);
        self
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
        let error = match self.detail.as_deref().and_then(LastFailure::take) {
            Some(detail) => format!("{error}: {detail}"),
            None => error.to_string(),
        };
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
