//! The standard `OTEL_*` variables, through `TelemetrySettings`, against real in-test OTLP
//! receivers (gRPC and http/protobuf): compression, per-signal headers and protocol, the default
//! protocol, `OTEL_SDK_DISABLED` and `OTEL_TRACES_EXPORTER`, the batch processor's settings and
//! the service name's precedence.

use crate::common;

use std::time::{Duration, Instant};

use common::tls::{Export, Receiver, names};
use common::{Captured, str_at};
use groundwork_config::Secret;
use groundwork_telemetry::{OtlpCompression, Telemetry, TelemetrySettings, TracesExporter};

const PROTOCOLS: [&str; 2] = ["grpc", "http/protobuf"];

/// The gRPC exporter and the receivers need worker threads while a test waits for a flush.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

async fn receiver(protocol: &str) -> anyhow::Result<Receiver> {
    if protocol == "grpc" {
        Receiver::plain_grpc().await
    } else {
        Receiver::plain_http().await
    }
}

/// Settings exporting to `receiver` over `protocol`.
fn exporting_to(receiver: &Receiver, protocol: &str) -> anyhow::Result<TelemetrySettings> {
    let mut settings = common::settings();
    settings.otlp_endpoint = Some(receiver.http_endpoint().parse()?);
    settings.otlp_protocol = Some(protocol.parse()?);
    Ok(settings)
}

fn build(settings: &TelemetrySettings) -> anyhow::Result<(Telemetry, Captured)> {
    common::telemetry(settings)
}

/// A `checkout` span with a child `charge` span, a warning in the child and an info line.
fn emit(telemetry: &Telemetry) {
    tracing::dispatcher::with_default(telemetry.dispatch(), || {
        let span = tracing::info_span!("checkout", tenant = "acme");
        let _entered = span.enter();
        {
            let charge = tracing::info_span!("charge", amount = 1250_i64);
            let _entered = charge.enter();
            tracing::warn!(attempt = 2_i64, "card declined");
        }
        tracing::info!("checkout done");
    });
}

/// Flushes on a blocking thread (the gRPC exporter needs the runtime).
async fn flush(telemetry: Telemetry) -> anyhow::Result<Telemetry> {
    tokio::task::spawn_blocking(move || -> anyhow::Result<Telemetry> {
        telemetry.force_flush()?;
        Ok(telemetry)
    })
    .await?
}

/// Flushes, then shuts down.
async fn flush_and_shut_down(telemetry: Telemetry) -> anyhow::Result<()> {
    let telemetry = flush(telemetry).await?;
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await??;
    Ok(())
}

/// The batch processor threads of this process (Linux truncates thread names to 15 bytes).
fn batch_threads() -> anyhow::Result<usize> {
    let mut count = 0;
    for task in std::fs::read_dir("/proc/self/task")? {
        let comm = std::fs::read_to_string(task?.path().join("comm")).unwrap_or_default();
        if comm.starts_with("OpenTelemetry.T") {
            count += 1;
        }
    }
    Ok(count)
}

#[test]
fn gzip_bodies_arrive_compressed_and_decode_over_both_protocols() -> anyhow::Result<()> {
    let _serial = common::serial();
    runtime()?.block_on(async {
        for protocol in PROTOCOLS {
            for (generic, traces, compressed) in [
                (Some(OtlpCompression::Gzip), None, true),
                (
                    Some(OtlpCompression::Gzip),
                    Some(OtlpCompression::None),
                    false,
                ),
                (None, Some(OtlpCompression::Gzip), true),
                (None, None, false),
            ] {
                let mut receiver = receiver(protocol).await?;
                let mut settings = exporting_to(&receiver, protocol)?;
                settings.otlp_compression = generic;
                settings.otlp_traces_compression = traces;
                let (telemetry, _lines) = build(&settings)?;
                emit(&telemetry);
                flush_and_shut_down(telemetry).await?;
                let exports = receiver.exports(2, Duration::from_secs(10)).await;
                let mut arrived = names(&exports);
                arrived.sort();
                assert_eq!(
                    arrived,
                    ["charge", "checkout"],
                    "{protocol} {generic:?} {traces:?}"
                );
                assert!(
                    exports.iter().all(|export| export.gzip == compressed),
                    "{protocol} {generic:?} {traces:?}: expected gzip={compressed}"
                );
            }
        }
        Ok(())
    })
}

#[test]
fn the_traces_headers_replace_the_generic_ones_over_both_protocols() -> anyhow::Result<()> {
    let _serial = common::serial();
    runtime()?.block_on(async {
        for protocol in PROTOCOLS {
            for traces_headers in [false, true] {
                let mut receiver = receiver(protocol).await?;
                let mut settings = exporting_to(&receiver, protocol)?;
                settings.otlp_headers = Some(Secret::from("x-generic-key=g3n3ric,x-team=core"));
                if traces_headers {
                    settings.otlp_traces_headers = Some(Secret::from("x-traces-key=tr4ces"));
                }
                let (telemetry, _lines) = build(&settings)?;
                emit(&telemetry);
                flush_and_shut_down(telemetry).await?;
                let exports = receiver.exports(2, Duration::from_secs(10)).await;
                assert!(!exports.is_empty(), "{protocol}: nothing arrived");
                for Export { headers, .. } in &exports {
                    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
                    if traces_headers {
                        assert_eq!(header("x-traces-key"), Some("tr4ces"), "{protocol}");
                        assert_eq!(header("x-generic-key"), None, "{protocol}");
                        assert_eq!(header("x-team"), None, "{protocol}");
                    } else {
                        assert_eq!(header("x-generic-key"), Some("g3n3ric"), "{protocol}");
                        assert_eq!(header("x-team"), Some("core"), "{protocol}");
                    }
                }
            }
        }
        Ok(())
    })
}

#[test]
fn http_protobuf_is_the_default_and_the_traces_protocol_wins() -> anyhow::Result<()> {
    let _serial = common::serial();
    runtime()?.block_on(async {
        // No protocol at all: an http/protobuf receiver gets the spans at `/v1/traces`.
        let mut receiver = Receiver::plain_http().await?;
        let mut settings = common::settings();
        settings.otlp_endpoint = Some(receiver.http_endpoint().parse()?);
        let (telemetry, _lines) = build(&settings)?;
        emit(&telemetry);
        flush_and_shut_down(telemetry).await?;
        assert_eq!(
            receiver.span_names(2, Duration::from_secs(10)).await.len(),
            2
        );

        // gRPC for every signal, http/protobuf for traces: the traces go over HTTP.
        let mut receiver = Receiver::plain_http().await?;
        settings.otlp_endpoint = Some(receiver.http_endpoint().parse()?);
        settings.otlp_protocol = Some(groundwork_telemetry::OtlpProtocol::Grpc);
        settings.otlp_traces_protocol = Some(groundwork_telemetry::OtlpProtocol::HttpProtobuf);
        let (telemetry, _lines) = build(&settings)?;
        emit(&telemetry);
        flush_and_shut_down(telemetry).await?;
        assert_eq!(
            receiver.span_names(2, Duration::from_secs(10)).await.len(),
            2
        );
        Ok(())
    })
}

#[test]
fn sdk_disabled_and_exporter_none_send_nothing_and_start_no_batch_thread() -> anyhow::Result<()> {
    let _serial = common::serial();
    runtime()?.block_on(async {
        for (disabled, exporter) in [
            (Some(true), None),
            (Some(true), Some(TracesExporter::Otlp)),
            (Some(true), Some(TracesExporter::Console)),
            (None, Some(TracesExporter::None)),
            // The control: the same settings export.
            (Some(false), None),
        ] {
            let exporting = disabled != Some(true) && exporter != Some(TracesExporter::None);
            let mut receiver = Receiver::plain_http().await?;
            let mut settings = exporting_to(&receiver, "http/protobuf")?;
            settings.sdk_disabled = disabled;
            settings.traces_exporter = exporter;
            let before = batch_threads()?;
            let console = Captured::default();
            let (telemetry, lines) = common::telemetry_with_console(&settings, &console)?;
            emit(&telemetry);
            // A batch thread names itself once running; after a flush it has.
            let telemetry = flush(telemetry).await?;
            assert_eq!(
                batch_threads()? - before,
                usize::from(exporting),
                "{disabled:?} {exporter:?}"
            );
            tokio::task::spawn_blocking(move || telemetry.shutdown()).await??;
            let arrived = receiver
                .span_names(
                    2,
                    Duration::from_millis(if exporting { 10_000 } else { 1_000 }),
                )
                .await;
            assert_eq!(
                arrived.len(),
                if exporting { 2 } else { 0 },
                "{disabled:?} {exporter:?}"
            );
            assert_eq!(console.text(), "", "{disabled:?} {exporter:?}");
            // Log lines are still written, with their trace ids.
            let line = &lines.with_message("checkout done")?[0];
            assert!(str_at(line, "traceId").is_some_and(|id| id.len() == 32));
        }
        Ok(())
    })
}

#[test]
fn the_console_exporter_prints_one_json_line_per_span() -> anyhow::Result<()> {
    let _serial = common::serial();
    runtime()?.block_on(async {
        let mut settings = common::settings();
        settings.traces_exporter = Some(TracesExporter::Console);
        let console = Captured::default();
        let (telemetry, lines) = common::telemetry_with_console(&settings, &console)?;
        emit(&telemetry);
        flush_and_shut_down(telemetry).await?;

        let spans = console.lines()?;
        assert_eq!(spans.len(), 2, "{}", console.text());
        let span = |name: &str| {
            spans
                .iter()
                .find(|span| str_at(span, "name") == Some(name))
                .ok_or_else(|| anyhow::anyhow!("no span {name} in {}", console.text()))
        };
        let checkout = span("checkout")?;
        let charge = span("charge")?;
        let line = &lines.with_message("checkout done")?[0];
        assert_eq!(str_at(checkout, "traceId"), str_at(line, "traceId"));
        assert_eq!(str_at(checkout, "spanId"), str_at(line, "spanId"));
        assert_eq!(str_at(checkout, "service"), Some("query-engine"));
        assert_eq!(str_at(checkout, "kind"), Some("internal"));
        assert_eq!(str_at(checkout, "status"), Some("unset"));
        assert!(checkout.get("parentSpanId").is_none());
        assert_eq!(
            str_at(charge, "parentSpanId"),
            str_at(checkout, "spanId"),
            "{charge:?}"
        );
        assert_eq!(checkout["attributes"]["tenant"], "acme");
        assert_eq!(charge["attributes"]["amount"], 1250);
        assert!(checkout["durationMs"].as_f64().is_some_and(|ms| ms >= 0.0));
        assert!(str_at(checkout, "startTime").is_some_and(|time| time.ends_with('Z')));
        assert_eq!(charge["events"][0]["name"], "card declined");
        assert_eq!(charge["events"][0]["attributes"]["attempt"], 2);
        // The log lines are not mixed with the spans.
        assert!(
            lines
                .lines()?
                .iter()
                .all(|line| line.get("spanId").is_none() || line.get("message").is_some())
        );
        Ok(())
    })
}

#[test]
fn batch_settings_shape_the_exports() -> anyhow::Result<()> {
    let _serial = common::serial();
    runtime()?.block_on(async {
        // At most two spans per request.
        let mut receiver = Receiver::plain_http().await?;
        let mut settings = exporting_to(&receiver, "http/protobuf")?;
        settings.bsp_max_export_batch_size = Some(2);
        let (telemetry, _lines) = build(&settings)?;
        tracing::dispatcher::with_default(telemetry.dispatch(), || {
            for index in 0..5_i64 {
                let _span = tracing::info_span!("step", index).entered();
            }
        });
        flush_and_shut_down(telemetry).await?;
        let exports = receiver.exports(5, Duration::from_secs(10)).await;
        assert_eq!(names(&exports).len(), 5);
        let sizes: Vec<usize> = exports.iter().map(|export| export.spans.len()).collect();
        assert!(sizes.iter().all(|size| *size <= 2), "{sizes:?}");

        // A schedule delay of 100 ms sends a span without any flush, long before the default 5 s.
        let mut receiver = Receiver::plain_http().await?;
        let mut settings = exporting_to(&receiver, "http/protobuf")?;
        settings.bsp_schedule_delay = Some(100);
        let (telemetry, _lines) = build(&settings)?;
        let started = Instant::now();
        tracing::dispatcher::with_default(telemetry.dispatch(), || {
            let _span = tracing::info_span!("scheduled").entered();
        });
        let arrived = receiver.span_names(1, Duration::from_secs(3)).await;
        assert_eq!(arrived, ["scheduled"], "after {:?}", started.elapsed());
        flush_and_shut_down(telemetry).await?;
        Ok(())
    })
}

#[test]
fn the_service_name_follows_the_specification_in_traces_and_log_lines() -> anyhow::Result<()> {
    let _serial = common::serial();
    runtime()?.block_on(async {
        for (otel_service_name, service_name, expected) in [
            (None, None, "billing"),
            (None, Some("billing-seed"), "billing-seed"),
            (Some("billing-otel"), Some("billing-seed"), "billing-otel"),
        ] {
            let mut receiver = Receiver::plain_http().await?;
            let mut settings = common::default_settings();
            settings.otlp_endpoint = Some(receiver.http_endpoint().parse()?);
            settings.resource_attributes = Some("team=core,service.name=billing".into());
            settings.otel_service_name = otel_service_name.map(str::to_owned);
            settings.service_name = service_name.map(str::to_owned);
            let (telemetry, lines) = build(&settings)?;
            emit(&telemetry);
            flush_and_shut_down(telemetry).await?;
            let exports = receiver.exports(2, Duration::from_secs(10)).await;
            assert!(!exports.is_empty());
            for export in &exports {
                assert_eq!(export.service_names, [expected]);
            }
            let line = &lines.with_message("checkout done")?[0];
            assert_eq!(str_at(line, "service"), Some(expected));
        }
        Ok(())
    })
}
