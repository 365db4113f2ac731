//! Redis RDB backup and restore against a real server: the restored file is loaded by a fresh
//! `redis-server`, which must serve the same values.
#![cfg(feature = "redis")]

use crate::common;

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::{local_store, secret};
use groundwork_backup::{
    BackupKind, Identity, PipelineOptions, RedisBackupOptions, RedisRestoreOptions, RedisTlsFiles,
    backup_redis, backup_redis_cluster, latest, restore_redis_cluster_files, restore_redis_file,
};
use groundwork_testkit::{TestRedis, TestRedisCluster};

fn redis_cli(url: &str, args: &[&str]) -> Result<String> {
    redis_cli_as(url, None, args)
}

/// An ACL user and its password.
#[derive(Clone, Copy)]
struct AclUser<'a> {
    name: &'a str,
    password: &'a str,
}

fn redis_cli_as(url: &str, user: Option<AclUser<'_>>, args: &[&str]) -> Result<String> {
    let mut command = Command::new("redis-cli");
    command.args(["-u", url]);
    if let Some(user) = user {
        command
            .args(["--user", user.name])
            .env("REDISCLI_AUTH", user.password);
    }
    let output = command.args(args).output()?;
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

fn start_server(dir: &Path) -> Result<ScratchServer> {
    start_server_with(dir, &[], None)
}

/// A scratch server with more settings (`extra`), pinged as `user`.
fn start_server_with(
    dir: &Path,
    extra: &[&str],
    user: Option<AclUser<'_>>,
) -> Result<ScratchServer> {
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
        .args(extra)
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
        if redis_cli_as(&server.url, user, &["PING"]).is_ok_and(|pong| pong == "PONG") {
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

/// A `redis-cli` that appends its arguments to `argv.log` beside it, then runs the real one.
fn recording_redis_cli(dir: &Path) -> Result<std::path::PathBuf> {
    let script = dir.join("redis-cli");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" >> '{}'\nexec redis-cli \"$@\"\n",
            dir.join("argv.log").display()
        ),
    )?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    Ok(script)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_with_a_user_name_backs_up_as_that_acl_user() -> Result<()> {
    let data = tempfile::tempdir()?;
    let user = AclUser {
        name: "backup",
        password: "s3cret-Pa55",
    };
    // The default user is off: only `backup` with its password gets in.
    let acl = format!(">{}", user.password);
    let server = start_server_with(
        data.path(),
        &[
            "--user", "default", "off", "--user", user.name, "on", &acl, "~*", "&*", "+@all",
        ],
        Some(user),
    )?;
    redis_cli_as(&server.url, Some(user), &["SET", "greeting", "grüezi"])?;
    redis_cli_as(&server.url, Some(user), &["RPUSH", "queue", "a", "b"])?;

    let tools = tempfile::tempdir()?;
    let store = local_store()?;
    let url = server.url.replace(
        "redis://",
        &format!("redis://{}:{}@", user.name, user.password),
    );
    let options = RedisBackupOptions {
        source_name: "acl".into(),
        redis_cli: recording_redis_cli(tools.path())?,
        ..RedisBackupOptions::default()
    };
    let manifest = backup_redis(&store.storage, &secret(&url), &options).await?;
    assert_eq!(manifest.row_counts.get("db0"), Some(&2), "{manifest:?}");
    let argv = std::fs::read_to_string(tools.path().join("argv.log"))?;
    assert!(argv.contains("--rdb"), "{argv}");
    assert!(
        !argv.contains(user.password),
        "the password is in argv: {argv}"
    );

    let restore_dir = tempfile::tempdir()?;
    restore_redis_file(
        &store.storage,
        &manifest,
        &restore_dir.path().join("dump.rdb"),
        &RedisRestoreOptions::default(),
    )
    .await?;
    let restored = start_server(restore_dir.path())?;
    assert_eq!(redis_cli(&restored.url, &["GET", "greeting"])?, "grüezi");
    assert_eq!(
        redis_cli(&restored.url, &["LRANGE", "queue", "0", "-1"])?,
        "a\nb"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_over_an_existing_rdb_keeps_its_owner_and_mode() -> Result<()> {
    let data = tempfile::tempdir()?;
    let server = start_server(data.path())?;
    redis_cli(&server.url, &["SET", "greeting", "moin"])?;
    let store = local_store()?;
    let options = RedisBackupOptions {
        source_name: "owned".into(),
        ..RedisBackupOptions::default()
    };
    let manifest = backup_redis(&store.storage, &secret(&server.url), &options).await?;

    let restore_dir = tempfile::tempdir()?;
    let rdb = restore_dir.path().join("dump.rdb");
    std::fs::write(&rdb, b"an older snapshot")?;
    std::fs::set_permissions(&rdb, std::fs::Permissions::from_mode(0o640))?;
    // As root the file is handed to another owner, as /var/lib/redis/dump.rdb belongs to the
    // redis user; otherwise the owner is ours and only the mode is checked against a change.
    let (uid, gid) = (4242, 4243);
    let handed_over = std::os::unix::fs::chown(&rdb, Some(uid), Some(gid)).is_ok();
    let before = std::fs::metadata(&rdb)?;

    let report = restore_redis_file(
        &store.storage,
        &manifest,
        &rdb,
        &RedisRestoreOptions::default(),
    )
    .await?;
    let after = std::fs::metadata(&rdb)?;
    assert_eq!(report.bytes, after.len());
    assert_eq!(after.permissions().mode() & 0o7777, 0o640);
    assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
    if handed_over {
        assert_eq!((after.uid(), after.gid()), (uid, gid));
    }
    assert!(std::fs::read(&rdb)?.starts_with(b"REDIS"), "not replaced");

    let fresh = restore_dir.path().join("fresh.rdb");
    restore_redis_file(
        &store.storage,
        &manifest,
        &fresh,
        &RedisRestoreOptions::default(),
    )
    .await?;
    assert_eq!(
        std::fs::metadata(&fresh)?.permissions().mode() & 0o7777,
        0o600
    );
    Ok(())
}

/// A `rediss://` server (Redis's own TLS port, started by `cargo xtask infra up`) is backed up
/// through `redis-cli` with the test CA; without it the server's certificate is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_server_is_backed_up_with_the_configured_ca() -> Result<()> {
    let tls = groundwork_testkit::TestTls::discover()?;
    let store = local_store()?;
    let options = |ca_cert: Option<std::path::PathBuf>| RedisBackupOptions {
        source_name: "tls".into(),
        tls: RedisTlsFiles {
            ca_cert,
            ..RedisTlsFiles::default()
        },
        ..RedisBackupOptions::default()
    };
    let url = secret(&tls.redis_url);
    let manifest = backup_redis(
        &store.storage,
        &url,
        &options(Some(tls.ca_cert_path.clone())),
    )
    .await?;
    assert_eq!(manifest.kind, BackupKind::Redis);
    assert!(
        manifest.objects.iter().all(|object| object.raw_bytes > 0),
        "{manifest:?}"
    );

    let refused = backup_redis(&store.storage, &url, &options(None)).await;
    let error = refused
        .err()
        .ok_or_else(|| anyhow::anyhow!("the system roots do not hold the test CA"))?;
    assert!(
        format!("{error:?}").contains("certificate verify failed"),
        "{error:?}"
    );
    Ok(())
}

/// A Redis Cluster is backed up as one RDB per master under one manifest, whose key counts add up
/// to the keys written across the slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_backup_holds_one_rdb_per_master_under_one_manifest() -> Result<()> {
    let cluster = TestRedisCluster::start().await?;
    for i in 0..60 {
        // `-c` follows the cluster's redirections to the slot's master.
        let out = redis_cli(&cluster.url(), &["-c", "SET", &format!("key-{i}"), "v"]);
        out.with_context(|| format!("writing key-{i}"))?;
    }
    let store = local_store()?;
    let options = RedisBackupOptions {
        source_name: "cluster".into(),
        ..RedisBackupOptions::default()
    };
    let manifest = backup_redis_cluster(&store.storage, &secret(&cluster.url()), &options).await?;
    assert_eq!(manifest.kind, BackupKind::Redis);
    assert_eq!(manifest.objects.len(), 3, "{manifest:?}");
    let mut names: Vec<String> = manifest.row_counts.keys().cloned().collect();
    names.sort();
    let mut expected: Vec<String> = cluster
        .master_urls()
        .iter()
        .map(|url| format!("{}/db0", url.trim_start_matches("redis://")))
        .collect();
    expected.sort();
    assert_eq!(names, expected, "one key count per master");
    assert_eq!(manifest.row_counts.values().sum::<i64>(), 60);
    assert_eq!(
        latest(&store.storage, BackupKind::Redis, "cluster").await?,
        manifest
    );
    // Restoring one master's share as if it were the whole data set is refused.
    let restore_dir = tempfile::tempdir()?;
    let restored = restore_redis_file(
        &store.storage,
        &manifest,
        &restore_dir.path().join("dump.rdb"),
        &RedisRestoreOptions {
            identities: Vec::new(),
            progress: None,
        },
    )
    .await;
    let Err(error) = restored else {
        bail!("a cluster backup was restored into one file");
    };
    assert!(error.to_string().contains("one per master"), "{error}");
    Ok(())
}

/// Runs `commands` (one per line) through one `redis-cli -c` against the cluster at `url`,
/// which follows each key's redirection to its master; the replies, one per line, without the
/// notes `redis-cli` prints when it follows a redirection.
fn redis_cli_cluster(url: &str, commands: &str) -> Result<Vec<String>> {
    let mut child = Command::new("redis-cli")
        .args(["-c", "-u", url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("redis-cli has no stdin")?
        .write_all(commands.as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("redis-cli -c: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8(output.stdout)?
        .lines()
        .filter(|line| !line.starts_with("-> Redirected"))
        .map(str::to_owned)
        .collect())
}

/// A cluster backup restored onto fresh masters with the same slot layout serves every key it
/// held: each master's RDB goes to a file of its own, a new master loads it and serves the
/// master's slot ranges, and the keys, spread over all slots, read back through the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_backup_restored_onto_fresh_masters_with_the_same_slots_serves_every_key()
-> Result<()> {
    const KEYS: usize = 300;
    let cluster = TestRedisCluster::start().await?;
    let writes = (0..KEYS)
        .map(|i| format!("SET restore-{i} value-{i}"))
        .collect::<Vec<_>>()
        .join("\n");
    let replies = redis_cli_cluster(&cluster.url(), &writes)?;
    assert_eq!(
        replies.iter().filter(|reply| *reply == "OK").count(),
        KEYS,
        "{replies:?}"
    );

    let store = local_store()?;
    let options = RedisBackupOptions {
        source_name: "cluster-restore".into(),
        ..RedisBackupOptions::default()
    };
    let manifest = backup_redis_cluster(&store.storage, &secret(&cluster.url()), &options).await?;
    let layout = manifest
        .redis_cluster
        .clone()
        .context("a cluster backup records its slot layout")?;
    assert_eq!(layout.len(), 3, "{layout:?}");
    let served: u32 = layout
        .iter()
        .flat_map(|master| &master.slots)
        .map(|[first, last]| u32::from(last - first) + 1)
        .sum();
    assert_eq!(
        served, 16384,
        "the masters' ranges cover every slot: {layout:?}"
    );
    drop(cluster);

    let restore_dir = tempfile::tempdir()?;
    let report = restore_redis_cluster_files(
        &store.storage,
        &manifest,
        restore_dir.path(),
        &RedisRestoreOptions::default(),
    )
    .await?;
    assert_eq!(report.masters.len(), 3);
    for master in &report.masters {
        assert!(master.path.is_file(), "{}", master.path.display());
        assert!(master.bytes > 0, "{} is empty", master.path.display());
    }
    let restored = TestRedisCluster::start_from_rdb_files(
        report
            .masters
            .iter()
            .map(|master| (master.path.clone(), master.slots.clone()))
            .collect(),
    )
    .await?;
    let reads = (0..KEYS)
        .map(|i| format!("GET restore-{i}"))
        .collect::<Vec<_>>()
        .join("\n");
    let values = redis_cli_cluster(&restored.url(), &reads)?;
    let expected: Vec<String> = (0..KEYS).map(|i| format!("value-{i}")).collect();
    assert_eq!(values, expected);
    // Each new master holds exactly what its old one did.
    for (master, url) in report.masters.iter().zip(restored.master_urls()) {
        let keys: i64 = redis_cli(&url, &["DBSIZE"])?.parse()?;
        assert_eq!(
            Some(&keys),
            manifest.row_counts.get(&format!("{}/db0", master.address)),
            "{url} restored from {}",
            master.address
        );
    }

    // A one-server restore of a cluster backup is refused, naming the way that works.
    let refused = restore_redis_file(
        &store.storage,
        &manifest,
        &restore_dir.path().join("dump.rdb"),
        &RedisRestoreOptions::default(),
    )
    .await;
    let Err(error) = refused else {
        bail!("a cluster backup was restored into one file");
    };
    assert!(
        error.to_string().contains("restore_redis_cluster_files"),
        "{error}"
    );
    Ok(())
}
