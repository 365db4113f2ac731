//! The `[dependencies]` of a generated service: which crates each `--with` part needs, with the
//! versions and features of Groundwork's own `[workspace.dependencies]`, so the service resolves
//! to the versions Groundwork is tested with (its `Cargo.lock` is a copy of Groundwork's).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, Result, bail};

use super::{GroundworkSource, Part};

/// One dependency line: the crate, the features the service adds to the workspace's.
struct Dependency {
    name: &'static str,
    features: Vec<&'static str>,
}

fn dependency(name: &'static str, features: &[&'static str]) -> Dependency {
    Dependency {
        name,
        features: features.to_vec(),
    }
}

/// The crates a service with `parts` uses directly, sorted by name.
fn dependencies(parts: &[Part]) -> Vec<Dependency> {
    let has = |part: Part| parts.contains(&part);
    let mut health = Vec::new();
    let mut connect = Vec::new();
    let mut telemetry_features = vec!["otlp", "http", "process"];
    // `run`: `main` in one call. `ServeOptions::telemetry`: the edge's own answers go through the
    // telemetry layer.
    let mut service = vec!["run", "telemetry"];
    let mut list = vec![
        dependency("anyhow", &[]),
        dependency("axum", &["tokio", "http1"]),
        dependency("groundwork-config", &[]),
        dependency("schemars", &[]),
        dependency("serde", &[]),
        dependency("serde_json", &[]),
        dependency("tokio", &["rt-multi-thread", "macros", "signal", "net"]),
        dependency("tracing", &[]),
        // `form_urlencoded` parses `?tenant=` without axum's `query` feature.
        dependency("url", &[]),
    ];
    if has(Part::Postgres) {
        health.push("postgres");
        telemetry_features.push("postgres");
        list.push(dependency("groundwork-migrate", &["postgres"]));
        list.push(dependency("sqlx", &[]));
    }
    if has(Part::Redis) {
        health.push("redis");
        telemetry_features.push("redis");
        connect.push("redis");
        list.push(dependency("deadpool-redis", &[]));
    }
    if has(Part::Rabbitmq) {
        health.push("rabbitmq");
        telemetry_features.push("amqp");
        connect.push("amqp");
        list.push(dependency("lapin", &[]));
    }
    if has(Part::Clickhouse) {
        health.push("clickhouse");
        connect.push("clickhouse");
        list.push(dependency("clickhouse", &[]));
    }
    if has(Part::Live) || has(Part::Flags) {
        health.push("live");
        list.push(dependency("groundwork-live", &[]));
    }
    if has(Part::Live) {
        service.push("live");
    }
    if has(Part::Flags) {
        list.push(dependency("groundwork-flags", &["postgres"]));
    }
    if !connect.is_empty() {
        list.push(Dependency {
            name: "groundwork-connect",
            features: connect,
        });
    }
    list.push(Dependency {
        name: "groundwork-health",
        features: health,
    });
    list.push(Dependency {
        name: "groundwork-service",
        features: service,
    });
    list.push(Dependency {
        name: "groundwork-telemetry",
        features: telemetry_features,
    });
    list.sort_by_key(|dependency| dependency.name);
    list
}

/// The names of every crate a service with `parts` depends on directly (a service may not be
/// named like one of them).
pub(crate) fn dependency_names(parts: &[Part]) -> Vec<&'static str> {
    dependencies(parts)
        .iter()
        .map(|dependency| dependency.name)
        .collect()
}

/// Groundwork's `Cargo.toml`, read once: the workspace dependencies and package settings.
pub(crate) struct Workspace {
    manifest: toml::Table,
}

impl Workspace {
    pub(crate) fn read(root: &Path) -> Result<Self> {
        let path = root.join("Cargo.toml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let manifest = text
            .parse::<toml::Table>()
            .with_context(|| format!("parsing {}", path.display()))?;
        Ok(Self { manifest })
    }

    fn table(&self, dotted: &str) -> Result<&toml::Table> {
        let mut table = &self.manifest;
        for key in dotted.split('.') {
            table = table
                .get(key)
                .and_then(toml::Value::as_table)
                .with_context(|| format!("Groundwork's Cargo.toml has no [{dotted}]"))?;
        }
        Ok(table)
    }

    /// `[workspace.package]`'s `key`, e.g. `version` or `rust-version`.
    pub(crate) fn package_field(&self, key: &str) -> Result<String> {
        self.table("workspace.package")?
            .get(key)
            .and_then(toml::Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("Groundwork's Cargo.toml has no workspace.package.{key}"))
    }

    /// The `[dependencies]` lines of a service with `parts`, Groundwork crates from `source`.
    pub(crate) fn dependency_lines(
        &self,
        parts: &[Part],
        source: &GroundworkSource,
    ) -> Result<String> {
        let declared = self.table("workspace.dependencies")?;
        let version = self.package_field("version")?;
        let mut out = String::new();
        for dependency in dependencies(parts) {
            let spec = declared.get(dependency.name).with_context(|| {
                format!(
                    "Groundwork's [workspace.dependencies] has no `{}`",
                    dependency.name
                )
            })?;
            let mut fields: Vec<String> = Vec::new();
            let mut features: Vec<String> = Vec::new();
            let mut default_features = true;
            match spec {
                toml::Value::String(requirement) => {
                    fields.push(format!("version = {}", quote(requirement)));
                }
                toml::Value::Table(table) => {
                    if let Some(name) = dependency.name.strip_prefix("groundwork-") {
                        fields.extend(source.fields(name, &version));
                    } else if let Some(requirement) =
                        table.get("version").and_then(toml::Value::as_str)
                    {
                        fields.push(format!("version = {}", quote(requirement)));
                    } else {
                        bail!(
                            "`{}` in [workspace.dependencies] has no version",
                            dependency.name
                        );
                    }
                    default_features = table
                        .get("default-features")
                        .and_then(toml::Value::as_bool)
                        .unwrap_or(true);
                    if let Some(list) = table.get("features").and_then(toml::Value::as_array) {
                        features.extend(
                            list.iter()
                                .filter_map(toml::Value::as_str)
                                .map(str::to_owned),
                        );
                    }
                }
                _ => bail!(
                    "`{}` in [workspace.dependencies] is neither a string nor a table",
                    dependency.name
                ),
            }
            for feature in &dependency.features {
                if !features.iter().any(|known| known == feature) {
                    features.push((*feature).to_owned());
                }
            }
            if !default_features {
                fields.push("default-features = false".to_owned());
            }
            if !features.is_empty() {
                let list: Vec<String> = features.iter().map(|feature| quote(feature)).collect();
                fields.push(format!("features = [{}]", list.join(", ")));
            }
            let _ = writeln!(out, "{} = {{ {} }}", dependency.name, fields.join(", "));
        }
        Ok(out.trim_end().to_owned())
    }
}

/// A TOML basic string.
pub(crate) fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_without_parts_needs_no_database_or_broker_client() {
        let names = dependency_names(&[]);
        for client in [
            "sqlx",
            "deadpool-redis",
            "lapin",
            "clickhouse",
            "groundwork-connect",
        ] {
            assert!(!names.contains(&client), "{client} in {names:?}");
        }
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
