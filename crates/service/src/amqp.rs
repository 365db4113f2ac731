//! RabbitMQ work queues as every Groundwork consumer declares them (feature `amqp`).
//!
//! A work queue is a durable **quorum** queue bound to a topic exchange. A consumer acks after
//! the work is done; a failure is `nack`ed with requeue, which RabbitMQ counts per message
//! (`x-delivery-count`); once a message has been delivered `delivery_limit` times without an ack,
//! the broker moves it to the **dead-letter queue** through the dead-letter exchange. A message
//! that can never succeed (it does not decode) is rejected without requeue and goes there at once.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, ExchangeKind};

/// The names and limits of one work queue.
#[derive(Debug, Clone)]
pub struct WorkQueue {
    /// Topic exchange the queue is bound to; declared durable if missing.
    pub exchange: String,
    /// Routing key bound, e.g. `order.created`.
    pub routing_key: String,
    /// The quorum queue.
    pub queue: String,
    /// Fanout exchange that receives messages given up on; declared durable if missing.
    pub dead_letter_exchange: String,
    /// Quorum queue bound to the dead-letter exchange, where failed messages wait for a human.
    pub dead_letter_queue: String,
    /// Deliveries of one message before it is dead-lettered (the first delivery counts).
    pub delivery_limit: u32,
}

impl WorkQueue {
    /// Declares the exchanges and queues and binds them. Declaring is idempotent, so every
    /// replica does it at start; arguments that differ from an existing queue's are refused by
    /// the broker (`PRECONDITION_FAILED`), which names the queue.
    pub async fn declare(&self, channel: &Channel) -> Result<(), lapin::Error> {
        declare_exchange(channel, &self.exchange, ExchangeKind::Topic).await?;
        declare_exchange(channel, &self.dead_letter_exchange, ExchangeKind::Fanout).await?;

        let mut dead_letter_args = FieldTable::default();
        dead_letter_args.insert("x-queue-type".into(), long_string("quorum"));
        channel
            .queue_declare(
                self.dead_letter_queue.as_str().into(),
                durable_queue(),
                dead_letter_args,
            )
            .await?;
        channel
            .queue_bind(
                self.dead_letter_queue.as_str().into(),
                self.dead_letter_exchange.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;

        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), long_string("quorum"));
        args.insert(
            "x-dead-letter-exchange".into(),
            long_string(&self.dead_letter_exchange),
        );
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(i64::from(self.delivery_limit)),
        );
        channel
            .queue_declare(self.queue.as_str().into(), durable_queue(), args)
            .await?;
        channel
            .queue_bind(
                self.queue.as_str().into(),
                self.exchange.as_str().into(),
                self.routing_key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(())
    }
}

/// Declares a durable exchange of `kind`.
pub async fn declare_exchange(
    channel: &Channel,
    name: &str,
    kind: ExchangeKind,
) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            name.into(),
            kind,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

/// How many times this message was delivered before (0 on the first delivery), from the quorum
/// queue's `x-delivery-count` header.
pub fn previous_deliveries(properties: &BasicProperties) -> u64 {
    let Some(headers) = properties.headers() else {
        return 0;
    };
    match headers.inner().get("x-delivery-count") {
        Some(AMQPValue::LongLongInt(n)) => u64::try_from(*n).unwrap_or(0),
        Some(AMQPValue::LongInt(n)) => u64::try_from(*n).unwrap_or(0),
        Some(AMQPValue::LongUInt(n)) => u64::from(*n),
        Some(AMQPValue::ShortInt(n)) => u64::try_from(*n).unwrap_or(0),
        _ => 0,
    }
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}
