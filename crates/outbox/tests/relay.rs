//! The outbox against real PostgreSQL and RabbitMQ: each test with its own database and its own
//! exchange and queue names.

use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use futures_lite::StreamExt as _;
use groundwork_outbox::{Broker, OutboxMessage, Relay, RelayOptions, RelayStats};
use groundwork_testkit::{TestAmqp, TestDatabase};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, ExchangeDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, ExchangeKind};
use sqlx::PgPool;
use tokio::sync::watch;

/// Longest wait for anything a test expects to happen; reaching it fails the test.
const PATIENCE: Duration = Duration::from_secs(30);
const ROUTING_KEY: &str = "thing.happened";

/// A database with the outbox table, an exchange and a queue bound to it, and a consumer.
struct Setup {
    db: TestDatabase,
    amqp: TestAmqp,
    exchange: String,
    inbox: Inbox,
}

impl Setup {
    async fn new() -> Result<Self> {
        let db = TestDatabase::create().await?;
        groundwork_outbox::migrate(db.pool()).await?;
        let amqp = TestAmqp::create().await?;
        let exchange = amqp.name("events");
        let channel = amqp.connection().create_channel().await?;
        channel
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let inbox = Inbox::bind(&amqp, &exchange, "events").await?;
        Ok(Self {
            db,
            amqp,
            exchange,
            inbox,
        })
    }

    fn pool(&self) -> PgPool {
        self.db.pool().clone()
    }

    fn broker(&self) -> Result<Broker> {
        Ok(Broker::new(self.amqp.url().parse()?))
    }

    fn message(&self, id: &str) -> OutboxMessage {
        OutboxMessage::new(self.exchange.as_str(), ROUTING_KEY, id).message_id(id)
    }

    /// Enqueues one event per id in one committed transaction.
    async fn commit(&self, ids: &[&str]) -> Result<()> {
        let mut tx = self.db.pool().begin().await?;
        for id in ids {
            groundwork_outbox::enqueue(&mut tx, &self.message(id)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn outbox_rows(&self) -> Result<i64> {
        let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM groundwork_outbox")
            .fetch_one(self.db.pool())
            .await?;
        Ok(rows)
    }
}

/// A queue bound to the exchange for every routing key, consumed with manual acks.
struct Inbox {
    _channel: Channel,
    consumer: lapin::Consumer,
}

impl Inbox {
    async fn bind(amqp: &TestAmqp, exchange: &str, base: &str) -> Result<Self> {
        let queue = amqp.name(base);
        let channel = amqp.connection().create_channel().await?;
        amqp.bind_queue(&channel, &queue, exchange, "#").await?;
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "outbox-test".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Self {
            _channel: channel,
            consumer,
        })
    }

    /// The next delivery, acked.
    async fn next(&mut self) -> Result<Delivery> {
        let delivery = tokio::time::timeout(PATIENCE, self.consumer.next())
            .await
            .context("no message arrived in time")?
            .context("the consumer ended")??;
        delivery.ack(BasicAckOptions::default()).await?;
        Ok(delivery)
    }

    /// The body of the next delivery, as text.
    async fn next_body(&mut self) -> Result<String> {
        Ok(String::from_utf8(self.next().await?.data)?)
    }
}

/// Waits until the relay's stats satisfy `check`.
async fn until(
    stats: &mut watch::Receiver<RelayStats>,
    what: &str,
    check: impl FnMut(&RelayStats) -> bool,
) -> Result<RelayStats> {
    let waited = tokio::time::timeout(PATIENCE, stats.wait_for(check))
        .await
        .map(|seen| seen.map(|seen| seen.clone()));
    match waited {
        Ok(Ok(seen)) => Ok(seen),
        Ok(Err(_)) => bail!("the relay stopped before {what}"),
        Err(_) => bail!(
            "timed out waiting until {what}; stats: {:?}",
            *stats.borrow()
        ),
    }
}

/// Quick retries, so that tests of failures do not wait long; a poll interval long enough that
/// only `NOTIFY` wakes the relay within a test's patience.
fn options() -> RelayOptions {
    RelayOptions::default()
        .poll_interval(Duration::from_mins(2))
        .backoff(Duration::from_millis(50), Duration::from_millis(400))
        .connect_timeout(Duration::from_secs(5))
        .confirm_timeout(Duration::from_secs(5))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_event_is_published_with_its_headers_and_properties_and_deleted() -> Result<()>
{
    let mut setup = Setup::new().await?;
    let relay = Relay::start(setup.pool(), setup.broker()?, options());
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let message = OutboxMessage::new(setup.exchange.as_str(), ROUTING_KEY, r#"{"id":1}"#)
        .header("traceparent", traceparent)
        .content_type("application/json")
        .message_id("1")
        .kind("thing.happened");
    let mut tx = setup.db.pool().begin().await?;
    groundwork_outbox::enqueue(&mut tx, &message).await?;
    tx.commit().await?;

    let delivery = setup.inbox.next().await?;
    assert_eq!(delivery.data, br#"{"id":1}"#);
    assert_eq!(delivery.routing_key.as_str(), ROUTING_KEY);
    let properties = &delivery.properties;
    assert_eq!(properties.delivery_mode(), &Some(2));
    assert_eq!(
        properties.content_type().as_ref().map(ShortString::as_str),
        Some("application/json")
    );
    assert_eq!(
        properties.message_id().as_ref().map(ShortString::as_str),
        Some("1")
    );
    assert_eq!(
        properties.kind().as_ref().map(ShortString::as_str),
        Some("thing.happened")
    );
    let header = properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get("traceparent").cloned());
    let Some(AMQPValue::LongString(header)) = header else {
        bail!("no traceparent long string header: {header:?}");
    };
    assert_eq!(header.as_bytes(), traceparent.as_bytes());

    let mut stats = relay.stats();
    until(&mut stats, "the event is counted", |stats| {
        stats.published == 1
    })
    .await?;
    assert_eq!(
        setup.outbox_rows().await?,
        0,
        "a confirmed event is deleted"
    );
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_transaction_rolls_back_or_has_not_committed_is_never_published()
-> Result<()> {
    let mut setup = Setup::new().await?;
    let relay = Relay::start(setup.pool(), setup.broker()?, options());

    let mut rolled_back = setup.db.pool().begin().await?;
    groundwork_outbox::enqueue(&mut rolled_back, &setup.message("rolled-back")).await?;
    rolled_back.rollback().await?;
    let mut open = setup.db.pool().begin().await?;
    groundwork_outbox::enqueue(&mut open, &setup.message("uncommitted")).await?;
    setup.commit(&["committed"]).await?;

    // The relay publishes in id order: the two earlier events would come first.
    assert_eq!(setup.inbox.next_body().await?, "committed");
    open.rollback().await?;
    setup.commit(&["after"]).await?;
    assert_eq!(setup.inbox.next_body().await?, "after");

    let mut stats = relay.stats();
    let stats = until(&mut stats, "both are counted", |stats| stats.published == 2).await?;
    assert_eq!((stats.refused, stats.broker_failures), (0, 0));
    assert_eq!(setup.outbox_rows().await?, 0);
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_killed_after_the_confirm_publishes_again_and_never_an_uncommitted_event()
-> Result<()> {
    let mut setup = Setup::new().await?;
    // Make the relay's DELETE wait for an advisory lock this test holds: the relay stops after
    // the broker confirmed, before its transaction can commit.
    sqlx::raw_sql(
        "CREATE FUNCTION hold_delete() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_advisory_xact_lock(4242); RETURN OLD; END $$;
         CREATE TRIGGER hold_delete BEFORE DELETE ON groundwork_outbox
             FOR EACH ROW EXECUTE FUNCTION hold_delete();",
    )
    .execute(setup.db.pool())
    .await?;
    let mut holder = setup.db.pool().acquire().await?.detach();
    sqlx::query("SELECT pg_advisory_lock(4242)")
        .execute(&mut holder)
        .await?;

    let relay = Relay::start(setup.pool(), setup.broker()?, options());
    let mut open = setup.db.pool().begin().await?;
    groundwork_outbox::enqueue(&mut open, &setup.message("uncommitted")).await?;
    setup.commit(&["event"]).await?;
    let first = setup.inbox.next().await?;
    assert_eq!(first.data, b"event");

    // The broker confirmed (the queue has it); the relay's delete is waiting. Kill its session.
    let blocked = wait_for_blocked_backend(setup.db.pool()).await?;
    let (killed,): (bool,) = sqlx::query_as("SELECT pg_terminate_backend($1)")
        .bind(blocked)
        .fetch_one(setup.db.pool())
        .await?;
    ensure!(killed, "cannot terminate the relay's session");
    sqlx::query("SELECT pg_advisory_unlock(4242)")
        .execute(&mut holder)
        .await?;

    // At least once: the event is published again, then deleted.
    let again = setup.inbox.next().await?;
    assert_eq!(again.data, b"event");
    assert_eq!(
        again
            .properties
            .message_id()
            .as_ref()
            .map(ShortString::as_str),
        Some("event")
    );
    let mut stats = relay.stats();
    until(&mut stats, "the event is counted", |stats| {
        stats.published >= 1 && stats.database_failures >= 1
    })
    .await?;

    // The open transaction's event was never visible; rolled back, it never goes out.
    open.rollback().await?;
    setup.commit(&["marker"]).await?;
    loop {
        let body = setup.inbox.next_body().await?;
        ensure!(body != "uncommitted", "an uncommitted event was published");
        if body == "marker" {
            break;
        }
        // Another copy of `event` is allowed (at least once), nothing else.
        ensure!(body == "event", "unexpected message {body}");
    }
    until(&mut stats, "the outbox is empty", |stats| {
        stats.published >= 2
    })
    .await?;
    assert_eq!(setup.outbox_rows().await?, 0);
    relay.shutdown().await;
    Ok(())
}

/// The backend waiting for advisory lock 4242: the relay's session, blocked in its DELETE.
async fn wait_for_blocked_backend(pool: &PgPool) -> Result<i32> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let blocked: Option<(i32,)> = sqlx::query_as(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 AND NOT granted",
        )
        .fetch_optional(pool)
        .await?;
        if let Some((pid,)) = blocked {
            return Ok(pid);
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the relay's delete never waited for the lock"
        );
        // PostgreSQL has no signal for "a session started waiting for a lock"; look again shortly.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_at_once_publish_each_event_once() -> Result<()> {
    const TRANSACTIONS: usize = 25;
    const PER_TRANSACTION: usize = 8;
    let mut setup = Setup::new().await?;
    let small = || options().batch_size(5);
    let first = Relay::start(setup.pool(), setup.broker()?, small().name("first"));
    let second = Relay::start(setup.pool(), setup.broker()?, small().name("second"));

    let mut expected = Vec::new();
    for transaction in 0..TRANSACTIONS {
        let ids: Vec<String> = (0..PER_TRANSACTION)
            .map(|event| format!("{transaction}-{event}"))
            .collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        setup.commit(&ids).await?;
        expected.extend(ids.iter().map(|id| (*id).to_owned()));
    }

    let mut received = Vec::new();
    while received.len() < expected.len() {
        received.push(setup.inbox.next_body().await?);
    }
    let (mut first_stats, mut second_stats) = (first.stats(), second.stats());
    let total = expected.len() as u64;
    // Every publish the relays counted is a delivery: once the counts add up to the events,
    // nothing more is on its way.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let published = first_stats.borrow().published + second_stats.borrow().published;
        if published >= total {
            ensure!(
                published == total,
                "{published} publishes for {total} events"
            );
            break;
        }
        tokio::select! {
            _ = first_stats.changed() => {}
            _ = second_stats.changed() => {}
            () = tokio::time::sleep_until(deadline) => bail!("the relays counted {published} of {total}"),
        }
    }
    for stats in [&first_stats, &second_stats] {
        let stats = stats.borrow();
        assert_eq!(
            (
                stats.broker_failures,
                stats.database_failures,
                stats.refused
            ),
            (0, 0, 0),
            "{stats:?}"
        );
    }
    received.sort();
    expected.sort();
    assert_eq!(received, expected, "each event exactly once");
    assert_eq!(setup.outbox_rows().await?, 0);
    first.shutdown().await;
    second.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unroutable_event_stays_until_a_queue_is_bound() -> Result<()> {
    let setup = Setup::new().await?;
    let lonely = setup.amqp.name("lonely");
    let channel = setup.amqp.connection().create_channel().await?;
    channel
        .exchange_declare(
            lonely.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let relay = Relay::start(setup.pool(), setup.broker()?, options());
    let mut tx = setup.db.pool().begin().await?;
    let message = OutboxMessage::new(lonely.as_str(), ROUTING_KEY, "kept");
    groundwork_outbox::enqueue(&mut tx, &message).await?;
    tx.commit().await?;

    let mut stats = relay.stats();
    until(&mut stats, "the broker returns the event", |stats| {
        stats.refused >= 1
    })
    .await?;
    let (attempts, error): (i32, Option<String>) =
        sqlx::query_as("SELECT attempts, last_error FROM groundwork_outbox")
            .fetch_one(setup.db.pool())
            .await?;
    assert!(attempts >= 1);
    let error = error.unwrap_or_default();
    assert!(
        error.contains("unroutable") && error.contains(&lonely),
        "{error}"
    );

    let mut inbox = Inbox::bind(&setup.amqp, &lonely, "lonely.queue").await?;
    // The relay retries at the row's time (back-off), without a NOTIFY or a poll.
    assert_eq!(String::from_utf8(inbox.next().await?.data)?, "kept");
    until(&mut stats, "the event is counted", |stats| {
        stats.published == 1
    })
    .await?;
    assert_eq!(setup.outbox_rows().await?, 0);
    relay.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_publishes_what_was_committed_before_it() -> Result<()> {
    const EVENTS: usize = 50;
    let mut setup = Setup::new().await?;
    let relay = Relay::start(setup.pool(), setup.broker()?, options().batch_size(8));
    let ids: Vec<String> = (0..EVENTS).map(|event| event.to_string()).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    setup.commit(&ids).await?;
    relay.shutdown().await;
    assert_eq!(setup.outbox_rows().await?, 0, "shutdown left events behind");
    for id in ids {
        assert_eq!(setup.inbox.next_body().await?, id);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_broker_is_unreachable_events_stay_and_go_out_when_it_is_back() -> Result<()> {
    let mut setup = Setup::new().await?;
    let mut url = url::Url::parse(setup.amqp.url())?;
    let upstream = format!(
        "{}:{}",
        url.host_str().context("no host in the RabbitMQ URL")?,
        url.port().unwrap_or(5672)
    );
    let proxy = Proxy::start(upstream).await?;
    url.set_port(Some(proxy.port))
        .map_err(|()| anyhow::anyhow!("cannot set the port"))?;
    let relay = Relay::start(setup.pool(), Broker::new(url.as_str().parse()?), options());
    let mut stats = relay.stats();
    until(&mut stats, "the relay connects", |stats| stats.connected).await?;

    proxy.set_up(false).await?;
    setup.commit(&["a", "b", "c"]).await?;
    until(
        &mut stats,
        "the relay failed to publish and to reconnect",
        |stats| stats.broker_failures >= 3 && !stats.connected,
    )
    .await?;
    assert_eq!(
        setup.outbox_rows().await?,
        3,
        "the events stay in the outbox"
    );
    assert_eq!(stats.borrow().published, 0);

    proxy.set_up(true).await?;
    for id in ["a", "b", "c"] {
        assert_eq!(setup.inbox.next_body().await?, id);
    }
    until(&mut stats, "the events are counted", |stats| {
        stats.published == 3 && stats.connected
    })
    .await?;
    assert_eq!(setup.outbox_rows().await?, 0);
    relay.shutdown().await;
    Ok(())
}

/// A TCP proxy in front of RabbitMQ that the test can take down (closing every connection and
/// refusing new ones) and bring back, so the shared broker keeps running.
struct Proxy {
    port: u16,
    up: watch::Sender<bool>,
    open: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (up, up_receiver) = watch::channel(true);
        let (open_sender, open) = watch::channel(0_usize);
        let open_sender = std::sync::Arc::new(open_sender);
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !*up_receiver.borrow() {
                    continue;
                }
                let mut down = up_receiver.clone();
                let upstream = upstream.clone();
                let open = std::sync::Arc::clone(&open_sender);
                open.send_modify(|open| *open += 1);
                tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = down.wait_for(|up| !*up) => {}
                        }
                    }
                    drop(client);
                    open.send_modify(|open| *open -= 1);
                });
            }
        });
        Ok(Self {
            port,
            up,
            open,
            task,
        })
    }

    /// Brings the proxy up or down; down returns once every proxied connection is closed.
    async fn set_up(&self, up: bool) -> Result<()> {
        self.up.send_replace(up);
        if !up {
            let mut open = self.open.clone();
            tokio::time::timeout(PATIENCE, open.wait_for(|open| *open == 0))
                .await
                .context("the proxy's connections did not close")??;
        }
        Ok(())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
