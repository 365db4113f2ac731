//! The OpenTelemetry tracer provider: sampler, resource, span limits and, when configured, the
//! exporter (OTLP or console) behind a batch processor.

use std::sync::Arc;

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanExporter, SpanProcessor,
};

use crate::TelemetryError;
use crate::bridge::SharedProcessor;
use crate::console::{ConsoleExporter, SpanWriter};
use crate::settings::{ParentBasedRoot, SamplerChoice, SpanExport, TelemetrySettings};

/// The span pipeline: the tracer provider (global, for spans made through OpenTelemetry's own API;
/// it owns flushing and shutdown) and, when spans are exported, the batch processor the
/// `tracing` bridge hands its finished spans to directly.
pub(crate) struct Pipeline {
    pub(crate) provider: SdkTracerProvider,
    pub(crate) exporter: Option<Arc<dyn SpanProcessor>>,
}

/// Builds the pipeline; console spans go to `console` (stderr when `None`).
pub(crate) fn pipeline(
    settings: &TelemetrySettings,
    console: Option<SpanWriter>,
) -> Result<Pipeline, TelemetryError> {
    let mut resource = Resource::builder_empty().with_service_name(settings.service().into_owned());
    for (key, value) in settings.resource_pairs()? {
        if key != "service.name" {
            resource = resource.with_attribute(KeyValue::new(key, value));
        }
    }
    let resource = resource.build();
    let limits = settings.span_limits();
    let builder = SdkTracerProvider::builder()
        .with_sampler(sampler(settings.sampler()))
        .with_resource(resource.clone())
        .with_max_attributes_per_span(limits.attributes)
        .with_max_events_per_span(limits.events)
        .with_max_links_per_span(limits.links);
    let exporter = match settings.span_export() {
        SpanExport::None => None,
        SpanExport::Console => {
            let writer = console.unwrap_or_else(|| SpanWriter(Box::new(std::io::stderr())));
            Some(batch(
                ConsoleExporter::new(writer, settings.service().into_owned()),
                settings,
                &resource,
            )?)
        }
        SpanExport::Otlp(endpoint) => Some(otlp(settings, &endpoint, &resource)?),
    };
    let builder = match &exporter {
        Some(batch) => {
            builder.with_span_processor(MaskSecretValues(SharedProcessor(Arc::clone(batch))))
        }
        None => builder,
    };
    Ok(Pipeline {
        provider: builder.build(),
        exporter,
    })
}

#[cfg(feature = "otlp")]
fn otlp(
    settings: &TelemetrySettings,
    endpoint: &str,
    resource: &Resource,
) -> Result<Arc<dyn SpanProcessor>, TelemetryError> {
    batch(
        crate::otlp::exporter(settings, endpoint)?,
        settings,
        resource,
    )
}

#[cfg(not(feature = "otlp"))]
fn otlp(
    _settings: &TelemetrySettings,
    _endpoint: &str,
    _resource: &Resource,
) -> Result<Arc<dyn SpanProcessor>, TelemetryError> {
    Err(TelemetryError::Setting {
        variable: "OTEL_EXPORTER_OTLP_ENDPOINT",
        reason: "this build has no OTLP exporter; enable groundwork-telemetry's `otlp` feature"
            .to_owned(),
    })
}

/// `exporter` behind a batch processor configured by `OTEL_BSP_*`.
fn batch<E: SpanExporter + 'static>(
    mut exporter: E,
    settings: &TelemetrySettings,
    resource: &Resource,
) -> Result<Arc<dyn SpanProcessor>, TelemetryError> {
    let config = settings.batch_settings()?;
    // The provider would pass the resource through the processor, which it does not own alone
    // here; the exporter gets it directly instead.
    exporter.set_resource(resource);
    // Every value is set here, so the settings win over what the SDK would read from the
    // process environment itself. The export timeout bounds each request (see `export_timeout`):
    // this processor does not read it.
    let config = BatchConfigBuilder::default()
        .with_max_queue_size(config.max_queue_size)
        .with_max_export_batch_size(config.max_export_batch_size)
        .with_scheduled_delay(config.schedule_delay)
        .build();
    Ok(Arc::new(
        BatchSpanProcessor::builder(exporter)
            .with_batch_config(config)
            .build(),
    ))
}

fn sampler(choice: SamplerChoice) -> Sampler {
    match choice {
        SamplerChoice::AlwaysOn => Sampler::AlwaysOn,
        SamplerChoice::AlwaysOff => Sampler::AlwaysOff,
        SamplerChoice::TraceIdRatio(ratio) => Sampler::TraceIdRatioBased(ratio),
        SamplerChoice::ParentBased(root) => Sampler::ParentBased(Box::new(match root {
            ParentBasedRoot::AlwaysOn => Sampler::AlwaysOn,
            ParentBasedRoot::AlwaysOff => Sampler::AlwaysOff,
            ParentBasedRoot::TraceIdRatio(ratio) => Sampler::TraceIdRatioBased(ratio),
        })),
    }
}

/// Masks the `value` attribute of a span event whose `key` attribute names a secret (`sslpassword`,
/// `token`, ...; see `groundwork_config::SECRET_QUERY_PARAMS`), as the log line and the fast bridge
/// do: sqlx logs the connection URL parameters it does not know as `warn!(%key, %value, ..)`. The
/// spans that reach the provider's processor are those of tracing-opentelemetry's layer (the
/// standard path) and those started through OpenTelemetry's API.
#[derive(Debug)]
struct MaskSecretValues(SharedProcessor);

impl SpanProcessor for MaskSecretValues {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.0.on_start(span, cx);
    }

    fn on_end(&self, mut span: opentelemetry_sdk::trace::SpanData) {
        for event in &mut span.events.events {
            let secret = event.attributes.iter().any(|kv| {
                kv.key.as_str() == "key"
                    && groundwork_config::is_secret_query_param(&kv.value.as_str())
            });
            if secret {
                for kv in &mut event.attributes {
                    if kv.key.as_str() == "value" {
                        kv.value = opentelemetry::Value::from("***");
                    }
                }
            }
        }
        self.0.on_end(span);
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
}
