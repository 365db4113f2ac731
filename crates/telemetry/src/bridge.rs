//! The OpenTelemetry bridge: W3C trace and span ids for every `tracing` span, and the finished
//! spans handed to the exporter.
//!
//! Every span gets its ids when it is created, from its parent (the enclosing `tracing` span, or
//! a caller's context given to [`with_remote_parent`]) or as the root of a new trace, and the
//! sampling decision is taken then. The ids live in the span's extensions as a [`SpanState`], where
//! the JSON layer reads them for each log line and [`crate::current_context`] for propagation.
//!
//! What makes it cheap: a span records its name, attributes, events and times only when an
//! exporter is configured and the span is sampled; otherwise it costs its two ids. Entering and
//! leaving a span (once per poll of an instrumented future) costs nothing here, because the ids are
//! found through the span itself instead of a thread-local OpenTelemetry context.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::baggage::BaggageExt as _;
use opentelemetry::trace::{
    Event as OtelEvent, Link, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _,
    TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, Key, KeyValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    IdGenerator as _, RandomIdGenerator, SpanData, SpanEvents, SpanLinks, SpanProcessor,
};
use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::settings::{ParentBasedRoot, SamplerChoice, SpanLimitSettings};

thread_local! {
    /// A caller's context for the next span created on this thread (see [`with_remote_parent`]).
    static REMOTE_PARENT: RefCell<Option<RemoteParent>> = const { RefCell::new(None) };
}

/// What a span created by [`with_remote_parent`] continues: the caller's span, and the caller's
/// whole context when it carries more than a span (baggage), so it can be sent on.
#[derive(Debug, Clone)]
struct RemoteParent {
    span: SpanContext,
    carried: Option<opentelemetry::Context>,
}

/// Creates a span whose parent is the span in `parent` (a caller's context read by
/// [`crate::extract`]) instead of the current `tracing` span: the first span `make_span` creates
/// continues the caller's trace and inherits its sampling decision and baggage. A `parent` with
/// neither a valid span nor baggage leaves `make_span`'s span where it would have been.
pub(crate) fn with_remote_parent(
    parent: &opentelemetry::Context,
    make_span: impl FnOnce() -> tracing::Span,
) -> tracing::Span {
    let span = parent.span().span_context().clone();
    let has_baggage = !parent.baggage().is_empty();
    if !span.is_valid() && !has_baggage {
        return make_span();
    }
    let remote = RemoteParent {
        span,
        carried: has_baggage.then(|| parent.clone()),
    };
    let _restore = Restore(REMOTE_PARENT.with(|slot| slot.borrow_mut().replace(remote)));
    let span = make_span();
    // Still in the slot: no fast bridge made the span. Under tracing-opentelemetry's layer (the
    // standard path) the parent is set on the span instead, before anything starts it.
    #[cfg(feature = "otel-standard")]
    if REMOTE_PARENT.with(|slot| slot.borrow().is_some()) {
        crate::standard::set_parent(&span, parent);
    }
    span
}

/// Puts back what the slot held before, also when `make_span` panics or nests another call, so a
/// parent never outlives the call it was given to.
struct Restore(Option<RemoteParent>);

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.0.take();
        REMOTE_PARENT.with(|slot| *slot.borrow_mut() = previous);
    }
}

fn take_remote_parent() -> Option<RemoteParent> {
    REMOTE_PARENT.with(|slot| slot.borrow_mut().take())
}

/// A span's OpenTelemetry identity, kept in its extensions.
#[derive(Debug)]
pub(crate) struct SpanState {
    pub(crate) context: SpanContext,
    /// A caller's context with baggage, inherited by child spans and sent on by
    /// [`crate::current_context`]; `None` (the usual case) costs nothing.
    pub(crate) carried: Option<opentelemetry::Context>,
    parent_span_id: SpanId,
    parent_is_remote: bool,
    /// Present only for sampled spans while an exporter is configured.
    recording: Option<Box<Recording>>,
}

/// What an exported span carries besides its ids.
#[derive(Debug)]
struct Recording {
    name: Cow<'static, str>,
    kind: SpanKind,
    start: SystemTime,
    attributes: Vec<KeyValue>,
    dropped_attributes: u32,
    events: Vec<OtelEvent>,
    dropped_events: u32,
    links: Vec<Link>,
    dropped_links: u32,
    status: Status,
}

impl Recording {
    /// Adds an attribute, or counts it as dropped when the span holds `limit` already.
    fn push_attribute(&mut self, attribute: KeyValue, limit: usize) {
        if self.attributes.len() < limit {
            self.attributes.push(attribute);
        } else {
            self.dropped_attributes = self.dropped_attributes.saturating_add(1);
        }
    }
}

/// The layer that gives spans their OpenTelemetry ids and exports the sampled ones.
pub(crate) struct OtelBridge {
    sampler: SamplerChoice,
    exporter: Option<Arc<dyn SpanProcessor>>,
    scope: InstrumentationScope,
    limits: Limits,
}

/// The span limits as the bridge compares them.
#[derive(Debug, Clone, Copy)]
struct Limits {
    attributes: usize,
    events: usize,
    links: usize,
}

impl From<SpanLimitSettings> for Limits {
    fn from(limits: SpanLimitSettings) -> Self {
        let size = |limit: u32| usize::try_from(limit).unwrap_or(usize::MAX);
        Self {
            attributes: size(limits.attributes),
            events: size(limits.events),
            links: size(limits.links),
        }
    }
}

impl fmt::Debug for OtelBridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtelBridge")
            .field("sampler", &self.sampler)
            .field("exporting", &self.exporter.is_some())
            .finish_non_exhaustive()
    }
}

impl OtelBridge {
    /// A bridge that samples with `sampler` and, when `exporter` is given, sends finished sampled
    /// spans to it, each holding at most what `limits` allow.
    pub(crate) fn new(
        sampler: SamplerChoice,
        exporter: Option<Arc<dyn SpanProcessor>>,
        limits: SpanLimitSettings,
    ) -> Self {
        Self {
            sampler,
            exporter,
            scope: InstrumentationScope::builder("groundwork-telemetry").build(),
            limits: limits.into(),
        }
    }

    fn sampled(&self, trace_id: TraceId, parent: Option<&SpanContext>) -> bool {
        let root = |choice: ParentBasedRoot| match choice {
            ParentBasedRoot::AlwaysOn => true,
            ParentBasedRoot::AlwaysOff => false,
            ParentBasedRoot::TraceIdRatio(ratio) => ratio_sampled(ratio, trace_id),
        };
        match self.sampler {
            SamplerChoice::AlwaysOn => true,
            SamplerChoice::AlwaysOff => false,
            SamplerChoice::TraceIdRatio(ratio) => ratio_sampled(ratio, trace_id),
            SamplerChoice::ParentBased(choice) => {
                parent.map_or_else(|| root(choice), SpanContext::is_sampled)
            }
        }
    }
}

/// The trace-id ratio rule of OpenTelemetry's SDK: the low 63 bits of the trace id against the
/// ratio, so every service sampling at the same ratio keeps the same traces.
fn ratio_sampled(ratio: f64, trace_id: TraceId) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let bound = (ratio.max(0.0) * (1_u64 << 63) as f64) as u64;
    let bytes = trace_id.to_bytes();
    let mut low = [0_u8; 8];
    low.copy_from_slice(&bytes[8..]);
    (u64::from_be_bytes(low) >> 1) < bound
}

impl<S> Layer<S> for OtelBridge
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        // The parent's ids, whether it is remote, and the context it carries.
        let parent: Option<(SpanContext, bool, Option<opentelemetry::Context>)> =
            match take_remote_parent() {
                Some(RemoteParent { span, carried }) if span.is_valid() => {
                    let remote = span.is_remote();
                    Some((span, remote, carried))
                }
                // Baggage without a span: a new trace that still carries the baggage.
                Some(RemoteParent { carried, .. }) => {
                    Some((SpanContext::empty_context(), false, carried))
                }
                None => span.parent().and_then(|parent| {
                    let extensions = parent.extensions();
                    let state = extensions.get::<SpanState>()?;
                    Some((state.context.clone(), false, state.carried.clone()))
                }),
            };
        let (parent, carried) = match parent {
            Some((context, remote, carried)) if context.is_valid() => {
                (Some((context, remote)), carried)
            }
            Some((_, _, carried)) => (None, carried),
            None => (None, None),
        };
        let ids = RandomIdGenerator::default();
        let (trace_id, trace_state) = match &parent {
            Some((context, _)) => (context.trace_id(), context.trace_state().clone()),
            None => (ids.new_trace_id(), TraceState::NONE),
        };
        let sampled = self.sampled(trace_id, parent.as_ref().map(|(context, _)| context));
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let recording = (sampled && self.exporter.is_some()).then(|| {
            let metadata = attrs.metadata();
            let mut recording = Box::new(Recording {
                name: Cow::Borrowed(metadata.name()),
                kind: SpanKind::Internal,
                start: SystemTime::now(),
                attributes: Vec::with_capacity(
                    (attrs.fields().len() + 4).min(self.limits.attributes),
                ),
                dropped_attributes: 0,
                events: Vec::new(),
                dropped_events: 0,
                links: Vec::new(),
                dropped_links: 0,
                status: Status::Unset,
            });
            push_location(&mut recording, metadata, self.limits.attributes);
            // No extension lock is held: a field's `Debug` may itself log.
            let mut updates = FieldUpdates::default();
            attrs.record(&mut Values(|name, value| updates.take(name, value)));
            updates.apply(&mut recording, self.limits.attributes);
            recording
        });
        let state = SpanState {
            context: SpanContext::new(trace_id, ids.new_span_id(), flags, false, trace_state),
            carried,
            parent_span_id: parent
                .as_ref()
                .map_or(SpanId::INVALID, |(context, _)| context.span_id()),
            parent_is_remote: parent.as_ref().is_some_and(|(_, remote)| *remote),
            recording,
        };
        span.extensions_mut().insert(state);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        // Without an exporter no span records anything: nothing to look up.
        if self.exporter.is_none() {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        if !is_recording(&span.extensions()) {
            return;
        }
        // Recorded with no extension lock held: a field's `Debug` may itself log or read spans.
        let mut updates = FieldUpdates::default();
        values.record(&mut Values(|name, value| updates.take(name, value)));
        if let Some(recording) = span
            .extensions_mut()
            .get_mut::<SpanState>()
            .and_then(|state| state.recording.as_deref_mut())
        {
            updates.apply(recording, self.limits.attributes);
        }
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: Context<'_, S>) {
        if self.exporter.is_none() {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        if !is_recording(&span.extensions()) {
            return;
        }
        let Some(linked) = ctx.span(follows).and_then(|follows| {
            let extensions = follows.extensions();
            extensions
                .get::<SpanState>()
                .map(|state| state.context.clone())
        }) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        let Some(recording) = extensions
            .get_mut::<SpanState>()
            .and_then(|state| state.recording.as_deref_mut())
        else {
            return;
        };
        if recording.links.len() < self.limits.links {
            recording.links.push(Link::with_context(linked));
        } else {
            recording.dropped_links = recording.dropped_links.saturating_add(1);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        // WARN and ERROR become span events; lower levels are log lines only, which keeps the
        // per-event path one comparison here.
        if *event.metadata().level() > Level::WARN || self.exporter.is_none() {
            return;
        }
        let Some(span) = ctx.event_span(event) else {
            return;
        };
        if !is_recording(&span.extensions()) {
            return;
        }
        let metadata = event.metadata();
        // As in `on_record`, no lock while user values are formatted.
        let mut fields = EventFields {
            message: None,
            attributes: vec![
                KeyValue::new("level", metadata.level().as_str()),
                KeyValue::new("target", metadata.target()),
            ],
            secret_key: false,
            exception: None,
        };
        event.record(&mut fields);
        let EventFields {
            message,
            mut attributes,
            exception,
            ..
        } = fields;
        if let Some(exception) = exception {
            attributes.push(KeyValue::new("exception.message", exception.message));
            if let Some(kind) = exception.kind {
                attributes.push(KeyValue::new("exception.type", kind));
            }
        }
        let name: Cow<'static, str> = match message {
            Some(message) => message.into(),
            None => Cow::Borrowed(metadata.name()),
        };
        let mut extensions = span.extensions_mut();
        let Some(recording) = extensions
            .get_mut::<SpanState>()
            .and_then(|state| state.recording.as_deref_mut())
        else {
            return;
        };
        // An error fails a span whose status nobody set; `Ok`, once set, is final.
        if *metadata.level() == Level::ERROR && matches!(recording.status, Status::Unset) {
            recording.status = Status::error(name.clone());
        }
        if recording.events.len() >= self.limits.events {
            recording.dropped_events = recording.dropped_events.saturating_add(1);
            return;
        }
        recording
            .events
            .push(OtelEvent::new(name, SystemTime::now(), attributes, 0));
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(exporter) = &self.exporter else {
            return;
        };
        let Some(span) = ctx.span(&id) else { return };
        // Taken out before exporting, so no extension lock is held while the processor runs.
        let state = span.extensions_mut().remove::<SpanState>();
        let Some(SpanState {
            context,
            parent_span_id,
            parent_is_remote,
            recording: Some(recording),
            ..
        }) = state
        else {
            return;
        };
        let Recording {
            name,
            kind,
            start,
            attributes,
            dropped_attributes,
            events,
            dropped_events,
            links,
            dropped_links,
            status,
        } = *recording;
        let mut span_events = SpanEvents::default();
        span_events.events = events;
        span_events.dropped_count = dropped_events;
        let mut span_links = SpanLinks::default();
        span_links.links = links;
        span_links.dropped_count = dropped_links;
        exporter.on_end(SpanData {
            span_context: context,
            parent_span_id,
            parent_span_is_remote: parent_is_remote,
            span_kind: kind,
            name,
            start_time: start,
            end_time: SystemTime::now(),
            attributes,
            dropped_attributes_count: dropped_attributes,
            events: span_events,
            links: span_links,
            status,
            instrumentation_scope: self.scope.clone(),
        });
    }
}

/// Where the span was created, with OpenTelemetry's `code.*` attribute names.
fn push_location(
    recording: &mut Recording,
    metadata: &'static tracing_core::Metadata<'static>,
    limit: usize,
) {
    if let Some(file) = metadata.file() {
        recording.push_attribute(KeyValue::new("code.file.path", file), limit);
    }
    if let Some(module) = metadata.module_path() {
        recording.push_attribute(KeyValue::new("code.module.name", module), limit);
    }
    if let Some(line) = metadata.line() {
        recording.push_attribute(KeyValue::new("code.line.number", i64::from(line)), limit);
    }
    recording.push_attribute(KeyValue::new("target", metadata.target()), limit);
}

/// Whether the span's state records for export.
fn is_recording(extensions: &tracing_subscriber::registry::Extensions<'_>) -> bool {
    extensions
        .get::<SpanState>()
        .is_some_and(|state| state.recording.is_some())
}

/// Span fields as attributes, collected without holding the span's lock; the `otel.*` fields set
/// the span's name, kind and status instead.
#[derive(Default)]
struct FieldUpdates {
    attributes: Vec<(&'static str, Value)>,
    name: Option<String>,
    kind: Option<SpanKind>,
    status: Option<Status>,
}

impl FieldUpdates {
    fn apply(self, recording: &mut Recording, limit: usize) {
        for (name, value) in self.attributes {
            let attributes = &mut recording.attributes;
            if let Some(existing) = attributes.iter_mut().find(|kv| kv.key.as_str() == name) {
                existing.value = value;
            } else {
                recording.push_attribute(KeyValue::new(Key::from_static_str(name), value), limit);
            }
        }
        if let Some(name) = self.name {
            recording.name = Cow::Owned(name);
        }
        if let Some(kind) = self.kind {
            recording.kind = kind;
        }
        match self.status {
            // An error already described keeps its description.
            Some(Status::Error { description })
                if description.is_empty() && matches!(recording.status, Status::Error { .. }) => {}
            // `Ok` is final.
            Some(_) if matches!(recording.status, Status::Ok) => {}
            Some(status) => recording.status = status,
            None => {}
        }
    }

    /// Takes one field: an `otel.*` field sets the name, kind or status, any other is an attribute.
    fn take(&mut self, name: &'static str, value: Value) {
        let text = || value.as_str();
        match name {
            "otel.name" => self.name = Some(text().into_owned()),
            "otel.kind" => {
                let text = text();
                let kind = |name: &str| text.eq_ignore_ascii_case(name);
                self.kind = Some(if kind("server") {
                    SpanKind::Server
                } else if kind("client") {
                    SpanKind::Client
                } else if kind("producer") {
                    SpanKind::Producer
                } else if kind("consumer") {
                    SpanKind::Consumer
                } else {
                    SpanKind::Internal
                });
            }
            "otel.status_code" => {
                let text = text();
                self.status = if text.eq_ignore_ascii_case("error") {
                    Some(Status::error(""))
                } else if text.eq_ignore_ascii_case("ok") {
                    Some(Status::Ok)
                } else {
                    None
                };
            }
            "otel.status_description" | "otel.status_message" => {
                self.status = Some(Status::error(text().into_owned()));
            }
            _ => self.attributes.push((name, value)),
        }
    }
}

/// Every field of a span or an event as an OpenTelemetry value, handed to the closure with its
/// name. Strings are copied: the values outlive the borrowed fields.
struct Values<F>(F);

impl<F: FnMut(&'static str, Value)> Visit for Values<F> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        (self.0)(field.name(), Value::F64(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        (self.0)(field.name(), Value::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        (self.0)(field.name(), unsigned(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        (self.0)(field.name(), Value::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        (self.0)(field.name(), Value::String(value.to_owned().into()));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        (self.0)(field.name(), Value::String(value.to_string().into()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        (self.0)(field.name(), Value::String(format!("{value:?}").into()));
    }
}

/// An event's fields: the message names the span event, the others are its attributes (`log.*`
/// fields are the `log` bridge's metadata and skipped). The `value` of an event whose `key` names
/// a secret is masked, as in the log line (sqlx logs unknown URL parameters that way). The first
/// error value also gives the event OpenTelemetry's `exception.*` attributes.
struct EventFields {
    message: Option<String>,
    attributes: Vec<KeyValue>,
    secret_key: bool,
    exception: Option<Exception>,
}

/// `exception.message` and `exception.type` of an error value.
struct Exception {
    message: String,
    kind: Option<String>,
}

impl EventFields {
    fn take(&mut self, name: &'static str, value: Value) {
        if name == "message" {
            self.message = Some(value.as_str().into_owned());
        } else if name == "value" && self.secret_key {
            self.attributes.push(KeyValue::new("value", "***"));
        } else if !name.starts_with("log.") {
            if name == "key" {
                self.secret_key = groundwork_config::is_secret_query_param(&value.as_str());
            }
            self.attributes
                .push(KeyValue::new(Key::from_static_str(name), value));
        }
    }
}

impl Visit for EventFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.take(field.name(), Value::F64(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.take(field.name(), Value::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.take(field.name(), unsigned(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.take(field.name(), Value::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.take(field.name(), Value::String(value.to_owned().into()));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let message = value.to_string();
        if self.exception.is_none() {
            self.exception = Some(Exception {
                message: message.clone(),
                kind: error_type(value),
            });
        }
        self.take(field.name(), Value::String(message.into()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.take(field.name(), Value::String(format!("{value:?}").into()));
    }
}

/// The `exception.type` of an error: Rust keeps no type name behind `dyn Error`, so this is the
/// name its `Debug` form starts with (`ParseIntError { kind: InvalidDigit }` gives
/// `ParseIntError`; an enum gives its variant), as Sentry does, and `std::io::Error` for I/O
/// errors, whose `Debug` form starts with a variant. `None` when the `Debug` form starts with
/// no name (a quoted message, as `anyhow!` errors print).
fn error_type(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    if error.is::<std::io::Error>() {
        return Some("std::io::Error".to_owned());
    }
    let debug = format!("{error:?}");
    let end = debug
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(debug.len());
    let name = debug[..end].trim_end_matches(':');
    name.starts_with(|c: char| c.is_alphabetic() || c == '_')
        .then(|| name.to_owned())
}

/// OpenTelemetry has no unsigned integers: values that fit are integers, larger ones strings.
fn unsigned(value: u64) -> Value {
    i64::try_from(value).map_or_else(|_| Value::String(value.to_string().into()), Value::I64)
}

/// The batch processor, shared by the bridge (which hands it the spans of `tracing`) and the
/// tracer provider (which flushes it, shuts it down, and serves spans created through
/// OpenTelemetry's own API).
#[derive(Debug, Clone)]
pub(crate) struct SharedProcessor(pub(crate) Arc<dyn SpanProcessor>);

impl SpanProcessor for SharedProcessor {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.0.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.0.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
}

/// The OpenTelemetry context of `span` when the bridge gave it ids: its span, plus the baggage it
/// carries from a caller.
pub(crate) fn context_of(span: &tracing::Span) -> Option<opentelemetry::Context> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
        let span = registry.span(id)?;
        let extensions = span.extensions();
        let state = extensions.get::<SpanState>()?;
        let carried = state.carried.clone().unwrap_or_default();
        Some(carried.with_remote_span_context(state.context.clone()))
    })
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_sampling_follows_the_low_bits_of_the_trace_id() {
        let low = TraceId::from_bytes([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        let high =
            TraceId::from_bytes([0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        assert!(ratio_sampled(0.5, low));
        assert!(!ratio_sampled(0.5, high));
        assert!(ratio_sampled(1.0, high));
        assert!(!ratio_sampled(0.0, low));
    }

    #[test]
    fn parent_based_sampling_follows_the_parent() {
        let bridge = OtelBridge::new(
            SamplerChoice::ParentBased(ParentBasedRoot::AlwaysOn),
            None,
            SpanLimitSettings::default(),
        );
        let trace_id = TraceId::from_bytes([1; 16]);
        let parent = |flags| {
            SpanContext::new(
                trace_id,
                SpanId::from_bytes([2; 8]),
                flags,
                true,
                TraceState::NONE,
            )
        };
        assert!(bridge.sampled(trace_id, None));
        assert!(bridge.sampled(trace_id, Some(&parent(TraceFlags::SAMPLED))));
        assert!(!bridge.sampled(trace_id, Some(&parent(TraceFlags::default()))));
    }
}
