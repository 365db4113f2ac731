//! The README's tables list every variable `TelemetrySettings` reads and every metric family the
//! crate serves, so a setting or metric added without its row fails here.

use anyhow::{Context as _, Result};
use groundwork_telemetry::TelemetrySettings;
use groundwork_telemetry::http::{self, HttpMetrics};
use groundwork_telemetry::pools;
use serde_json::Value;

fn readme() -> Result<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    std::fs::read_to_string(path).with_context(|| format!("reading {path}"))
}

/// Every `x-env` name in `schema`, recursively.
fn env_names(schema: &Value, found: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map {
                if key == "x-env" {
                    if let Some(name) = value.as_str() {
                        found.push(name.to_owned());
                    }
                } else {
                    env_names(value, found);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| env_names(item, found)),
        _ => {}
    }
}

#[test]
fn every_variable_of_the_settings_has_a_row_in_the_readme() -> Result<()> {
    let schema = serde_json::to_value(schemars::schema_for!(TelemetrySettings))?;
    let mut names = Vec::new();
    env_names(&schema, &mut names);
    assert!(names.len() >= 30, "{names:?}");
    let readme = readme()?;
    let rows: Vec<&str> = readme
        .lines()
        .filter(|line| line.starts_with("| "))
        .collect();
    let missing: Vec<&String> = names
        .iter()
        .filter(|name| !rows.iter().any(|row| row.contains(&format!("`{name}`"))))
        .collect();
    assert!(
        missing.is_empty(),
        "variables of TelemetrySettings without a row in README.md's tables: {missing:?}"
    );
    Ok(())
}

#[test]
fn every_metric_family_served_has_a_row_in_the_readme() -> Result<()> {
    let readme = readme()?;
    let start = readme
        .find("\n## Metrics\n")
        .context("README.md has no `## Metrics` section")?;
    let section = &readme[start + 1..];
    let section = &section[..section[3..]
        .find("\n## ")
        .map_or(section.len(), |end| end + 3)];
    let documented: Vec<&str> = section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`').map(|(name, _)| name))
        .collect();

    let metrics = HttpMetrics::new().with_process_metrics();
    metrics.shed_requests().increment(1);
    metrics.timed_out_requests().increment(1);
    metrics.malformed_requests().increment(1);
    let page = metrics.render();
    let mut families: Vec<String> = page
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    assert!(
        families.iter().any(|family| family.starts_with("process_")),
        "{page}"
    );
    // Families that need a request or a pool to appear, by the names the crate registers them under.
    families.extend(
        [
            http::REQUEST_DURATION,
            http::ACTIVE_REQUESTS,
            http::SHED_REQUESTS,
            http::TIMED_OUT_REQUESTS,
            http::MALFORMED_REQUESTS,
            pools::POOL_USAGE,
            pools::POOL_MAX,
            pools::POOL_PENDING,
            pools::AMQP_CONNECTION_UP,
            pools::AMQP_CONNECTION_BLOCKED,
        ]
        .map(str::to_owned),
    );
    let missing: Vec<&String> = families
        .iter()
        .filter(|family| !documented.contains(&family.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "metric families without a row in README.md's `## Metrics` table: {missing:?}\n{page}"
    );
    Ok(())
}
