//! The relay: publishes committed outbox rows to RabbitMQ and deletes the confirmed ones.

use std::sync::Arc;
use std::time::Duration;

use groundwork_config::{ExposeSecret as _, SecretUrl};
use groundwork_connect::TlsSettings;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use sqlx::postgres::PgListener;
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::CHANNEL;

/// The broker the relay publishes to.
#[derive(Debug, Clone)]
pub struct Broker {
    /// `amqp://` or `amqps://` URL; printed only redacted.
    pub url: SecretUrl,
    /// CA and client certificate for an `amqps://` URL (see `groundwork-connect`).
    pub tls: TlsSettings,
}

impl Broker {
    /// A broker at `url` with the system's TLS roots and no client certificate.
    pub fn new(url: SecretUrl) -> Self {
        Self {
            url,
            tls: TlsSettings::default(),
        }
    }
}

/// How a relay works; the defaults suit a service publishing up to a few thousand events a second.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RelayOptions {
    /// Names the relay in metrics (`relay` label) and logs.
    pub name: String,
    /// Rows claimed, published and deleted per round (one transaction). Small batches keep
    /// locks short and let several relays share the work.
    pub batch_size: u16,
    /// How often the relay looks for rows without being woken by `NOTIFY` (a lost notification,
    /// rows whose retry time came, a connection pooler that does not pass `LISTEN` through), and
    /// counts the backlog.
    pub poll_interval: Duration,
    /// Time allowed for the broker to confirm a round's messages before the connection is given
    /// up and the round's rows are left for the next try.
    pub confirm_timeout: Duration,
    /// Time allowed to connect to the broker (TCP, TLS, AMQP handshake).
    pub connect_timeout: Duration,
    /// First wait after a failure (broker or database down) and before retrying a refused row;
    /// doubled per failure up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest wait between retries.
    pub max_backoff: Duration,
    /// On shutdown, time allowed to publish what is left before stopping; rows still waiting
    /// stay for the next relay.
    pub drain_timeout: Duration,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            name: "outbox".to_owned(),
            batch_size: 64,
            poll_interval: Duration::from_secs(2),
            confirm_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(5),
        }
    }
}

impl RelayOptions {
    /// Sets [`name`](Self::name).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets [`batch_size`](Self::batch_size) (at least 1).
    #[must_use]
    pub fn batch_size(mut self, batch_size: u16) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Sets [`poll_interval`](Self::poll_interval).
    #[must_use]
    pub fn poll_interval(mut self, poll_interval: Duration) -> Self {
        self.poll_interval = poll_interval;
        self
    }

    /// Sets [`confirm_timeout`](Self::confirm_timeout).
    #[must_use]
    pub fn confirm_timeout(mut self, confirm_timeout: Duration) -> Self {
        self.confirm_timeout = confirm_timeout;
        self
    }

    /// Sets [`connect_timeout`](Self::connect_timeout).
    #[must_use]
    pub fn connect_timeout(mut self, connect_timeout: Duration) -> Self {
        self.connect_timeout = connect_timeout;
        self
    }

    /// Sets [`min_backoff`](Self::min_backoff) and [`max_backoff`](Self::max_backoff).
    #[must_use]
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max.max(min);
        self
    }

    /// Sets [`drain_timeout`](Self::drain_timeout).
    #[must_use]
    pub fn drain_timeout(mut self, drain_timeout: Duration) -> Self {
        self.drain_timeout = drain_timeout;
        self
    }
}

/// What a relay has done since it started; follow it with [`Relay::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayStats {
    /// Events published, confirmed by the broker and deleted from the outbox.
    pub published: u64,
    /// Events the broker refused (unroutable, nacked); each stays with a later retry time.
    pub refused: u64,
    /// Rounds given up because the broker connection, channel or confirm failed.
    pub broker_failures: u64,
    /// Rounds given up because the database failed.
    pub database_failures: u64,
    /// Events in the outbox at the last count (every `poll_interval`).
    pub backlog: u64,
    /// Age of the oldest event at the last count; zero when the outbox was empty.
    pub oldest_age: Duration,
    /// Whether the relay holds a broker connection.
    pub connected: bool,
}

/// A running relay: a task that publishes committed outbox rows to the broker and deletes each
/// once the broker confirmed it, plus a task that `LISTEN`s for commits.
///
/// Any number of relays may run against one outbox (one per replica): each round claims its rows
/// with `FOR UPDATE SKIP LOCKED`, so a row is published by one relay at a time. Stop it with
/// [`Relay::shutdown`]; dropping it stops it too, without waiting.
pub struct Relay {
    stop: watch::Sender<bool>,
    stats: watch::Receiver<RelayStats>,
    wake: Arc<Notify>,
    tasks: Option<(JoinHandle<()>, JoinHandle<()>)>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("stats", &*self.stats.borrow())
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// Starts relaying the outbox in `pool`'s database to `broker` on the current Tokio runtime.
    /// It does not wait for the broker: while the broker cannot be reached the rows stay, the
    /// relay retries with back-off, and [`RelayStats::connected`] is false.
    pub fn start(pool: PgPool, broker: Broker, options: RelayOptions) -> Self {
        let (stop, stopped) = watch::channel(false);
        let (stats_sender, stats) = watch::channel(RelayStats::default());
        let wake = Arc::new(Notify::new());
        let listener = tokio::spawn(listen(
            pool.clone(),
            Arc::clone(&wake),
            stopped.clone(),
            options.clone(),
        ));
        let span = tracing::info_span!("outbox.relay", relay = %options.name);
        let worker = Worker {
            pool,
            broker,
            options,
            stats: stats_sender,
            publisher: None,
            retry_at: None,
        };
        let relay = tokio::spawn(worker.run(Arc::clone(&wake), stopped).instrument(span));
        Self {
            stop,
            stats,
            wake,
            tasks: Some((relay, listener)),
        }
    }

    /// What the relay has done; `changed()` wakes after every round that did something and at
    /// every backlog count.
    pub fn stats(&self) -> watch::Receiver<RelayStats> {
        self.stats.clone()
    }

    /// Makes the relay look for rows now, as a `NOTIFY` would.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops the relay: it finishes the round in flight, publishes what is left for up to
    /// `drain_timeout`, and closes its connections. Rows still waiting stay for the next relay.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some((relay, listener)) = self.tasks.take() {
            if let Err(error) = relay.await {
                tracing::error!(%error, "the outbox relay task failed");
            }
            let _ = listener.await;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Resolves once `stop` says so, or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Follows `NOTIFY groundwork_outbox` and wakes the relay for each (burst of) notifications and
/// after every (re)connection, when notifications may have been missed.
async fn listen(
    pool: PgPool,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
    options: RelayOptions,
) {
    let mut backoff = options.min_backoff;
    loop {
        let connect = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            // The pool is the application's; the listener must outlive a pool closed first.
            listener.ignore_pool_close_event(true);
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let connected = tokio::select! {
            connected = connect => connected,
            () = stopped(&mut stop) => return,
        };
        match connected {
            Ok(mut listener) => {
                backoff = options.min_backoff;
                wake.notify_one();
                loop {
                    let received = tokio::select! {
                        received = listener.try_recv() => received,
                        () = stopped(&mut stop) => return,
                    };
                    match received {
                        Ok(Some(_)) => {
                            while listener.next_buffered().is_some() {}
                            wake.notify_one();
                        }
                        // Reconnected by sqlx; notifications may have been lost.
                        Ok(None) => wake.notify_one(),
                        Err(error) => {
                            tracing::warn!(relay = %options.name, %error, "outbox listener connection failed; reconnecting (polling meanwhile)");
                            break;
                        }
                    }
                }
            }
            Err(error) => {
                tracing::warn!(relay = %options.name, %error, "cannot LISTEN for outbox commits; retrying (polling meanwhile)");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stopped(&mut stop) => return,
        }
        backoff = (backoff * 2).min(options.max_backoff);
    }
}

/// A broker connection with a confirm-mode channel.
struct Publisher {
    connection: Connection,
    channel: Channel,
}

impl Publisher {
    async fn connect(broker: &Broker, timeout: Duration) -> Result<Self, String> {
        let connection = groundwork_connect::amqp_connect(
            broker.url.expose_secret(),
            &broker.tls,
            ConnectionProperties::default(),
            timeout,
        )
        .await
        .map_err(|error| error.to_string())?;
        let channel = async {
            let channel = connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            Ok::<_, lapin::Error>(channel)
        }
        .await
        .map_err(|error| format!("cannot open a confirm-mode channel on RabbitMQ: {error}"))?;
        Ok(Self {
            connection,
            channel,
        })
    }

    async fn close(self) {
        let _ = self
            .connection
            .close(200, "outbox relay stopping".into())
            .await;
    }
}

/// Why a round was given up; its rows stay in the outbox.
enum Failure {
    Broker(String),
    Database(sqlx::Error),
}

/// What a round found.
enum Round {
    /// A full batch: there may be more.
    Full,
    /// Fewer rows than a batch: wait for a wake-up.
    Idle,
}

/// The claimed columns, in the order of [`Row`]'s fields.
type RowColumns = (
    i64,
    String,
    String,
    sqlx::types::Json<std::collections::BTreeMap<String, String>>,
    Option<String>,
    Option<String>,
    Option<String>,
    Vec<u8>,
    i32,
);

/// One outbox row, as claimed.
struct Row {
    id: i64,
    exchange: String,
    routing_key: String,
    headers: sqlx::types::Json<std::collections::BTreeMap<String, String>>,
    content_type: Option<String>,
    message_id: Option<String>,
    kind: Option<String>,
    body: Vec<u8>,
    attempts: i32,
}

impl Row {
    fn from_columns(
        (id, exchange, routing_key, headers, content_type, message_id, kind, body, attempts): RowColumns,
    ) -> Self {
        Self {
            id,
            exchange,
            routing_key,
            headers,
            content_type,
            message_id,
            kind,
            body,
            attempts,
        }
    }

    fn properties(&self) -> BasicProperties {
        let mut headers = FieldTable::default();
        for (name, value) in self.headers.iter() {
            headers.insert(
                ShortString::from(name.as_str()),
                AMQPValue::LongString(LongString::from(value.as_str())),
            );
        }
        let mut properties = BasicProperties::default()
            .with_headers(headers)
            .with_delivery_mode(2);
        if let Some(content_type) = &self.content_type {
            properties = properties.with_content_type(content_type.as_str().into());
        }
        if let Some(message_id) = &self.message_id {
            properties = properties.with_message_id(message_id.as_str().into());
        }
        if let Some(kind) = &self.kind {
            properties = properties.with_type(kind.as_str().into());
        }
        properties
    }
}

struct Worker {
    pool: PgPool,
    broker: Broker,
    options: RelayOptions,
    stats: watch::Sender<RelayStats>,
    publisher: Option<Publisher>,
    /// When the earliest row this relay refused may be retried.
    retry_at: Option<Instant>,
}

impl Worker {
    async fn run(mut self, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
        let mut backoff = self.options.min_backoff;
        let mut counted_at: Option<Instant> = None;
        while !*stop.borrow() {
            if counted_at.is_none_or(|at| at.elapsed() >= self.options.poll_interval) {
                self.count_backlog().await;
                counted_at = Some(Instant::now());
            }
            match self.round().await {
                Ok(Round::Full) => backoff = self.options.min_backoff,
                Ok(Round::Idle) => {
                    backoff = self.options.min_backoff;
                    // A refused row comes due before the next poll: look again then.
                    let now = Instant::now();
                    let wait = self
                        .retry_at
                        .filter(|at| *at > now)
                        .map_or(self.options.poll_interval, |at| {
                            (at - now).min(self.options.poll_interval)
                        });
                    tokio::select! {
                        () = wake.notified() => {}
                        () = tokio::time::sleep(wait) => {}
                        () = stopped(&mut stop) => {}
                    }
                }
                Err(failure) => {
                    self.failed(failure).await;
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = stopped(&mut stop) => {}
                    }
                    backoff = (backoff * 2).min(self.options.max_backoff);
                }
            }
        }
        self.drain().await;
        self.count_backlog().await;
        if let Some(publisher) = self.publisher.take() {
            publisher.close().await;
        }
        self.stats.send_modify(|stats| stats.connected = false);
    }

    /// Publishes what is left, for up to `drain_timeout`. A round cut short rolls back, so its
    /// rows stay (and may have been published: at least once).
    async fn drain(&mut self) {
        let timeout = self.options.drain_timeout;
        let drained = tokio::time::timeout(timeout, async {
            loop {
                match self.round().await {
                    Ok(Round::Full) => {}
                    Ok(Round::Idle) => return true,
                    Err(failure) => {
                        self.failed(failure).await;
                        return false;
                    }
                }
            }
        })
        .await;
        if !matches!(drained, Ok(true)) {
            tracing::warn!(
                ?timeout,
                "outbox relay stopped with events left; the next relay publishes them"
            );
        }
    }

    async fn failed(&mut self, failure: Failure) {
        match failure {
            Failure::Broker(error) => {
                tracing::warn!(%error, "outbox relay cannot publish; its events stay in the outbox and are retried");
                if let Some(publisher) = self.publisher.take() {
                    publisher.close().await;
                }
                self.stats.send_modify(|stats| {
                    stats.broker_failures += 1;
                    stats.connected = false;
                });
            }
            Failure::Database(error) => {
                tracing::warn!(%error, "outbox relay cannot read or update the outbox; retrying");
                self.stats.send_modify(|stats| stats.database_failures += 1);
            }
        }
    }

    /// Counts the waiting events and the age of the oldest.
    async fn count_backlog(&self) {
        let counted: Result<(i64, f64), sqlx::Error> = sqlx::query_as(
            "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM NOW() - min(created_at))::float8, 0) FROM groundwork_outbox",
        )
        .persistent(false)
        .fetch_one(&self.pool)
        .await;
        match counted {
            Ok((backlog, oldest)) => self.stats.send_modify(|stats| {
                stats.backlog = u64::try_from(backlog).unwrap_or_default();
                stats.oldest_age = Duration::try_from_secs_f64(oldest).unwrap_or_default();
            }),
            Err(error) => tracing::debug!(%error, "cannot count the outbox backlog"),
        }
    }

    /// One round: claim up to a batch of rows, publish them, wait for the confirms, delete the
    /// confirmed rows and postpone the refused ones, all in one transaction.
    async fn round(&mut self) -> Result<Round, Failure> {
        if self.retry_at.is_some_and(|at| at <= Instant::now()) {
            self.retry_at = None;
        }
        if self.publisher.is_none() {
            let publisher = Publisher::connect(&self.broker, self.options.connect_timeout)
                .await
                .map_err(Failure::Broker)?;
            tracing::info!("outbox relay connected to the broker");
            self.publisher = Some(publisher);
            self.stats.send_modify(|stats| stats.connected = true);
        }
        let mut tx = self.pool.begin().await.map_err(Failure::Database)?;
        let rows: Vec<RowColumns> = sqlx::query_as(
            "SELECT id, exchange, routing_key, headers, content_type, message_id, kind, body, attempts
             FROM groundwork_outbox
             WHERE available_at <= NOW()
             ORDER BY id
             LIMIT $1
             FOR UPDATE SKIP LOCKED",
        )
        .persistent(false)
        .bind(i32::from(self.options.batch_size))
        .fetch_all(&mut *tx)
        .await
        .map_err(Failure::Database)?;
        let rows: Vec<Row> = rows.into_iter().map(Row::from_columns).collect();
        if rows.is_empty() {
            tx.rollback().await.map_err(Failure::Database)?;
            return Ok(Round::Idle);
        }
        let full = rows.len() >= usize::from(self.options.batch_size);
        let span = tracing::debug_span!("outbox.publish", rows = rows.len());
        let outcome = self.publish(&rows).instrument(span).await?;
        self.settle(&mut tx, &rows, &outcome).await?;
        tx.commit().await.map_err(Failure::Database)?;
        if let Some(delay) = outcome
            .refused
            .iter()
            .map(|(id, _)| retry_delay(&self.options, attempts_of(&rows, *id)))
            .min()
        {
            // A little after the row's time, so that the database's clock has passed it too.
            let at = Instant::now() + delay + Duration::from_millis(10);
            self.retry_at = Some(self.retry_at.map_or(at, |earlier| earlier.min(at)));
        }
        let refused = outcome.refused.len() as u64;
        self.stats.send_modify(|stats| {
            stats.published += outcome.confirmed.len() as u64;
            stats.refused += refused;
        });
        Ok(if full { Round::Full } else { Round::Idle })
    }

    /// Publishes every row (mandatory, persistent) and waits for the broker's answer to each.
    async fn publish(&self, rows: &[Row]) -> Result<Outcome, Failure> {
        let Some(publisher) = &self.publisher else {
            return Err(Failure::Broker("no broker connection".to_owned()));
        };
        let mut confirms = Vec::with_capacity(rows.len());
        for row in rows {
            let confirm = publisher
                .channel
                .basic_publish(
                    row.exchange.as_str().into(),
                    row.routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &row.body,
                    row.properties(),
                )
                .await
                .map_err(|error| {
                    Failure::Broker(format!(
                        "publishing to exchange {:?}: {error}",
                        row.exchange
                    ))
                })?;
            confirms.push(confirm);
        }
        let mut outcome = Outcome::default();
        let deadline = Instant::now() + self.options.confirm_timeout;
        for (row, confirm) in rows.iter().zip(confirms) {
            let confirmation = tokio::time::timeout_at(deadline, confirm)
                .await
                .map_err(|_| {
                    Failure::Broker(format!(
                        "the broker did not confirm within {:?}",
                        self.options.confirm_timeout
                    ))
                })?
                .map_err(|error| {
                    Failure::Broker(format!(
                        "waiting for the confirm of a message to exchange {:?}: {error}",
                        row.exchange
                    ))
                })?;
            if confirmation.is_nack() {
                outcome
                    .refused
                    .push((row.id, "the broker refused the message (nack)".to_owned()));
            } else if !confirmation.is_ack() {
                return Err(Failure::Broker(
                    "the channel is not in confirm mode".to_owned(),
                ));
            } else if let Some(returned) = confirmation.take_message() {
                outcome.refused.push((
                    row.id,
                    format!(
                        "unroutable: no queue is bound to exchange {:?} for routing key {:?} ({} {})",
                        row.exchange,
                        row.routing_key,
                        returned.reply_code,
                        returned.reply_text
                    ),
                ));
            } else {
                outcome.confirmed.push(row.id);
            }
        }
        Ok(outcome)
    }

    /// Deletes the confirmed rows and postpones the refused ones with a back-off that doubles per
    /// attempt.
    async fn settle(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        rows: &[Row],
        outcome: &Outcome,
    ) -> Result<(), Failure> {
        if !outcome.confirmed.is_empty() {
            sqlx::query("DELETE FROM groundwork_outbox WHERE id = ANY($1)")
                .persistent(false)
                .bind(&outcome.confirmed)
                .execute(&mut **tx)
                .await
                .map_err(Failure::Database)?;
        }
        for (id, reason) in &outcome.refused {
            let attempts = attempts_of(rows, *id);
            let delay = retry_delay(&self.options, attempts);
            tracing::warn!(
                outbox_id = id,
                attempt = attempts + 1,
                retry_in = ?delay,
                reason = %reason,
                "outbox event refused by the broker; kept for a retry"
            );
            sqlx::query(
                "UPDATE groundwork_outbox
                 SET attempts = attempts + 1, last_error = $2,
                     available_at = NOW() + make_interval(secs => $3)
                 WHERE id = $1",
            )
            .persistent(false)
            .bind(id)
            .bind(reason)
            .bind(delay.as_secs_f64())
            .execute(&mut **tx)
            .await
            .map_err(Failure::Database)?;
        }
        Ok(())
    }
}

/// The broker's answers to one round.
#[derive(Default)]
struct Outcome {
    confirmed: Vec<i64>,
    refused: Vec<(i64, String)>,
}

/// The earlier attempts of the claimed row `id`.
fn attempts_of(rows: &[Row], id: i64) -> i32 {
    rows.iter()
        .find(|row| row.id == id)
        .map_or(0, |row| row.attempts)
}

/// `min_backoff` doubled per earlier attempt, at most `max_backoff`.
fn retry_delay(options: &RelayOptions, attempts: i32) -> Duration {
    let doublings = u32::try_from(attempts).unwrap_or(0).min(20);
    options
        .min_backoff
        .saturating_mul(1 << doublings)
        .min(options.max_backoff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_delay_doubles_up_to_the_maximum() {
        let options =
            RelayOptions::default().backoff(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<u128> = [0, 1, 2, 3, 4, 40, -1]
            .into_iter()
            .map(|attempts| retry_delay(&options, attempts).as_millis())
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000, 100]);
    }
}
