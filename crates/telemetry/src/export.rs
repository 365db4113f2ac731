//! The OpenTelemetry tracer provider: sampler, resource and, when configured, OTLP export.

use std::sync::Arc;

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
#[cfg(feature = "otlp")]
use opentelemetry_sdk::trace::BatchSpanProcessor;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanProcessor};

#[cfg(feature = "otlp")]
use crate::bridge::SharedProcessor;

use crate::TelemetryError;
use crate::settings::{ParentBasedRoot, SamplerChoice, TelemetrySettings};

/// The span pipeline: the tracer provider (global, for spans made through OpenTelemetry's own API;
/// it owns flushing and shutdown) and, when an endpoint is configured, the batch processor the
/// `tracing` bridge hands its finished spans to directly.
pub(crate) struct Pipeline {
    pub(crate) provider: SdkTracerProvider,
    pub(crate) exporter: Option<Arc<dyn SpanProcessor>>,
}

pub(crate) fn pipeline(settings: &TelemetrySettings) -> Result<Pipeline, TelemetryError> {
    let mut resource = Resource::builder_empty().with_service_name(settings.service().to_owned());
    for (key, value) in settings.resource_pairs()? {
        if key != "service.name" {
            resource = resource.with_attribute(KeyValue::new(key, value));
        }
    }
    let resource = resource.build();
    let builder = SdkTracerProvider::builder()
        .with_sampler(sampler(settings.sampler()?))
        .with_resource(resource.clone());
    #[cfg(feature = "otlp")]
    let (builder, exporter) = match settings.traces_endpoint()? {
        Some(endpoint) => {
            use opentelemetry_sdk::trace::SpanExporter as _;

            let mut exporter = crate::otlp::exporter(settings, &endpoint)?;
            // The provider would pass the resource through the processor, which it does not own
            // alone here; the exporter gets it directly instead.
            exporter.set_resource(&resource);
            let batch: Arc<dyn SpanProcessor> =
                Arc::new(BatchSpanProcessor::builder(exporter).build());
            (
                builder.with_span_processor(MaskSecretValues(SharedProcessor(Arc::clone(&batch)))),
                Some(batch),
            )
        }
        None => (builder, None),
    };
    #[cfg(not(feature = "otlp"))]
    let exporter = if settings.traces_endpoint()?.is_some() {
        return Err(TelemetryError::Setting {
            variable: "OTEL_EXPORTER_OTLP_ENDPOINT",
            reason: "this build has no OTLP exporter; enable groundwork-telemetry's `otlp` feature"
                .to_owned(),
        });
    } else {
        None
    };
    Ok(Pipeline {
        provider: builder.build(),
        exporter,
    })
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
#[cfg(feature = "otlp")]
#[derive(Debug)]
struct MaskSecretValues(SharedProcessor);

#[cfg(feature = "otlp")]
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
