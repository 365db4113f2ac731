// `TestAmqp` against the real RabbitMQ server.
#![cfg(feature = "amqp")]

use groundwork_testkit::{InfraEnv, Service, TestAmqp};
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};

/// Whether a passive declaration of `name`, as an exchange or as a queue, succeeds on a fresh
/// connection: whether it exists.
async fn exists(name: &str, as_exchange: bool) -> anyhow::Result<bool> {
    let url = InfraEnv::discover()?.url(Service::RabbitMq);
    let connection = Connection::connect(&url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    let declared = if as_exchange {
        let passive = ExchangeDeclareOptions {
            passive: true,
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(
                name.into(),
                ExchangeKind::Fanout,
                passive,
                FieldTable::default(),
            )
            .await
    } else {
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(name.into(), passive, FieldTable::default())
            .await
            .map(drop)
    };
    connection.close(200, "done".into()).await?;
    Ok(declared.is_ok())
}

async fn queue_exists(name: &str) -> anyhow::Result<bool> {
    exists(name, false).await
}

async fn exchange_exists(name: &str) -> anyhow::Result<bool> {
    exists(name, true).await
}

#[tokio::test]
async fn named_queue_and_exchange_work_and_are_deleted_on_drop() -> anyhow::Result<()> {
    let amqp = TestAmqp::create().await?;
    let queue = amqp.name("orders");
    let exchange = amqp.name("events");
    assert_eq!(queue, format!("{}orders", amqp.prefix()));
    assert_eq!(amqp.name("orders"), queue, "a name is stable within a test");

    let channel = amqp.connection().create_channel().await?;
    amqp.declare_queue(&channel, &queue).await?;
    channel
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel
        .basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            b"order #1",
            BasicProperties::default(),
        )
        .await?
        .await?;
    let message = channel
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await?
        .ok_or_else(|| anyhow::anyhow!("the published message did not arrive"))?;
    assert_eq!(message.delivery.data, b"order #1");
    assert!(queue_exists(&queue).await?);
    assert!(exchange_exists(&exchange).await?);

    drop(amqp);

    assert!(!queue_exists(&queue).await?);
    assert!(!exchange_exists(&exchange).await?);
    Ok(())
}

#[tokio::test]
async fn queue_is_deleted_when_the_test_panics() -> anyhow::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let failing_test = tokio::spawn(async move {
        let Ok(amqp) = TestAmqp::create().await else {
            return;
        };
        let queue = amqp.name("jobs");
        let Ok(channel) = amqp.connection().create_channel().await else {
            return;
        };
        let declared = channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await;
        if declared.is_ok() {
            let _ = tx.send(queue);
        }
        panic!("simulated test failure");
    });

    assert!(failing_test.await.is_err_and(|err| err.is_panic()));
    let queue = rx.recv()?;
    assert!(!queue_exists(&queue).await?);
    Ok(())
}

#[tokio::test]
async fn explicit_cleanup_deletes_the_queue() -> anyhow::Result<()> {
    let amqp = TestAmqp::create().await?;
    let queue = amqp.name("invoices");
    let channel = amqp.connection().create_channel().await?;
    amqp.declare_queue(&channel, &queue).await?;

    amqp.cleanup().await?;

    assert!(!queue_exists(&queue).await?);
    Ok(())
}

#[tokio::test]
async fn concurrent_test_amqp_names_differ() -> anyhow::Result<()> {
    let (first, second) = tokio::try_join!(TestAmqp::create(), TestAmqp::create())?;
    assert_ne!(first.prefix(), second.prefix());
    assert_ne!(first.name("orders"), second.name("orders"));
    Ok(())
}
