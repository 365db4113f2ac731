//! The packaged ClickHouse `config.xml` rewritten for a server of our own: data and logs under
//! one directory, chosen ports, and IPv4 loopback as the only listen address (`::1` is missing
//! in some containers, and 18.16 fails to start when it cannot bind it).
//!
//! Both the test kit's `TestClickHouseServer` and `cargo xtask infra` start a server this way.
//! xtask must not depend on the test kit (it is built first on a fresh clone), so it includes
//! this file by path: keep it free of dependencies and of `crate::` paths.

use std::path::Path;

/// The packaged `config` with `/var/lib/clickhouse/` and `/var/log/clickhouse-server/` moved to
/// `dir/data/` and `dir/log/`, the text of each `(tag, port)` element of `ports` set to `port`,
/// every line opening one of the `dropped` elements removed, and a single
/// `<listen_host>127.0.0.1</listen_host>`. `None` when `config` has no `<http_port>` element,
/// that is, when it does not look like the configuration this knows.
pub(crate) fn rewrite(
    config: &str,
    dir: &Path,
    ports: &[(&str, u16)],
    dropped: &[&str],
) -> Option<String> {
    let shown = dir.display();
    let mut config = config
        .replace("/var/lib/clickhouse/", &format!("{shown}/data/"))
        .replace("/var/log/clickhouse-server/", &format!("{shown}/log/"));
    for &(tag, port) in ports {
        config = set_element_text(&config, tag, &port.to_string());
    }
    let dropped: Vec<String> = dropped.iter().map(|tag| format!("<{tag}>")).collect();
    // Dropping every line that mentions listen_host (commented or not) and adding ours is simpler
    // than telling comments apart.
    let mut rewritten: String = config
        .lines()
        .filter(|line| {
            !line.contains("<listen_host>") && !dropped.iter().any(|open| line.contains(open))
        })
        .flat_map(|line| [line, "\n"])
        .collect();
    let http_port = rewritten.find("<http_port>")?;
    rewritten.insert_str(http_port, "<listen_host>127.0.0.1</listen_host>\n    ");
    Some(rewritten)
}

/// `xml` with the text of every `<tag>...</tag>` element replaced by `text`.
fn set_element_text(xml: &str, tag: &str, text: &str) -> String {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut result = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let content_start = start + open.len();
        let Some(content_len) = rest[content_start..].find(&close) else {
            break;
        };
        result.push_str(&rest[..content_start]);
        result.push_str(text);
        rest = &rest[content_start + content_len..];
    }
    result.push_str(rest);
    result
}
