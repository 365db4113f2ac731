//! A throwaway ClickHouse server that a test can stop and start again.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{TestkitError, clickhouse_config};

/// The packaged configuration the server's is copied from.
const PACKAGED_CONFIG_DIR: &str = "/etc/clickhouse-server";
/// How long the server may take to answer `/ping` after a start, or to exit after a stop.
const READY_TIMEOUT: Duration = Duration::from_mins(1);
/// Pause between two looks at the server while waiting for it.
const POLL: Duration = Duration::from_millis(100);

/// A private ClickHouse server for one test: the installed `clickhouse-server` (Debian's
/// package) with a copy of its packaged configuration whose data, logs and ports (HTTP, native,
/// interserver) are the test's own, on loopback; stopped and removed on drop. When running as
/// root the server runs as the `clickhouse` user.
///
/// Use it where a test must take ClickHouse away — stop and start it under load — without
/// disturbing the shared server other tests use.
///
/// ```no_run
/// # async fn demo() -> Result<(), groundwork_testkit::TestkitError> {
/// let server = groundwork_testkit::TestClickHouseServer::start().await?;
/// let url = server.url(); // http://127.0.0.1:<port>
/// server.stop().await?;
/// server.resume().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TestClickHouseServer {
    dir: PathBuf,
    http_port: u16,
}

impl TestClickHouseServer {
    /// Writes the configuration and starts the server; returns once it answers `/ping`.
    pub async fn start() -> Result<Self, TestkitError> {
        let server = tokio::task::spawn_blocking(Self::prepare)
            .await
            .map_err(|e| server_error("start", Path::new("-"), e.to_string()))??;
        server.resume().await?;
        Ok(server)
    }

    fn prepare() -> Result<Self, TestkitError> {
        let ports = [free_port()?, free_port()?, free_port()?];
        let dir = std::env::temp_dir().join(format!(
            "gw-test-clickhouse-{}-{}",
            std::process::id(),
            crate::cleanup::unique_token()
        ));
        let fail = |detail: String| server_error("create", &dir, detail);
        for sub_dir in ["data", "log"] {
            std::fs::create_dir_all(dir.join(sub_dir)).map_err(|e| fail(e.to_string()))?;
        }
        let packaged = Path::new(PACKAGED_CONFIG_DIR);
        let config = std::fs::read_to_string(packaged.join("config.xml")).map_err(|e| {
            fail(format!(
                "cannot read {PACKAGED_CONFIG_DIR}/config.xml (install Debian's \
                 `clickhouse-server`): {e}"
            ))
        })?;
        let config = rewrite_config(&config, &dir, ports).map_err(fail)?;
        std::fs::write(dir.join("config.xml"), config).map_err(|e| fail(e.to_string()))?;
        // config.xml names users.xml relative to itself.
        std::fs::copy(packaged.join("users.xml"), dir.join("users.xml"))
            .map_err(|e| fail(format!("cannot copy users.xml: {e}")))?;
        if is_root() {
            run(Command::new("chown")
                .args(["-R", "clickhouse:clickhouse"])
                .arg(&dir))
            .map_err(fail)?;
        }
        Ok(Self {
            dir,
            http_port: ports[0],
        })
    }

    /// `http://127.0.0.1:<port>`, the HTTP interface; the port stays the same across restarts.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The server's private directory (data, logs, configuration), removed on drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the server (`SIGTERM`, as a service manager does) and waits until it has exited.
    pub async fn stop(&self) -> Result<(), TestkitError> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || stop(&dir, "TERM"))
            .await
            .map_err(|e| server_error("stop", &self.dir, e.to_string()))?
    }

    /// Starts the server (again, after [`TestClickHouseServer::stop`]) on the same ports and
    /// data; returns once it answers `/ping`.
    pub async fn resume(&self) -> Result<(), TestkitError> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            let server = Path::new("/usr/bin/clickhouse-server");
            let server = if server.exists() {
                server.to_path_buf()
            } else {
                PathBuf::from("/usr/sbin/clickhouse-server")
            };
            let mut command = if is_root() {
                let mut command = Command::new("runuser");
                command.args(["-u", "clickhouse", "--"]).arg(server);
                command
            } else {
                Command::new(server)
            };
            command
                .arg(format!(
                    "--config-file={}",
                    dir.join("config.xml").display()
                ))
                .arg(format!(
                    "--pid-file={}",
                    dir.join("clickhouse.pid").display()
                ))
                .arg("--daemon")
                // The server resolves some relative paths against its working directory.
                .current_dir(&dir);
            run(&mut command).map_err(|detail| server_error("start", &dir, detail))
        })
        .await
        .map_err(|e| server_error("start", &self.dir, e.to_string()))??;
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], self.http_port));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if crate::http_get(address, "/ping")
                .await
                .is_ok_and(|answer| answer.starts_with("HTTP/1.1 200") && answer.contains("Ok."))
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(server_error(
                    "start",
                    &self.dir,
                    format!(
                        "no answer to /ping on port {} within {READY_TIMEOUT:?}; server log: {}",
                        self.http_port,
                        log_tail(&self.dir)
                    ),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for TestClickHouseServer {
    fn drop(&mut self) {
        if let Err(error) = stop(&self.dir, "KILL") {
            eprintln!("groundwork-testkit: {error}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends `signal` to the server named by the pid file in `dir`, if it runs, and waits until it
/// has exited.
fn stop(dir: &Path, signal: &str) -> Result<(), TestkitError> {
    let Ok(text) = std::fs::read_to_string(dir.join("clickhouse.pid")) else {
        return Ok(());
    };
    let pid = text.trim();
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(());
    }
    let proc = Path::new("/proc").join(pid);
    if !proc.exists() {
        return Ok(());
    }
    run(Command::new("kill").arg(format!("-{signal}")).arg(pid))
        .map_err(|detail| server_error("stop", dir, detail))?;
    let deadline = Instant::now() + READY_TIMEOUT;
    while proc.exists() {
        if Instant::now() > deadline {
            return Err(server_error(
                "stop",
                dir,
                format!("process {pid} still runs {READY_TIMEOUT:?} after SIG{signal}"),
            ));
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

/// The packaged `config.xml` with paths under `dir`, the HTTP, native and interserver ports set
/// to `ports`, and IPv4 loopback as the only listen address.
fn rewrite_config(config: &str, dir: &Path, ports: [u16; 3]) -> Result<String, String> {
    let [http, tcp, interserver] = ports;
    clickhouse_config::rewrite(
        config,
        dir,
        &[
            ("http_port", http),
            ("tcp_port", tcp),
            ("interserver_http_port", interserver),
        ],
        // Newer releases open these too; no free port is needed for what the test does not use.
        &[
            "mysql_port",
            "postgresql_port",
            "https_port",
            "tcp_port_secure",
        ],
    )
    .ok_or_else(|| format!("{PACKAGED_CONFIG_DIR}/config.xml has no <http_port> element"))
}

fn log_tail(dir: &Path) -> String {
    let text =
        std::fs::read_to_string(dir.join("log/clickhouse-server.err.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", command.get_program().display()))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{} exited with {}: {}",
        command.get_program().display(),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

fn free_port() -> Result<u16, TestkitError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|e| server_error("pick a port for", Path::new("-"), e.to_string()))
}

fn server_error(action: &'static str, dir: &Path, detail: String) -> TestkitError {
    TestkitError::ClickHouseServer {
        action,
        dir: dir.to_owned(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::rewrite_config;

    #[test]
    fn packaged_config_gets_our_ports_and_loses_the_ports_a_test_does_not_use() {
        let packaged = r"<clickhouse>
    <log>/var/log/clickhouse-server/clickhouse-server.log</log>
    <listen_host>::1</listen_host>
    <http_port>8123</http_port>
    <tcp_port>9000</tcp_port>
    <mysql_port>9004</mysql_port>
    <postgresql_port>9005</postgresql_port>
    <interserver_http_port>9009</interserver_http_port>
    <path>/var/lib/clickhouse/</path>
</clickhouse>
";
        let rewritten = rewrite_config(packaged, Path::new("/t/ch"), [30001, 30002, 30003]);
        assert_eq!(
            rewritten.as_deref(),
            Ok(r"<clickhouse>
    <log>/t/ch/log/clickhouse-server.log</log>
    <listen_host>127.0.0.1</listen_host>
    <http_port>30001</http_port>
    <tcp_port>30002</tcp_port>
    <interserver_http_port>30003</interserver_http_port>
    <path>/t/ch/data/</path>
</clickhouse>
")
        );
    }

    #[test]
    fn config_without_http_port_is_refused_with_the_file_named() {
        let refused = rewrite_config("<clickhouse></clickhouse>", Path::new("/t"), [1, 2, 3]);
        assert_eq!(
            refused,
            Err("/etc/clickhouse-server/config.xml has no <http_port> element".to_owned())
        );
    }
}
