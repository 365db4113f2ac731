//! The OpenTelemetry tracer provider: sampler, resource and, when configured, OTLP export.

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

use crate::TelemetryError;
use crate::settings::{ParentBasedRoot, SamplerChoice, TelemetrySettings};

pub(crate) fn tracer_provider(
    settings: &TelemetrySettings,
) -> Result<SdkTracerProvider, TelemetryError> {
    let mut resource = Resource::builder_empty().with_service_name(settings.service().to_owned());
    for (key, value) in settings.resource_pairs()? {
        if key != "service.name" {
            resource = resource.with_attribute(KeyValue::new(key, value));
        }
    }
    let builder = SdkTracerProvider::builder()
        .with_sampler(sampler(settings.sampler()?))
        .with_resource(resource.build());
    #[cfg(feature = "otlp")]
    let builder = match settings.traces_endpoint()? {
        Some(endpoint) => builder.with_batch_exporter(crate::otlp::ReportingExporter::new(
            crate::otlp::exporter(settings, &endpoint)?,
            &endpoint,
        )),
        None => builder,
    };
    #[cfg(not(feature = "otlp"))]
    if settings.traces_endpoint()?.is_some() {
        return Err(TelemetryError::Setting {
            variable: "OTEL_EXPORTER_OTLP_ENDPOINT",
            reason: "this build has no OTLP exporter; enable groundwork-telemetry's `otlp` feature"
                .to_owned(),
        });
    }
    Ok(builder.build())
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
