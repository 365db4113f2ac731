//! The `clickhouse` service: the installed server with a copy of its packaged configuration, rewritten so that its
//! data, logs and ports are our own (`/etc/clickhouse-server` itself is left as the package made it).

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::probe::Probe;
use super::{Spec, commands_log, process};

// The rewrite the test kit's throwaway server makes too; included by path because xtask does not
// depend on the test kit (it is built first on a fresh clone).
#[path = "../../../crates/testkit/src/clickhouse_config.rs"]
mod clickhouse_config;

pub(super) const SPEC: Spec = Spec {
    name: "clickhouse",
    env_var: "CLICKHOUSE_URL",
    standard_port: Some(8123),
    dedicated_port: HTTP_PORT,
    probe: Probe::ClickHousePing,
    url: |port| format!("http://127.0.0.1:{port}"),
    pid_file: "clickhouse.pid",
    server_log: "log/clickhouse-server.err.log",
    process_name: "clickhouse",
    start_timeout: Duration::from_mins(1),
};

const USER: &str = "clickhouse";
const PACKAGED_CONFIG_DIR: &str = "/etc/clickhouse-server";
const HTTP_PORT: u16 = 18123;

/// Ports the packaged configuration may open, each moved to 1xxxx so that a standard `clickhouse` can
/// keep running beside ours. The last two exist only in newer releases than Debian's.
const PORTS: [(&str, u16); 5] = [
    ("http_port", HTTP_PORT),
    ("tcp_port", 19000),
    ("interserver_http_port", 19009),
    ("mysql_port", 19004),
    ("postgresql_port", 19005),
];

fn installed() -> bool {
    process::find_program("clickhouse-server").is_some()
        && Path::new(PACKAGED_CONFIG_DIR).join("config.xml").is_file()
}

pub(super) fn missing_packages() -> Vec<&'static str> {
    if installed() {
        Vec::new()
    } else {
        vec!["clickhouse-server", "clickhouse-client"]
    }
}

pub(super) fn start(dir: &Path) -> Result<()> {
    let server =
        process::find_program("clickhouse-server").context("clickhouse-server is not installed")?;
    let log = commands_log(dir);
    for sub_dir in ["data", "log"] {
        let path = dir.join(sub_dir);
        fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
    }
    let packaged = Path::new(PACKAGED_CONFIG_DIR);
    let config = fs::read_to_string(packaged.join("config.xml"))
        .with_context(|| format!("cannot read {PACKAGED_CONFIG_DIR}/config.xml"))?;
    let config = rewrite_config(&config, dir).with_context(|| {
        format!("{PACKAGED_CONFIG_DIR}/config.xml does not look like the configuration xtask knows")
    })?;
    let config_file = dir.join("config.xml");
    fs::write(&config_file, config)
        .with_context(|| format!("cannot write {}", config_file.display()))?;
    // config.xml names users.xml relative to itself.
    fs::copy(packaged.join("users.xml"), dir.join("users.xml")).with_context(|| {
        format!(
            "cannot copy {PACKAGED_CONFIG_DIR}/users.xml to {}",
            dir.display()
        )
    })?;
    process::chown(USER, dir, &log)?;
    process::ensure_writable_by(USER, dir)?;

    let mut command = process::as_user(USER, server);
    command
        .arg(format!("--config-file={}", config_file.display()))
        .arg(format!("--pid-file={}", dir.join(SPEC.pid_file).display()))
        .arg("--daemon")
        // The server resolves some relative paths against its working directory.
        .current_dir(dir);
    process::run_logged(&mut command, &log)
}

/// The packaged `config.xml` with paths under `dir`, our ports, and IPv4 loopback as the only listen
/// address.
fn rewrite_config(config: &str, dir: &Path) -> Result<String> {
    clickhouse_config::rewrite(config, dir, &PORTS, &[]).context("no <http_port> element")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::rewrite_config;

    const PACKAGED: &str = r"<?xml version='1.0'?>
<yandex>
    <logger>
        <log>/var/log/clickhouse-server/clickhouse-server.log</log>
    </logger>
    <http_port>8123</http_port>
    <tcp_port>9000</tcp_port>
    <interserver_http_port>9009</interserver_http_port>
    <!-- <listen_host>::</listen_host> -->
    <listen_host>::1</listen_host>
    <listen_host>127.0.0.1</listen_host>
    <path>/var/lib/clickhouse/</path>
    <tmp_path>/var/lib/clickhouse/tmp/</tmp_path>
</yandex>
";

    #[test]
    fn packaged_config_gets_our_paths_ports_and_ipv4_loopback_only() {
        let rewritten = rewrite_config(PACKAGED, Path::new("/w/target/infra/clickhouse"));
        assert_eq!(
            rewritten.ok().as_deref(),
            Some(
                r"<?xml version='1.0'?>
<yandex>
    <logger>
        <log>/w/target/infra/clickhouse/log/clickhouse-server.log</log>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>18123</http_port>
    <tcp_port>19000</tcp_port>
    <interserver_http_port>19009</interserver_http_port>
    <path>/w/target/infra/clickhouse/data/</path>
    <tmp_path>/w/target/infra/clickhouse/data/tmp/</tmp_path>
</yandex>
"
            )
        );
    }

    #[test]
    fn config_without_http_port_is_refused() {
        assert!(rewrite_config("<yandex></yandex>", Path::new("/tmp")).is_err());
    }
}
