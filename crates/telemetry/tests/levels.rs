//! Level filters: changed at run time through the handle, and `RUST_LOG`-style directives.
//!
//! Their own test binary: changing a level rebuilds `tracing`'s process-wide callsite cache, and
//! test binaries whose subscribers disagree about levels would race on that cache.

mod common;

use common::{settings, str_at, telemetry};

#[test]
fn the_level_changes_at_run_time_and_a_bad_filter_changes_nothing() -> anyhow::Result<()> {
    let _serial = common::serial();
    let (telemetry, captured) = telemetry(&settings())?;
    tracing::dispatcher::with_default(telemetry.dispatch(), || -> anyhow::Result<()> {
        tracing::debug!("hidden at info");
        telemetry.log_level().set("debug")?;
        tracing::debug!("visible at debug");
        let error = telemetry
            .log_level()
            .set("info,[[[")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("invalid log filter"), "{error}");
        tracing::debug!("still visible");
        telemetry.log_level().set("warn")?;
        tracing::info!("hidden at warn");
        Ok(())
    })?;
    let messages: Vec<String> = captured
        .lines()?
        .iter()
        .filter_map(|line| str_at(line, "message").map(str::to_owned))
        .collect();
    assert_eq!(messages, ["visible at debug", "still visible"]);
    assert_eq!(telemetry.log_level().current()?, "warn");
    Ok(())
}

#[test]
fn rust_log_directives_filter_by_target() -> anyhow::Result<()> {
    let _serial = common::serial();
    let mut settings = settings();
    settings.log_level = Some(groundwork_telemetry::LogLevel::Debug);
    settings.rust_log = Some("warn,levels=info".parse()?);
    let (telemetry, captured) = telemetry(&settings)?;
    tracing::dispatcher::with_default(telemetry.dispatch(), || {
        tracing::info!("from this target");
        tracing::info!(target: "noisy_dependency", "from another target");
        tracing::debug!("debug from this target");
    });
    let messages: Vec<String> = captured
        .lines()?
        .iter()
        .filter_map(|line| str_at(line, "message").map(str::to_owned))
        .collect();
    assert_eq!(messages, ["from this target"]);
    Ok(())
}
