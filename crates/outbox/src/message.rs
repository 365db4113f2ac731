//! An event and how it enters the outbox: in the caller's transaction.

use std::collections::BTreeMap;

use lapin::types::{AMQPValue, FieldTable};
use sqlx::PgConnection;

use crate::OutboxError;

/// AMQP short strings (exchange, routing key, header names, `message_id`, ...) hold at most this
/// many bytes.
const SHORT_STRING_MAX: usize = 255;

/// One event to publish: where to (exchange and routing key), the body, and the AMQP properties
/// the consumer sees. Every message is published persistent (`delivery_mode` 2) and mandatory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// The exchange it is published to; it must exist when the relay publishes (declare it at
    /// start-up). `""` is the default exchange.
    pub exchange: String,
    /// The routing key.
    pub routing_key: String,
    /// The message body, as it is sent.
    pub body: Vec<u8>,
    /// Headers, sent as AMQP long strings: `traceparent`, `tracestate`, anything else.
    pub headers: BTreeMap<String, String>,
    /// The `content_type` property, e.g. `application/json`.
    pub content_type: Option<String>,
    /// The `message_id` property; consumers use it to recognise a message delivered twice.
    pub message_id: Option<String>,
    /// The `type` property, e.g. `order.created`.
    pub kind: Option<String>,
}

impl OutboxMessage {
    /// A message with no headers and no properties.
    pub fn new(
        exchange: impl Into<String>,
        routing_key: impl Into<String>,
        body: impl Into<Vec<u8>>,
    ) -> Self {
        Self {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            body: body.into(),
            headers: BTreeMap::new(),
            content_type: None,
            message_id: None,
            kind: None,
        }
    }

    /// Adds (or replaces) one header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Adds the string-valued headers of an AMQP header table, such as the one
    /// `groundwork_telemetry::amqp::inject_current` fills with the current `traceparent` and
    /// `tracestate`. Values of other AMQP types (numbers, tables, ...) are not stored.
    #[must_use]
    pub fn amqp_headers(mut self, headers: &FieldTable) -> Self {
        for (name, value) in headers.inner() {
            let text = match value {
                AMQPValue::LongString(value) => String::from_utf8_lossy(value.as_bytes()),
                AMQPValue::ShortString(value) => value.as_str().into(),
                _ => continue,
            };
            self.headers
                .insert(name.as_str().to_owned(), text.into_owned());
        }
        self
    }

    /// Sets the `content_type` property.
    #[must_use]
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// Sets the `message_id` property.
    #[must_use]
    pub fn message_id(mut self, message_id: impl Into<String>) -> Self {
        self.message_id = Some(message_id.into());
        self
    }

    /// Sets the `type` property.
    #[must_use]
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }

    /// Refuses what AMQP cannot carry, so that a bad message fails the caller's transaction
    /// instead of waiting in the outbox for ever.
    fn validate(&self) -> Result<(), OutboxError> {
        let short = |field: &str, value: &str| {
            if value.len() > SHORT_STRING_MAX {
                return Err(OutboxError::InvalidMessage {
                    field: field.to_owned(),
                    problem: format!(
                        "is {} bytes long; AMQP allows at most {SHORT_STRING_MAX}",
                        value.len()
                    ),
                });
            }
            Ok(())
        };
        short("exchange", &self.exchange)?;
        short("routing_key", &self.routing_key)?;
        for (field, value) in [
            ("content_type", &self.content_type),
            ("message_id", &self.message_id),
            ("kind", &self.kind),
        ] {
            if let Some(value) = value {
                short(field, value)?;
            }
        }
        for name in self.headers.keys() {
            if name.is_empty() {
                return Err(OutboxError::InvalidMessage {
                    field: "headers".to_owned(),
                    problem: "has a header with an empty name".to_owned(),
                });
            }
            short(&format!("header name {name}"), name)?;
        }
        // PostgreSQL's text and jsonb cannot hold NUL; say which field, not "invalid byte sequence".
        let strings = [&self.exchange, &self.routing_key]
            .into_iter()
            .map(|value| ("exchange or routing_key", value.as_str()))
            .chain(self.headers.iter().flat_map(|(name, value)| {
                [("a header", name.as_str()), ("a header", value.as_str())]
            }));
        for (field, value) in strings {
            if value.contains('\0') {
                return Err(OutboxError::InvalidMessage {
                    field: field.to_owned(),
                    problem: "contains a NUL character, which PostgreSQL text cannot store"
                        .to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// Writes `message` into the outbox inside the caller's transaction and returns its row id.
///
/// The event becomes visible to the relays when, and only when, the transaction commits (the
/// table's trigger sends `NOTIFY groundwork_outbox`, which PostgreSQL delivers at commit); if the
/// transaction rolls back, the event is gone with it. Pass `&mut *tx` for an
/// `sqlx::Transaction`.
pub async fn enqueue(
    connection: &mut PgConnection,
    message: &OutboxMessage,
) -> Result<i64, OutboxError> {
    message.validate()?;
    let headers = serde_json::Value::Object(
        message
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), serde_json::Value::String(value.clone())))
            .collect(),
    );
    // Unprepared: works through PgBouncer in transaction pooling mode, where a statement
    // prepared in an earlier transaction may belong to another server connection.
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO groundwork_outbox (exchange, routing_key, headers, content_type, message_id, kind, body)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .persistent(false)
    .bind(&message.exchange)
    .bind(&message.routing_key)
    .bind(sqlx::types::Json(headers))
    .bind(message.content_type.as_deref())
    .bind(message.message_id.as_deref())
    .bind(message.kind.as_deref())
    .bind(&message.body)
    .fetch_one(connection)
    .await
    .map_err(OutboxError::Enqueue)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use lapin::types::{LongString, ShortString};

    use super::*;

    fn problem(message: &OutboxMessage) -> String {
        message
            .validate()
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn what_amqp_cannot_carry_is_refused_naming_the_field() {
        let long = "k".repeat(256);
        let message = OutboxMessage::new("orders", long.as_str(), "{}");
        assert!(
            problem(&message).contains("routing_key is 256 bytes"),
            "{}",
            problem(&message)
        );
        let message =
            OutboxMessage::new("orders", "order.created", "{}").header(long.as_str(), "v");
        assert!(
            problem(&message).contains("header name"),
            "{}",
            problem(&message)
        );
        let message = OutboxMessage::new("orders", "order.created", "{}").header("", "v");
        assert!(
            problem(&message).contains("empty name"),
            "{}",
            problem(&message)
        );
        let message = OutboxMessage::new("orders\0", "order.created", "{}");
        assert!(problem(&message).contains("NUL"), "{}", problem(&message));
        let message = OutboxMessage::new("", "queue-name", "{}").message_id("1");
        assert_eq!(problem(&message), "");
    }

    #[test]
    fn string_headers_of_an_amqp_table_are_taken_and_others_left() {
        let mut table = FieldTable::default();
        table.insert(
            ShortString::from("traceparent"),
            AMQPValue::LongString(LongString::from(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )),
        );
        table.insert(ShortString::from("retries"), AMQPValue::LongLongInt(3));
        let message = OutboxMessage::new("orders", "order.created", "{}").amqp_headers(&table);
        assert_eq!(
            message.headers.get("traceparent").map(String::as_str),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        assert!(!message.headers.contains_key("retries"));
    }
}
