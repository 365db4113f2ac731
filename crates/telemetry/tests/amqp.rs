//! A message published and consumed through a real RabbitMQ keeps its trace: the consumer's span
//! is a child of the publisher's. One test per binary: it installs the process-wide subscriber.

mod common;

use std::time::Duration;

use common::{Captured, str_at};
use fake_opentelemetry_collector::FakeCollectorServer;
use groundwork_telemetry::{Telemetry, amqp};
use groundwork_testkit::TestAmqp;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection};
use tracing::Instrument as _;

/// The next delivery of lapin's consumer (a `Stream`), without a stream-combinator crate.
async fn next_delivery(
    consumer: &mut lapin::Consumer,
) -> Option<Result<lapin::message::Delivery, lapin::Error>> {
    std::future::poll_fn(|cx| {
        futures_core::Stream::poll_next(std::pin::Pin::new(&mut *consumer), cx)
    })
    .await
}

// One scenario, read top to bottom: publish, consume, compare the exported spans.
#[allow(clippy::too_many_lines)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_span_is_a_child_of_the_publisher_span() -> anyhow::Result<()> {
    let mut collector = FakeCollectorServer::start()
        .await
        .map_err(|error| anyhow::anyhow!("cannot start the collector: {error}"))?;
    let mut settings = common::default_settings();
    settings.service_name = Some("order-pipeline".into());
    settings.otlp_endpoint = Some(collector.endpoint().parse()?);
    settings.otlp_protocol = Some(groundwork_telemetry::OtlpProtocol::Grpc);
    let captured = Captured::default();
    let telemetry = Telemetry::builder(&settings)
        .writer(captured.clone())
        .build()?
        .install()?;

    let rabbit = TestAmqp::create().await?;
    let queue = rabbit.name("orders");
    let connection: &Connection = rabbit.connection();
    let channel = connection.create_channel().await?;
    rabbit.declare_queue(&channel, &queue).await?;

    let publish = tracing::info_span!("publish_order", order_id = 42);
    async {
        let mut headers = FieldTable::default();
        amqp::inject_current(&mut headers);
        tracing::info!("publishing");
        channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                b"{\"order_id\":42}",
                BasicProperties::default().with_headers(headers),
            )
            .await?
            .await?;
        anyhow::Ok(())
    }
    .instrument(publish)
    .await?;

    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "telemetry-test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let delivery = tokio::time::timeout(Duration::from_secs(10), next_delivery(&mut consumer))
        .await?
        .ok_or_else(|| anyhow::anyhow!("the consumer stopped"))??;
    let span = amqp::consumer_span(
        &queue,
        delivery.routing_key.as_str(),
        delivery.properties.headers().as_ref(),
    );
    async {
        tracing::info!("processing");
        delivery.ack(BasicAckOptions::default()).await?;
        anyhow::Ok(())
    }
    .instrument(span)
    .await?;

    let (telemetry, flushed) = tokio::task::spawn_blocking(move || {
        let flushed = telemetry.force_flush();
        (telemetry, flushed)
    })
    .await?;
    flushed?;
    let spans = collector.exported_spans(2, Duration::from_secs(10)).await;
    let publisher = spans
        .iter()
        .find(|span| span.name == "publish_order")
        .ok_or_else(|| anyhow::anyhow!("no publisher span among {spans:#?}"))?;
    let consumer_span = spans
        .iter()
        .find(|span| span.name == format!("{queue} process"))
        .ok_or_else(|| anyhow::anyhow!("no consumer span among {spans:#?}"))?;
    assert_eq!(consumer_span.trace_id, publisher.trace_id);
    assert_eq!(consumer_span.parent_span_id, publisher.span_id);
    assert_eq!(consumer_span.kind, "SPAN_KIND_CONSUMER");

    let publish_line = &captured.with_message("publishing")?[0];
    let processed = &captured.with_message("processing")?[0];
    assert_eq!(
        str_at(publish_line, "traceId"),
        Some(publisher.trace_id.as_str())
    );
    assert_eq!(
        str_at(processed, "traceId"),
        Some(publisher.trace_id.as_str())
    );
    assert_eq!(
        str_at(processed, "spanId"),
        Some(consumer_span.span_id.as_str())
    );

    channel.close(200, "done".into()).await?;
    rabbit.cleanup().await?;
    telemetry.shutdown()?;
    Ok(())
}
