//! Redis deployments that `infra up` starts only when asked (`--redis-cluster`,
//! `--redis-sentinel`): a Redis Cluster of 3 masters with one replica each, and a Sentinel set-up
//! (one master, one replica, three sentinels monitoring it as `gwmaster`), from the installed
//! `redis-server` and `redis-cli`, on fixed loopback ports, without persistence.
//!
//! Each node runs from `<target>/infra/<deployment>/<port>/` with its own PID file and log, so
//! `down` stops exactly the processes these files name. A deployment is all-or-nothing: one that
//! an interrupted `up` left half started is stopped and started again from an empty directory.
//! Once running, a later `up` without the flag keeps it and keeps its URLs in the env file; only
//! `down` stops it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::probe::{self, Endpoint, Probe};
use super::{commands_log, process};

/// How long a deployment may take to agree on its state (slots assigned, sentinels aware of the
/// replica and of each other).
const READY_TIMEOUT: Duration = Duration::from_mins(1);

/// The name the sentinels monitor the master under; the test kit's `SENTINEL_MASTER`.
pub(super) const SENTINEL_MASTER: &str = "gwmaster";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Deployment {
    /// Nodes on 57001-57006 (cluster bus on 57101-57106): the first three are masters.
    Cluster,
    /// Master on 57201, replica on 57202, sentinels on 57211-57213.
    Sentinel,
}

/// What one server of a deployment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    ClusterNode { bus_port: u16 },
    Master,
    Replica { of: u16 },
    Sentinel { master: u16 },
}

#[derive(Debug, Clone, Copy)]
struct Node {
    port: u16,
    role: Role,
}

/// A deployment found running, as `up` and `status` report it.
#[derive(Debug)]
pub(super) struct RunningDeployment {
    pub(super) deployment: Deployment,
    /// The PIDs of its servers, in node order.
    pub(super) pids: Vec<u32>,
}

impl Deployment {
    pub(super) const ALL: [Deployment; 2] = [Deployment::Cluster, Deployment::Sentinel];

    pub(super) fn name(self) -> &'static str {
        match self {
            Deployment::Cluster => "redis-cluster",
            Deployment::Sentinel => "redis-sentinel",
        }
    }

    fn nodes(self) -> Vec<Node> {
        match self {
            Deployment::Cluster => (0..6)
                .map(|i| Node {
                    port: 57001 + i,
                    role: Role::ClusterNode {
                        bus_port: 57101 + i,
                    },
                })
                .collect(),
            Deployment::Sentinel => {
                let master = 57201;
                let mut nodes = vec![
                    Node {
                        port: master,
                        role: Role::Master,
                    },
                    Node {
                        port: 57202,
                        role: Role::Replica { of: master },
                    },
                ];
                nodes.extend((57211..=57213).map(|port| Node {
                    port,
                    role: Role::Sentinel { master },
                }));
                nodes
            }
        }
    }

    /// The port clients start from: a seed node, or the first sentinel.
    fn entry_port(self) -> u16 {
        match self {
            Deployment::Cluster => 57001,
            Deployment::Sentinel => 57211,
        }
    }

    /// The env file's variables for this deployment: the URL and the other nodes, in the form
    /// `REDIS_URL` and `REDIS_NODES` take them, and the sentinels' master name.
    pub(super) fn env_vars(self) -> Vec<(&'static str, String)> {
        let others = |ports: &[u16]| {
            ports
                .iter()
                .map(|port| format!("127.0.0.1:{port}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let url = format!("redis://127.0.0.1:{}", self.entry_port());
        match self {
            Deployment::Cluster => {
                let ports: Vec<u16> = self.nodes().iter().skip(1).map(|node| node.port).collect();
                vec![
                    ("REDIS_CLUSTER_URL", url),
                    ("REDIS_CLUSTER_NODES", others(&ports)),
                ]
            }
            Deployment::Sentinel => {
                let ports: Vec<u16> = self
                    .nodes()
                    .iter()
                    .filter(|node| matches!(node.role, Role::Sentinel { .. }))
                    .skip(1)
                    .map(|node| node.port)
                    .collect();
                vec![
                    ("REDIS_SENTINEL_URL", url),
                    ("REDIS_SENTINEL_NODES", others(&ports)),
                    ("REDIS_SENTINEL_MASTER", SENTINEL_MASTER.to_owned()),
                ]
            }
        }
    }

    /// The URL shown by `up` and `status`, with the number of servers.
    pub(super) fn describe(self) -> String {
        format!(
            "redis://127.0.0.1:{} (+{} nodes)",
            self.entry_port(),
            self.nodes().len() - 1
        )
    }

    fn dir(self, infra_dir: &Path) -> PathBuf {
        infra_dir.join(self.name())
    }
}

fn node_dir(dir: &Path, node: Node) -> PathBuf {
    dir.join(node.port.to_string())
}

fn pid_file(dir: &Path, node: Node) -> PathBuf {
    node_dir(dir, node).join("redis.pid")
}

/// The PIDs of the deployment's servers that run, in node order; `None` for a node whose server
/// does not run.
fn own_pids(deployment: Deployment, dir: &Path) -> Vec<Option<u32>> {
    deployment
        .nodes()
        .into_iter()
        .map(|node| {
            process::read_pid(&pid_file(dir, node))
                .filter(|&pid| process::process_runs(pid, "redis-server"))
        })
        .collect()
}

/// The deployment as an earlier `up` left it: running when every server's PID file names a live
/// `redis-server` and the entry node answers.
pub(super) fn find(deployment: Deployment, infra_dir: &Path) -> Option<RunningDeployment> {
    let pids: Option<Vec<u32>> = own_pids(deployment, &deployment.dir(infra_dir))
        .into_iter()
        .collect();
    let pids = pids?;
    probe::answers(Probe::Tcp, &Endpoint::local(deployment.entry_port()))
        .then_some(RunningDeployment { deployment, pids })
}

/// `up` for the deployments: each one an earlier `up` started is kept, each one `asked` for is
/// started; with how it came to run, for `up`'s table.
pub(super) fn up(
    infra_dir: &Path,
    asked: impl Fn(Deployment) -> bool,
) -> Result<Vec<(RunningDeployment, &'static str)>> {
    let mut deployments = Vec::new();
    for deployment in Deployment::ALL {
        if let Some(found) = find(deployment, infra_dir) {
            deployments.push((found, "reused (earlier infra up)"));
        } else if asked(deployment) {
            let missing = missing_packages();
            if !missing.is_empty() {
                bail!(
                    "not installed: {list}; install with `apt-get install --no-install-recommends \
                     {list}`",
                    list = missing.join(" ")
                );
            }
            deployments.push((start(deployment, infra_dir)?, "started"));
        }
    }
    Ok(deployments)
}

/// Missing Debian packages for the deployments.
pub(super) fn missing_packages() -> Vec<&'static str> {
    if process::find_program("redis-server").is_some()
        && process::find_program("redis-cli").is_some()
    {
        Vec::new()
    } else {
        vec!["redis-server"]
    }
}

/// Starts `deployment` from an empty directory and waits until it is usable; any servers of an
/// interrupted earlier start are stopped first.
pub(super) fn start(deployment: Deployment, infra_dir: &Path) -> Result<RunningDeployment> {
    let dir = deployment.dir(infra_dir);
    stop_servers(deployment, &dir)?;
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let nodes = deployment.nodes();
    for node in &nodes {
        let ports = match node.role {
            Role::ClusterNode { bus_port } => vec![node.port, bus_port],
            _ => vec![node.port],
        };
        for port in ports {
            if probe::answers(Probe::Tcp, &Endpoint::local(port)) {
                bail!(
                    "port {port}, which {} uses, is taken by a process `infra up` did not start \
                     here (perhaps `infra up` in another checkout); stop it and try again",
                    deployment.name()
                );
            }
        }
    }
    println!(
        "starting {} on 127.0.0.1:{}-{} in {}",
        deployment.name(),
        nodes.first().map_or(0, |node| node.port),
        nodes.last().map_or(0, |node| node.port),
        dir.display()
    );
    let log = commands_log(&dir);
    let result = match deployment {
        Deployment::Cluster => start_cluster(&dir, &nodes, &log),
        Deployment::Sentinel => start_sentinel(&dir, &nodes, &log),
    };
    if let Err(error) = result {
        // Leave nothing half started behind.
        let _ = stop_servers(deployment, &dir);
        return Err(error.context(format!(
            "cannot start {}; logs are in {}/<port>/redis.log and {}",
            deployment.name(),
            dir.display(),
            log.display()
        )));
    }
    find(deployment, infra_dir).with_context(|| {
        format!(
            "{} started, but not all of its servers run",
            deployment.name()
        )
    })
}

fn start_cluster(dir: &Path, nodes: &[Node], log: &Path) -> Result<()> {
    for node in nodes {
        let Role::ClusterNode { bus_port } = node.role else {
            continue;
        };
        let node_dir = node_dir(dir, *node);
        spawn(
            node_dir.as_path(),
            server_command(*node, &node_dir)
                .args(["--cluster-enabled", "yes", "--cluster-port"])
                .arg(bus_port.to_string())
                .arg("--cluster-config-file")
                .arg(node_dir.join("nodes.conf"))
                .args(["--cluster-node-timeout", "2000"]),
            log,
        )?;
    }
    for node in nodes {
        wait_for(node.port, "answers PING", |port| {
            Ok(cli(port, &["PING"])?.trim() == "PONG")
        })?;
    }
    let mut create = Command::new(redis_cli()?);
    create.args(["--cluster", "create"]);
    create.args(nodes.iter().map(|node| format!("127.0.0.1:{}", node.port)));
    create.args(["--cluster-replicas", "1", "--cluster-yes"]);
    process::run_logged(&mut create, log)?;
    for node in nodes {
        wait_for(node.port, "reports cluster_state:ok", |port| {
            Ok(cli(port, &["CLUSTER", "INFO"])?
                .lines()
                .any(|line| line.trim() == "cluster_state:ok"))
        })?;
    }
    Ok(())
}

fn start_sentinel(dir: &Path, nodes: &[Node], log: &Path) -> Result<()> {
    for node in nodes {
        let node_dir = node_dir(dir, *node);
        fs::create_dir_all(&node_dir)
            .with_context(|| format!("cannot create {}", node_dir.display()))?;
        match node.role {
            Role::Master => spawn(&node_dir, &mut server_command(*node, &node_dir), log)?,
            Role::Replica { of } => {
                spawn(
                    &node_dir,
                    server_command(*node, &node_dir)
                        .args(["--replicaof", "127.0.0.1"])
                        .arg(of.to_string()),
                    log,
                )?;
                wait_for(node.port, "is in sync with the master", |port| {
                    Ok(cli(port, &["INFO", "replication"])?
                        .lines()
                        .any(|line| line.trim() == "master_link_status:up"))
                })?;
            }
            Role::Sentinel { master } => {
                // Sentinels rewrite their configuration file, so each has its own.
                let conf = node_dir.join("sentinel.conf");
                fs::write(
                    &conf,
                    format!(
                        "sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master} 2\n\
                         sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
                         sentinel failover-timeout {SENTINEL_MASTER} 10000\n\
                         sentinel parallel-syncs {SENTINEL_MASTER} 1\n"
                    ),
                )
                .with_context(|| format!("cannot write {}", conf.display()))?;
                let mut command = Command::new(redis_server()?);
                command.arg(&conf).arg("--sentinel");
                add_common_args(&mut command, *node, &node_dir);
                spawn(&node_dir, &mut command, log)?;
            }
            Role::ClusterNode { .. } => bail!("a cluster node in a sentinel set-up"),
        }
    }
    for node in nodes {
        if !matches!(node.role, Role::Sentinel { .. }) {
            continue;
        }
        wait_for(
            node.port,
            "knows the replica and the other sentinels",
            |port| {
                let fields = cli(port, &["SENTINEL", "MASTER", SENTINEL_MASTER])?;
                let fields: Vec<&str> = fields.lines().map(str::trim).collect();
                let value = |name: &str| {
                    fields
                        .iter()
                        .position(|field| *field == name)
                        .and_then(|i| fields.get(i + 1))
                        .and_then(|value| value.parse::<u32>().ok())
                };
                Ok(value("num-slaves").unwrap_or(0) >= 1
                    && value("num-other-sentinels").unwrap_or(0) >= 2)
            },
        )?;
    }
    Ok(())
}

fn redis_server() -> Result<PathBuf> {
    process::find_program("redis-server").context("redis-server is not installed")
}

fn redis_cli() -> Result<PathBuf> {
    process::find_program("redis-cli").context("redis-cli is not installed")
}

/// A `redis-server` command for a data node.
fn server_command(node: Node, node_dir: &Path) -> Command {
    let mut command = Command::new("redis-server");
    if let Ok(program) = redis_server() {
        command = Command::new(program);
    }
    add_common_args(&mut command, node, node_dir);
    command.args(["--save", "", "--appendonly", "no"]);
    command
}

/// Options every server shares: loopback, daemonized, its own directory, PID file and log.
fn add_common_args(command: &mut Command, node: Node, node_dir: &Path) {
    command
        .args(["--port", &node.port.to_string(), "--bind", "127.0.0.1"])
        .args(["--daemonize", "yes", "--dir"])
        .arg(node_dir)
        .arg("--pidfile")
        .arg(node_dir.join("redis.pid"))
        .arg("--logfile")
        .arg(node_dir.join("redis.log"));
}

fn spawn(node_dir: &Path, command: &mut Command, log: &Path) -> Result<()> {
    fs::create_dir_all(node_dir)
        .with_context(|| format!("cannot create {}", node_dir.display()))?;
    process::run_logged(command, log)
}

/// `redis-cli -p <port> <args>`'s output, failing when it cannot reach the server.
fn cli(port: u16, args: &[&str]) -> Result<String> {
    let output = Command::new(redis_cli()?)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .context("cannot run redis-cli")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() || text.starts_with("Could not connect") {
        bail!("redis-cli -p {port} failed: {}", text.trim());
    }
    Ok(text)
}

/// Polls the server on `port` until `ready` says yes, for at most [`READY_TIMEOUT`].
fn wait_for(port: u16, condition: &str, ready: impl Fn(u16) -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let last = match ready(port) {
            Ok(true) => return Ok(()),
            Ok(false) => "not yet".to_owned(),
            Err(error) => format!("{error:#}"),
        };
        if Instant::now() >= deadline {
            bail!(
                "the server on port {port} never {condition} within {} s (last: {last})",
                READY_TIMEOUT.as_secs()
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Stops every server of `deployment` that an earlier `up` started from `dir`; how many.
fn stop_servers(deployment: Deployment, dir: &Path) -> Result<usize> {
    let mut stopped = 0;
    let mut failures = Vec::new();
    for (node, pid) in deployment
        .nodes()
        .into_iter()
        .zip(own_pids(deployment, dir))
    {
        let Some(pid) = pid else {
            continue;
        };
        match process::terminate(pid, Duration::from_secs(20)) {
            Ok(()) => stopped += 1,
            Err(error) => failures.push(format!("port {}: {error:#}", node.port)),
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(stopped)
}

/// `down` for one deployment: stops its servers and removes its directory (a cluster node's
/// `nodes.conf` and the sentinels' rewritten configuration describe a deployment that no longer
/// runs).
pub(super) fn stop(deployment: Deployment, infra_dir: &Path) -> Result<usize> {
    let dir = deployment.dir(infra_dir);
    let stopped = stop_servers(deployment, &dir)?;
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    Ok(stopped)
}

/// What `status` says about `deployment`: its URL, how many of its servers answer, and the PIDs
/// `up` started.
pub(super) fn status_row(deployment: Deployment, infra_dir: &Path) -> [String; 4] {
    let nodes = deployment.nodes();
    let answering = nodes
        .iter()
        .filter(|node| probe::answers(Probe::Tcp, &Endpoint::local(node.port)))
        .count();
    let pids = own_pids(deployment, &deployment.dir(infra_dir));
    let own = pids.iter().flatten().count();
    let (url, answers) = if answering == 0 {
        (
            "-".to_owned(),
            "nothing (start with --".to_owned() + deployment.name() + ")",
        )
    } else {
        (
            deployment.describe(),
            format!("{answering} of {} servers", nodes.len()),
        )
    };
    let own = if own == 0 {
        "no".to_owned()
    } else {
        format!("yes, {own} of {} servers", nodes.len())
    };
    [deployment.name().to_owned(), url, answers, own]
}

#[cfg(test)]
mod tests {
    use super::Deployment;

    #[test]
    fn the_env_file_names_the_entry_node_and_the_others_in_the_redis_nodes_form() {
        assert_eq!(
            Deployment::Cluster.env_vars(),
            [
                ("REDIS_CLUSTER_URL", "redis://127.0.0.1:57001".to_owned()),
                (
                    "REDIS_CLUSTER_NODES",
                    "127.0.0.1:57002,127.0.0.1:57003,127.0.0.1:57004,127.0.0.1:57005,\
                     127.0.0.1:57006"
                        .to_owned()
                ),
            ]
        );
        assert_eq!(
            Deployment::Sentinel.env_vars(),
            [
                ("REDIS_SENTINEL_URL", "redis://127.0.0.1:57211".to_owned()),
                (
                    "REDIS_SENTINEL_NODES",
                    "127.0.0.1:57212,127.0.0.1:57213".to_owned()
                ),
                ("REDIS_SENTINEL_MASTER", "gwmaster".to_owned()),
            ]
        );
    }
}
