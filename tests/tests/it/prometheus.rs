//! The Prometheus files in `deploy/`: the alert rules pass `promtool check` and their unit tests
//! (`alerts.test.yml`), the scrape config loads them, and every query of the Grafana dashboard is
//! a valid Prometheus query. (The live `/metrics` pages of the three services are checked with
//! `promtool check metrics` in `stack.rs`, which starts them.)

use std::collections::BTreeSet;
use std::fmt::Write as _;

use anyhow::{Context as _, Result, ensure};
use groundwork_tests::{deploy_queries, metric_names, promtool, repository_root};

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() -> Result<()> {
    let dir = repository_root().join("deploy/prometheus");
    let checked = promtool(&dir, &["check", "config", "prometheus.yml"], None)?;
    ensure!(checked.contains("9 rules found"), "{checked}");
    let tested = promtool(&dir, &["test", "rules", "alerts.test.yml"], None)?;
    ensure!(tested.contains("SUCCESS"), "{tested}");
    Ok(())
}

#[test]
fn every_dashboard_query_is_valid_promql() -> Result<()> {
    let queries = deploy_queries()?;
    let dashboard: Vec<_> = queries
        .iter()
        .filter(|(place, _)| place.starts_with("dashboard: "))
        .collect();
    ensure!(
        dashboard.len() >= 20,
        "{} dashboard queries",
        dashboard.len()
    );
    // promtool parses PromQL in rule files: one recording rule per query.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (index, (_, expr)) in dashboard.iter().enumerate() {
        writeln!(
            rules,
            "      - record: dashboard:query_{index}\n        expr: {}",
            serde_json::to_string(expr)?
        )?;
    }
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("dashboard.yml"), rules)?;
    promtool(dir.path(), &["check", "rules", "dashboard.yml"], None)
        .context("a dashboard query is not valid PromQL")?;
    Ok(())
}

#[test]
fn the_rules_and_the_dashboard_cover_the_issue_s_signals() -> Result<()> {
    let queries = deploy_queries()?;
    let read: BTreeSet<String> = queries
        .iter()
        .flat_map(|(_, expr)| metric_names(expr))
        .collect();
    for family in [
        "http_server_request_duration_seconds",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
        "db_client_connections_usage",
        "db_client_connections_max",
        "rabbitmq_connection_up",
        "live_feed_stale",
        "backup_last_success_timestamp_seconds",
        "backup_wal_last_archived_timestamp_seconds",
    ] {
        ensure!(
            read.contains(family),
            "nothing in deploy/ reads {family}: {read:?}"
        );
    }
    let alerts: Vec<_> = queries
        .iter()
        .filter(|(place, _)| place.starts_with("alerts.yml: "))
        .map(|(place, _)| place.as_str())
        .collect();
    for alert in [
        "GroundworkHighErrorRate",
        "GroundworkHighLatencyP99",
        "GroundworkBackupMissed",
        "GroundworkWalArchivingStopped",
        "GroundworkConfigFeedStale",
    ] {
        ensure!(
            alerts.contains(&format!("alerts.yml: {alert}").as_str()),
            "{alerts:?}"
        );
    }
    Ok(())
}
