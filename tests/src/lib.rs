//! Cross-crate integration tests live in `tests/`; this library holds what several of them share:
//! running `promtool` (Debian's `prometheus` package) and reading the metric names that the
//! alert rules and the Grafana dashboard in `deploy/` query, and a service binary run as a
//! process with the raw HTTP requests sent to it ([`service`]).

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

pub mod service;

/// The repository's root directory.
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

/// Runs `promtool` with `args` (and `stdin`, when given) in `dir`; its output when it fails.
pub fn promtool(dir: &Path, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context(
            "cannot run promtool; install Debian's prometheus package \
             (apt-get install --no-install-recommends prometheus), as .ci/run does",
        )?;
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input.write_all(text.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        bail!(
            "promtool {} failed ({}):\n{text}",
            args.join(" "),
            output.status
        );
    }
    Ok(text)
}

/// The metric families a Prometheus text page declares (`# TYPE name type`).
pub fn families(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Prefixes of the metrics Groundwork serves; a name in a query that starts with one must be
/// served by some service (label names such as `http_route` do not start with one).
const PREFIXES: [&str; 6] = [
    "http_server_",
    "process_",
    "db_client_",
    "rabbitmq_",
    "live_feed_",
    "backup_",
];

/// The family of a series name: a histogram's `_bucket`, `_count` and `_sum` series belong to
/// the histogram.
pub fn family_of(name: &str) -> &str {
    ["_bucket", "_count", "_sum"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .filter(|base| base.ends_with("_seconds"))
        .unwrap_or(name)
}

/// The Groundwork metric names `query` reads.
pub fn metric_names(query: &str) -> BTreeSet<String> {
    query
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| PREFIXES.iter().any(|prefix| word.starts_with(prefix)))
        .map(|word| family_of(word).to_owned())
        .collect()
}

/// The queries of `deploy/`: every alert rule's `expr` and every dashboard panel's `expr`, each
/// with where it is (`alerts.yml: NAME`, `dashboard: TITLE`). The dashboard's `$__rate_interval`
/// and `$job` are replaced by `5m` and `.*`, so each is a plain Prometheus query.
pub fn deploy_queries() -> Result<Vec<(String, String)>> {
    let deploy = repository_root().join("deploy");
    let mut queries = Vec::new();
    let rules = std::fs::read_to_string(deploy.join("prometheus/alerts.yml"))?;
    // The rule file's layout is ours: `- alert: NAME` followed by `expr:` (inline or a block).
    let mut alert = None;
    let mut lines = rules.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if let Some(name) = trimmed.strip_prefix("- alert: ") {
            alert = Some(name.to_owned());
        } else if let Some(expr) = trimmed.strip_prefix("expr: ") {
            let name = alert.take().context("an expr before its alert name")?;
            let mut text = expr.trim_start_matches('|').trim().to_owned();
            let indent = line.len() - trimmed.len();
            while let Some(next) = lines.peek() {
                let next_indent = next.len() - next.trim_start().len();
                if next.trim().is_empty() || next_indent <= indent {
                    break;
                }
                text.push('\n');
                text.push_str(next.trim());
                lines.next();
            }
            queries.push((format!("alerts.yml: {name}"), text));
        }
    }
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        deploy.join("grafana/groundwork-services.json"),
    )?)?;
    for panel in dashboard["panels"].as_array().context("no panels")? {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().context("a target without expr")?;
            queries.push((
                format!("dashboard: {}", panel["title"].as_str().unwrap_or_default()),
                expr.replace("$__rate_interval", "5m").replace("$job", ".*"),
            ));
        }
    }
    Ok(queries)
}
