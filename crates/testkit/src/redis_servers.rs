//! Redis deployments for tests: a Redis Cluster and a Sentinel set-up, either private ones
//! started from the installed `redis-server` on free loopback ports (removed on drop), or the
//! ones `cargo xtask infra up --redis-cluster --redis-sentinel` started, shared by tests that
//! only read and write keys under their own prefix.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use deadpool_redis::redis;

use crate::TestkitError;

/// How long a deployment may take to become usable (cluster slots agreed, sentinels aware of
/// each other and of the replica).
const READY_TIMEOUT: Duration = Duration::from_mins(1);
/// Pause between two looks at a server's state while waiting for it.
const POLL: Duration = Duration::from_millis(100);

/// The name the sentinels of a [`TestRedisSentinel`] monitor the master under.
pub const SENTINEL_MASTER: &str = "gwmaster";

/// The infra env file's variables for the deployments `cargo xtask infra up` starts when asked.
pub(crate) const CLUSTER_URL_VAR: &str = "REDIS_CLUSTER_URL";
pub(crate) const CLUSTER_NODES_VAR: &str = "REDIS_CLUSTER_NODES";
pub(crate) const SENTINEL_URL_VAR: &str = "REDIS_SENTINEL_URL";
pub(crate) const SENTINEL_NODES_VAR: &str = "REDIS_SENTINEL_NODES";
pub(crate) const SENTINEL_MASTER_VAR: &str = "REDIS_SENTINEL_MASTER";

/// TLS for a private deployment: every server listens on a TLS port only (`--port 0`), with
/// this certificate (its subjectAltNames must cover `127.0.0.1`), and speaks TLS to its peers
/// too (`tls-replication`, and `tls-cluster` in a cluster); the sentinels likewise. Clients
/// are not asked for a certificate, but a cluster's nodes always check each other's: for a
/// cluster the certificate must allow client authentication too ([`crate::TestCa::peer`]
/// makes one), or the nodes never join.
#[derive(Clone)]
pub struct RedisServerTls {
    ca: String,
    certificate: String,
    key: String,
}

impl RedisServerTls {
    /// The CA the servers trust (and clients should), and the servers' certificate and key, PEM.
    pub fn new(
        ca_pem: impl Into<String>,
        certificate_pem: impl Into<String>,
        key_pem: impl Into<String>,
    ) -> Self {
        Self {
            ca: ca_pem.into(),
            certificate: certificate_pem.into(),
            key: key_pem.into(),
        }
    }
}

impl std::fmt::Debug for RedisServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisServerTls").finish_non_exhaustive()
    }
}

/// The files a TLS deployment's servers read, and the CA its own probes trust.
#[derive(Debug, Clone)]
struct TlsFiles {
    ca: PathBuf,
    certificate: PathBuf,
    key: PathBuf,
    ca_pem: Vec<u8>,
}

/// A Redis Cluster of 3 masters, each with one replica.
///
/// [`TestRedisCluster::start`] starts a private one on free loopback ports from the installed
/// `redis-server` and `redis-cli` (Debian's `redis-server` package), removed on drop with its
/// directory: for tests that count every key, back up, restore or stop nodes.
/// [`TestRedisCluster::create`] uses the one `cargo xtask infra up --redis-cluster` started when
/// the infra env file (or the environment) names it in `REDIS_CLUSTER_URL`, and starts a private
/// one otherwise: for tests that only read and write their own keys, built with
/// [`TestRedisCluster::key`] and deleted on drop.
///
/// ```no_run
/// # async fn demo() -> Result<(), groundwork_testkit::TestkitError> {
/// let cluster = groundwork_testkit::TestRedisCluster::create().await?;
/// let url = cluster.url(); // redis://127.0.0.1:<port>, one seed node
/// let more = cluster.nodes(); // the other nodes, `host:port,host:port,...`
/// let key = cluster.key("orders:1"); // gw:test:<random>:orders:1
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TestRedisCluster {
    deployment: Deployment,
    masters: Vec<u16>,
    prefix: String,
}

/// Where a deployment's servers come from.
#[derive(Debug)]
enum Deployment {
    /// Started for this test, stopped on drop.
    Private(Servers),
    /// Started by `cargo xtask infra up`; its servers stay, this test's keys go on drop.
    Shared {
        /// The port of the URL's node, then those of the other nodes.
        ports: Vec<u16>,
    },
}

impl Deployment {
    /// The URL's node first, then the others.
    fn ports(&self) -> Vec<u16> {
        match self {
            Deployment::Private(servers) => servers.ports(),
            Deployment::Shared { ports } => ports.clone(),
        }
    }

    fn tls(&self) -> Option<&TlsFiles> {
        match self {
            Deployment::Private(servers) => servers.tls.as_ref(),
            Deployment::Shared { .. } => None,
        }
    }

    fn scheme(&self) -> &'static str {
        if self.tls().is_some() {
            "rediss"
        } else {
            "redis"
        }
    }
}

impl TestRedisCluster {
    /// The cluster `cargo xtask infra up --redis-cluster` started, when `REDIS_CLUSTER_URL` (and
    /// `REDIS_CLUSTER_NODES`) name it in the environment or the infra env file; a private one
    /// ([`TestRedisCluster::start`]) when they do not. A named cluster that does not answer is an
    /// error naming its URL.
    pub async fn create() -> Result<Self, TestkitError> {
        let env = crate::InfraEnv::discover()?;
        let Some(url) = env.var(CLUSTER_URL_VAR) else {
            return Self::start().await;
        };
        let nodes = env.var(CLUSTER_NODES_VAR).unwrap_or_default();
        tokio::task::spawn_blocking(move || {
            let ports = shared_ports(&url, &nodes, "cluster")?;
            let listing: String = connect(ports[0], None)
                .and_then(|mut connection| {
                    redis::cmd("CLUSTER").arg("NODES").query(&mut connection)
                })
                .map_err(|e| unreachable_shared(&url, CLUSTER_URL_VAR, &e.to_string()))?;
            let masters = cluster_master_ports(&listing);
            if masters.is_empty() {
                return Err(unreachable_shared(
                    &url,
                    CLUSTER_URL_VAR,
                    "`CLUSTER NODES` lists no master serving slots",
                ));
            }
            Ok(Self {
                deployment: Deployment::Shared { ports },
                masters,
                prefix: test_prefix(),
            })
        })
        .await
        .map_err(|e| servers_error("connect to", "cluster", Path::new("-"), e.to_string()))?
    }

    /// Like [`TestRedisCluster::start`], with every server on a TLS port only and the cluster
    /// bus and replication over TLS (`tls-cluster yes`, `tls-replication yes`); `url()` and
    /// `master_urls()` are `rediss://`.
    pub async fn start_tls(tls: &RedisServerTls) -> Result<Self, TestkitError> {
        let tls = tls.clone();
        on_blocking_thread("cluster", move || Self::start_blocking(Some(&tls))).await
    }

    /// Starts 6 servers with cluster mode on and joins them: the first three are masters
    /// sharing the 16384 slots, the others their replicas. Returns once every node reports
    /// `cluster_state:ok`.
    pub async fn start() -> Result<Self, TestkitError> {
        on_blocking_thread("cluster", || Self::start_blocking(None)).await
    }

    fn start_blocking(tls: Option<&RedisServerTls>) -> Result<Self, TestkitError> {
        let mut servers = Servers::new("cluster", tls)?;
        for _ in 0..6 {
            let port = servers.port()?;
            let bus = servers.port()?;
            let dir = servers.node_dir(port)?;
            let mut command = Command::new("redis-server");
            command.args(servers.common_args(port, &dir));
            if servers.tls.is_some() {
                command.args(["--tls-cluster", "yes"]);
            }
            servers.spawn(
                port,
                command.args([
                    "--cluster-enabled".as_ref(),
                    "yes".as_ref(),
                    "--cluster-port".as_ref(),
                    bus.to_string().as_ref(),
                    "--cluster-config-file".as_ref(),
                    dir.join("nodes.conf").as_os_str(),
                    "--cluster-node-timeout".as_ref(),
                    "2000".as_ref(),
                ]),
            )?;
        }
        let ports = servers.ports();
        for port in &ports {
            servers.wait_until(*port, "answers PING", |connection| {
                Ok(redis::cmd("PING").query::<String>(connection)? == "PONG")
            })?;
        }
        let mut create = Command::new("redis-cli");
        if let Some(tls) = &servers.tls {
            create.arg("--tls").arg("--cacert").arg(&tls.ca);
        }
        create.args(["--cluster", "create"]);
        create.args(ports.iter().map(|port| format!("127.0.0.1:{port}")));
        create.args(["--cluster-replicas", "1", "--cluster-yes"]);
        let output = create
            .stdin(Stdio::null())
            .output()
            .map_err(|e| servers.error("create", format!("cannot run redis-cli: {e}")))?;
        if !output.status.success() {
            return Err(servers.error(
                "create",
                format!(
                    "`redis-cli --cluster create` failed: {}",
                    String::from_utf8_lossy(&output.stdout).trim()
                ),
            ));
        }
        servers.wait_until_cluster_ok(&ports)?;
        Ok(Self {
            masters: ports[..3].to_vec(),
            deployment: Deployment::Private(servers),
            prefix: test_prefix(),
        })
    }

    /// A private cluster of one master per entry of `masters` (no replicas), each loading its RDB
    /// file and serving the given slot ranges (inclusive): what restoring a cluster backup onto
    /// fresh nodes with the same slot layout looks like. Each node starts with cluster mode on
    /// and the file as its `dump.rdb`, takes the slots its keys live in, gets the rest of its
    /// ranges with `CLUSTER ADDSLOTSRANGE` and meets the others; returns once every node reports
    /// `cluster_state:ok`.
    pub async fn start_from_rdb_files(
        masters: Vec<(PathBuf, Vec<[u16; 2]>)>,
    ) -> Result<Self, TestkitError> {
        on_blocking_thread("cluster", move || {
            Self::start_from_rdb_files_blocking(&masters)
        })
        .await
    }

    fn start_from_rdb_files_blocking(
        masters: &[(PathBuf, Vec<[u16; 2]>)],
    ) -> Result<Self, TestkitError> {
        let mut servers = Servers::new("cluster", None)?;
        let mut buses = Vec::new();
        for (rdb, _) in masters {
            let port = servers.port()?;
            let bus = servers.port()?;
            let dir = servers.node_dir(port)?;
            std::fs::copy(rdb, dir.join("dump.rdb"))
                .map_err(|e| servers.error("configure", format!("{}: {e}", rdb.display())))?;
            let mut command = Command::new("redis-server");
            command.args(servers.common_args(port, &dir));
            servers.spawn(
                port,
                command
                    .args(["--cluster-enabled", "yes", "--cluster-port"])
                    .arg(bus.to_string())
                    .arg("--cluster-config-file")
                    .arg(dir.join("nodes.conf"))
                    .args(["--cluster-node-timeout", "2000"]),
            )?;
            buses.push(bus);
        }
        let ports = servers.ports();
        for (port, (_, ranges)) in ports.iter().zip(masters) {
            servers.wait_until(*port, "answers PING", |connection| {
                Ok(redis::cmd("PING").query::<String>(connection)? == "PONG")
            })?;
            let mut connection =
                connect(*port, None).map_err(|e| servers.error("configure", e.to_string()))?;
            let listing: String = redis::cmd("CLUSTER")
                .arg("NODES")
                .query(&mut connection)
                .map_err(|e| servers.error("configure", e.to_string()))?;
            let owned = own_slots(&listing);
            let missing = missing_ranges(ranges, &owned);
            if !missing.is_empty() {
                let mut add = redis::cmd("CLUSTER");
                add.arg("ADDSLOTSRANGE");
                for [first, last] in &missing {
                    add.arg(first).arg(last);
                }
                add.query::<()>(&mut connection).map_err(|e| {
                    servers.error("configure", format!("port {port}: ADDSLOTSRANGE: {e}"))
                })?;
            }
        }
        let mut first =
            connect(ports[0], None).map_err(|e| servers.error("join", e.to_string()))?;
        for (port, bus) in ports.iter().zip(&buses).skip(1) {
            redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(port)
                .arg(bus)
                .query::<()>(&mut first)
                .map_err(|e| servers.error("join", format!("port {port}: {e}")))?;
        }
        servers.wait_until_cluster_ok(&ports)?;
        Ok(Self {
            masters: ports,
            deployment: Deployment::Private(servers),
            prefix: test_prefix(),
        })
    }

    /// The URL of the first node, `redis://127.0.0.1:<port>` (`rediss://` with TLS): a seed from
    /// which a cluster client learns the rest.
    pub fn url(&self) -> String {
        format!(
            "{}://127.0.0.1:{}",
            self.deployment.scheme(),
            self.deployment.ports()[0]
        )
    }

    /// The other nodes as `127.0.0.1:<port>`, comma-separated (the `REDIS_NODES` form).
    pub fn nodes(&self) -> String {
        join_nodes(&self.deployment.ports()[1..])
    }

    /// The URLs of the masters, one per third of the slots.
    pub fn master_urls(&self) -> Vec<String> {
        self.masters
            .iter()
            .map(|port| format!("{}://127.0.0.1:{port}", self.deployment.scheme()))
            .collect()
    }

    /// The directory holding every node's files; `None` for the shared cluster.
    pub fn dir(&self) -> Option<&Path> {
        match &self.deployment {
            Deployment::Private(servers) => Some(&servers.dir),
            Deployment::Shared { .. } => None,
        }
    }

    /// Whether this is the cluster `cargo xtask infra up` started, shared with other tests.
    pub fn is_shared(&self) -> bool {
        matches!(self.deployment, Deployment::Shared { .. })
    }

    /// The prefix this test's keys share (`gw:test:<random>:`); every key under it is deleted on
    /// drop. No hash tag: keys under it spread over the slots.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `name` under this test's prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The keys under this test's prefix on the master at `master_url` (one of
    /// [`TestRedisCluster::master_urls`]), counted with `SCAN`.
    pub async fn count_keys_on(&self, master_url: &str) -> Result<u64, TestkitError> {
        let port = port_of(master_url).ok_or_else(|| {
            servers_error(
                "count keys on",
                "cluster",
                Path::new("-"),
                format!("{master_url} names no port"),
            )
        })?;
        let prefix = self.prefix.clone();
        let ca = self.deployment.tls().map(|tls| tls.ca_pem.clone());
        tokio::task::spawn_blocking(move || {
            let mut connection = connect(port, ca.as_deref())?;
            let keys = scan_prefix(&mut connection, &prefix)?;
            Ok(keys.len() as u64)
        })
        .await
        .map_err(|e| servers_error("count keys on", "cluster", Path::new("-"), e.to_string()))?
        .map_err(|e: redis::RedisError| {
            servers_error("count keys on", "cluster", Path::new("-"), e.to_string())
        })
    }
}

impl Drop for TestRedisCluster {
    fn drop(&mut self) {
        // A private cluster goes with its servers; the shared one loses only this test's keys.
        if matches!(self.deployment, Deployment::Shared { .. }) {
            for port in &self.masters {
                if let Err(error) = delete_prefix(*port, &self.prefix) {
                    eprintln!(
                        "groundwork-testkit: cannot delete keys {}* on 127.0.0.1:{port}: {error}",
                        self.prefix
                    );
                }
            }
        }
    }
}

/// A throwaway Sentinel set-up: one master, one replica and three sentinels monitoring the
/// master as [`SENTINEL_MASTER`] (quorum 2, down after 1 s), on free loopback ports, removed on
/// drop with its directory.
///
/// [`TestRedisSentinel::kill_master`] `SIGKILL`s the current master; the sentinels then promote
/// the replica, which [`TestRedisSentinel::wait_for_new_master`] waits for.
///
/// ```no_run
/// # async fn demo() -> Result<(), groundwork_testkit::TestkitError> {
/// let mut sentinel = groundwork_testkit::TestRedisSentinel::start().await?;
/// let url = sentinel.url(); // redis://127.0.0.1:<port>, the first sentinel
/// let more = sentinel.nodes(); // the other two sentinels
/// let old = sentinel.kill_master()?;
/// let new = sentinel.wait_for_new_master(old).await?;
/// # Ok(()) }
/// ```
///
/// [`TestRedisSentinel::create`] uses the set-up `cargo xtask infra up --redis-sentinel` started
/// when `REDIS_SENTINEL_URL` names it, for tests that only read and write their own keys
/// ([`TestRedisSentinel::key`], deleted on drop); `kill_master` refuses to kill its master.
#[derive(Debug)]
pub struct TestRedisSentinel {
    deployment: Deployment,
    sentinels: Vec<u16>,
    master_name: String,
    prefix: String,
}

impl TestRedisSentinel {
    /// Starts the master, its replica and the sentinels; returns once the replica is in sync and
    /// every sentinel knows the replica and the two other sentinels, so a failover can happen.
    pub async fn start() -> Result<Self, TestkitError> {
        on_blocking_thread("sentinel set-up", || Self::start_blocking(None)).await
    }

    /// Like [`TestRedisSentinel::start`], with the master, the replica and the sentinels on TLS
    /// ports only, replication and the sentinels' connections to the servers over TLS
    /// (`tls-replication yes`); `url()` is `rediss://`.
    pub async fn start_tls(tls: &RedisServerTls) -> Result<Self, TestkitError> {
        let tls = tls.clone();
        on_blocking_thread("sentinel set-up", move || Self::start_blocking(Some(&tls))).await
    }

    /// The set-up `cargo xtask infra up --redis-sentinel` started, when `REDIS_SENTINEL_URL`
    /// (with `REDIS_SENTINEL_NODES` and `REDIS_SENTINEL_MASTER`) names it in the environment or
    /// the infra env file; a private one ([`TestRedisSentinel::start`]) when it does not. A named
    /// set-up whose sentinels do not answer is an error naming the URL.
    pub async fn create() -> Result<Self, TestkitError> {
        let env = crate::InfraEnv::discover()?;
        let Some(url) = env.var(SENTINEL_URL_VAR) else {
            return Self::start().await;
        };
        let nodes = env.var(SENTINEL_NODES_VAR).unwrap_or_default();
        let master_name = env
            .var(SENTINEL_MASTER_VAR)
            .unwrap_or_else(|| SENTINEL_MASTER.to_owned());
        tokio::task::spawn_blocking(move || {
            let ports = shared_ports(&url, &nodes, "sentinel set-up")?;
            master_port(&ports, &master_name, None, Path::new("-"))
                .map_err(|e| unreachable_shared(&url, SENTINEL_URL_VAR, &e.to_string()))?;
            Ok(Self {
                deployment: Deployment::Shared {
                    ports: ports.clone(),
                },
                sentinels: ports,
                master_name,
                prefix: test_prefix(),
            })
        })
        .await
        .map_err(|e| {
            servers_error(
                "connect to",
                "sentinel set-up",
                Path::new("-"),
                e.to_string(),
            )
        })?
    }

    fn start_blocking(tls: Option<&RedisServerTls>) -> Result<Self, TestkitError> {
        let mut servers = Servers::new("sentinel set-up", tls)?;
        let master = servers.port()?;
        let dir = servers.node_dir(master)?;
        let args = servers.common_args(master, &dir);
        servers.spawn(master, Command::new("redis-server").args(args))?;
        let replica = servers.port()?;
        let dir = servers.node_dir(replica)?;
        let args = servers.common_args(replica, &dir);
        servers.spawn(
            replica,
            Command::new("redis-server").args(args).args([
                "--replicaof",
                "127.0.0.1",
                &master.to_string(),
            ]),
        )?;
        servers.wait_until(replica, "is in sync with the master", |connection| {
            let info: String = redis::cmd("INFO").arg("replication").query(connection)?;
            Ok(info
                .lines()
                .any(|line| line.trim() == "master_link_status:up"))
        })?;
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let port = servers.port()?;
            let dir = servers.node_dir(port)?;
            let conf = dir.join("sentinel.conf");
            let listen = match &servers.tls {
                None => format!("port {port}\n"),
                Some(tls) => format!(
                    "port 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\n\
                     tls-ca-cert-file {}\ntls-auth-clients no\ntls-replication yes\n",
                    tls.certificate.display(),
                    tls.key.display(),
                    tls.ca.display()
                ),
            };
            std::fs::write(
                &conf,
                format!(
                    "{listen}bind 127.0.0.1\ndaemonize no\ndir {dir}\n\
                     logfile {log}\n\
                     sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master} 2\n\
                     sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
                     sentinel failover-timeout {SENTINEL_MASTER} 10000\n\
                     sentinel parallel-syncs {SENTINEL_MASTER} 1\n",
                    dir = dir.display(),
                    log = dir.join("redis.log").display(),
                ),
            )
            .map_err(|e| servers.error("configure", format!("{}: {e}", conf.display())))?;
            servers.spawn(
                port,
                Command::new("redis-server").arg(&conf).arg("--sentinel"),
            )?;
            sentinels.push(port);
        }
        for port in &sentinels {
            servers.wait_until(
                *port,
                "knows the replica and the other sentinels",
                |connection| {
                    let replicas: Vec<redis::Value> = redis::cmd("SENTINEL")
                        .arg("REPLICAS")
                        .arg(SENTINEL_MASTER)
                        .query(connection)?;
                    let others: Vec<redis::Value> = redis::cmd("SENTINEL")
                        .arg("SENTINELS")
                        .arg(SENTINEL_MASTER)
                        .query(connection)?;
                    Ok(!replicas.is_empty() && others.len() >= 2)
                },
            )?;
        }
        Ok(Self {
            deployment: Deployment::Private(servers),
            sentinels,
            master_name: SENTINEL_MASTER.to_owned(),
            prefix: test_prefix(),
        })
    }

    /// The URL of the first sentinel, `redis://127.0.0.1:<port>` (`rediss://` with TLS).
    pub fn url(&self) -> String {
        format!(
            "{}://127.0.0.1:{}",
            self.deployment.scheme(),
            self.sentinels[0]
        )
    }

    /// The other sentinels as `127.0.0.1:<port>`, comma-separated (the `REDIS_NODES` form).
    pub fn nodes(&self) -> String {
        join_nodes(&self.sentinels[1..])
    }

    /// The name the sentinels monitor the master under ([`SENTINEL_MASTER`] for a private
    /// set-up, `REDIS_SENTINEL_MASTER` for the shared one).
    pub fn master_name(&self) -> &str {
        &self.master_name
    }

    /// Whether this is the set-up `cargo xtask infra up` started, shared with other tests.
    pub fn is_shared(&self) -> bool {
        matches!(self.deployment, Deployment::Shared { .. })
    }

    /// `name` under this test's prefix (`gw:test:<random>:`); the keys under it are deleted on
    /// drop.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn dir(&self) -> PathBuf {
        match &self.deployment {
            Deployment::Private(servers) => servers.dir.clone(),
            Deployment::Shared { .. } => PathBuf::from("-"),
        }
    }

    /// The port of the current master, as the first sentinel that answers says.
    pub async fn master_port(&self) -> Result<u16, TestkitError> {
        let sentinels = self.sentinels.clone();
        let name = self.master_name.clone();
        let ca = self.deployment.tls().map(|tls| tls.ca_pem.clone());
        let dir = self.dir();
        tokio::task::spawn_blocking(move || master_port(&sentinels, &name, ca.as_deref(), &dir))
            .await
            .map_err(|e| servers_error("ask", "sentinel set-up", Path::new("-"), e.to_string()))?
    }

    /// `SIGKILL`s the current master and returns its port. Refused on the shared set-up, whose
    /// other users would lose their master.
    pub fn kill_master(&mut self) -> Result<u16, TestkitError> {
        let ca = self.deployment.tls().map(|tls| tls.ca_pem.clone());
        let port = master_port(
            &self.sentinels,
            &self.master_name,
            ca.as_deref(),
            &self.dir(),
        )?;
        match &mut self.deployment {
            Deployment::Private(servers) => servers.kill(port)?,
            Deployment::Shared { .. } => {
                return Err(servers_error(
                    "kill the master of",
                    "sentinel set-up",
                    Path::new("-"),
                    "it is the shared set-up `cargo xtask infra up` started; use \
                     TestRedisSentinel::start for a private one"
                        .to_owned(),
                ));
            }
        }
        Ok(port)
    }

    /// Waits until the sentinels name a master other than the one on port `old`, and that
    /// server answers `ROLE` as master; returns its port.
    pub async fn wait_for_new_master(&self, old: u16) -> Result<u16, TestkitError> {
        let sentinels = self.sentinels.clone();
        let name = self.master_name.clone();
        let ca = self.deployment.tls().map(|tls| tls.ca_pem.clone());
        let dir = self.dir();
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + READY_TIMEOUT;
            loop {
                if let Ok(port) = master_port(&sentinels, &name, ca.as_deref(), &dir)
                    && port != old
                    && is_master(port, ca.as_deref())
                {
                    return Ok(port);
                }
                if Instant::now() > deadline {
                    return Err(TestkitError::TimedOut {
                        what: format!(
                            "the sentinels promote a new master (the old one was on port {old})"
                        ),
                        timeout: READY_TIMEOUT,
                    });
                }
                std::thread::sleep(POLL);
            }
        })
        .await
        .map_err(|e| servers_error("wait for", "sentinel set-up", Path::new("-"), e.to_string()))?
    }
}

/// A throwaway single Redis server on a free loopback port that a test can stop and start again
/// on the same port (no persistence: a restart starts empty), removed on drop with its directory.
///
/// Use it where a test must take Redis away — restart it under load — without disturbing the
/// shared server other tests use.
///
/// ```no_run
/// # async fn demo() -> Result<(), groundwork_testkit::TestkitError> {
/// let mut redis = groundwork_testkit::TestRedisServer::start().await?;
/// let url = redis.url(); // redis://127.0.0.1:<port>
/// redis.stop()?;
/// redis.resume().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TestRedisServer {
    servers: Servers,
    port: u16,
}

impl TestRedisServer {
    /// Starts the server; returns once it answers `PING`.
    pub async fn start() -> Result<Self, TestkitError> {
        tokio::task::spawn_blocking(|| {
            let mut servers = Servers::new("server", None)?;
            let port = servers.port()?;
            let mut server = Self { servers, port };
            server.spawn()?;
            Ok(server)
        })
        .await
        .map_err(|e| servers_error("start", "server", Path::new("-"), e.to_string()))?
    }

    fn spawn(&mut self) -> Result<(), TestkitError> {
        let dir = self.servers.node_dir(self.port)?;
        let args = self.servers.common_args(self.port, &dir);
        self.servers
            .spawn(self.port, Command::new("redis-server").args(args))?;
        self.servers
            .wait_until(self.port, "answers PING", |connection| {
                Ok(redis::cmd("PING").query::<String>(connection)? == "PONG")
            })
    }

    /// `redis://127.0.0.1:<port>`; the port stays the same across restarts.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server (`SIGKILL`): every client connection is cut, and its keys are gone.
    pub fn stop(&mut self) -> Result<(), TestkitError> {
        self.servers.kill(self.port)
    }

    /// Starts the server again after [`TestRedisServer::stop`], on the same port; returns once
    /// it answers `PING`.
    pub async fn resume(&mut self) -> Result<(), TestkitError> {
        let dir = self.servers.node_dir(self.port)?;
        let args = self.servers.common_args(self.port, &dir);
        self.servers
            .spawn(self.port, Command::new("redis-server").args(args))?;
        let port = self.port;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let answered = tokio::task::spawn_blocking(move || {
                connect(port, None)
                    .and_then(|mut connection| redis::cmd("PING").query::<String>(&mut connection))
            })
            .await
            .map_err(|e| self.servers.error("start", e.to_string()))?;
            if answered.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.servers.error(
                    "start",
                    format!(
                        "the server on port {port} never answered PING within {READY_TIMEOUT:?}: {}",
                        self.servers.log(port)
                    ),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for TestRedisSentinel {
    fn drop(&mut self) {
        if matches!(self.deployment, Deployment::Shared { .. }) {
            let deleted = master_port(&self.sentinels, &self.master_name, None, Path::new("-"))
                .map_err(|e| e.to_string())
                .and_then(|port| delete_prefix(port, &self.prefix).map_err(|e| e.to_string()));
            if let Err(error) = deleted {
                eprintln!(
                    "groundwork-testkit: cannot delete keys {}* on the sentinel master: {error}",
                    self.prefix
                );
            }
        }
    }
}

fn master_port(
    sentinels: &[u16],
    name: &str,
    ca: Option<&[u8]>,
    dir: &Path,
) -> Result<u16, TestkitError> {
    let mut last = String::from("no sentinel answered");
    for port in sentinels {
        let answer = connect(*port, ca).and_then(|mut connection| {
            redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(name)
                .query::<(String, u16)>(&mut connection)
        });
        match answer {
            Ok((_, master)) => return Ok(master),
            Err(error) => last = error.to_string(),
        }
    }
    Err(servers_error("ask", "sentinel set-up", dir, last))
}

fn is_master(port: u16, ca: Option<&[u8]>) -> bool {
    connect(port, ca)
        .and_then(|mut connection| redis::cmd("ROLE").query::<Vec<redis::Value>>(&mut connection))
        .is_ok_and(|role| {
            matches!(role.first(), Some(redis::Value::BulkString(role)) if role.as_slice() == b"master")
        })
}

/// A connection to the server on `port`, over TLS trusting `ca` when given.
fn connect(port: u16, ca: Option<&[u8]>) -> redis::RedisResult<redis::Connection> {
    let client = match ca {
        None => redis::Client::open(format!("redis://127.0.0.1:{port}"))?,
        Some(ca) => redis::Client::build_with_tls(
            format!("rediss://127.0.0.1:{port}"),
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.to_vec()),
            },
        )?,
    };
    client.get_connection_with_timeout(Duration::from_secs(2))
}

/// A key prefix of its own for a test: `gw:test:<random>:`, as [`crate::TestRedis`] makes.
fn test_prefix() -> String {
    format!("gw:test:{}:", crate::cleanup::unique_token())
}

fn join_nodes(ports: &[u16]) -> String {
    ports
        .iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The port of a `redis://host:port` URL or a `host:port` node.
fn port_of(address: &str) -> Option<u16> {
    let authority = address.split_once("://").map_or(address, |(_, rest)| rest);
    let authority = authority.split('/').next()?;
    authority.rsplit_once(':')?.1.parse().ok()
}

/// The ports of a shared deployment's URL and nodes, all on loopback.
fn shared_ports(url: &str, nodes: &str, what: &'static str) -> Result<Vec<u16>, TestkitError> {
    std::iter::once(url)
        .chain(
            nodes
                .split(',')
                .map(str::trim)
                .filter(|node| !node.is_empty()),
        )
        .map(|address| {
            port_of(address).ok_or_else(|| {
                servers_error(
                    "use",
                    what,
                    Path::new("-"),
                    format!("`{address}` names no port"),
                )
            })
        })
        .collect()
}

fn unreachable_shared(url: &str, variable: &'static str, detail: &str) -> TestkitError {
    TestkitError::unreachable(
        crate::Service::Redis,
        url,
        format!(
            "{detail}; the URL is ${variable}, which `cargo xtask infra up --redis-cluster \
             --redis-sentinel` writes: run it again, or unset {variable} for a private deployment"
        ),
    )
}

/// The ports of the masters serving slots in a `CLUSTER NODES` listing, in slot order of their
/// first range.
fn cluster_master_ports(listing: &str) -> Vec<u16> {
    let mut masters: Vec<(u16, u16)> = listing
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(2)?;
            if !flags.split(',').any(|flag| flag == "master") || flags.contains("fail") {
                return None;
            }
            let first_slot = fields.get(8)?.split('-').next()?.parse().ok()?;
            let port = port_of(fields.get(1)?.split('@').next()?)?;
            Some((first_slot, port))
        })
        .collect();
    masters.sort_unstable();
    masters.into_iter().map(|(_, port)| port).collect()
}

/// The slots the `myself` node of a `CLUSTER NODES` listing serves.
fn own_slots(listing: &str) -> Vec<bool> {
    let mut owned = vec![false; 16384];
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if !fields.get(2).is_some_and(|flags| flags.contains("myself")) {
            continue;
        }
        for range in fields
            .iter()
            .skip(8)
            .filter(|range| !range.starts_with('['))
        {
            let (first, last) = range.split_once('-').unwrap_or((range, range));
            if let (Ok(first), Ok(last)) = (first.parse::<usize>(), last.parse::<usize>()) {
                for slot in owned.iter_mut().take(last + 1).skip(first) {
                    *slot = true;
                }
            }
        }
    }
    owned
}

/// The parts of `ranges` (inclusive) that `owned` does not cover, as inclusive ranges.
fn missing_ranges(ranges: &[[u16; 2]], owned: &[bool]) -> Vec<[u16; 2]> {
    let mut missing: Vec<[u16; 2]> = Vec::new();
    for [first, last] in ranges {
        for slot in *first..=*last {
            if owned.get(usize::from(slot)).copied().unwrap_or(false) {
                continue;
            }
            match missing.last_mut() {
                Some(range) if range[1] + 1 == slot => range[1] = slot,
                _ => missing.push([slot, slot]),
            }
        }
    }
    missing
}

/// Every key under `prefix` on the server at the other end of `connection`.
fn scan_prefix(
    connection: &mut redis::Connection,
    prefix: &str,
) -> redis::RedisResult<Vec<String>> {
    let mut keys = Vec::new();
    let mut cursor = 0_u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(500)
            .query(connection)?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// Deletes the keys under `prefix` on the (plain-text, shared) server on `port`, one `DEL` per
/// key since a cluster master refuses several keys of different slots in one command.
fn delete_prefix(port: u16, prefix: &str) -> redis::RedisResult<()> {
    let mut connection = connect(port, None)?;
    for key in scan_prefix(&mut connection, prefix)? {
        let _: i64 = redis::cmd("DEL").arg(&key).query(&mut connection)?;
    }
    Ok(())
}

/// The processes of one deployment and their directory.
#[derive(Debug)]
struct Servers {
    what: &'static str,
    dir: PathBuf,
    tls: Option<TlsFiles>,
    processes: Vec<(u16, Child)>,
    /// Ports handed out but perhaps not yet bound, so that one deployment never picks a port
    /// twice.
    taken: Vec<u16>,
}

impl Servers {
    fn new(what: &'static str, tls: Option<&RedisServerTls>) -> Result<Self, TestkitError> {
        let dir = std::env::temp_dir().join(format!(
            "gw-test-redis-{}-{}",
            std::process::id(),
            crate::cleanup::unique_token()
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| servers_error("create", what, &dir, e.to_string()))?;
        let mut servers = Self {
            what,
            dir,
            tls: None,
            processes: Vec::new(),
            taken: Vec::new(),
        };
        if let Some(tls) = tls {
            let write = |name: &str, contents: &str| {
                let path = servers.dir.join(name);
                std::fs::write(&path, contents)
                    .map_err(|e| servers.error("configure", format!("{}: {e}", path.display())))?;
                Ok::<_, TestkitError>(path)
            };
            let files = TlsFiles {
                ca: write("ca.crt", &tls.ca)?,
                certificate: write("server.crt", &tls.certificate)?,
                key: write("server.key", &tls.key)?,
                ca_pem: tls.ca.clone().into_bytes(),
            };
            servers.tls = Some(files);
        }
        Ok(servers)
    }

    /// Options every data server of the deployment shares: loopback, no persistence, its own
    /// directory and log file; with TLS, a TLS port only and replication over TLS.
    fn common_args(&self, port: u16, dir: &Path) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = match &self.tls {
            None => vec!["--port".into(), port.to_string().into()],
            Some(tls) => vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.to_string().into(),
                "--tls-cert-file".into(),
                tls.certificate.clone().into_os_string(),
                "--tls-key-file".into(),
                tls.key.clone().into_os_string(),
                "--tls-ca-cert-file".into(),
                tls.ca.clone().into_os_string(),
                "--tls-auth-clients".into(),
                "no".into(),
                "--tls-replication".into(),
                "yes".into(),
            ],
        };
        args.extend([
            "--bind".into(),
            "127.0.0.1".into(),
            "--daemonize".into(),
            "no".into(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            dir.as_os_str().to_owned(),
            "--logfile".into(),
            dir.join("redis.log").into_os_string(),
        ]);
        args
    }

    fn error(&self, action: &'static str, detail: String) -> TestkitError {
        servers_error(action, self.what, &self.dir, detail)
    }

    fn port(&mut self) -> Result<u16, TestkitError> {
        loop {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .map_err(|e| self.error("pick a port for", e.to_string()))?
                .port();
            if !self.taken.contains(&port) {
                self.taken.push(port);
                return Ok(port);
            }
        }
    }

    fn node_dir(&self, port: u16) -> Result<PathBuf, TestkitError> {
        let dir = self.dir.join(port.to_string());
        std::fs::create_dir_all(&dir).map_err(|e| self.error("create", e.to_string()))?;
        Ok(dir)
    }

    fn spawn(&mut self, port: u16, command: &mut Command) -> Result<(), TestkitError> {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                self.error(
                    "start",
                    format!("cannot run redis-server (install Debian's `redis-server`): {e}"),
                )
            })?;
        self.processes.push((port, child));
        Ok(())
    }

    fn ports(&self) -> Vec<u16> {
        self.processes.iter().map(|(port, _)| *port).collect()
    }

    fn kill(&mut self, port: u16) -> Result<(), TestkitError> {
        let Some(index) = self.processes.iter().position(|(p, _)| *p == port) else {
            return Err(self.error(
                "stop",
                format!("no server of this set-up listens on {port}"),
            ));
        };
        let (_, mut child) = self.processes.remove(index);
        child
            .kill()
            .and_then(|()| child.wait().map(drop))
            .map_err(|e| self.error("stop", format!("the server on port {port}: {e}")))
    }

    /// Waits until every node of `ports` reports `cluster_state:ok`: all slots served.
    fn wait_until_cluster_ok(&mut self, ports: &[u16]) -> Result<(), TestkitError> {
        for port in ports {
            self.wait_until(*port, "reports cluster_state:ok", |connection| {
                let info: String = redis::cmd("CLUSTER").arg("INFO").query(connection)?;
                Ok(info.lines().any(|line| line.trim() == "cluster_state:ok"))
            })?;
        }
        Ok(())
    }

    /// Polls the server on `port` until `ready` says yes, for at most [`READY_TIMEOUT`]. The error
    /// names the condition and ends with the server's log.
    fn wait_until(
        &mut self,
        port: u16,
        condition: &str,
        ready: impl Fn(&mut redis::Connection) -> redis::RedisResult<bool>,
    ) -> Result<(), TestkitError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let ca = self.tls.as_ref().map(|tls| tls.ca_pem.as_slice());
            let last = match connect(port, ca).and_then(|mut connection| ready(&mut connection)) {
                Ok(true) => return Ok(()),
                Ok(false) => "not yet".to_owned(),
                Err(error) => error.to_string(),
            };
            if let Some((_, child)) = self.processes.iter_mut().find(|(p, _)| *p == port)
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(self.error(
                    "start",
                    format!(
                        "the server on port {port} exited ({status}): {}",
                        self.log(port)
                    ),
                ));
            }
            if Instant::now() > deadline {
                return Err(self.error(
                    "start",
                    format!(
                        "the server on port {port} never {condition} within {READY_TIMEOUT:?} \
                         (last: {last}): {}",
                        self.log(port)
                    ),
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// The end of a server's log, for errors.
    fn log(&self, port: u16) -> String {
        let text = std::fs::read_to_string(self.dir.join(port.to_string()).join("redis.log"))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for (_, child) in &mut self.processes {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs a blocking start-up on Tokio's blocking threads.
async fn on_blocking_thread<T: Send + 'static>(
    what: &'static str,
    start: impl FnOnce() -> Result<T, TestkitError> + Send + 'static,
) -> Result<T, TestkitError> {
    tokio::task::spawn_blocking(start)
        .await
        .map_err(|e| servers_error("start", what, Path::new("-"), e.to_string()))?
}

fn servers_error(
    action: &'static str,
    what: &'static str,
    dir: &Path,
    detail: String,
) -> TestkitError {
    TestkitError::RedisServers {
        action,
        what,
        dir: dir.to_owned(),
        detail,
    }
}
