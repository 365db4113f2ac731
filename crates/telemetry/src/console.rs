//! `OTEL_TRACES_EXPORTER=console`: finished spans as JSON lines, for local development.
//!
//! One object per span and line, on stderr by default (stdout carries the log lines, which log
//! pipelines parse with a fixed shape):
//!
//! ```json
//! {"timestamp":"2025-01-15T08:30:15.465Z","service":"query-engine","traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7","parentSpanId":"53995c3f42cd8ad8","name":"query","kind":"internal","startTime":"2025-01-15T08:30:15.123Z","durationMs":342.117,"status":"unset","attributes":{"supplierCount":5},"events":[],"links":[]}
//! ```
//!
//! `parentSpanId` is absent on a root span; an error status adds `statusMessage`; each event is
//! `{"timestamp","name","attributes"}` and each link `{"traceId","spanId","attributes"}`;
//! `droppedAttributes`, `droppedEvents` and `droppedLinks` appear when a span limit dropped some.

use std::io::Write as _;
use std::sync::Mutex;
use std::time::SystemTime;

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{Array, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use serde_json::{Map, Value as Json};

/// Where console spans are written.
pub(crate) struct SpanWriter(pub(crate) Box<dyn std::io::Write + Send>);

impl std::fmt::Debug for SpanWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpanWriter")
    }
}

/// Writes each finished span as one JSON line.
#[derive(Debug)]
pub(crate) struct ConsoleExporter {
    writer: Mutex<SpanWriter>,
    service: String,
}

impl ConsoleExporter {
    pub(crate) fn new(writer: SpanWriter, service: String) -> Self {
        Self {
            writer: Mutex::new(writer),
            service,
        }
    }
}

impl SpanExporter for ConsoleExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut text = Vec::new();
        for span in &batch {
            serde_json::to_writer(&mut text, &span_json(span, &self.service))
                .map_err(|error| OTelSdkError::InternalFailure(error.to_string()))?;
            text.push(b'\n');
        }
        let mut writer = self
            .writer
            .lock()
            .map_err(|_| OTelSdkError::InternalFailure("span writer poisoned".to_owned()))?;
        writer
            .0
            .write_all(&text)
            .and_then(|()| writer.0.flush())
            .map_err(|error| OTelSdkError::InternalFailure(error.to_string()))
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Some(name) = resource.get(&opentelemetry::Key::from_static_str("service.name")) {
            self.service = name.as_str().into_owned();
        }
    }
}

fn span_json(span: &SpanData, service: &str) -> Json {
    let context = &span.span_context;
    let mut object = Map::new();
    object.insert("timestamp".into(), timestamp(span.end_time));
    object.insert("service".into(), service.into());
    object.insert("traceId".into(), context.trace_id().to_string().into());
    object.insert("spanId".into(), context.span_id().to_string().into());
    if span.parent_span_id != opentelemetry::trace::SpanId::INVALID {
        object.insert(
            "parentSpanId".into(),
            span.parent_span_id.to_string().into(),
        );
    }
    object.insert("name".into(), span.name.as_ref().into());
    let kind = match span.span_kind {
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
        SpanKind::Internal => "internal",
    };
    object.insert("kind".into(), kind.into());
    object.insert("startTime".into(), timestamp(span.start_time));
    let duration = span
        .end_time
        .duration_since(span.start_time)
        .unwrap_or_default();
    object.insert(
        "durationMs".into(),
        Json::from(duration.as_secs_f64() * 1000.0),
    );
    match &span.status {
        Status::Unset => {
            object.insert("status".into(), "unset".into());
        }
        Status::Ok => {
            object.insert("status".into(), "ok".into());
        }
        Status::Error { description } => {
            object.insert("status".into(), "error".into());
            if !description.is_empty() {
                object.insert("statusMessage".into(), description.as_ref().into());
            }
        }
    }
    object.insert("attributes".into(), attributes(&span.attributes));
    let events = span
        .events
        .iter()
        .map(|event| {
            let mut entry = Map::new();
            entry.insert("timestamp".into(), timestamp(event.timestamp));
            entry.insert("name".into(), event.name.as_ref().into());
            entry.insert("attributes".into(), attributes(&event.attributes));
            Json::Object(entry)
        })
        .collect();
    object.insert("events".into(), Json::Array(events));
    let links = span
        .links
        .iter()
        .map(|link| {
            let mut entry = Map::new();
            let linked = &link.span_context;
            entry.insert("traceId".into(), linked.trace_id().to_string().into());
            entry.insert("spanId".into(), linked.span_id().to_string().into());
            entry.insert("attributes".into(), attributes(&link.attributes));
            Json::Object(entry)
        })
        .collect();
    object.insert("links".into(), Json::Array(links));
    for (key, count) in [
        ("droppedAttributes", span.dropped_attributes_count),
        ("droppedEvents", span.events.dropped_count),
        ("droppedLinks", span.links.dropped_count),
    ] {
        if count > 0 {
            object.insert(key.into(), count.into());
        }
    }
    Json::Object(object)
}

fn timestamp(time: SystemTime) -> Json {
    let mut text = String::with_capacity(24);
    crate::timestamp::write_timestamp(&mut text, time);
    Json::String(text)
}

fn attributes(attributes: &[KeyValue]) -> Json {
    Json::Object(
        attributes
            .iter()
            .map(|kv| (kv.key.as_str().to_owned(), value(&kv.value)))
            .collect(),
    )
}

fn value(value: &Value) -> Json {
    match value {
        Value::Bool(value) => (*value).into(),
        Value::I64(value) => (*value).into(),
        Value::F64(value) => (*value).into(),
        Value::String(value) => value.as_str().into(),
        Value::Array(array) => match array {
            Array::Bool(values) => values.iter().copied().map(Json::from).collect(),
            Array::I64(values) => values.iter().copied().map(Json::from).collect(),
            Array::F64(values) => values.iter().copied().map(Json::from).collect(),
            Array::String(values) => values
                .iter()
                .map(|value| Json::from(value.as_str()))
                .collect(),
            _ => Json::String(value.as_str().into_owned()),
        },
        _ => Json::String(value.as_str().into_owned()),
    }
}
