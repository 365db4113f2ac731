//! Static checks of `deploy/compose.yaml`, since no Docker engine runs in CI: the stack's
//! services exist with the images the platform uses, every one has a health check, start order
//! is gated on health, and each example service gets the keys its config requires.
//!
//! xtask keeps to std, so this reads the block-style YAML subset the compose file is written in
//! (maps, lists of scalars, flow lists kept as text); anything else is a test failure, which keeps
//! the file plain.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Map(BTreeMap<String, Node>),
    List(Vec<String>),
    Scalar(String),
}

impl Node {
    fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(map) => map.get(key),
            _ => None,
        }
    }

    fn map(&self) -> Option<&BTreeMap<String, Node>> {
        match self {
            Node::Map(map) => Some(map),
            _ => None,
        }
    }

    fn scalar(&self) -> Option<&str> {
        match self {
            Node::Scalar(text) => Some(text),
            _ => None,
        }
    }
}

/// Lines without comments and blanks, as (indent, text).
fn lines(text: &str) -> Vec<(usize, &str)> {
    text.lines()
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|line| (line.len() - line.trim_start().len(), line.trim()))
        .collect()
}

fn unquote(text: &str) -> String {
    let text = text.trim();
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text)
        .to_owned()
}

/// Parses the block at `lines[*at..]` indented by exactly `indent`.
fn parse_block(lines: &[(usize, &str)], at: &mut usize, indent: usize) -> Result<Node, String> {
    let Some(&(first_indent, first)) = lines.get(*at) else {
        return Err("unexpected end of file".to_owned());
    };
    if first_indent != indent {
        return Err(format!("line `{first}`: expected indent {indent}"));
    }
    if first.starts_with("- ") {
        let mut items = Vec::new();
        while let Some(&(line_indent, line)) = lines.get(*at) {
            if line_indent != indent {
                break;
            }
            let item = line
                .strip_prefix("- ")
                .ok_or_else(|| format!("line `{line}`: expected a list item"))?;
            items.push(unquote(item));
            *at += 1;
        }
        return Ok(Node::List(items));
    }
    let mut map = BTreeMap::new();
    while let Some(&(line_indent, line)) = lines.get(*at) {
        if line_indent < indent {
            break;
        }
        if line_indent > indent {
            return Err(format!("line `{line}`: unexpected indent"));
        }
        let (key, value) = line
            .split_once(':')
            .ok_or_else(|| format!("line `{line}`: expected `key: value`"))?;
        *at += 1;
        let value = value.trim();
        let node = if value.is_empty() {
            let child_indent = lines
                .get(*at)
                .map(|&(i, _)| i)
                .filter(|&i| i > indent)
                .ok_or_else(|| format!("key `{key}` has no value"))?;
            parse_block(lines, at, child_indent)?
        } else {
            Node::Scalar(unquote(value))
        };
        if map.insert(key.trim().to_owned(), node).is_some() {
            return Err(format!("key `{key}` appears twice"));
        }
    }
    Ok(Node::Map(map))
}

fn parse(text: &str) -> Result<Node, String> {
    let lines = lines(text);
    let mut at = 0;
    let node = parse_block(&lines, &mut at, 0)?;
    if at != lines.len() {
        return Err(format!("could not read line `{}`", lines[at].1));
    }
    Ok(node)
}

type Services = BTreeMap<String, Node>;

/// Every problem found in the compose file.
fn problems(compose: &Node) -> Vec<String> {
    let Some(services) = compose.get("services").and_then(Node::map) else {
        return vec!["no `services` map".to_owned()];
    };
    let mut problems = Vec::new();
    check_images(services, &mut problems);
    check_examples(services, &mut problems);
    check_health_gates(services, &mut problems);
    problems
}

fn check_images(services: &Services, problems: &mut Vec<String>) {
    let images = [
        ("postgres", "postgres:16"),
        ("redis", "redis:7"),
        ("rabbitmq", "rabbitmq:3-management"),
    ];
    for (service, image) in images {
        match services
            .get(service)
            .and_then(|s| s.get("image"))
            .and_then(Node::scalar)
        {
            Some(found) if found == image => {}
            found => problems.push(format!("{service}: image should be {image}, is {found:?}")),
        }
    }
    for (service, prefix) in [("clickhouse", "clickhouse/"), ("jaeger", "jaegertracing/")] {
        let image = services
            .get(service)
            .and_then(|s| s.get("image"))
            .and_then(Node::scalar);
        if !image.is_some_and(|image| image.starts_with(prefix)) {
            problems.push(format!(
                "{service}: image should be {prefix}..., is {image:?}"
            ));
        }
    }
}

fn check_examples(services: &Services, problems: &mut Vec<String>) {
    // Keys each example's config requires (no serde default), by service.
    let required: [(&str, &str, &[&str]); 3] = [
        (
            "api-gateway",
            "groundwork-example-api-gateway",
            &["DATABASE_URL", "REDIS_URL", "RABBITMQ_URL"],
        ),
        (
            "order-worker",
            "groundwork-example-order-worker",
            &["DATABASE_URL", "RABBITMQ_URL"],
        ),
        (
            "analytics-ingest",
            "groundwork-example-analytics-ingest",
            &["CLICKHOUSE_URL", "RABBITMQ_URL"],
        ),
    ];
    for (service, package, keys) in required {
        let Some(node) = services.get(service) else {
            problems.push(format!("{service}: missing"));
            continue;
        };
        let build = node.get("build");
        if build
            .and_then(|b| b.get("dockerfile"))
            .and_then(Node::scalar)
            != Some("deploy/Dockerfile")
        {
            problems.push(format!("{service}: must build from deploy/Dockerfile"));
        }
        if build
            .and_then(|b| b.get("args"))
            .and_then(|a| a.get("PACKAGE"))
            .and_then(Node::scalar)
            != Some(package)
        {
            problems.push(format!("{service}: build arg PACKAGE must be {package}"));
        }
        let env = node.get("environment");
        for key in keys
            .iter()
            .chain(&["HOST", "PORT"])
            .filter(|k| **k != "HOST")
        {
            if env.and_then(|e| e.get(key)).is_none() {
                problems.push(format!("{service}: environment lacks {key}"));
            }
        }
        let probe = node
            .get("healthcheck")
            .and_then(|h| h.get("test"))
            .and_then(Node::scalar)
            .unwrap_or_default();
        if !probe.contains("/health") || probe.contains("/livez") {
            problems.push(format!(
                "{service}: health check must probe readiness (/health), is {probe:?}"
            ));
        }
    }
}

fn check_health_gates(services: &Services, problems: &mut Vec<String>) {
    for (name, service) in services {
        if name != "seed"
            && service
                .get("healthcheck")
                .and_then(|h| h.get("test"))
                .is_none()
        {
            problems.push(format!("{name}: no healthcheck"));
        }
        let Some(depends_on) = service.get("depends_on") else {
            continue;
        };
        let Some(depends_on) = depends_on.map() else {
            problems.push(format!(
                "{name}: depends_on must name a condition for each dependency"
            ));
            continue;
        };
        for (dependency, condition) in depends_on {
            let Some(target) = services.get(dependency) else {
                problems.push(format!("{name}: depends on unknown service {dependency}"));
                continue;
            };
            if condition.get("condition").and_then(Node::scalar) != Some("service_healthy") {
                problems.push(format!(
                    "{name}: must wait for {dependency} with condition service_healthy"
                ));
            }
            if target.get("healthcheck").is_none() {
                problems.push(format!(
                    "{name}: waits for {dependency}, which has no healthcheck"
                ));
            }
        }
    }

    let gates = [
        ("api-gateway", &["postgres", "redis", "rabbitmq"][..]),
        ("order-worker", &["api-gateway", "rabbitmq"][..]),
        ("analytics-ingest", &["clickhouse", "rabbitmq"][..]),
        ("seed", &["api-gateway"][..]),
    ];
    for (service, dependencies) in gates {
        for dependency in dependencies {
            let waits = services
                .get(service)
                .and_then(|s| s.get("depends_on"))
                .and_then(|d| d.get(dependency))
                .is_some();
            if !waits {
                problems.push(format!(
                    "{service}: must start after {dependency} is healthy"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Node, parse, problems};

    fn compose() -> Result<Node, String> {
        let path = crate::project_root().join("deploy").join("compose.yaml");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        parse(&text)
    }

    #[test]
    fn compose_file_has_the_stack_with_health_gated_start_order() -> Result<(), String> {
        let found = problems(&compose()?);
        assert!(
            found.is_empty(),
            "deploy/compose.yaml:\n{}",
            found.join("\n")
        );
        Ok(())
    }

    #[test]
    fn a_missing_gate_or_healthcheck_is_found() -> Result<(), String> {
        let broken = std::fs::read_to_string(crate::project_root().join("deploy/compose.yaml"))
            .map_err(|e| e.to_string())?
            .replace("condition: service_healthy", "condition: service_started")
            .replace("image: postgres:16\n", "image: postgres:15\n");
        let found = problems(&parse(&broken)?);
        assert!(
            found.iter().any(|p| p.contains("service_healthy")),
            "{found:?}"
        );
        assert!(found.iter().any(|p| p.contains("postgres:16")), "{found:?}");
        Ok(())
    }

    #[test]
    fn the_subset_parser_reads_maps_lists_and_scalars() -> Result<(), String> {
        let node =
            parse("a:\n  b: \"1\"\n  c:\n    - x\n    - \"y\"\n# note\nd: [\"CMD\", \"x\"]\n")?;
        assert_eq!(
            node.get("a")
                .and_then(|a| a.get("b"))
                .and_then(Node::scalar),
            Some("1")
        );
        assert_eq!(
            node.get("a").and_then(|a| a.get("c")),
            Some(&Node::List(vec!["x".to_owned(), "y".to_owned()]))
        );
        assert_eq!(
            node.get("d").and_then(Node::scalar),
            Some(r#"["CMD", "x"]"#)
        );
        assert!(parse("a:\n  b: 1\n   c: 2\n").is_err());
        Ok(())
    }
}
