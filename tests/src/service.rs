//! A service binary as a real process, as the end-to-end tests run it: `tests/stack.rs` (the
//! example services) and `tests/new_service.rs` (a generated one); [`request`] is the test kit's
//! raw HTTP/1.1 request.

use std::ffi::OsStr;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
pub use groundwork_testkit::http_request as request;
use serde_json::Value;

/// A service process whose stdout (JSON log lines) is collected; killed when dropped.
#[derive(Debug)]
pub struct ServiceProcess {
    /// What failure messages call the service.
    pub name: String,
    /// Where it serves HTTP: `127.0.0.1` and a port that was free when it started.
    pub address: SocketAddr,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl ServiceProcess {
    /// Starts `binary` in `workdir` with an empty environment but for `PATH`, `env`, and `HOST`
    /// and `PORT` (a free port on 127.0.0.1).
    pub fn start<I, K, V>(binary: &Path, name: &str, workdir: &Path, env: I) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        Self::start_on(binary, name, workdir, env, port)
    }

    /// [`ServiceProcess::start`] on `port`, e.g. the port of a killed process it replaces.
    pub fn start_on<I, K, V>(
        binary: &Path,
        name: &str,
        workdir: &Path,
        env: I,
        port: u16,
    ) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let mut child = Command::new(binary)
            .current_dir(workdir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(mut lines) = sink.lock() {
                    lines.push(line);
                }
            }
        });
        Ok(Self {
            name: name.to_owned(),
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
            lines,
        })
    }

    /// Every log line so far, parsed; a line that is not JSON fails the test.
    pub fn log(&self) -> Result<Vec<Value>> {
        let lines = self.lines.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        lines
            .iter()
            .map(|line| {
                serde_json::from_str(line)
                    .with_context(|| format!("{} wrote a line that is not JSON: {line}", self.name))
            })
            .collect()
    }

    /// Every log line so far, as written.
    pub fn log_text(&self) -> String {
        self.lines
            .lock()
            .map(|lines| lines.join("\n"))
            .unwrap_or_default()
    }

    /// Waits until `GET path` answers 200; fails with the service's log after `timeout`.
    pub async fn wait_ok(&self, path: &str, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Ok((200, _)) = request(self.address, &format!("GET {path}"), None, &[]).await {
                return Ok(());
            }
            if started.elapsed() > timeout {
                bail!(
                    "{} did not answer 200 on {path} within {timeout:?}; its log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL, and waits for the process to end.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM, then the exit status (within `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .context("running kill -TERM")?;
        if !status.success() {
            bail!("kill -TERM {} failed ({status})", self.child.id());
        }
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if started.elapsed() > timeout {
                bail!(
                    "{} still running {timeout:?} after SIGTERM; its log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path`, which must answer 200; its body as JSON.
pub async fn get_json(address: SocketAddr, path: &str) -> Result<Value> {
    let (status, body) = request(address, &format!("GET {path}"), None, &[]).await?;
    if status != 200 {
        bail!("GET {path} answered {status}: {body}");
    }
    Ok(serde_json::from_str(&body)?)
}

/// Polls `check` until it returns `Some`, or fails after `timeout` with `what`; the value and how
/// long it took.
pub async fn eventually<T, F, Fut>(
    timeout: Duration,
    what: &str,
    mut check: F,
) -> Result<(T, Duration)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await? {
            return Ok((value, started.elapsed()));
        }
        if started.elapsed() > timeout {
            bail!("{what}: not within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The api-gateway's package and binary.
pub const GATEWAY: &str = "groundwork-example-api-gateway";
/// The order-worker's package and binary.
pub const WORKER: &str = "groundwork-example-order-worker";
/// The analytics-ingest's package and binary.
pub const INGEST: &str = "groundwork-example-analytics-ingest";

/// Builds the three example service binaries with the cargo running the test, into the same
/// target directory, and returns the directory holding them.
pub fn build_example_services() -> Result<std::path::PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(["build", "--bins", "-p", GATEWAY, "-p", WORKER, "-p", INGEST])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .context("running cargo build for the service binaries")?;
    if !status.success() {
        bail!("cargo build of the service binaries failed ({status})");
    }
    // A test runs from <target>/debug/deps/; the binaries land in <target>/debug/.
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the test executable has no grandparent directory")?;
    Ok(dir.to_path_buf())
}
