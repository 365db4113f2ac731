//! Redis: an RDB snapshot streamed from `redis-cli --rdb -` into the pipeline, and restored to
//! a `dump.rdb` file for a server to load at start.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::manifest::{
    BackupId, BackupKind, BackupManifest, Completed, MANIFEST_FILE, RedisClusterMaster,
    STARTED_FILE, StartedMarker, StoredObject, backup_object, rfc3339,
};
use crate::pipeline::{self, DownloadSpec, PipelineOptions, Progress};
use crate::process::{ChildGuard, last_secret, program_version, take_secrets};
use crate::storage::{Storage, percent_decode};
use crate::{BackupError, Identity};

/// The end-of-file mark a server appends to a diskless transfer (`$EOF:<40 bytes>`).
/// `redis-cli` strips it from a file by truncating it, which it cannot do on stdout, so the
/// pipeline withholds the last 40 bytes until `redis-cli` reports the real length.
const EOF_MARK_LEN: usize = 40;

/// How to back up a Redis server.
#[derive(Debug, Clone)]
pub struct RedisBackupOptions {
    /// Compression, encryption, part size, progress.
    pub pipeline: PipelineOptions,
    /// The name the backup is filed under, e.g. `cache` or `sessions`.
    pub source_name: String,
    /// The `redis-cli` program.
    pub redis_cli: PathBuf,
    /// Certificate files for a `rediss://` URL, handed to `redis-cli`.
    pub tls: RedisTlsFiles,
}

impl Default for RedisBackupOptions {
    fn default() -> Self {
        Self {
            pipeline: PipelineOptions::default(),
            source_name: "redis".into(),
            redis_cli: PathBuf::from("redis-cli"),
            tls: RedisTlsFiles::default(),
        }
    }
}

/// PEM files for `redis-cli` over TLS (`rediss://`): `--cacert`, `--cert`, `--key`. With none
/// set, `redis-cli` verifies the server against the system's roots.
#[derive(Debug, Clone, Default)]
pub struct RedisTlsFiles {
    /// The CA that signed the server's certificate.
    pub ca_cert: Option<PathBuf>,
    /// A client certificate, for servers that require one.
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key.
    pub client_key: Option<PathBuf>,
}

/// How to restore a Redis backup to a file.
#[derive(Debug, Clone, Default)]
pub struct RedisRestoreOptions {
    /// Private keys for encrypted backups.
    pub identities: Vec<Identity>,
    /// Counters for a progress bar.
    pub progress: Option<std::sync::Arc<Progress>>,
}

/// What a Redis restore wrote.
#[derive(Debug, Clone, Serialize)]
pub struct RedisRestoreReport {
    /// The backup restored.
    pub id: BackupId,
    /// The RDB file written.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
}

/// What a Redis Cluster restore wrote: one RDB file per master of the backup.
#[derive(Debug, Clone, Serialize)]
pub struct RedisClusterRestoreReport {
    /// The backup restored.
    pub id: BackupId,
    /// Each master's file, with the slots a node loading it must serve, in the backup's order.
    pub masters: Vec<RedisClusterRestoredMaster>,
}

/// One master's RDB file of a [`RedisClusterRestoreReport`].
#[derive(Debug, Clone, Serialize)]
pub struct RedisClusterRestoredMaster {
    /// The master's `host:port` when it was backed up.
    pub address: String,
    /// The slot ranges it served, inclusive.
    pub slots: Vec<[u16; 2]>,
    /// The RDB file written.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
}

/// `redis-cli` connection settings: the URL without its user information or any secret query
/// parameter. The ACL user name goes to `--user`, the password into `REDISCLI_AUTH` so it never
/// appears in a process listing. (`redis-cli -u redis://user@host` would take `user` as a
/// password.)
struct RedisTarget {
    url_without_password: String,
    user: Option<String>,
    password: Option<SecretString>,
    tls: RedisTlsFiles,
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTarget")
            .field("url", &self.url_without_password)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl RedisTarget {
    fn parse(url: &str, tls: &RedisTlsFiles) -> Result<Self, BackupError> {
        let mut parsed = url::Url::parse(url).map_err(|err| {
            BackupError::config(
                "redis url",
                format!("{err}; expected redis://[:password@]host:port"),
            )
        })?;
        if !matches!(parsed.scheme(), "redis" | "rediss") {
            return Err(BackupError::config(
                "redis url",
                format!(
                    "unsupported scheme {}://; expected redis://",
                    parsed.scheme()
                ),
            ));
        }
        let user = Some(percent_decode(parsed.username())).filter(|u| !u.is_empty());
        let secure = parsed.scheme() == "rediss";
        let configured =
            tls.ca_cert.is_some() || tls.client_cert.is_some() || tls.client_key.is_some();
        if configured && !secure {
            return Err(BackupError::config(
                "redis url",
                "TLS files are given but the URL is plain-text `redis://`; use `rediss://`",
            ));
        }
        let _ = parsed.set_username("");
        // A `?password=` or `?pass=` parameter (as redis+unix URLs write it) wins over the
        // userinfo; other secret parameters are not redis-cli's and stay off its command line.
        let (url_without_password, secrets) = take_secrets(&parsed, "redis url")?;
        let password = last_secret(&secrets, &["password", "pass"]);
        Ok(Self {
            url_without_password,
            user,
            password,
            tls: tls.clone(),
        })
    }

    /// The same server settings for another node (`host:port`) of a cluster.
    fn at(&self, host: &str, port: u16) -> Result<Self, BackupError> {
        let mut url = url::Url::parse(&self.url_without_password)
            .map_err(|err| BackupError::config("redis url", err.to_string()))?;
        url.set_host(Some(host))
            .map_err(|err| BackupError::config("redis url", format!("node {host}: {err}")))?;
        url.set_port(Some(port)).map_err(|()| {
            BackupError::config("redis url", format!("node {host}:{port} takes no port"))
        })?;
        Ok(Self {
            url_without_password: url.into(),
            user: self.user.clone(),
            password: self.password.clone(),
            tls: self.tls.clone(),
        })
    }

    fn command(&self, redis_cli: &Path) -> Command {
        let mut command = Command::new(redis_cli);
        command.args(["-u", &self.url_without_password]);
        if let Some(user) = &self.user {
            command.args(["--user", user]);
        }
        if let Some(password) = &self.password {
            command.env("REDISCLI_AUTH", password.expose_secret());
        }
        for (flag, file) in [
            ("--cacert", &self.tls.ca_cert),
            ("--cert", &self.tls.client_cert),
            ("--key", &self.tls.client_key),
        ] {
            if let Some(file) = file {
                command.arg(flag).arg(file);
            }
        }
        command.stdin(Stdio::null());
        command
    }
}

/// Backs up the Redis server at `redis_url`: its RDB snapshot, streamed through zstd (and
/// age) into storage, then the manifest. The manifest's `row_counts` hold the number of keys
/// per logical database (`db0`, ...) at the start.
pub async fn backup_redis(
    storage: &Storage,
    redis_url: &SecretString,
    options: &RedisBackupOptions,
) -> Result<BackupManifest, BackupError> {
    let target = RedisTarget::parse(redis_url.expose_secret(), &options.tls)?;
    backup_nodes(storage, vec![(target, None)], options).await
}

/// A master of a Redis Cluster being backed up: `host:port` and its slot ranges.
struct ClusterNode {
    label: String,
    slots: Vec<[u16; 2]>,
}

/// Backs up the Redis Cluster that the node at `redis_url` belongs to: one RDB snapshot per
/// master (`dump-<host>-<port>.rdb.zst`, each master holding its share of the slots), under one
/// backup id and one manifest. The masters are those `CLUSTER NODES` lists as masters that are
/// not failing, asked of `redis_url`'s node; the URL's user, password and TLS files apply to
/// each. `row_counts` hold the keys per master and database (`<host>:<port>/db0`), and
/// `redis_cluster` each master's object and slot ranges, which
/// [`restore_redis_cluster_files`] needs.
///
/// The snapshots are taken one after the other, so they are not one point in time across
/// masters; keys that must stay consistent with each other belong in one slot (a hash tag).
pub async fn backup_redis_cluster(
    storage: &Storage,
    redis_url: &SecretString,
    options: &RedisBackupOptions,
) -> Result<BackupManifest, BackupError> {
    let seed = RedisTarget::parse(redis_url.expose_secret(), &options.tls)?;
    let redis_cli = options.redis_cli.clone();
    let mut nodes = seed.command(&redis_cli);
    nodes.args(["CLUSTER", "NODES"]).stdout(Stdio::piped());
    let listing = tokio::task::spawn_blocking(move || run_capture(&mut nodes))
        .await
        .map_err(|err| BackupError::program("redis-cli", err.to_string()))??;
    let masters = cluster_masters(&listing);
    if masters.is_empty() {
        return Err(BackupError::config(
            "redis url",
            "`CLUSTER NODES` lists no healthy master; is this node part of a Redis Cluster?",
        ));
    }
    let targets = masters
        .into_iter()
        .map(|(host, port, slots)| {
            Ok((
                seed.at(&host, port)?,
                Some(ClusterNode {
                    label: format!("{host}:{port}"),
                    slots,
                }),
            ))
        })
        .collect::<Result<Vec<_>, BackupError>>()?;
    backup_nodes(storage, targets, options).await
}

/// The `host:port` and slot ranges of every master in a `CLUSTER NODES` listing that is not
/// failing and serves slots, in the listing's order.
fn cluster_masters(listing: &str) -> Vec<(String, u16, Vec<[u16; 2]>)> {
    listing
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(2)?.split(',').collect::<Vec<_>>();
            if !flags.contains(&"master") || flags.iter().any(|f| f.starts_with("fail")) {
                return None;
            }
            // Fields 9 and on are the slot ranges (`0-5460`, `7`); a master without slots holds
            // no data. `[slot->-node]` entries are migrations in progress, not served slots.
            fields.get(8)?;
            let slots = fields[8..]
                .iter()
                .filter(|range| !range.starts_with('['))
                .filter_map(|range| {
                    let (first, last) = range.split_once('-').unwrap_or((range, range));
                    Some([first.parse().ok()?, last.parse().ok()?])
                })
                .collect();
            let address = fields.get(1)?.split('@').next()?;
            let (host, port) = address.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?, slots))
        })
        .collect()
}

/// The object holding a node's RDB: `dump.<suffix>` for a lone server,
/// `dump-<host>-<port>.<suffix>` for a cluster's master.
fn object_name(node: Option<&ClusterNode>, suffix: &str) -> String {
    match node {
        Some(node) => format!("dump-{}.{suffix}", node.label.replace(':', "-")),
        None => format!("dump.{suffix}"),
    }
}

/// The manifest's `redis_cluster` for `nodes`: `None` for a lone server.
fn cluster_layout(
    nodes: &[(RedisTarget, Option<ClusterNode>)],
    suffix: &str,
) -> Option<Vec<RedisClusterMaster>> {
    let layout: Vec<RedisClusterMaster> = nodes
        .iter()
        .filter_map(|(_, node)| node.as_ref())
        .map(|node| RedisClusterMaster {
            address: node.label.clone(),
            object: object_name(Some(node), suffix),
            slots: node.slots.clone(),
        })
        .collect();
    (!layout.is_empty()).then_some(layout)
}

/// Backs up each node's RDB into one backup: the node is `None` for a lone server (object
/// `dump.rdb.zst`, row counts `db0`, ...) and a cluster's master otherwise.
async fn backup_nodes(
    storage: &Storage,
    nodes: Vec<(RedisTarget, Option<ClusterNode>)>,
    options: &RedisBackupOptions,
) -> Result<BackupManifest, BackupError> {
    options.pipeline.validate(storage)?;
    let source = options.source_name.clone();
    if source.is_empty() || source.contains('/') {
        return Err(BackupError::config(
            "source name",
            "it must be non-empty and contain no '/'",
        ));
    }
    let started = SystemTime::now();
    let clock = Instant::now();
    let id = BackupId::at(started);

    let mut server_version = String::new();
    let mut tool_version = String::new();
    let mut key_counts = BTreeMap::new();
    for (target, label) in &nodes {
        let redis_cli = options.redis_cli.clone();
        let mut info = target.command(&redis_cli);
        info.args(["INFO", "server"]).stdout(Stdio::piped());
        let mut keyspace = target.command(&redis_cli);
        keyspace.args(["INFO", "keyspace"]).stdout(Stdio::piped());
        let (tool, server_info, keyspace_info) = tokio::task::spawn_blocking(move || {
            Ok::<_, BackupError>((
                program_version("redis-cli", &redis_cli)?,
                run_capture(&mut info)?,
                run_capture(&mut keyspace)?,
            ))
        })
        .await
        .map_err(|err| BackupError::program("redis-cli", err.to_string()))??;
        if server_version.is_empty() {
            server_version = info_field(&server_info, "redis_version").unwrap_or_default();
            tool_version = tool;
        }
        for (db, keys) in parse_keyspace(&keyspace_info) {
            let name = match label {
                Some(node) => format!("{}/{db}", node.label),
                None => db,
            };
            key_counts.insert(name, keys);
        }
    }

    let marker_path = backup_object(BackupKind::Redis, &source, &id, STARTED_FILE);
    let marker = StartedMarker {
        id: id.clone(),
        kind: BackupKind::Redis,
        source: source.clone(),
        started_at: rfc3339(started),
    };
    storage.put_json(&marker_path, &marker).await?;

    let suffix = if options.pipeline.recipients.is_empty() {
        "rdb.zst"
    } else {
        "rdb.zst.age"
    };
    let mut objects = Vec::new();
    for (target, label) in &nodes {
        let object_name = object_name(label.as_ref(), suffix);
        let data_path = backup_object(BackupKind::Redis, &source, &id, &object_name);
        let mut command = target.command(&options.redis_cli);
        command.args(["--rdb", "-"]).stdout(Stdio::piped());
        let uploaded = pipeline::upload(storage, &data_path, &options.pipeline, move |sink| {
            run_rdb(&mut command, sink)
        })
        .await;
        match uploaded {
            Ok(((), object)) => objects.push(object),
            Err(err) => {
                let _ = storage.delete_object(&marker_path).await;
                return Err(err);
            }
        }
    }
    let mut manifest = BackupManifest::completed(Completed {
        id: id.clone(),
        kind: BackupKind::Redis,
        source: source.clone(),
        server_version,
        tool_version,
        started,
        clock,
        objects,
        pipeline: &options.pipeline,
        row_counts: key_counts,
    });
    manifest.redis_cluster = cluster_layout(&nodes, suffix);
    storage
        .put_json(
            &backup_object(BackupKind::Redis, &source, &id, MANIFEST_FILE),
            &manifest,
        )
        .await?;
    Ok(manifest)
}

fn run_capture(command: &mut Command) -> Result<String, BackupError> {
    let mut child = ChildGuard::spawn("redis-cli", command)?;
    let mut out = String::new();
    if let Some(mut stdout) = child.child_mut().and_then(|c| c.stdout.take()) {
        io::Read::read_to_string(&mut stdout, &mut out)
            .map_err(|err| BackupError::program("redis-cli", err.to_string()))?;
    }
    child.wait_success()?;
    Ok(out)
}

fn run_rdb(command: &mut Command, sink: &mut dyn Write) -> Result<(), BackupError> {
    let mut child = ChildGuard::spawn("redis-cli", command)?;
    let Some(mut stdout) = child.child_mut().and_then(|c| c.stdout.take()) else {
        return Err(BackupError::program(
            "redis-cli",
            "its output was not captured",
        ));
    };
    let mut trim = TailWithheld {
        inner: sink,
        tail: Vec::with_capacity(2 * EOF_MARK_LEN),
        passed: 0,
    };
    if let Err(source) = pipeline::pump_pipe(&mut stdout, &mut trim) {
        child.kill();
        return Err(BackupError::Pipeline {
            action: "reading redis-cli output",
            source,
        });
    }
    drop(stdout);
    let stderr = child.wait_success()?;
    // "Transfer finished with success after N bytes": N excludes the EOF mark.
    let reported = stderr.lines().find_map(|line| {
        line.split("after ")
            .nth(1)?
            .split(' ')
            .next()?
            .parse::<u64>()
            .ok()
    });
    let total = trim.passed + trim.tail.len() as u64;
    let keep = match reported {
        Some(n) if n == total => trim.tail.len(),
        Some(n) if n + EOF_MARK_LEN as u64 == total => 0,
        _ => {
            return Err(BackupError::program(
                "redis-cli",
                format!("cannot tell the RDB's length from its report ({total} bytes received)"),
            ));
        }
    };
    trim.inner
        .write_all(&trim.tail[..keep])
        .map_err(|source| BackupError::Pipeline {
            action: "compressing",
            source,
        })
}

/// Passes everything through except the last [`EOF_MARK_LEN`] bytes seen so far.
struct TailWithheld<'a> {
    inner: &'a mut dyn Write,
    tail: Vec<u8>,
    passed: u64,
}

impl Write for TailWithheld<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tail.extend_from_slice(buf);
        if self.tail.len() > EOF_MARK_LEN {
            let release = self.tail.len() - EOF_MARK_LEN;
            self.inner.write_all(&self.tail[..release])?;
            self.tail.drain(..release);
            self.passed += release as u64;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines().find_map(|line| {
        let (key, value) = line.trim().split_once(':')?;
        (key == field).then(|| value.to_owned())
    })
}

/// `db0:keys=3,expires=0,avg_ttl=0` → `{"db0": 3}`.
fn parse_keyspace(info: &str) -> BTreeMap<String, i64> {
    info.lines()
        .filter_map(|line| {
            let (db, fields) = line.trim().split_once(':')?;
            let keys = fields
                .split(',')
                .find_map(|f| f.strip_prefix("keys="))?
                .parse()
                .ok()?;
            db.starts_with("db").then(|| (db.to_owned(), keys))
        })
        .collect()
}

/// Restores a Redis backup to `path` (written to a temporary file beside it, then renamed), for
/// a stopped server to load at start: stop Redis, restore over its `dir`/`dbfilename`, start it.
///
/// A file replaced keeps its owner and mode (replacing another user's file needs the right to
/// give it that owner, e.g. root); a new file is 0600.
pub async fn restore_redis_file(
    storage: &Storage,
    manifest: &BackupManifest,
    path: &Path,
    options: &RedisRestoreOptions,
) -> Result<RedisRestoreReport, BackupError> {
    require_redis(manifest)?;
    if manifest.objects.len() > 1 || manifest.redis_cluster.is_some() {
        return Err(BackupError::InvalidManifest {
            object: manifest.id.to_string(),
            reason: format!(
                "it holds {} RDB files, one per master of a Redis Cluster; restore it with \
                 restore_redis_cluster_files, one file per master",
                manifest.objects.len()
            ),
        });
    }
    let Some(object) = manifest.objects.first().cloned() else {
        return Err(BackupError::InvalidManifest {
            object: manifest.id.to_string(),
            reason: "it lists no data object".into(),
        });
    };
    let bytes = download_rdb(storage, manifest, object, path, options).await?;
    Ok(RedisRestoreReport {
        id: manifest.id.clone(),
        path: path.to_owned(),
        bytes,
    })
}

/// Refuses a manifest of another kind of backup, naming it and its kind.
fn require_redis(manifest: &BackupManifest) -> Result<(), BackupError> {
    if manifest.kind == BackupKind::Redis {
        return Ok(());
    }
    Err(BackupError::config(
        "backup",
        format!(
            "{} is a {} backup, not a redis one",
            manifest.id, manifest.kind
        ),
    ))
}

/// Restores a Redis Cluster backup ([`backup_redis_cluster`]) into `dir`: one RDB file per
/// master, `dump-<host>-<port>.rdb` after the master's address at backup time, each with the
/// slot ranges that master served.
///
/// A cluster is restored onto a fresh set of masters, one per file, with the same slot layout:
/// start each new master with cluster mode on, an empty `nodes.conf` and its file as
/// `dir`/`dbfilename`; at start it loads the keys and takes the slots they live in. Give it the
/// rest of its ranges with `CLUSTER ADDSLOTSRANGE`, join the masters with `CLUSTER MEET`, wait
/// for `cluster_state:ok`, then add replicas (`CLUSTER REPLICATE`). A backup made before slot
/// ranges were recorded (no `redis_cluster` in its manifest) is refused.
pub async fn restore_redis_cluster_files(
    storage: &Storage,
    manifest: &BackupManifest,
    dir: &Path,
    options: &RedisRestoreOptions,
) -> Result<RedisClusterRestoreReport, BackupError> {
    require_redis(manifest)?;
    let Some(layout) = &manifest.redis_cluster else {
        return Err(BackupError::InvalidManifest {
            object: manifest.id.to_string(),
            reason: "it records no Redis Cluster slot layout (a backup of one server, or one \
                     made before layouts were recorded); restore one server with \
                     restore_redis_file"
                .into(),
        });
    };
    std::fs::create_dir_all(dir).map_err(|source| BackupError::Io {
        action: "create",
        path: dir.display().to_string(),
        source,
    })?;
    let mut masters = Vec::new();
    for master in layout {
        let object = manifest
            .objects
            .iter()
            .find(|object| object.name == master.object)
            .cloned()
            .ok_or_else(|| BackupError::InvalidManifest {
                object: manifest.id.to_string(),
                reason: format!(
                    "the master {} names the object {}, which it does not list",
                    master.address, master.object
                ),
            })?;
        let path = dir.join(format!("dump-{}.rdb", master.address.replace(':', "-")));
        let bytes = download_rdb(storage, manifest, object, &path, options).await?;
        masters.push(RedisClusterRestoredMaster {
            address: master.address.clone(),
            slots: master.slots.clone(),
            path,
            bytes,
        });
    }
    Ok(RedisClusterRestoreReport {
        id: manifest.id.clone(),
        masters,
    })
}

/// Downloads `object` of `manifest` to `path` through a temporary file beside it; its size.
async fn download_rdb(
    storage: &Storage,
    manifest: &BackupManifest,
    object: StoredObject,
    path: &Path,
    options: &RedisRestoreOptions,
) -> Result<u64, BackupError> {
    let spec = DownloadSpec {
        backup: manifest.id.to_string(),
        path: backup_object(
            BackupKind::Redis,
            &manifest.source,
            &manifest.id,
            &object.name,
        ),
        object,
        recipients: manifest
            .encryption
            .as_ref()
            .map(|_| manifest.recipients_text()),
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let staging = tempfile::Builder::new()
        .prefix(".groundwork-restore-")
        .tempfile_in(&dir)
        .map_err(|source| BackupError::Io {
            action: "create a temporary file in",
            path: dir.display().to_string(),
            source,
        })?;
    let (file, temp_path) = staging.into_parts();
    take_owner_and_mode(&file, path)?;
    let bytes = pipeline::download(
        storage,
        spec,
        options.identities.clone(),
        options.progress.clone(),
        move |plain| {
            let mut out = io::BufWriter::new(file);
            let written = pipeline::pump(plain, &mut out)
                .and_then(|n| out.flush().map(|()| n))
                .and_then(|n| out.get_ref().sync_all().map(|()| n))
                .map_err(|source| BackupError::Pipeline {
                    action: "writing the rdb file",
                    source,
                })?;
            Ok(written)
        },
    )
    .await?;
    temp_path.persist(path).map_err(|err| BackupError::Io {
        action: "move the restored rdb file to",
        path: path.display().to_string(),
        source: err.error,
    })?;
    Ok(bytes)
}

/// Gives the staging file `file` the owner and mode of the file at `path` it will replace, so
/// the server (often running as its own user) can still read it; a new file is 0600.
fn take_owner_and_mode(file: &std::fs::File, path: &Path) -> Result<(), BackupError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    let io_err = |action| {
        move |source| BackupError::Io {
            action,
            path: path.display().to_string(),
            source,
        }
    };
    let (mode, owner) = match std::fs::metadata(path) {
        Ok(existing) => (
            existing.mode() & 0o7777,
            Some((existing.uid(), existing.gid())),
        ),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            (crate::local::PRIVATE_FILE_MODE, None)
        }
        Err(source) => return Err(io_err("read the owner and mode of")(source)),
    };
    if let Some((uid, gid)) = owner {
        // Without the right to do so (not root, not the owner) the restore stops rather than
        // leave a file the server may be unable to read.
        std::os::unix::fs::fchown(file, Some(uid), Some(gid))
            .map_err(io_err("give the restored file the owner (uid, gid) of"))?;
    }
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io_err("give the restored file the mode of"))
}

#[cfg(test)]
mod tests {
    use super::{RedisTarget, RedisTlsFiles, cluster_masters, parse_keyspace};

    #[test]
    fn cluster_nodes_give_the_healthy_masters_with_slots() {
        let listing = "\
a 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922
c 127.0.0.1:7002@17002 master,fail - 0 0 3 connected 10923-16383
d 127.0.0.1:7003@17003 slave a 0 0 1 connected
e 127.0.0.1:7004@17004 master - 0 0 0 connected
";
        assert_eq!(
            cluster_masters(listing),
            vec![
                ("127.0.0.1".to_owned(), 7000, vec![[0, 5460]]),
                ("127.0.0.1".to_owned(), 7001, vec![[5461, 10922]])
            ]
        );
    }

    #[test]
    fn keyspace_lines_become_key_counts() {
        let counts = parse_keyspace(
            "# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=5\r\ndb4:keys=10,expires=0\r\n",
        );
        assert_eq!(counts.get("db0"), Some(&3));
        assert_eq!(counts.get("db4"), Some(&10));
        assert_eq!(counts.len(), 2);
    }

    #[test]
    fn the_password_goes_to_the_environment() {
        let target =
            RedisTarget::parse("redis://:hunter2@cache:6379/0", &RedisTlsFiles::default()).ok();
        let url = target
            .as_ref()
            .map(|t| t.url_without_password.clone())
            .unwrap_or_default();
        assert!(!url.contains("hunter2"), "{url}");
        assert!(!format!("{target:?}").contains("hunter2"));
    }

    #[test]
    fn the_user_name_leaves_the_url_for_its_own_argument() {
        let target = RedisTarget::parse(
            "redis://backup%2Bops:hunter2@cache:6379/0",
            &RedisTlsFiles::default(),
        )
        .ok();
        let (url, user) = target
            .as_ref()
            .map(|t| (t.url_without_password.clone(), t.user.clone()))
            .unwrap_or_default();
        assert_eq!(url, "redis://cache:6379/0");
        assert_eq!(user.as_deref(), Some("backup+ops"));
    }
}
