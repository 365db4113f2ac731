//! Carrying trace context across process boundaries with the configured propagators.

use opentelemetry::Context;
use opentelemetry::propagation::{
    Extractor, Injector, TextMapCompositePropagator, TextMapPropagator,
};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::settings::PropagatorChoice;

/// Installs the propagators named in `OTEL_PROPAGATORS` as OpenTelemetry's global propagator, which
/// [`inject`] and [`extract`] (and any OpenTelemetry-aware library) use.
pub(crate) fn install(choices: &[PropagatorChoice]) {
    let propagators: Vec<Box<dyn TextMapPropagator + Send + Sync>> = choices
        .iter()
        .map(|choice| -> Box<dyn TextMapPropagator + Send + Sync> {
            match choice {
                PropagatorChoice::TraceContext => Box::new(TraceContextPropagator::new()),
                PropagatorChoice::Baggage => Box::new(BaggagePropagator::new()),
            }
        })
        .collect();
    opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(propagators));
}

/// The OpenTelemetry context of the current `tracing` span: what [`inject`] sends on.
pub fn current_context() -> Context {
    tracing::Span::current().context()
}

/// Writes `context` into a carrier (HTTP headers, message headers) with the configured
/// propagators: `traceparent` and `tracestate` by default.
pub fn inject(context: &Context, carrier: &mut dyn Injector) {
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(context, carrier);
    });
}

/// Reads a caller's context from a carrier; an absent or malformed `traceparent` gives a context
/// without a span, so the receiver starts a new trace.
pub fn extract(carrier: &dyn Extractor) -> Context {
    opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(carrier))
}
