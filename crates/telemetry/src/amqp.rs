//! RabbitMQ: trace context in message headers, so a consumer's span is a child of the publisher's.
//!
//! ```no_run
//! # async fn publish(channel: &lapin::Channel) -> Result<(), lapin::Error> {
//! use lapin::{BasicProperties, options::BasicPublishOptions, types::FieldTable};
//!
//! let mut headers = FieldTable::default();
//! groundwork_telemetry::amqp::inject_current(&mut headers);
//! channel
//!     .basic_publish(
//!         "orders".into(),
//!         "order.created".into(),
//!         BasicPublishOptions::default(),
//!         b"{}",
//!         BasicProperties::default().with_headers(headers),
//!     )
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! On the consumer side, [`consumer_span`] starts the span for one delivery with the publisher's
//! span as its parent.

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector};

/// Writes `context` into message headers (`traceparent`, `tracestate` by default) as long strings.
pub fn inject(context: &Context, headers: &mut FieldTable) {
    crate::inject(context, &mut HeadersInjector(headers));
}

/// Writes the current span's context into message headers.
pub fn inject_current(headers: &mut FieldTable) {
    inject(&crate::current_context(), headers);
}

/// Reads the publisher's context from a delivery's headers; no headers or no `traceparent` gives a
/// context without a span.
pub fn extract(headers: Option<&FieldTable>) -> Context {
    match headers {
        Some(headers) => crate::extract(&HeadersExtractor(headers)),
        None => Context::new(),
    }
}

/// A consumer span for one delivery from `queue`, child of the publisher's span when the headers
/// carry one. Enter it (or `.instrument` the handling future with it) while processing the message.
pub fn consumer_span(
    queue: &str,
    routing_key: &str,
    headers: Option<&FieldTable>,
) -> tracing::Span {
    crate::bridge::with_remote_parent(&extract(headers), || {
        tracing::info_span!(
            "amqp.consume",
            otel.name = %format_args!("{queue} process"),
            otel.kind = "consumer",
            messaging.system = "rabbitmq",
            messaging.operation.type = "process",
            messaging.destination.name = %queue,
            messaging.rabbitmq.destination.routing_key = %routing_key,
        )
    })
}

struct HeadersInjector<'a>(&'a mut FieldTable);

impl Injector for HeadersInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(
            ShortString::from(key),
            AMQPValue::LongString(LongString::from(value)),
        );
    }
}

struct HeadersExtractor<'a>(&'a FieldTable);

impl Extractor for HeadersExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match self.0.inner().get(key)? {
            AMQPValue::LongString(value) => std::str::from_utf8(value.as_bytes()).ok(),
            AMQPValue::ShortString(value) => Some(value.as_str()),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.inner().keys().map(ShortString::as_str).collect()
    }
}
