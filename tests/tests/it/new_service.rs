//! `cargo xtask new-service` as a user runs it: services generated into a temporary directory
//! outside the workspace, built, tested with their own generated tests, and run against the real
//! servers from `cargo xtask infra up`. This is what keeps the template
//! (`xtask/templates/new-service/`) in step with the crates.
//!
//! The generated services build into this workspace's target directory (`CARGO_TARGET_DIR` set
//! to it), so the Groundwork crates and most dependencies are already compiled; a target
//! directory of their own would cost minutes of compiling on a two-core machine. They build
//! `--offline`: their `Cargo.lock` is a copy of the workspace's, whose crates are downloaded.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use groundwork_testkit::{InfraEnv, Service as Server, TestClickHouse, TestDatabase, TestRedis};
use groundwork_tests::service::{ServiceProcess, request};
use serde_json::Value;

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

/// One line of the seed's log contract for the `/v1/hello` request with `trace_id`.
async fn check_greeting_log_line(service: &ServiceProcess, trace_id: &str) -> Result<()> {
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

/// The files `new-service` promises, outside this workspace: manifest and lock file, `src/main.rs`,
/// `migrations/` (with postgres), `config/default.toml`, `.env.example`, a README with the two
/// commands, a `Dockerfile` and an executable CI script.
fn check_layout(dir: &Path, migrations: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    assert!(
        !dir.starts_with(workspace_root()),
        "{} is inside the workspace",
        dir.display()
    );
    for file in [
        "Cargo.toml",
        "Cargo.lock",
        "src/main.rs",
        "config/default.toml",
        ".env.example",
        "README.md",
        "Dockerfile",
        ".ci/run",
    ] {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("the generated service has no {file}"))?;
        assert!(!text.trim().is_empty(), "{file} is empty");
    }
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))?;
    assert!(
        manifest.contains("[workspace]") && manifest.contains("groundwork-config"),
        "{manifest}"
    );
    let readme = std::fs::read_to_string(dir.join("README.md"))?;
    for command in ["cp .env.example .env && cargo run", "cargo test"] {
        assert!(
            readme.contains(command),
            "README without `{command}`:\n{readme}"
        );
    }
    let mode = std::fs::metadata(dir.join(".ci/run"))?.permissions().mode();
    assert!(mode & 0o111 != 0, ".ci/run is not executable ({mode:o})");
    let sql = match std::fs::read_dir(dir.join("migrations")) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "sql"))
            .count(),
        Err(_) => 0,
    };
    assert_eq!(
        sql > 0,
        migrations,
        "{sql} migration files in {}",
        dir.display()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_generated_service_serves_reads_config_and_flags_logs_trace_ids_and_stops_on_sigterm()
-> Result<()> {
    let _heavy = crate::HEAVY.lock().await;
    let out = tempfile::tempdir()?;
    let dir = out.path().join("gw-generated");
    generate("gw-generated", &dir, EVERYTHING)?;
    check_layout(&dir, true)?;
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
    let mut service = ServiceProcess::start(&binary, "gw-generated", &dir, env)?;

    service.wait_ok("/health", READY).await?;
    let (status, body) = request(service.address, "GET /livez", None, &[]).await?;
    assert_eq!(status, 200, "/livez: {body}");

    // The default greeting until platform_config and feature_flags say otherwise.
    let (status, body) =
        request(service.address, "GET /v1/hello?tenant=tenant-1", None, &[]).await?;
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
            None,
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

    let (status, body) = request(
        service.address,
        "POST /v1/visits?tenant=tenant-1",
        None,
        &[],
    )
    .await?;
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
    let _heavy = crate::HEAVY.blocking_lock();
    let out = tempfile::tempdir()?;
    let dir = out.path().join("gw-basic");
    generate("gw-basic", &dir, "")?;
    check_layout(&dir, false)?;
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
