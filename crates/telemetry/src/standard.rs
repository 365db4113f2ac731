//! The standard path (`TELEMETRY_BRIDGE=standard`, feature `otel-standard`): tracing-opentelemetry's
//! [`OpenTelemetryLayer`] in place of Groundwork's bridge.
//!
//! The layer keeps an OpenTelemetry span in every `tracing` span's extensions and makes its context
//! OpenTelemetry's current context while the span is entered, so crates built on
//! `tracing_opentelemetry::OpenTelemetrySpanExt` and spans started through OpenTelemetry's API join
//! the trace. Groundwork reads the ids from that span data through tracing-opentelemetry's public
//! [`get_otel_context`], for log lines and for [`crate::current_context`].
//!
//! What the layer is given, so that what Groundwork promises on the fast path holds here too:
//! the same sampler and exporter (through the tracer provider), `code.*` and `target` attributes,
//! and only WARN and ERROR events as span events.

use opentelemetry::trace::{SpanId, TraceContextExt as _, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use tracing_core::span::Id;
use tracing_core::{Dispatch, Level, Metadata, Subscriber};
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt as _, get_otel_context};
use tracing_subscriber::filter::{FilterFn, Filtered, filter_fn};
use tracing_subscriber::layer::Layer as _;
use tracing_subscriber::registry::LookupSpan;

/// tracing-opentelemetry's layer, seeing only the events the fast bridge exports too (WARN and
/// ERROR); every span passes.
pub(crate) type StandardLayer<S> =
    Filtered<OpenTelemetryLayer<S, Tracer>, FilterFn<fn(&Metadata<'_>) -> bool>, S>;

/// The layer creating its spans with the tracer of `provider`, which samples and exports them.
pub(crate) fn layer<S>(provider: &SdkTracerProvider) -> StandardLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let tracer = provider.tracer("groundwork-telemetry");
    let spans_and_warnings: fn(&Metadata<'_>) -> bool = spans_and_warnings;
    OpenTelemetryLayer::new(tracer)
        .with_location(true)
        .with_target(true)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(filter_fn(spans_and_warnings))
}

/// Every span, and the events at WARN and ERROR: lower levels are log lines only.
fn spans_and_warnings(metadata: &Metadata<'_>) -> bool {
    metadata.is_span() || *metadata.level() <= Level::WARN
}

/// The OpenTelemetry context of span `id` in `dispatch`, when tracing-opentelemetry's layer is
/// part of it.
pub(crate) fn context_of_id(id: &Id, dispatch: &Dispatch) -> Option<opentelemetry::Context> {
    get_otel_context(id, dispatch)
}

/// The OpenTelemetry context of `span`, when tracing-opentelemetry's layer gave it one.
pub(crate) fn context_of(span: &tracing::Span) -> Option<opentelemetry::Context> {
    span.with_subscriber(|(id, dispatch)| context_of_id(id, dispatch))
        .flatten()
}

/// The trace and span ids of span `id`, for a log line.
pub(crate) fn ids_of(id: &Id, dispatch: &Dispatch) -> Option<(TraceId, SpanId)> {
    let context = context_of_id(id, dispatch)?;
    let span = context.span();
    let span_context = span.span_context();
    span_context
        .is_valid()
        .then(|| (span_context.trace_id(), span_context.span_id()))
}

/// Makes `parent` the parent of `span` under tracing-opentelemetry's layer; a span that no such
/// layer sees (the fast bridge, or no subscriber) is left as it is.
pub(crate) fn set_parent(span: &tracing::Span, parent: &opentelemetry::Context) {
    // Refused only when the layer is absent or the span already started, and then the span keeps
    // the parent it has: the same outcome as on the fast path for a span created elsewhere.
    let _ = span.set_parent(parent.clone());
}
