//! The JSON log line formatter: a `tracing-subscriber` [`Layer`] that writes the platform's log line
//! contract straight into a reused per-thread buffer.
//!
//! ```text
//! {"timestamp":"2025-01-15T08:30:15.123Z","level":"INFO","service":"query-engine",
//!  "traceId":"…32 hex…","spanId":"…16 hex…","message":"…","context":{…}}
//! ```
//!
//! Span fields are serialized once, when the span is created or records a value, and kept in the
//! span's extensions; an event only copies those fragments. Nothing on the event path allocates once
//! the thread's buffers have grown to the size of the largest line.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::TraceContextExt as _;
use smallvec::SmallVec;
use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::bridge::SpanState;

/// Writes one JSON object per event, in the platform's log line format.
///
/// `traceId` and `spanId` are the W3C ids of the event's innermost span, which the OpenTelemetry
/// bridge installed by [`crate::init`] gives every `tracing` span: Groundwork's own on the fast
/// path, tracing-opentelemetry's span data on the standard path (`otel-standard`). Used alone, the
/// layer takes them from the current OpenTelemetry context instead. Outside a span both keys are
/// absent. `context` holds the event's fields followed by
/// the fields of its enclosing spans, innermost first; a name already written is skipped, so the
/// innermost value wins.
///
/// ```
/// use tracing_subscriber::layer::SubscriberExt as _;
///
/// let subscriber = tracing_subscriber::registry()
///     .with(groundwork_telemetry::JsonLayer::new("billing").with_writer(std::io::sink));
/// tracing::subscriber::with_default(subscriber, || {
///     tracing::info!(invoices = 3, "invoices sent");
/// });
/// ```
#[derive(Debug)]
pub struct JsonLayer<W = fn() -> std::io::Stdout> {
    /// The service name, already escaped as the inside of a JSON string.
    service: Box<str>,
    make_writer: W,
    /// The subscriber this layer is part of, where tracing-opentelemetry's span data is found on
    /// the standard path.
    #[cfg(feature = "otel-standard")]
    dispatch: std::sync::OnceLock<tracing_core::dispatcher::WeakDispatch>,
}

impl JsonLayer {
    /// A layer that writes lines for `service` to standard output.
    pub fn new(service: &str) -> Self {
        let mut escaped = String::with_capacity(service.len());
        escape_into(&mut escaped, service);
        Self {
            service: escaped.into_boxed_str(),
            make_writer: std::io::stdout,
            #[cfg(feature = "otel-standard")]
            dispatch: std::sync::OnceLock::new(),
        }
    }
}

impl<W> JsonLayer<W> {
    /// The same layer writing to another destination (a file, a test buffer, `std::io::sink`).
    pub fn with_writer<W2>(self, make_writer: W2) -> JsonLayer<W2>
    where
        W2: for<'w> MakeWriter<'w> + 'static,
    {
        JsonLayer {
            service: self.service,
            make_writer,
            #[cfg(feature = "otel-standard")]
            dispatch: self.dispatch,
        }
    }
}

/// The fields a span recorded, each already serialized as a JSON value: one buffer and the range
/// of each value in it, so a span costs one allocation besides its extension, however many fields
/// it has (up to eight; more spill the index onto the heap).
#[derive(Debug, Default)]
struct SpanFields {
    json: String,
    /// Inline for spans of up to eight fields, so the index costs no allocation of its own.
    entries: SmallVec<[(&'static str, std::ops::Range<usize>); 8]>,
}

impl SpanFields {
    fn set(&mut self, name: &'static str, write: impl FnOnce(&mut String)) {
        // `otel.*` fields instruct the OpenTelemetry bridge (span name, kind, status); they are not
        // the application's context.
        if name.starts_with("otel.") {
            return;
        }
        // A value recorded again is appended; the old bytes stay unused until the span closes.
        let start = self.json.len();
        write(&mut self.json);
        let range = start..self.json.len();
        // Names come from the span's callsite, one `&'static str` per field: comparing the pointers
        // finds the same field without comparing bytes.
        if let Some((_, value)) = self
            .entries
            .iter_mut()
            .find(|(n, _)| std::ptr::eq(n.as_ptr(), name.as_ptr()) && n.len() == name.len())
        {
            *value = range;
        } else {
            self.entries.push((name, range));
        }
    }

    /// Takes over the values in `other`, which win over the ones already here.
    fn merge(&mut self, other: &SpanFields) {
        for (name, value) in other.iter() {
            self.set(name, |out| out.push_str(value));
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.entries
            .iter()
            .map(|(name, range)| (*name, self.json.get(range.clone()).unwrap_or("null")))
    }
}

impl Visit for SpanFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field.name(), |out| write_f64(out, value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), |out| write_integer(out, value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), |out| write_integer(out, value));
    }
    fn record_i128(&mut self, field: &Field, value: i128) {
        self.set(field.name(), |out| write_integer(out, value));
    }
    fn record_u128(&mut self, field: &Field, value: u128) {
        self.set(field.name(), |out| write_integer(out, value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), |out| {
            out.push_str(if value { "true" } else { "false" });
        });
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), |out| write_json_str(out, value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.set(field.name(), |out| {
            write_json_display(out, &ErrorChain(value));
        });
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.set(field.name(), |out| write_json_debug(out, value));
    }
}

/// The bytes reserved for a span's serialized fields when it is created.
const SPAN_FIELDS_CAPACITY: usize = 256;

/// Per-thread buffers for one line; reused so that steady-state events do not allocate.
#[derive(Debug, Default)]
struct LineBuffers {
    line: String,
    message: String,
    context: String,
    names: Vec<&'static str>,
    /// The second the last line was written in, and its text up to the milliseconds
    /// (`2025-01-15T08:30:15.`): lines in the same second only append their milliseconds.
    second: Option<u64>,
    second_text: String,
}

thread_local! {
    static BUFFERS: RefCell<LineBuffers> = RefCell::new(LineBuffers::default());
    /// Values recorded on an existing span, before they are merged under the span's lock.
    static RECORD_SCRATCH: RefCell<SpanFields> = RefCell::new(SpanFields::default());
}

/// Collects an event's fields: `message` apart, the others into `context`.
struct EventVisitor<'a> {
    buffers: &'a mut LineBuffers,
    /// Whether the event's `key` field named a secret (`sslpassword`, `token`, ...; see
    /// `groundwork_config::SECRET_QUERY_PARAMS`), so its `value` field is masked: sqlx logs the
    /// connection URL parameters it does not know as `warn!(%key, %value, ..)`.
    secret_key: bool,
}

impl EventVisitor<'_> {
    fn field(&mut self, field: &Field, write: impl FnOnce(&mut String)) {
        let name = field.name();
        if name == "message" {
            write(&mut self.buffers.message);
            return;
        }
        // `log` records bridged into tracing carry their metadata as fields; the line has its own.
        if name.starts_with("log.") || self.buffers.names.contains(&name) {
            return;
        }
        let context = &mut self.buffers.context;
        if !self.buffers.names.is_empty() {
            context.push(',');
        }
        self.buffers.names.push(name);
        write_json_str(context, name);
        context.push(':');
        if name == "value" && self.secret_key {
            write_json_str(context, "***");
            return;
        }
        let start = context.len();
        write(context);
        if name == "key" {
            let written = context[start..].trim_matches('"');
            self.secret_key = groundwork_config::is_secret_query_param(written);
        }
    }
}

impl Visit for EventVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.field(field, |out| write_f64(out, value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |out| write_integer(out, value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |out| write_integer(out, value));
    }
    fn record_i128(&mut self, field: &Field, value: i128) {
        self.field(field, |out| write_integer(out, value));
    }
    fn record_u128(&mut self, field: &Field, value: u128) {
        self.field(field, |out| write_integer(out, value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |out| {
            out.push_str(if value { "true" } else { "false" });
        });
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            escape_into(&mut self.buffers.message, value);
        } else {
            self.field(field, |out| write_json_str(out, value));
        }
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if field.name() == "message" {
            let _ = write!(Escaper(&mut self.buffers.message), "{}", ErrorChain(value));
        } else {
            self.field(field, |out| write_json_display(out, &ErrorChain(value)));
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            // `message` is recorded as `format_args!`, whose Debug is its Display.
            let _ = write!(Escaper(&mut self.buffers.message), "{value:?}");
        } else {
            self.field(field, |out| write_json_debug(out, value));
        }
    }
}

impl<S, W> Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    #[cfg(feature = "otel-standard")]
    fn on_register_dispatch(&self, subscriber: &tracing_core::Dispatch) {
        // The first subscriber is the one this layer lives in; a layer is not moved between them.
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        // Sized for a typical span up front: growing from empty would copy the bytes several times.
        let mut fields = SpanFields {
            json: String::with_capacity(SPAN_FIELDS_CAPACITY),
            entries: SmallVec::new(),
        };
        attrs.record(&mut fields);
        span.extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        // Serialized before the span's lock is taken, into a reused per-thread buffer: a value's
        // `Debug` may itself log, and that line reads this span's fields.
        let record = |recorded: &mut SpanFields| {
            recorded.json.clear();
            recorded.entries.clear();
            values.record(recorded);
            let mut extensions = span.extensions_mut();
            if let Some(fields) = extensions.get_mut::<SpanFields>() {
                fields.merge(recorded);
            } else {
                let mut fields = SpanFields::default();
                fields.merge(recorded);
                extensions.insert(fields);
            }
        };
        RECORD_SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => record(&mut scratch),
            // Recording a value that records another: a fresh buffer for the inner one.
            Err(_) => record(&mut SpanFields::default()),
        });
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        BUFFERS.with(|cell| {
            if let Ok(mut buffers) = cell.try_borrow_mut() {
                self.write_event(&mut buffers, event, &ctx);
            } else {
                // A writer that logs while we format lands here: format into a fresh buffer.
                self.write_event(&mut LineBuffers::default(), event, &ctx);
            }
        });
    }
}

impl<W> JsonLayer<W>
where
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn write_event<S>(&self, buffers: &mut LineBuffers, event: &Event<'_>, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        buffers.message.clear();
        buffers.context.clear();
        buffers.names.clear();
        event.record(&mut EventVisitor {
            buffers: &mut *buffers,
            secret_key: false,
        });
        let mut ids = None;
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                let extensions = span.extensions();
                if ids.is_none() {
                    ids = extensions
                        .get::<SpanState>()
                        .map(|state| (state.context.trace_id(), state.context.span_id()));
                }
                let Some(fields) = extensions.get::<SpanFields>() else {
                    continue;
                };
                for (name, value) in fields.iter() {
                    if buffers.names.contains(&name) {
                        continue;
                    }
                    if !buffers.names.is_empty() {
                        buffers.context.push(',');
                    }
                    buffers.names.push(name);
                    write_json_str(&mut buffers.context, name);
                    buffers.context.push(':');
                    buffers.context.push_str(value);
                }
            }
        }

        let line = &mut buffers.line;
        line.clear();
        line.push_str("{\"timestamp\":\"");
        write_timestamp_cached(
            line,
            &mut buffers.second,
            &mut buffers.second_text,
            SystemTime::now(),
        );
        line.push_str("\",\"level\":\"");
        line.push_str(event.metadata().level().as_str());
        line.push_str("\",\"service\":\"");
        line.push_str(&self.service);
        line.push('"');
        // The standard path's ids, from tracing-opentelemetry's span data; read with no span's
        // extensions borrowed, since that may start the OpenTelemetry span.
        #[cfg(feature = "otel-standard")]
        let ids = ids.or_else(|| {
            let id = ctx.event_span(event)?.id();
            let dispatch = self.dispatch.get()?.upgrade()?;
            crate::standard::ids_of(&id, &dispatch)
        });
        // The bridge's ids; without it, those of an OpenTelemetry context someone else made current.
        let ids = ids.or_else(|| {
            opentelemetry::Context::map_current(|cx| {
                let span = cx.span();
                let span_context = span.span_context();
                span_context
                    .is_valid()
                    .then(|| (span_context.trace_id(), span_context.span_id()))
            })
        });
        if let Some((trace_id, span_id)) = ids {
            line.push_str(",\"traceId\":\"");
            write_hex(line, &trace_id.to_bytes());
            line.push_str("\",\"spanId\":\"");
            write_hex(line, &span_id.to_bytes());
            line.push('"');
        }
        line.push_str(",\"message\":\"");
        line.push_str(&buffers.message);
        line.push_str("\",\"context\":{");
        line.push_str(&buffers.context);
        line.push_str("}}\n");

        let mut writer = self.make_writer.make_writer_for(event.metadata());
        // A log line that cannot be written has nowhere to be reported; dropping it is the only
        // choice that cannot fail the caller.
        let _ = writer.write_all(line.as_bytes());
    }
}

/// Writes `value` as a JSON string, quotes included.
fn write_json_str(out: &mut String, value: &str) {
    out.push('"');
    escape_into(out, value);
    out.push('"');
}

fn write_json_debug(out: &mut String, value: &dyn fmt::Debug) {
    out.push('"');
    let _ = write!(Escaper(out), "{value:?}");
    out.push('"');
}

/// An error recorded as one (`error = &err as &dyn Error`) is written with its sources,
/// `outer: inner: innermost`, each cause once: Groundwork's errors return their cause from
/// `source()` instead of repeating it in their message, so the top message alone would lose it.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut written = self.0.to_string();
        f.write_str(&written)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            // Many errors (sqlx's among them) repeat their source in their own message.
            if !written.contains(&text) {
                write!(f, ": {text}")?;
                written.push_str(&text);
            }
            source = cause.source();
        }
        Ok(())
    }
}

fn write_json_display(out: &mut String, value: &dyn fmt::Display) {
    out.push('"');
    let _ = write!(Escaper(out), "{value}");
    out.push('"');
}

fn write_integer(out: &mut String, value: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(value));
}

/// JSON has no NaN or infinities; they are written as strings so the line stays valid JSON.
fn write_f64(out: &mut String, value: f64) {
    if value.is_finite() {
        let _ = write!(out, "{value}");
    } else {
        let _ = write!(out, "\"{value}\"");
    }
}

/// Escapes `value` for the inside of a JSON string. Runs of bytes that need no escaping (nearly
/// all of them) are found eight bytes at a time and copied whole.
pub(crate) fn escape_into(out: &mut String, value: &str) {
    let bytes = value.as_bytes();
    let mut start = 0;
    while let Some(index) = next_escape(bytes, start) {
        // `index` is at an ASCII byte, so both slices end on character boundaries.
        out.push_str(&value[start..index]);
        match bytes[index] {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            control => {
                let _ = write!(out, "\\u{control:04x}");
            }
        }
        start = index + 1;
    }
    out.push_str(&value[start..]);
}

/// The index of the first byte at or after `from` that JSON requires escaped: `"`, `\`, or a
/// control character below 0x20.
fn next_escape(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Whether any byte of `word` is zero, or (with `less`) below 0x20: the classic bit tricks,
    // exact about whether such a byte exists.
    let has_zero = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS != 0;
    let has_control = |word: u64| word.wrapping_sub(ONES * 0x20) & !word & HIGHS != 0;
    let is_escaped = |byte: &u8| *byte < 0x20 || *byte == b'"' || *byte == b'\\';

    let rest = bytes.get(from..)?;
    let mut chunks = rest.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut word = [0_u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        if has_control(word)
            || has_zero(word ^ (ONES * u64::from(b'"')))
            || has_zero(word ^ (ONES * u64::from(b'\\')))
        {
            return chunk
                .iter()
                .position(is_escaped)
                .map(|index| from + offset + index);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(is_escaped)
        .map(|index| from + offset + index)
}

/// A `fmt::Write` that escapes everything written through it into a JSON string's inside.
struct Escaper<'a>(&'a mut String);

impl fmt::Write for Escaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

/// Lowercase hex, as W3C trace context writes ids; a formatter's `{:032x}` costs several times more.
fn write_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
}

/// [`crate::timestamp::write_timestamp`], formatting the date and time only when the second changed since the last
/// call with this cache.
fn write_timestamp_cached(
    out: &mut String,
    second: &mut Option<u64>,
    second_text: &mut String,
    now: SystemTime,
) {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    if *second != Some(secs) {
        second_text.clear();
        crate::timestamp::write_timestamp(second_text, UNIX_EPOCH + Duration::from_secs(secs));
        // Keep `…:SS.`, dropping `000Z`.
        second_text.truncate(second_text.len().saturating_sub(4));
        *second = Some(secs);
    }
    out.push_str(second_text);
    let millis = since_epoch.subsec_millis();
    for digit in [millis / 100, millis / 10 % 10, millis % 10] {
        out.push(char::from(b'0' + u8::try_from(digit).unwrap_or(0)));
    }
    out.push('Z');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_timestamps_match_the_formatted_ones() {
        let (mut second, mut second_text) = (None, String::new());
        for millis in [
            1_736_929_815_123,
            1_736_929_815_999,
            1_736_929_816_000,
            1_736_929_816_007,
            951_782_400_050,
        ] {
            let now = UNIX_EPOCH + Duration::from_millis(millis);
            let (mut cached, mut formatted) = (String::new(), String::new());
            write_timestamp_cached(&mut cached, &mut second, &mut second_text, now);
            crate::timestamp::write_timestamp(&mut formatted, now);
            assert_eq!(cached, formatted, "{millis} ms after the epoch");
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (1_736_929_815_123, "2025-01-15T08:30:15.123Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (4_107_542_399_999, "2100-02-28T23:59:59.999Z"),
            (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
        ];
        for (millis, expected) in cases {
            let mut out = String::new();
            crate::timestamp::write_timestamp(&mut out, UNIX_EPOCH + Duration::from_millis(millis));
            assert_eq!(out, expected, "{millis} ms after the epoch");
        }
    }

    #[test]
    fn instants_outside_the_writable_range_are_written_as_its_nearest_end() {
        let mut before = String::new();
        crate::timestamp::write_timestamp(&mut before, UNIX_EPOCH - Duration::from_secs(1));
        assert_eq!(before, "1970-01-01T00:00:00.000Z");
        let mut after = String::new();
        let far = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        crate::timestamp::write_timestamp(&mut after, far);
        assert_eq!(after, "9999-12-31T23:59:59.999Z");
    }

    #[derive(Debug)]
    struct Layered(&'static str, Option<Box<Layered>>);

    impl fmt::Display for Layered {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layered {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1
                .as_deref()
                .map(|inner| inner as &(dyn std::error::Error + 'static))
        }
    }

    #[test]
    fn an_error_is_written_with_each_of_its_causes_once() {
        let innermost = Layered("connection refused (os error 111)", None);
        // The middle error repeats its cause in its message, as sqlx's errors do.
        let middle = Layered(
            "io error: connection refused (os error 111)",
            Some(Box::new(innermost)),
        );
        let outer = Layered("storage failed while writing wal/1", Some(Box::new(middle)));
        assert_eq!(
            ErrorChain(&outer).to_string(),
            "storage failed while writing wal/1: io error: connection refused (os error 111)"
        );
        assert_eq!(ErrorChain(&Layered("alone", None)).to_string(), "alone");
    }

    #[test]
    fn ids_are_written_as_lowercase_hex() {
        let mut out = String::new();
        write_hex(&mut out, &[0x00, 0x0f, 0xa5, 0xff]);
        assert_eq!(out, "000fa5ff");
    }

    #[test]
    fn every_byte_that_needs_escaping_is_found_at_every_position() -> Result<(), serde_json::Error>
    {
        let specials = ['"', '\\', '\n', '\r', '\t', '\u{0}', '\u{1f}', '\u{7}'];
        for special in specials {
            for len in 0..20 {
                for at in 0..=len {
                    let mut value: String = "aé\u{7f}b".chars().cycle().take(len).collect();
                    let index = value.char_indices().nth(at).map_or(value.len(), |(i, _)| i);
                    value.insert(index, special);
                    let mut out = String::new();
                    write_json_str(&mut out, &value);
                    let parsed: String = serde_json::from_str(&out)?;
                    assert_eq!(parsed, value, "{special:?} at {at} of {len}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn escaping_produces_strings_a_json_parser_reads_back() -> Result<(), serde_json::Error> {
        let nasty = "quote \" backslash \\ newline \n tab \t bell \u{7} unicode é 漢字 🎉";
        let mut out = String::new();
        write_json_str(&mut out, nasty);
        let parsed: String = serde_json::from_str(&out)?;
        assert_eq!(parsed, nasty);
        Ok(())
    }
}
