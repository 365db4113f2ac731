//! Redis RDB backup and restore against a real server: the restored file is loaded by a fresh
//! `redis-server`, which must serve the same values.
#![cfg(feature = "redis")]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::{local_store, secret};
use groundwork_backup::{
    BackupKind, Identity, PipelineOptions, RedisBackupOptions, RedisRestoreOptions, backup_redis,
    latest, restore_redis_file,
};
use groundwork_testkit::TestRedis;

fn redis_cli(url: &str, args: &[&str]) -> Result<String> {
    let output = Command::new("redis-cli")
        .args(["-u", url])
        .args(args)
        .output()?;
    if !output.status.success() {
        bail!(
            "redis-cli {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?.trim_end().to_owned())
}

/// A `redis-server` on a free port loading `dir/dump.rdb`, killed on drop.
struct ScratchServer {
    child: Child,
    url: String,
}

impl Drop for ScratchServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(dir: &std::path::Path) -> Result<ScratchServer> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no", "--dbfilename", "dump.rdb", "--dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting redis-server")?;
    let server = ScratchServer {
        child,
        url: format!("redis://127.0.0.1:{port}"),
    };
    // The server answers PING only once the RDB is loaded.
    for _ in 0..100 {
        if redis_cli(&server.url, &["PING"]).is_ok_and(|pong| pong == "PONG") {
            return Ok(server);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("redis-server on port {port} did not answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rdb_backup_restores_into_a_server_that_serves_the_same_values() -> Result<()> {
    let redis = TestRedis::create().await?;
    let greeting = redis.key("greeting");
    let hash = redis.key("hotel:1");
    let list = redis.key("queue");
    redis_cli(redis.url(), &["SET", &greeting, "你好, Zürich ✓"])?;
    redis_cli(redis.url(), &["HSET", &hash, "name", "Hôtel", "stars", "4"])?;
    redis_cli(redis.url(), &["RPUSH", &list, "a", "b", "c"])?;

    let store = local_store()?;
    let identity = Identity::generate();
    let source = format!(
        "cache-{}",
        redis.prefix().trim_end_matches(':').replace(':', "-")
    );
    let options = RedisBackupOptions {
        pipeline: PipelineOptions {
            recipients: vec![identity.public()],
            ..PipelineOptions::default()
        },
        source_name: source.clone(),
        ..RedisBackupOptions::default()
    };
    let manifest = backup_redis(&store.storage, &secret(redis.url()), &options).await?;
    assert_eq!(manifest.kind, BackupKind::Redis);
    assert!(
        manifest
            .row_counts
            .get("db0")
            .is_some_and(|keys| *keys >= 3),
        "{manifest:?}"
    );
    assert!(
        manifest.server_version.starts_with('7'),
        "{}",
        manifest.server_version
    );
    assert_eq!(
        latest(&store.storage, BackupKind::Redis, &source).await?,
        manifest
    );

    let restore_dir = tempfile::tempdir()?;
    let rdb = restore_dir.path().join("dump.rdb");
    let restore = RedisRestoreOptions {
        identities: vec![identity],
        progress: None,
    };
    let report = restore_redis_file(&store.storage, &manifest, &rdb, &restore).await?;
    assert_eq!(report.bytes, manifest.raw_bytes);
    let bytes = std::fs::read(&rdb)?;
    assert!(bytes.starts_with(b"REDIS"), "not an RDB file");

    let server = start_server(restore_dir.path())?;
    assert_eq!(
        redis_cli(&server.url, &["GET", &greeting])?,
        "你好, Zürich ✓"
    );
    assert_eq!(redis_cli(&server.url, &["HGET", &hash, "name"])?, "Hôtel");
    assert_eq!(
        redis_cli(&server.url, &["LRANGE", &list, "0", "-1"])?,
        "a\nb\nc"
    );
    Ok(())
}
