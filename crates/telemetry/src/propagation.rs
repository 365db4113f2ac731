//! Carrying trace context across process boundaries with the configured propagators.

use opentelemetry::Context;
use opentelemetry::propagation::{
    Extractor, Injector, TextMapCompositePropagator, TextMapPropagator,
};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};

use crate::settings::PropagatorChoice;

/// Installs the propagators named in `OTEL_PROPAGATORS` as OpenTelemetry's global propagator, which
/// [`inject`] and [`extract`] (and any OpenTelemetry-aware library) use.
pub(crate) fn install(choices: &[PropagatorChoice]) {
    let propagators: Vec<Box<dyn TextMapPropagator + Send + Sync>> = choices
        .iter()
        .filter_map(
            |choice| -> Option<Box<dyn TextMapPropagator + Send + Sync>> {
                match choice {
                    PropagatorChoice::TraceContext => Some(Box::new(TraceContextPropagator::new())),
                    PropagatorChoice::Baggage => Some(Box::new(BaggagePropagator::new())),
                    PropagatorChoice::None => None,
                }
            },
        )
        .collect();
    opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(propagators));
}

/// The OpenTelemetry context of the current `tracing` span, with the baggage its trace received:
/// what [`inject`] sends on. Empty outside a span or when the subscriber is not Groundwork's.
///
/// On the fast path (`TELEMETRY_BRIDGE=fast`, the default) `tracing` spans are not made current in
/// OpenTelemetry's own thread-local context (that would cost every poll of every instrumented
/// future), so this is the way to their ids; on the standard path it reads tracing-opentelemetry's
/// span data, as `OpenTelemetrySpanExt::context` does.
pub fn current_context() -> Context {
    let span = tracing::Span::current();
    let context = crate::bridge::context_of(&span);
    #[cfg(feature = "otel-standard")]
    let context = context.or_else(|| crate::standard::context_of(&span));
    context.unwrap_or_default()
}

/// Creates a span continuing a caller's trace: the first span `make_span` creates gets the span in
/// `parent` (read by [`extract`]) as its parent, instead of the current `tracing` span, and
/// follows its sampling decision; baggage in `parent` is carried by the span and its children. With
/// neither a span nor baggage in `parent`, `make_span`'s span is left as it is.
///
/// ```
/// use groundwork_telemetry::{extract, with_remote_parent};
/// use std::collections::HashMap;
///
/// let headers = HashMap::from([(
///     "traceparent".to_owned(),
///     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
/// )]);
/// let span = with_remote_parent(&extract(&headers), || tracing::info_span!("handle job"));
/// let _entered = span.enter();
/// ```
pub fn with_remote_parent(
    parent: &Context,
    make_span: impl FnOnce() -> tracing::Span,
) -> tracing::Span {
    crate::bridge::with_remote_parent(parent, make_span)
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
