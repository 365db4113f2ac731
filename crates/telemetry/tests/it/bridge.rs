//! The OpenTelemetry bridge against an in-test OTLP/gRPC collector: warnings and errors become span
//! events, sampling follows the caller and the configured sampler, and unsampled spans still give
//! log lines their trace ids.

use crate::common;

use std::time::Duration;

use common::{Captured, str_at};
use fake_opentelemetry_collector::{ExportedSpan, FakeCollectorServer};
use groundwork_telemetry::{
    Telemetry, TelemetrySettings, TracesSampler, extract, with_remote_parent,
};

/// Telemetry exporting to `collector`, not installed globally.
fn telemetry(
    collector: &FakeCollectorServer,
    sampler: Option<TracesSampler>,
) -> anyhow::Result<(Telemetry, Captured)> {
    telemetry_with(collector, |settings| {
        settings.traces_sampler = sampler;
    })
}

/// Telemetry exporting to `collector` with the settings `adjust` makes.
fn telemetry_with(
    collector: &FakeCollectorServer,
    adjust: impl FnOnce(&mut TelemetrySettings),
) -> anyhow::Result<(Telemetry, Captured)> {
    let mut settings = common::default_settings();
    settings.service_name = Some("payments".into());
    settings.otlp_endpoint = Some(collector.endpoint().parse()?);
    settings.otlp_protocol = Some(groundwork_telemetry::OtlpProtocol::Grpc);
    adjust(&mut settings);
    let captured = Captured::default();
    let telemetry = Telemetry::builder(&settings)
        .writer(captured.clone())
        .build()?;
    Ok((telemetry, captured))
}

/// Flushes on a blocking thread (the gRPC exporter needs the runtime) and collects what arrived.
async fn flushed(
    telemetry: Telemetry,
    collector: &mut FakeCollectorServer,
    at_least: usize,
) -> anyhow::Result<Vec<ExportedSpan>> {
    let telemetry = tokio::task::spawn_blocking(move || {
        let result = telemetry.force_flush();
        result.map(|()| telemetry)
    })
    .await??;
    let spans = collector
        .exported_spans(at_least, Duration::from_secs(5))
        .await;
    telemetry.shutdown()?;
    Ok(spans)
}

/// The gRPC exporter and the collector need worker threads while a test waits for a flush.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

async fn collector() -> anyhow::Result<FakeCollectorServer> {
    FakeCollectorServer::start()
        .await
        .map_err(|error| anyhow::anyhow!("cannot start the collector: {error}"))
}

fn traceparent(
    trace_id: &str,
    parent: &str,
    flags: &str,
) -> std::collections::HashMap<String, String> {
    std::collections::HashMap::from([(
        "traceparent".to_owned(),
        format!("00-{trace_id}-{parent}-{flags}"),
    )])
}

#[test]
fn warnings_and_errors_become_span_events_and_an_error_fails_the_span() -> anyhow::Result<()> {
    let _serial = common::serial();
    runtime()?.block_on(async {
        let mut collector = collector().await?;
        let (telemetry, _captured) = telemetry(&collector, None)?;
        tracing::dispatcher::with_default(telemetry.dispatch(), || {
            let span = tracing::info_span!("charge", tenant = "acme", amount = 1250_u64);
            let _entered = span.enter();
            tracing::info!("an info line is a log line only");
            tracing::warn!(attempt = 2_i64, "card declined");
            tracing::error!(code = "E42", "payment failed");
        });
        let spans = flushed(telemetry, &mut collector, 1).await?;

        let charge = spans
            .iter()
            .find(|span| span.name == "charge")
            .ok_or_else(|| anyhow::anyhow!("no span `charge` among {spans:#?}"))?;
        let names: Vec<&str> = charge
            .events
            .iter()
            .map(|event| event.name.as_str())
            .collect();
        assert_eq!(names, ["card declined", "payment failed"]);
        let declined = &charge.events[0].attributes;
        assert!(declined["attempt"].contains("IntValue(2)"), "{declined:?}");
        assert!(declined["level"].contains("WARN"), "{declined:?}");
        assert!(charge.events[1].attributes["code"].contains("E42"));
        let status = charge
            .status
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no status on {charge:#?}"))?;
        assert_eq!(status.code, "STATUS_CODE_ERROR");
        // The fast bridge describes the failure with the error's message; tracing-opentelemetry
        // leaves the description empty.
        let description = if common::standard() {
            ""
        } else {
            "payment failed"
        };
        assert_eq!(status.message, description);
        assert!(charge.attributes["tenant"].contains("acme"));
        // An unsigned field is an integer attribute on the fast path; tracing-opentelemetry records
        // it through `Debug`, as a string.
        let amount = if common::standard() {
            "StringValue(\"1250\")"
        } else {
            "IntValue(1250)"
        };
        assert!(
            charge.attributes["amount"].contains(amount),
            "{:?}",
            charge.attributes
        );
        assert!(charge.attributes.contains_key("code.file.path"));
        assert_eq!(charge.kind, "SPAN_KIND_INTERNAL");
        Ok(())
    })
}

#[test]
fn the_value_of_a_secret_named_key_is_masked_in_span_events() -> anyhow::Result<()> {
    let _serial = common::serial();
    runtime()?.block_on(async {
        let mut collector = collector().await?;
        let (telemetry, _captured) = telemetry(&collector, None)?;
        tracing::dispatcher::with_default(telemetry.dispatch(), || {
            let span = tracing::info_span!("connect");
            let _entered = span.enter();
            // How sqlx logs a connection URL parameter it does not know.
            let key = "sslpassword";
            tracing::warn!(%key, value = "pl4nted-s3cret", "ignoring unrecognized connect parameter");
        });
        let spans = flushed(telemetry, &mut collector, 1).await?;
        let text = format!("{spans:?}");
        assert!(!text.contains("pl4nted-s3cret"), "{text}");
        let connect = spans
            .iter()
            .find(|span| span.name == "connect")
            .ok_or_else(|| anyhow::anyhow!("no span `connect` among {spans:#?}"))?;
        let event = &connect.events[0].attributes;
        assert!(event["key"].contains("sslpassword"), "{event:?}");
        assert!(event["value"].contains("***"), "{event:?}");
        Ok(())
    })
}

#[test]
fn sampling_follows_the_caller_and_unsampled_spans_keep_their_trace_ids() -> anyhow::Result<()> {
    let _serial = common::serial();
    runtime()?.block_on(async {
        let mut collector = collector().await?;
        let (telemetry, captured) = telemetry(&collector, None)?;
        let sampled_trace = "0af7651916cd43dd8448eb211c80319c";
        let unsampled_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let caller = "b7ad6b7169203331";
        tracing::dispatcher::with_default(telemetry.dispatch(), || {
            for (trace_id, flags, name) in [
                (sampled_trace, "01", "sampled"),
                (unsampled_trace, "00", "unsampled"),
            ] {
                let parent = extract(&traceparent(trace_id, caller, flags));
                let span =
                    with_remote_parent(&parent, || tracing::info_span!("handle", job = name));
                let _entered = span.enter();
                let child = tracing::info_span!("step");
                let _child = child.enter();
                tracing::info!(job = name, "handled");
            }
        });
        let spans = flushed(telemetry, &mut collector, 2).await?;

        let names: Vec<(&str, &str)> = spans
            .iter()
            .map(|span| (span.name.as_str(), span.trace_id.as_str()))
            .collect();
        assert_eq!(
            spans.len(),
            2,
            "only the sampled trace is exported: {names:?}"
        );
        assert!(
            spans.iter().all(|span| span.trace_id == sampled_trace),
            "{names:?}"
        );
        let handle = spans
            .iter()
            .find(|span| span.name == "handle")
            .ok_or_else(|| anyhow::anyhow!("no span `handle` among {names:?}"))?;
        assert_eq!(handle.parent_span_id, caller);

        for (trace_id, name) in [(sampled_trace, "sampled"), (unsampled_trace, "unsampled")] {
            let line = captured
                .with_message("handled")?
                .into_iter()
                .find(|line| line["context"]["job"] == name)
                .ok_or_else(|| anyhow::anyhow!("no line for the {name} job"))?;
            assert_eq!(str_at(&line, "traceId"), Some(trace_id), "{name}");
            assert!(str_at(&line, "spanId").is_some_and(|id| id.len() == 16 && id != caller));
        }
        Ok(())
    })
}

#[test]
fn a_sampler_that_records_nothing_exports_nothing_but_logs_keep_ids() -> anyhow::Result<()> {
    let _serial = common::serial();
    runtime()?.block_on(async {
        let mut collector = collector().await?;
        let (telemetry, captured) = telemetry(&collector, Some(TracesSampler::AlwaysOff))?;
        let context = tracing::dispatcher::with_default(telemetry.dispatch(), || {
            let span = tracing::info_span!("nightly report");
            let _entered = span.enter();
            tracing::info!("report written");
            groundwork_telemetry::current_context()
        });
        let spans = flushed(telemetry, &mut collector, 0).await?;
        assert!(spans.is_empty(), "{spans:#?}");

        let line = &captured.with_message("report written")?[0];
        let trace_id = str_at(line, "traceId").unwrap_or_default();
        assert_eq!(trace_id.len(), 32);
        // What would be propagated is the same trace, marked as not sampled.
        let mut headers = std::collections::HashMap::new();
        groundwork_telemetry::inject(&context, &mut headers);
        let traceparent = headers.get("traceparent").cloned().unwrap_or_default();
        assert!(
            traceparent.starts_with(&format!("00-{trace_id}-")) && traceparent.ends_with("-00"),
            "{traceparent}"
        );
        Ok(())
    })
}

#[test]
fn baggage_from_the_caller_is_sent_on_with_the_trace() -> anyhow::Result<()> {
    let _serial = common::serial();
    runtime()?.block_on(async {
        let collector = collector().await?;
        let (telemetry, _captured) = telemetry(&collector, None)?;
        let trace_id = "0af7651916cd43dd8448eb211c80319c";
        let (with_trace, baggage_only) =
            tracing::dispatcher::with_default(telemetry.dispatch(), || {
                let outgoing = |incoming: std::collections::HashMap<String, String>| {
                    let span =
                        with_remote_parent(&extract(&incoming), || tracing::info_span!("handle"));
                    let _entered = span.enter();
                    // A child span, as a handler's own work would open.
                    let child = tracing::info_span!("call downstream");
                    let _child = child.enter();
                    let mut headers = std::collections::HashMap::new();
                    groundwork_telemetry::inject(
                        &groundwork_telemetry::current_context(),
                        &mut headers,
                    );
                    headers
                };
                let mut incoming = traceparent(trace_id, "b7ad6b7169203331", "01");
                incoming.insert("baggage".to_owned(), "tenant=acme".to_owned());
                let with_trace = outgoing(incoming);
                let baggage_only = outgoing(std::collections::HashMap::from([(
                    "baggage".to_owned(),
                    "tenant=globex".to_owned(),
                )]));
                (with_trace, baggage_only)
            });
        assert_eq!(
            with_trace.get("baggage").map(String::as_str),
            Some("tenant=acme")
        );
        assert!(
            with_trace
                .get("traceparent")
                .is_some_and(|value| value.starts_with(&format!("00-{trace_id}-"))),
            "{with_trace:?}"
        );
        assert_eq!(
            baggage_only.get("baggage").map(String::as_str),
            Some("tenant=globex")
        );
        assert!(
            baggage_only
                .get("traceparent")
                .is_some_and(|value| !value.contains(trace_id)),
            "a new trace: {baggage_only:?}"
        );
        telemetry.shutdown()?;
        Ok(())
    })
}

/// A value whose `Debug` logs, as error reports that capture span traces do.
struct Chatty;

impl std::fmt::Debug for Chatty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        tracing::warn!("formatting a value that logs");
        f.write_str("chatty")
    }
}

#[test]
fn a_value_that_logs_while_it_is_recorded_does_not_deadlock() -> anyhow::Result<()> {
    let _serial = common::serial();
    runtime()?.block_on(async {
        let mut collector = collector().await?;
        let (telemetry, captured) = telemetry(&collector, None)?;
        let dispatch = telemetry.dispatch().clone();
        // On a thread of its own, so that a deadlock fails the test instead of hanging it.
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            tracing::dispatcher::with_default(&dispatch, || {
                let span = tracing::info_span!("report", detail = tracing::field::Empty);
                let _entered = span.enter();
                span.record("detail", tracing::field::debug(&Chatty));
                tracing::error!(report = ?Chatty, "request failed");
            });
            let _ = done.send(());
        });
        finished
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| anyhow::anyhow!("recording a value that logs deadlocked"))?;
        let spans = flushed(telemetry, &mut collector, 1).await?;
        let report = spans
            .iter()
            .find(|span| span.name == "report")
            .ok_or_else(|| anyhow::anyhow!("no span `report` among {spans:#?}"))?;
        assert!(report.attributes["detail"].contains("chatty"));
        let names: Vec<&str> = report
            .events
            .iter()
            .map(|event| event.name.as_str())
            .collect();
        assert!(names.contains(&"request failed"), "{names:?}");
        assert!(names.contains(&"formatting a value that logs"), "{names:?}");
        assert!(
            !captured
                .with_message("formatting a value that logs")?
                .is_empty()
        );
        Ok(())
    })
}

#[test]
fn a_span_constructor_that_panics_does_not_hand_the_callers_trace_to_the_next_span()
-> anyhow::Result<()> {
    let _serial = common::serial();
    runtime()?.block_on(async {
        let collector = collector().await?;
        let (telemetry, captured) = telemetry(&collector, None)?;
        let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
        tracing::dispatcher::with_default(telemetry.dispatch(), || {
            let parent = extract(&traceparent(trace_id, "b7ad6b7169203331", "01"));
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                with_remote_parent(&parent, || panic!("a field expression failed"))
            }));
            assert!(outcome.is_err());
            let unrelated = tracing::info_span!("unrelated");
            let _entered = unrelated.enter();
            tracing::info!("unrelated work");
        });
        let line = &captured.with_message("unrelated work")?[0];
        let logged = str_at(line, "traceId").unwrap_or_default();
        assert_eq!(logged.len(), 32);
        assert_ne!(
            logged, trace_id,
            "the caller's trace leaked into a later span"
        );
        telemetry.shutdown()?;
        Ok(())
    })
}

fn find<'a>(spans: &'a [ExportedSpan], name: &str) -> anyhow::Result<&'a ExportedSpan> {
    spans
        .iter()
        .find(|span| span.name == name)
        .ok_or_else(|| anyhow::anyhow!("no span `{name}` among {spans:#?}"))
}

#[test]
fn follows_from_becomes_a_span_link() -> anyhow::Result<()> {
    let _serial = common::serial();
    runtime()?.block_on(async {
        let mut collector = collector().await?;
        let (telemetry, _captured) = telemetry(&collector, None)?;
        tracing::dispatcher::with_default(telemetry.dispatch(), || {
            // Two traces: the batch that was enqueued, and the work that follows from it.
            let enqueue = tracing::info_span!("enqueue");
            let process = tracing::info_span!("process");
            process.follows_from(&enqueue);
            // A span that is not there (already closed, another subscriber's) links nothing.
            process.follows_from(tracing::Id::from_u64(u64::MAX));
        });
        let spans = flushed(telemetry, &mut collector, 2).await?;
        let enqueue = find(&spans, "enqueue")?;
        let process = find(&spans, "process")?;
        assert_ne!(enqueue.trace_id, process.trace_id);
        assert_eq!(process.links.len(), 1, "{process:#?}");
        assert_eq!(process.links[0].trace_id, enqueue.trace_id);
        assert_eq!(process.links[0].span_id, enqueue.span_id);
        assert_eq!(process.dropped_links_count, 0);
        assert!(enqueue.links.is_empty());
        Ok(())
    })
}

#[test]
fn error_values_give_their_span_event_exception_attributes() -> anyhow::Result<()> {
    let _serial = common::serial();
    runtime()?.block_on(async {
        let mut collector = collector().await?;
        let (telemetry, _captured) = telemetry(&collector, None)?;
        let parse_error = "12a"
            .parse::<i32>()
            .err()
            .ok_or_else(|| anyhow::anyhow!("`12a` parsed"))?;
        let io_error = std::io::Error::new(std::io::ErrorKind::NotFound, "weights file missing");
        tracing::dispatcher::with_default(telemetry.dispatch(), || {
            let span = tracing::info_span!("load_weights");
            let _entered = span.enter();
            tracing::warn!(
                error = &io_error as &(dyn std::error::Error + 'static),
                "falling back to defaults"
            );
            tracing::error!(
                error = &parse_error as &(dyn std::error::Error + 'static),
                "bad weight"
            );
            tracing::error!(code = "E42", "no error value here");
        });
        let spans = flushed(telemetry, &mut collector, 1).await?;
        let span = find(&spans, "load_weights")?;
        let event = |name: &str| {
            span.events
                .iter()
                .find(|event| event.name == name)
                .map(|event| &event.attributes)
                .ok_or_else(|| anyhow::anyhow!("no event `{name}` in {span:#?}"))
        };
        let io = event("falling back to defaults")?;
        assert!(
            io["exception.message"].contains("\"weights file missing\""),
            "{io:?}"
        );
        // tracing-opentelemetry (the standard path) sets no `exception.type`.
        let fast = !common::standard();
        assert!(
            !fast || io["exception.type"].contains("\"std::io::Error\""),
            "{io:?}"
        );
        assert!(io["error"].contains("weights file missing"), "{io:?}");
        let parse = event("bad weight")?;
        assert!(
            parse["exception.message"].contains("\"invalid digit found in string\""),
            "{parse:?}"
        );
        assert!(
            !fast || parse["exception.type"].contains("\"ParseIntError\""),
            "{parse:?}"
        );
        let plain = event("no error value here")?;
        assert!(
            !plain.keys().any(|key| key.starts_with("exception.")),
            "{plain:?}"
        );
        Ok(())
    })
}

#[test]
fn span_limits_as_configured_keep_the_first_and_count_the_rest() -> anyhow::Result<()> {
    let _serial = common::serial();
    runtime()?.block_on(async {
        let mut collector = collector().await?;
        let (telemetry, _captured) = telemetry_with(&collector, |settings| {
            // Four location attributes (`code.*`, `target`) come first.
            settings.span_attribute_count_limit = Some(6);
            settings.span_event_count_limit = Some(2);
            settings.span_link_count_limit = Some(1);
        })?;
        tracing::dispatcher::with_default(telemetry.dispatch(), || {
            let first = tracing::info_span!("first");
            let second = tracing::info_span!("second");
            let span = tracing::info_span!(
                "limited",
                a = 1_i64,
                b = 2_i64,
                c = tracing::field::Empty,
                d = tracing::field::Empty
            );
            span.record("c", 3_i64);
            span.record("d", 4_i64);
            // Updating a kept attribute is not a new one.
            span.record("a", 10_i64);
            span.follows_from(&first);
            span.follows_from(&second);
            let _entered = span.enter();
            for attempt in 1..=3_i64 {
                tracing::warn!(attempt, "retrying");
            }
        });
        let spans = flushed(telemetry, &mut collector, 3).await?;
        let limited = find(&spans, "limited")?;
        assert_eq!(limited.attributes.len(), 6, "{limited:#?}");
        assert!(limited.attributes.contains_key("b"));
        assert!(!limited.attributes.contains_key("c"));
        if common::standard() {
            // The SDK counts the update of a kept attribute past the limit as dropped too.
            assert!(limited.dropped_attributes_count >= 2, "{limited:#?}");
        } else {
            assert!(limited.attributes["a"].contains("IntValue(10)"));
            assert_eq!(limited.dropped_attributes_count, 2);
        }
        assert_eq!(limited.events.len(), 2);
        assert_eq!(limited.dropped_events_count, 1);
        assert_eq!(limited.links.len(), 1);
        assert_eq!(limited.links[0].span_id, find(&spans, "first")?.span_id);
        assert_eq!(limited.dropped_links_count, 1);
        Ok(())
    })
}
