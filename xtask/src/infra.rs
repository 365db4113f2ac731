//! `cargo xtask infra up|down|status`: the servers that Groundwork's integration tests talk to.
//!
//! `up` looks for each service in turn at the URL in its environment variable, on its standard local
//! port, and at a server that an earlier `up` started; only when none answers does it start a server
//! of its own, natively (no containers), on a dedicated port with data and logs in
//! `<target>/infra/<service>/`. PgBouncer (transaction pooling) is started in front of whichever
//! PostgreSQL answers. Missing servers are installed with apt-get (as root) and pip unless
//! `--no-install` is given. The URLs end up in `<target>/infra/env` (see [`crate::infra_env`]).
//!
//! A Redis Cluster and a Redis Sentinel set-up, several servers each, start only when asked
//! (`--redis-cluster`, `--redis-sentinel`; see [`redis_deployments`]) and stay until `down`.
//!
//! Architecture invariant: `down` only stops processes named by PID files under `<target>/infra/`, so a
//! server that `up` reused is never touched.

mod clickhouse;
mod install;
mod lookup;
mod pgbouncer;
mod postgres;
mod probe;
pub(crate) mod process;
mod rabbitmq;
mod redis;
mod redis_deployments;
mod s3;
mod service;
mod start;
mod tls;

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};

use self::lookup::{Lookup, Origin, Running, lookup, own_pid, remove_stale_pid_file};
use self::redis_deployments::Deployment;
use self::service::{Service, Spec, commands_log};
use crate::infra_env;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum InfraCommand {
    /// Reuse or start postgres, pgbouncer, redis, rabbitmq, clickhouse, s3 (moto) and the TLS endpoints, and,
    /// when asked, a Redis Cluster and a Sentinel set-up; write target/infra/env
    Up {
        /// Fail with the command to run instead of installing missing servers
        #[arg(long)]
        no_install: bool,
        /// Also start a Redis Cluster (3 masters, 3 replicas, 127.0.0.1:57001-57006);
        /// `REDIS_CLUSTER_URL` and `REDIS_CLUSTER_NODES` in target/infra/env
        #[arg(long)]
        redis_cluster: bool,
        /// Also start a Redis Sentinel set-up (master 57201, replica 57202, sentinels
        /// 57211-57213 watching `gwmaster`); `REDIS_SENTINEL_URL`, `REDIS_SENTINEL_NODES`
        /// and `REDIS_SENTINEL_MASTER` in target/infra/env
        #[arg(long)]
        redis_sentinel: bool,
    },
    /// Stop the servers that `infra up` started; reused servers are left alone
    Down,
    /// Show which server answers for each service and whether `infra up` started it
    Status,
}

pub(crate) fn run(command: &InfraCommand) -> Result<()> {
    let infra_dir = crate::target_dir()?.join("infra");
    match *command {
        InfraCommand::Up {
            no_install,
            redis_cluster,
            redis_sentinel,
        } => up(
            &infra_dir,
            UpOptions {
                install: !no_install,
                redis_cluster,
                redis_sentinel,
            },
        ),
        InfraCommand::Down => down(&infra_dir),
        InfraCommand::Status => {
            status(&infra_dir);
            Ok(())
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct UpOptions {
    /// Install missing servers rather than fail.
    install: bool,
    /// Start the Redis Cluster unless it runs already.
    redis_cluster: bool,
    /// Start the Redis Sentinel set-up unless it runs already.
    redis_sentinel: bool,
}

impl UpOptions {
    fn asks_for(self, deployment: Deployment) -> bool {
        match deployment {
            Deployment::Cluster => self.redis_cluster,
            Deployment::Sentinel => self.redis_sentinel,
        }
    }
}

fn up(infra_dir: &Path, options: UpOptions) -> Result<()> {
    fs::create_dir_all(infra_dir)
        .with_context(|| format!("cannot create {}", infra_dir.display()))?;
    let mut running = Vec::new();
    let mut to_start = Vec::new();
    for service in Service::ALL {
        let spec = service.spec();
        let dir = infra_dir.join(spec.name);
        match lookup(service, infra_dir) {
            Lookup::Answering(found) => running.push(found),
            Lookup::OwnNotAnswering { pid } => {
                // An earlier `up` may have been interrupted while the server was starting.
                start::wait_until_answers(spec, &dir)
                    .context("run `cargo xtask infra down` and try again")?;
                let url = (spec.url)(spec.dedicated_port);
                running.push(Running {
                    service,
                    url,
                    origin: Origin::EarlierUp { pid },
                });
            }
            Lookup::ForeignOnDedicatedPort => {
                // The probe checked the protocol, so this is a server of the right kind, most
                // likely from `infra up` in another checkout (CI clones next to a developer's
                // tree): share it instead of failing. `down` here will not stop it.
                running.push(Running {
                    service,
                    url: (spec.url)(spec.dedicated_port),
                    origin: Origin::DedicatedPort,
                });
            }
            Lookup::Nothing => to_start.push(service),
        }
    }

    install::missing(&to_start, infra_dir, options)?;
    for service in to_start {
        let started = start::server(service, infra_dir, &running)?;
        running.push(started);
    }
    running.sort_by_key(|found| found.service);

    let deployments = redis_deployments::up(infra_dir, |deployment| options.asks_for(deployment))?;

    let env_file = infra_env::path(infra_dir);
    tls::ensure_certificates(infra_dir)?;
    tls::verify_endpoints(infra_dir, &running)?;
    let ca_cert = tls::ca_cert(infra_dir).display().to_string();
    let deployment_vars: Vec<(&str, String)> = deployments
        .iter()
        .flat_map(|(found, _)| found.deployment.env_vars())
        .collect();
    let vars = running
        .iter()
        .map(|found| (found.service.spec().env_var, found.url.as_str()))
        .chain([(tls::CA_ENV_VAR, ca_cert.as_str())])
        .chain(
            deployment_vars
                .iter()
                .map(|(name, value)| (*name, value.as_str())),
        );
    infra_env::write_atomically(&env_file, &infra_env::render(vars)?)?;

    let mut rows: Vec<[String; 4]> = running
        .iter()
        .map(|found| {
            let (origin, pid) = match found.origin {
                Origin::EnvVar => (format!("reused (${})", found.service.spec().env_var), None),
                Origin::StandardPort => ("reused (standard port)".to_owned(), None),
                Origin::DedicatedPort => ("reused (started elsewhere)".to_owned(), None),
                Origin::EarlierUp { pid } => ("reused (earlier infra up)".to_owned(), Some(pid)),
                Origin::Started { pid } => ("started".to_owned(), Some(pid)),
            };
            let pid = pid.map_or_else(|| "-".to_owned(), |pid| pid.to_string());
            [
                found.service.spec().name.to_owned(),
                groundwork_config::redact_url(&found.url).into_owned(),
                origin,
                pid,
            ]
        })
        .collect();
    rows.extend(deployments.iter().map(|(found, origin)| {
        let pids: Vec<String> = found.pids.iter().map(u32::to_string).collect();
        [
            found.deployment.name().to_owned(),
            found.deployment.describe(),
            (*origin).to_owned(),
            pids.join(","),
        ]
    }));
    println!();
    crate::table::print(["SERVICE", "URL", "ORIGIN", "PID"], &rows);
    println!(
        "\nURLs written to {} (`source` it to use them in a shell)",
        env_file.display()
    );
    Ok(())
}

fn down(infra_dir: &Path) -> Result<()> {
    let mut failures = Vec::new();
    for service in Service::ALL {
        let spec = service.spec();
        let dir = infra_dir.join(spec.name);
        let pid_file = dir.join(spec.pid_file);
        let Some(pid) = own_pid(spec, &dir) else {
            if remove_stale_pid_file(&pid_file)? {
                println!(
                    "{}: not running; removed stale {}",
                    spec.name,
                    pid_file.display()
                );
            } else {
                println!("{}: not started by infra up", spec.name);
            }
            continue;
        };
        println!("{}: stopping pid {pid}", spec.name);
        let stopped = service.stop(&dir, pid).and_then(|()| {
            // pg_ctl and rabbitmqctl clean up after themselves; the others leave the file behind.
            if pid_file.exists() {
                fs::remove_file(&pid_file)
                    .with_context(|| format!("cannot remove {}", pid_file.display()))?;
            }
            Ok(())
        });
        match stopped {
            Ok(()) => println!("{}: stopped", spec.name),
            Err(error) => failures.push(format!("{}: {error:#}", spec.name)),
        }
    }
    for deployment in Deployment::ALL {
        match redis_deployments::stop(deployment, infra_dir) {
            Ok(0) => println!("{}: not started by infra up", deployment.name()),
            Ok(count) => println!("{}: stopped {count} servers", deployment.name()),
            Err(error) => failures.push(format!("{}: {error:#}", deployment.name())),
        }
    }
    // The file described what `up` arranged; after `down` some of its URLs would point at nothing.
    let env_file = infra_env::path(infra_dir);
    if env_file.exists() {
        fs::remove_file(&env_file)
            .with_context(|| format!("cannot remove {}", env_file.display()))?;
    }
    if !failures.is_empty() {
        bail!("could not stop everything:\n{}", failures.join("\n"));
    }
    Ok(())
}

fn status(infra_dir: &Path) {
    let mut rows: Vec<[String; 4]> = Vec::from(Service::ALL.map(|service| {
        let spec = service.spec();
        let own = own_pid(spec, &infra_dir.join(spec.name));
        let (url, answers) = match lookup(service, infra_dir) {
            Lookup::Answering(found) => {
                let source = match found.origin {
                    Origin::EnvVar => format!("${}", spec.env_var),
                    Origin::StandardPort => "standard port".to_owned(),
                    Origin::DedicatedPort => "started elsewhere".to_owned(),
                    Origin::EarlierUp { .. } | Origin::Started { .. } => "infra up".to_owned(),
                };
                (
                    groundwork_config::redact_url(&found.url).into_owned(),
                    source,
                )
            }
            Lookup::OwnNotAnswering { .. } => {
                ("-".to_owned(), "nothing (ours is not answering)".to_owned())
            }
            Lookup::ForeignOnDedicatedPort => (
                (spec.url)(spec.dedicated_port),
                "a server infra up did not start".to_owned(),
            ),
            Lookup::Nothing => ("-".to_owned(), "nothing".to_owned()),
        };
        let own = own.map_or_else(|| "no".to_owned(), |pid| format!("yes, pid {pid}"));
        [spec.name.to_owned(), url, answers, own]
    }));
    rows.extend(
        Deployment::ALL.map(|deployment| redis_deployments::status_row(deployment, infra_dir)),
    );
    crate::table::print(["SERVICE", "URL", "ANSWERS", "STARTED BY INFRA UP"], &rows);
}
