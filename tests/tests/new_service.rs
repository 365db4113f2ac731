//! `cargo xtask new-service` as a user runs it: services generated into a temporary directory
//! outside the workspace, built, tested with their own generated tests, and run against the real
//! servers from `cargo xtask infra up`. This is what keeps the template
//! (`xtask/templates/new-service/`) in step with the crates.
//!
//! The generated services build into this workspace's target directory (`CARGO_TARGET_DIR` set
//! to it), so the Groundwork crates and most dependencies are already compiled; a target
//! directory of their own would cost minutes of compiling on a two-core machine. They build
//! `--offline`: their `Cargo.lock` is a copy of the workspace's, whose crates are downloaded.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use groundwork_testkit::{InfraEnv, Service as Server, TestClickHouse, TestDatabase, TestRedis};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Every `--with` part.
const EVERYTHING: &str = "postgres,redis,rabbitmq,clickhouse,live,flags";

/// How long the generated service may take to answer `/health` after it started.
const READY: Duration = Duration::from_mins(1);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The target directory this test was built into: `<target>/debug/deps/<test>`.
fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .context("the test executable is not in <target>/<profile>/deps/")
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// `cargo xtask <args>` from the workspace root, as a user types it.
fn xtask(args: &[&str]) -> Result<Output> {
    Command::new(cargo())
        .arg("xtask")
        .args(args)
        .current_dir(workspace_root())
        .output()
        .with_context(|| format!("cannot run cargo xtask {}", args.join(" ")))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Generates service `name` into `dir` with `--with parts`; fails with xtask's output.
fn generate(name: &str, dir: &Path, parts: &str) -> Result<()> {
    let dir = dir.to_str().context("temporary path is not UTF-8")?;
    let output = xtask(&["new-service", name, "--path", dir, "--with", parts])?;
    if !output.status.success() {
        bail!("cargo xtask new-service failed:\n{}", text(&output));
    }
    Ok(())
}

/// `cargo <args> --offline` in the service at `dir`, sharing this workspace's target directory.
fn cargo_in(dir: &Path, args: &[&str]) -> Result<Output> {
    let output = Command::new(cargo())
        .args(args)
        .arg("--offline")
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir()?)
        .env_remove("RUSTFLAGS")
        .output()
        .with_context(|| format!("cannot run cargo {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "cargo {} in the generated service failed:\n{}",
            args.join(" "),
            text(&output)
        );
    }
    Ok(output)
}

/// The generated service as a process whose stdout (JSON log lines) is collected.
struct Running {
    child: Child,
    address: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(binary: &Path, workdir: &Path, env: &[(&str, String)]) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut child = Command::new(binary)
            .current_dir(workdir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
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
            child,
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            lines,
        })
    }

    fn log_text(&self) -> String {
        self.lines
            .lock()
            .map(|lines| lines.join("\n"))
            .unwrap_or_default()
    }

    /// Every log line so far, parsed; a line that is not JSON fails the test.
    fn log(&self) -> Result<Vec<Value>> {
        let lines = self.lines.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        lines
            .iter()
            .map(|line| {
                serde_json::from_str(line)
                    .with_context(|| format!("the service wrote a line that is not JSON: {line}"))
            })
            .collect()
    }

    /// SIGTERM, then the exit status (within `timeout`).
    fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
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
                    "still running {timeout:?} after SIGTERM; its log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `head` (`GET /path`) with `headers`; the status and body.
async fn request(
    address: SocketAddr,
    head: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let mut extra = String::new();
    for (name, value) in headers {
        let _ = write!(extra, "{name}: {value}\r\n");
    }
    let request = format!(
        "{head} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n{extra}Content-Length: 0\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await?;
    let (head, body) = raw.split_once("\r\n\r\n").context("no end of headers")?;
    let status = head.split(' ').nth(1).context("no status line")?.parse()?;
    Ok((status, body.to_owned()))
}

/// Waits until `/health` (readiness) answers 200.
async fn wait_healthy(service: &Running) -> Result<()> {
    let started = Instant::now();
    loop {
        if let Ok((200, _)) = request(service.address, "GET /health", &[]).await {
            return Ok(());
        }
        if started.elapsed() > READY {
            bail!(
                "/health not 200 after {READY:?}; the service's log:\n{}",
                service.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One line of the seed's log contract for the `/v1/hello` request with `trace_id`.
async fn check_greeting_log_line(service: &Running, trace_id: &str) -> Result<()> {
    let started = Instant::now();
    let line = loop {
        let log = service.log()?;
        let found = log.into_iter().find(|line| {
            line["traceId"].as_str() == Some(trace_id) && line["message"] == "greeted"
        });
        if let Some(line) = found {
            break line;
        }
        if started.elapsed() > Duration::from_secs(5) {
            bail!(
                "no `greeted` line with trace id {trace_id}:\n{}",
                service.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(line["service"], "gw-generated", "{line}");
    assert_eq!(line["level"], "INFO", "{line}");
    assert!(
        line["spanId"].as_str().is_some_and(|id| id.len() == 16),
        "{line}"
    );
    let timestamp = line["timestamp"].as_str().context("no timestamp")?;
    assert!(
        timestamp.ends_with('Z') && timestamp.contains('T'),
        "not ISO 8601 UTC: {timestamp}"
    );
    assert_eq!(line["context"]["tenant"], "tenant-1", "{line}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_generated_service_serves_reads_config_and_flags_logs_trace_ids_and_stops_on_sigterm()
-> Result<()> {
    let out = tempfile::tempdir()?;
    let dir = out.path().join("gw-generated");
    generate("gw-generated", &dir, EVERYTHING)?;
    // Its own generated test passes on the first try (and builds the service).
    cargo_in(&dir, &["test"])?;
    cargo_in(&dir, &["build"])?;
    let binary = target_dir()?.join("debug/gw-generated");

    // Resources of its own: a database, a Redis key prefix, a ClickHouse database.
    let db = TestDatabase::create().await?;
    let redis = TestRedis::create().await?;
    let clickhouse = TestClickHouse::create().await?;
    let infra = InfraEnv::discover()?;
    let env = [
        ("DATABASE_URL", db.url().to_owned()),
        ("REDIS_URL", infra.url(Server::Redis)),
        ("REDIS_KEY_PREFIX", redis.prefix().to_owned()),
        ("RABBITMQ_URL", infra.url(Server::RabbitMq)),
        (
            "CLICKHOUSE_URL",
            format!(
                "{}/{}",
                clickhouse.url().trim_end_matches('/'),
                clickhouse.database()
            ),
        ),
        ("CONFIG_ENV", "test".to_owned()),
        ("SHUTDOWN_DRAIN_MS", "0".to_owned()),
    ];
    let mut service = Running::start(&binary, &dir, &env)?;

    wait_healthy(&service).await?;
    let (status, body) = request(service.address, "GET /livez", &[]).await?;
    assert_eq!(status, 200, "/livez: {body}");

    // The default greeting until platform_config and feature_flags say otherwise.
    let (status, body) = request(service.address, "GET /v1/hello?tenant=tenant-1", &[]).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body)?,
        serde_json::json!({"tenant": "tenant-1", "greeting": "hello"})
    );

    // The seed tables, written as an operator would; the running service follows them.
    sqlx::query(
        "INSERT INTO platform_config (env, key, value, updated_by) VALUES ('test', $1, $2, 'new-service test')",
    )
    .bind("gw-generated.greeting")
    .bind(serde_json::json!("hi from platform_config"))
    .execute(db.pool())
    .await?;
    sqlx::query("INSERT INTO feature_flags (name, enabled) VALUES ($1, true)")
        .bind("gw-generated.shout")
        .execute(db.pool())
        .await?;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let expected = serde_json::json!({"tenant": "tenant-1", "greeting": "HI FROM PLATFORM_CONFIG"});
    let started = Instant::now();
    loop {
        let (status, body) = request(
            service.address,
            "GET /v1/hello?tenant=tenant-1",
            &[("traceparent", traceparent.as_str())],
        )
        .await?;
        if status == 200 && serde_json::from_str::<Value>(&body)? == expected {
            break;
        }
        if started.elapsed() > Duration::from_secs(10) {
            bail!("the config value and the flag did not reach the service: {status} {body}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (status, body) = request(service.address, "POST /v1/visits?tenant=tenant-1", &[]).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body)?["visits"], 1, "{body}");

    check_greeting_log_line(&service, trace_id).await?;

    let status = service.terminate(Duration::from_secs(30))?;
    assert!(
        status.success(),
        "SIGTERM must end the service with exit code 0, got {status}; its log:\n{}",
        service.log_text()
    );
    assert!(
        service.log_text().contains("gw-generated stopped"),
        "{}",
        service.log_text()
    );
    clickhouse.cleanup().await?;
    db.cleanup().await?;
    Ok(())
}

#[test]
fn a_service_with_nothing_but_the_basics_has_no_database_or_broker_client() -> Result<()> {
    let out = tempfile::tempdir()?;
    let dir = out.path().join("gw-basic");
    generate("gw-basic", &dir, "")?;
    // The copied Cargo.lock already fits the service: CI's `--locked` passes from the start.
    cargo_in(&dir, &["test", "--locked"])?;
    let tree = cargo_in(
        &dir,
        &["tree", "--prefix", "none", "--edges", "normal,build"],
    )?;
    let tree = String::from_utf8_lossy(&tree.stdout);
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(crates.contains(&"groundwork-health"), "{tree}");
    for client in ["sqlx", "redis", "deadpool-redis", "lapin", "clickhouse"] {
        assert!(
            !crates.contains(&client),
            "{client} is in the dependency tree of a service with no --with:\n{tree}"
        );
    }
    assert!(!dir.join("migrations").exists());
    Ok(())
}

/// Every file and directory below `dir`, relative, sorted.
fn listing(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next)? {
            let path = entry?.path();
            found.push(path.strip_prefix(dir)?.to_path_buf());
            if path.is_dir() {
                pending.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

#[test]
fn bad_input_is_a_clear_error_and_writes_nothing() -> Result<()> {
    let out = tempfile::tempdir()?;
    let occupied = out.path().join("occupied");
    std::fs::create_dir(&occupied)?;
    std::fs::write(occupied.join("notes.txt"), "mine")?;
    let fresh = out.path().join("fresh");
    let inside = workspace_root().join("crates").join("gw-inside");
    let path = |dir: &Path| dir.to_string_lossy().into_owned();

    let cases: [(Vec<String>, &str); 6] = [
        (
            vec!["svc".into(), "--path".into(), path(&occupied)],
            "exists and is not empty",
        ),
        (
            vec![
                "svc".into(),
                "--path".into(),
                path(&fresh),
                "--with".into(),
                "redis,mongo".into(),
            ],
            "--with: unknown part `mongo`; choose from postgres, redis, rabbitmq, clickhouse, live, flags",
        ),
        (
            vec!["9lives".into(), "--path".into(), path(&fresh)],
            "`9lives` cannot be the service's name: it must start with an ASCII letter",
        ),
        (
            vec!["my service".into(), "--path".into(), path(&fresh)],
            "`my service` cannot be the service's name: ' ' is not allowed",
        ),
        (
            vec!["fn".into(), "--path".into(), path(&fresh)],
            "`fn` cannot be the service's name: it is a Rust keyword",
        ),
        (
            vec!["gw-inside".into(), "--path".into(), path(&inside)],
            "is inside the Groundwork repository",
        ),
    ];
    for (args, expected) in cases {
        let mut full = vec!["new-service"];
        full.extend(args.iter().map(String::as_str));
        let output = xtask(&full)?;
        let printed = text(&output);
        assert!(!output.status.success(), "{args:?} succeeded:\n{printed}");
        assert!(
            printed.contains(expected),
            "{args:?}: expected {expected:?} in:\n{printed}"
        );
        assert!(!printed.contains("panicked"), "{args:?}:\n{printed}");
        assert!(!fresh.exists(), "{args:?} created {}", fresh.display());
        assert!(!inside.exists(), "{args:?} created {}", inside.display());
        assert_eq!(
            listing(&occupied)?,
            [PathBuf::from("notes.txt")],
            "{args:?}"
        );
    }
    Ok(())
}
