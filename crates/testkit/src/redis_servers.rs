//! Private Redis deployments started from the installed `redis-server`: a Redis Cluster and a
//! Sentinel set-up, each on free loopback ports, removed on drop.

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

/// A throwaway Redis Cluster: 3 masters, each with one replica, on free loopback ports, started
/// from the installed `redis-server` and `redis-cli` (Debian's `redis-server` package), removed on
/// drop with its directory.
///
/// ```no_run
/// # async fn demo() -> Result<(), groundwork_testkit::TestkitError> {
/// let cluster = groundwork_testkit::TestRedisCluster::start().await?;
/// let url = cluster.url(); // redis://127.0.0.1:<port>, one seed node
/// let more = cluster.nodes(); // the other nodes, `host:port,host:port,...`
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TestRedisCluster {
    servers: Servers,
    masters: Vec<u16>,
}

impl TestRedisCluster {
    /// Starts 6 servers with cluster mode on and joins them: the first three are masters
    /// sharing the 16384 slots, the others their replicas. Returns once every node reports
    /// `cluster_state:ok`.
    pub async fn start() -> Result<Self, TestkitError> {
        tokio::task::spawn_blocking(Self::start_blocking)
            .await
            .map_err(|e| servers_error("start", "cluster", Path::new("-"), e.to_string()))?
    }

    fn start_blocking() -> Result<Self, TestkitError> {
        let mut servers = Servers::new("cluster")?;
        for _ in 0..6 {
            let port = servers.port()?;
            let bus = servers.port()?;
            let dir = servers.node_dir(port)?;
            servers.spawn(
                port,
                Command::new("redis-server")
                    .args(common_args(port, &dir))
                    .args([
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
        for port in &ports {
            servers.wait_until(*port, "reports cluster_state:ok", |connection| {
                let info: String = redis::cmd("CLUSTER").arg("INFO").query(connection)?;
                Ok(info.lines().any(|line| line.trim() == "cluster_state:ok"))
            })?;
        }
        Ok(Self {
            masters: ports[..3].to_vec(),
            servers,
        })
    }

    /// The URL of the first node, `redis://127.0.0.1:<port>`: a seed from which a cluster client
    /// learns the rest.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.servers.ports()[0])
    }

    /// The other nodes as `127.0.0.1:<port>`, comma-separated (the `REDIS_NODES` form).
    pub fn nodes(&self) -> String {
        self.servers.ports()[1..]
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The URLs of the masters the cluster was created with, one per third of the slots.
    pub fn master_urls(&self) -> Vec<String> {
        self.masters
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect()
    }

    /// The directory holding every node's files.
    pub fn dir(&self) -> &Path {
        &self.servers.dir
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
#[derive(Debug)]
pub struct TestRedisSentinel {
    servers: Servers,
    sentinels: Vec<u16>,
}

impl TestRedisSentinel {
    /// Starts the master, its replica and the sentinels; returns once the replica is in sync and
    /// every sentinel knows the replica and the two other sentinels, so a failover can happen.
    pub async fn start() -> Result<Self, TestkitError> {
        tokio::task::spawn_blocking(Self::start_blocking)
            .await
            .map_err(|e| servers_error("start", "sentinel set-up", Path::new("-"), e.to_string()))?
    }

    fn start_blocking() -> Result<Self, TestkitError> {
        let mut servers = Servers::new("sentinel set-up")?;
        let master = servers.port()?;
        let dir = servers.node_dir(master)?;
        servers.spawn(
            master,
            Command::new("redis-server").args(common_args(master, &dir)),
        )?;
        let replica = servers.port()?;
        let dir = servers.node_dir(replica)?;
        servers.spawn(
            replica,
            Command::new("redis-server")
                .args(common_args(replica, &dir))
                .args(["--replicaof", "127.0.0.1", &master.to_string()]),
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
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\n\
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
        Ok(Self { servers, sentinels })
    }

    /// The URL of the first sentinel, `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.sentinels[0])
    }

    /// The other sentinels as `127.0.0.1:<port>`, comma-separated (the `REDIS_NODES` form).
    pub fn nodes(&self) -> String {
        self.sentinels[1..]
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The port of the current master, as the first sentinel that answers says.
    pub async fn master_port(&self) -> Result<u16, TestkitError> {
        let sentinels = self.sentinels.clone();
        let dir = self.servers.dir.clone();
        tokio::task::spawn_blocking(move || master_port(&sentinels, &dir))
            .await
            .map_err(|e| servers_error("ask", "sentinel set-up", Path::new("-"), e.to_string()))?
    }

    /// `SIGKILL`s the current master and returns its port.
    pub fn kill_master(&mut self) -> Result<u16, TestkitError> {
        let port = master_port(&self.sentinels, &self.servers.dir)?;
        self.servers.kill(port)?;
        Ok(port)
    }

    /// Waits until the sentinels name a master other than the one on port `old`, and that
    /// server answers `ROLE` as master; returns its port.
    pub async fn wait_for_new_master(&self, old: u16) -> Result<u16, TestkitError> {
        let sentinels = self.sentinels.clone();
        let dir = self.servers.dir.clone();
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + READY_TIMEOUT;
            loop {
                if let Ok(port) = master_port(&sentinels, &dir)
                    && port != old
                    && is_master(port)
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
            let mut servers = Servers::new("server")?;
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
        self.servers.spawn(
            self.port,
            Command::new("redis-server").args(common_args(self.port, &dir)),
        )?;
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
        self.servers.spawn(
            self.port,
            Command::new("redis-server").args(common_args(self.port, &dir)),
        )?;
        let port = self.port;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let answered = tokio::task::spawn_blocking(move || {
                connect(port)
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

fn master_port(sentinels: &[u16], dir: &Path) -> Result<u16, TestkitError> {
    let mut last = String::from("no sentinel answered");
    for port in sentinels {
        let answer = connect(*port).and_then(|mut connection| {
            redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(SENTINEL_MASTER)
                .query::<(String, u16)>(&mut connection)
        });
        match answer {
            Ok((_, master)) => return Ok(master),
            Err(error) => last = error.to_string(),
        }
    }
    Err(servers_error("ask", "sentinel set-up", dir, last))
}

fn is_master(port: u16) -> bool {
    connect(port)
        .and_then(|mut connection| redis::cmd("ROLE").query::<Vec<redis::Value>>(&mut connection))
        .is_ok_and(|role| {
            matches!(role.first(), Some(redis::Value::BulkString(role)) if role.as_slice() == b"master")
        })
}

fn connect(port: u16) -> redis::RedisResult<redis::Connection> {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))?
        .get_connection_with_timeout(Duration::from_secs(2))
}

/// Options every server of a deployment shares: loopback, no persistence, its own directory and
/// log file.
fn common_args(port: u16, dir: &Path) -> Vec<std::ffi::OsString> {
    [
        "--port".into(),
        port.to_string().into(),
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
    ]
    .into()
}

/// The processes of one deployment and their directory.
#[derive(Debug)]
struct Servers {
    what: &'static str,
    dir: PathBuf,
    processes: Vec<(u16, Child)>,
    /// Ports handed out but perhaps not yet bound, so that one deployment never picks a port
    /// twice.
    taken: Vec<u16>,
}

impl Servers {
    fn new(what: &'static str) -> Result<Self, TestkitError> {
        let dir = std::env::temp_dir().join(format!(
            "gw-test-redis-{}-{}",
            std::process::id(),
            crate::cleanup::unique_token()
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| servers_error("create", what, &dir, e.to_string()))?;
        Ok(Self {
            what,
            dir,
            processes: Vec::new(),
            taken: Vec::new(),
        })
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
            let last = match connect(port).and_then(|mut connection| ready(&mut connection)) {
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
