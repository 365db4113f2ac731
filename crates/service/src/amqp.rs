//! RabbitMQ work queues as every Groundwork consumer declares them (feature `amqp`).
//!
//! A work queue is a durable **quorum** queue bound to a topic exchange. A consumer acks after
//! the work is done; a failure is `nack`ed with requeue, which RabbitMQ counts per message
//! (`x-delivery-count`); once a message has been delivered `delivery_limit` times without an ack,
//! the broker moves it to the **dead-letter queue** through the dead-letter exchange. A message
//! that can never succeed (it does not decode) is rejected without requeue and goes there at once.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{
    BasicConsumeOptions, BasicQosOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use tokio::sync::watch;

use crate::Shutdown;

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
    /// Opens a channel on `connection`, declares the queue ([`WorkQueue::declare`]), sets the
    /// channel's prefetch limit and starts consuming as `consumer_tag`: one consumer session,
    /// what [`run_sessions`] opens again after a lost connection.
    pub async fn open_consumer(
        &self,
        connection: &Connection,
        prefetch: u16,
        consumer_tag: &str,
    ) -> Result<(Channel, lapin::Consumer), lapin::Error> {
        let channel = connection.create_channel().await?;
        self.declare(&channel).await?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                self.queue.as_str().into(),
                consumer_tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok((channel, consumer))
    }

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

/// First wait of [`consume_again`] before it tries; doubled per failed attempt.
const CONSUME_AGAIN_MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait of [`consume_again`] between attempts.
const CONSUME_AGAIN_MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs a consumer session after session until `shutdown` fires or a session ends cleanly.
///
/// `run` consumes on one session (a channel and its consumer) and returns `Ok` once it stopped
/// because of `shutdown`. When it returns an error (its channel or connection was lost), the
/// error is logged and [`consume_again`] opens the next session with `open` on the connection
/// `link` follows (`groundwork_connect::AmqpLink::subscribe`), so a consumer survives a broker
/// restart or a closed connection without its process restarting. `queue` names the consumer in
/// the log lines.
///
/// The order-worker and analytics-ingest examples run their consumers this way.
pub async fn run_sessions<S, E, F, R, RF, O, OF>(
    link: &watch::Receiver<Arc<Connection>>,
    shutdown: &Shutdown,
    queue: &str,
    first: S,
    mut run: R,
    mut open: O,
) where
    R: FnMut(S) -> RF,
    RF: Future<Output = Result<(), E>>,
    O: FnMut(Arc<Connection>) -> OF,
    OF: Future<Output = Result<S, F>>,
    E: std::fmt::Display,
    F: std::fmt::Display,
{
    let mut session = first;
    loop {
        match run(session).await {
            Ok(()) => return,
            Err(error) => tracing::warn!(
                error = format!("{error:#}"),
                queue,
                "consuming stopped; consuming again once the broker connection is back"
            ),
        }
        let Some(next) = consume_again(link, shutdown, &mut open).await else {
            return;
        };
        tracing::info!(queue, "consuming again");
        session = next;
    }
}

/// Opens a consumer's session again after the previous one was lost with its connection.
///
/// `link` follows the connection a `groundwork_connect::AmqpLink` keeps up. Waits 100 ms
/// (doubled per failed attempt, up to 5 s); once the link's current connection is usable, calls
/// `open` on it and returns what it opened. A failed `open` is logged as a warning with its
/// causes and tried again. `None` once `shutdown` fires.
pub async fn consume_again<T, E, O, OF>(
    link: &watch::Receiver<Arc<Connection>>,
    shutdown: &Shutdown,
    mut open: O,
) -> Option<T>
where
    O: FnMut(Arc<Connection>) -> OF,
    OF: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let stopped = shutdown.triggered();
    tokio::pin!(stopped);
    let mut backoff = CONSUME_AGAIN_MIN_BACKOFF;
    loop {
        tokio::select! {
            () = &mut stopped => return None,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(CONSUME_AGAIN_MAX_BACKOFF);
        let connection = Arc::clone(&link.borrow());
        if !connection.status().connected() {
            continue;
        }
        match open(connection).await {
            Ok(opened) => return Some(opened),
            Err(error) => tracing::warn!(
                error = format!("{error:#}"),
                "cannot consume again yet; retrying"
            ),
        }
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
