//! `cargo xtask infra up|down|status`: the servers that Groundwork's integration tests talk to.
//!
//! `up` looks for each service in turn at the URL in its environment variable, on its standard local
//! port, and at a server that an earlier `up` started; only when none answers does it start a server
//! of its own, natively (no containers), on a dedicated port with data and logs in
//! `<target>/infra/<service>/`. PgBouncer (transaction pooling) is started in front of whichever
//! PostgreSQL answers. Missing servers are installed with apt-get (as root) and pip unless
//! `--no-install` is given. The URLs end up in `<target>/infra/env` as `export KEY=value` lines, the
//! value quoted by `groundwork_config::quote_env_value` (single quotes, only when it holds a
//! character a shell would interpret), so that a shell and `groundwork_config::parse_env_file` —
//! the one reader of the file, used by the test kit and by `cargo xtask config|flags|backup` —
//! read the same values.
//!
//! Architecture invariant: `down` only stops processes named by PID files under `<target>/infra/`, so a
//! server that `up` reused is never touched.

mod clickhouse;
mod pgbouncer;
mod postgres;
mod probe;
pub(crate) mod process;
mod rabbitmq;
mod redis;
mod s3;
mod tls;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use self::probe::{Endpoint, Probe};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum InfraCommand {
    /// Reuse or start postgres, pgbouncer, redis, rabbitmq, clickhouse, s3 (moto) and the TLS endpoints; write
    /// target/infra/env
    Up {
        /// Fail with the command to run instead of installing missing servers
        #[arg(long)]
        no_install: bool,
    },
    /// Stop the servers that `infra up` started; reused servers are left alone
    Down,
    /// Show which server answers for each service and whether `infra up` started it
    Status,
}

pub(crate) fn run(command: &InfraCommand) -> Result<()> {
    let infra_dir = crate::target_dir()?.join("infra");
    match *command {
        InfraCommand::Up { no_install } => up(
            &infra_dir,
            UpOptions {
                install: !no_install,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Service {
    Postgres,
    /// PgBouncer in transaction pooling mode in front of PostgreSQL.
    PgBouncer,
    Redis,
    RabbitMq,
    ClickHouse,
    S3,
    /// Redis's own TLS port, on a server of its own.
    RedisTls,
    /// stunnel terminating TLS in front of RabbitMQ.
    AmqpTls,
    /// stunnel terminating TLS in front of ClickHouse's HTTP interface.
    ClickHouseTls,
}

/// What xtask knows about a service apart from how to install, start and stop its server.
#[derive(Debug)]
struct Spec {
    name: &'static str,
    env_var: &'static str,
    /// Where a server installed the usual way listens; moto has no such place.
    standard_port: Option<u16>,
    /// Where the server that `up` starts listens, chosen not to clash with a standard installation.
    dedicated_port: u16,
    probe: Probe,
    /// The URL clients use for a local server on `port`.
    url: fn(u16) -> String,
    /// The server's PID file, relative to the service's directory.
    pid_file: &'static str,
    /// Where the server logs, relative to the service's directory; shown when it fails to start.
    server_log: &'static str,
    /// A word in the server's command line, to tell our process from an unrelated one that was given
    /// a PID from a stale PID file.
    process_name: &'static str,
    start_timeout: Duration,
}

impl Service {
    /// In start order: the TLS endpoints come after the servers they front.
    const ALL: [Service; 9] = [
        Service::Postgres,
        Service::PgBouncer,
        Service::Redis,
        Service::RabbitMq,
        Service::ClickHouse,
        Service::S3,
        Service::RedisTls,
        Service::AmqpTls,
        Service::ClickHouseTls,
    ];

    fn spec(self) -> &'static Spec {
        match self {
            Service::Postgres => &postgres::SPEC,
            Service::PgBouncer => &pgbouncer::SPEC,
            Service::Redis => &redis::SPEC,
            Service::RabbitMq => &rabbitmq::SPEC,
            Service::ClickHouse => &clickhouse::SPEC,
            Service::S3 => &s3::SPEC,
            Service::RedisTls => &tls::REDIS_SPEC,
            Service::AmqpTls => &tls::AMQPS_SPEC,
            Service::ClickHouseTls => &tls::CLICKHOUSE_SPEC,
        }
    }

    /// Debian packages this service's server needs that are not installed.
    fn missing_packages(self) -> Vec<&'static str> {
        match self {
            Service::Postgres => postgres::missing_packages(),
            Service::PgBouncer => pgbouncer::missing_packages(),
            Service::Redis => redis::missing_packages(),
            Service::RabbitMq => rabbitmq::missing_packages(),
            Service::ClickHouse => clickhouse::missing_packages(),
            Service::S3 => s3::missing_packages(),
            Service::RedisTls | Service::AmqpTls | Service::ClickHouseTls => {
                tls::missing_packages(self)
            }
        }
    }

    /// Starts the server in `dir`; returns once it has been launched, not necessarily answering yet.
    fn start(self, dir: &Path, running: &[Running]) -> Result<()> {
        match self {
            Service::Postgres => postgres::start(dir),
            Service::PgBouncer => pgbouncer::start(dir, running),
            Service::Redis => redis::start(dir),
            Service::RabbitMq => rabbitmq::start(dir),
            Service::ClickHouse => clickhouse::start(dir),
            Service::S3 => s3::start(dir),
            Service::RedisTls | Service::AmqpTls | Service::ClickHouseTls => {
                tls::start(self, dir, running)
            }
        }
    }

    /// Stops the server running from `dir` as `pid` and waits for it to exit.
    fn stop(self, dir: &Path, pid: u32) -> Result<()> {
        match self {
            Service::Postgres => postgres::stop(dir),
            Service::RabbitMq => rabbitmq::stop(dir),
            Service::PgBouncer
            | Service::Redis
            | Service::ClickHouse
            | Service::S3
            | Service::RedisTls
            | Service::AmqpTls
            | Service::ClickHouseTls => process::terminate(pid, Duration::from_secs(20)),
        }
    }
}

/// The log of the commands xtask ran for a service (`initdb`, `pg_ctl`, `rabbitmqctl`, ...).
fn commands_log(dir: &Path) -> PathBuf {
    dir.join("commands.log")
}

/// How a service's server came to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    EnvVar,
    StandardPort,
    /// A server of the right kind answers on our dedicated port but was started elsewhere, e.g. by
    /// `infra up` in another checkout on the same machine.
    DedicatedPort,
    EarlierUp {
        pid: u32,
    },
    Started {
        pid: u32,
    },
}

#[derive(Debug)]
struct Running {
    service: Service,
    url: String,
    origin: Origin,
}

#[derive(Debug)]
enum Lookup {
    Answering(Running),
    /// An earlier `up` started a server that is alive but does not answer (yet).
    OwnNotAnswering {
        pid: u32,
    },
    /// Something that `up` did not start listens on the dedicated port.
    ForeignOnDedicatedPort,
    Nothing,
}

/// Where a server for `service` answers, in order of preference.
fn lookup(service: Service, infra_dir: &Path) -> Lookup {
    let spec = service.spec();
    let own = own_pid(spec, &infra_dir.join(spec.name));
    if let Some(url) = std::env::var(spec.env_var)
        .ok()
        .filter(|url| !url.is_empty())
    {
        // Only the host and port are printed: the URL may hold a password and CI logs are public.
        match probe::parse_url(&url) {
            Some(endpoint) if probe::answers(spec.probe, &endpoint) => {
                // A developer who sourced target/infra/env points the variable at our own server.
                let origin = match own {
                    Some(pid) if endpoint.is_loopback() && endpoint.port == spec.dedicated_port => {
                        Origin::EarlierUp { pid }
                    }
                    _ => Origin::EnvVar,
                };
                return Lookup::Answering(Running {
                    service,
                    url,
                    origin,
                });
            }
            Some(endpoint) => eprintln!(
                "note: {} points at {}:{}, which does not answer; looking further",
                spec.env_var, endpoint.host, endpoint.port
            ),
            None => eprintln!(
                "note: cannot tell host and port from {}; looking further",
                spec.env_var
            ),
        }
    }
    if let Some(port) = spec.standard_port
        && probe::answers(spec.probe, &Endpoint::local(port))
    {
        return Lookup::Answering(Running {
            service,
            url: (spec.url)(port),
            origin: Origin::StandardPort,
        });
    }
    let dedicated_answers = probe::answers(spec.probe, &Endpoint::local(spec.dedicated_port));
    match (own, dedicated_answers) {
        (Some(pid), true) => Lookup::Answering(Running {
            service,
            url: (spec.url)(spec.dedicated_port),
            origin: Origin::EarlierUp { pid },
        }),
        (Some(pid), false) => Lookup::OwnNotAnswering { pid },
        (None, true) => Lookup::ForeignOnDedicatedPort,
        (None, false) => Lookup::Nothing,
    }
}

/// The PID of the server that an earlier `up` started for `spec` in `dir`, if it still runs.
fn own_pid(spec: &Spec, dir: &Path) -> Option<u32> {
    process::read_pid(&dir.join(spec.pid_file))
        .filter(|&pid| process::process_runs(pid, spec.process_name))
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
                wait_until_answers(spec, &dir)
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

    install_missing(&to_start, infra_dir, options)?;
    for service in to_start {
        let started = start(service, infra_dir, &running)?;
        running.push(started);
    }
    running.sort_by_key(|found| found.service);

    let env_file = infra_dir.join("env");
    tls::ensure_certificates(infra_dir)?;
    tls::verify_endpoints(infra_dir, &running)?;
    let mut contents = render_env_file(&running);
    let ca_cert = tls::ca_cert(infra_dir).display().to_string();
    contents.extend([
        "export ",
        tls::CA_ENV_VAR,
        "=",
        &groundwork_config::quote_env_value(&ca_cert),
        "\n",
    ]);
    write_atomically(&env_file, &contents)?;

    let rows = running.iter().map(|found| {
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
    });
    println!();
    print_table(["SERVICE", "URL", "ORIGIN", "PID"], rows);
    println!(
        "\nURLs written to {} (`source` it to use them in a shell)",
        env_file.display()
    );
    Ok(())
}

fn install_missing(to_start: &[Service], infra_dir: &Path, options: UpOptions) -> Result<()> {
    let packages: BTreeSet<_> = to_start
        .iter()
        .flat_map(|service| service.missing_packages())
        .collect();
    let s3_dir = infra_dir.join(s3::SPEC.name);
    let needs_moto = to_start.contains(&Service::S3) && !s3::moto_installed(&s3_dir);
    let log = infra_dir.join("install.log");

    if !packages.is_empty() {
        let list = packages.iter().copied().collect::<Vec<_>>().join(" ");
        if !options.install {
            bail!(
                "not installed: {list}; install with `apt-get install --no-install-recommends {list}` \
                 or run `cargo xtask infra up` without --no-install"
            );
        }
        if !process::is_root() {
            bail!(
                "not installed: {list}; install with `sudo apt-get install --no-install-recommends {list}` \
                 (xtask installs packages only when run as root)"
            );
        }
        println!("installing {list}; output goes to {}", log.display());
        let apt_get = || {
            let mut command = Command::new("apt-get");
            command.env("DEBIAN_FRONTEND", "noninteractive");
            command
        };
        process::run_printed(apt_get().arg("update"), &log)?;
        process::run_printed(
            apt_get()
                .args(["install", "-y", "--no-install-recommends"])
                .args(&packages),
            &log,
        )?;
        let still_missing: BTreeSet<_> = to_start
            .iter()
            .flat_map(|service| service.missing_packages())
            .collect();
        if !still_missing.is_empty() {
            bail!(
                "installed {list}, but the servers of {} are still not where xtask looks; see {}",
                still_missing.into_iter().collect::<Vec<_>>().join(" "),
                log.display()
            );
        }
    }

    if needs_moto {
        if !options.install {
            bail!(
                "moto is not installed in {venv}; run `python3 -m venv {venv} && {venv}/bin/pip install \
                 'moto[server]'` or run `cargo xtask infra up` without --no-install",
                venv = s3::venv_dir(&s3_dir).display()
            );
        }
        println!("installing moto; output goes to {}", log.display());
        s3::install_moto(&s3_dir, &log)?;
    }
    Ok(())
}

fn start(service: Service, infra_dir: &Path, running: &[Running]) -> Result<Running> {
    let spec = service.spec();
    let dir = infra_dir.join(spec.name);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // No live server owns this PID file (`lookup` checked), and some servers refuse to start over one.
    let pid_file = dir.join(spec.pid_file);
    if pid_file.exists() {
        fs::remove_file(&pid_file)
            .with_context(|| format!("cannot remove stale {}", pid_file.display()))?;
    }

    println!(
        "starting {} on 127.0.0.1:{} in {}",
        spec.name,
        spec.dedicated_port,
        dir.display()
    );
    service
        .start(&dir, running)
        .with_context(|| format!("cannot start {}; see {}", spec.name, log_hint(spec, &dir)))?;
    wait_until_answers(spec, &dir)?;
    // Redis listens before it writes its PID file, so give the file a moment to appear.
    let pid_deadline = Instant::now() + Duration::from_secs(5);
    let mut pid = own_pid(spec, &dir);
    while pid.is_none() && Instant::now() < pid_deadline {
        thread::sleep(Duration::from_millis(50));
        pid = own_pid(spec, &dir);
    }
    let pid = pid.with_context(|| {
        format!(
            "{} answers, but {} names no running {} process",
            spec.name,
            pid_file.display(),
            spec.name
        )
    })?;
    Ok(Running {
        service,
        url: (spec.url)(spec.dedicated_port),
        origin: Origin::Started { pid },
    })
}

/// Polls the dedicated port until the server answers, its process dies, or the start timeout passes.
fn wait_until_answers(spec: &Spec, dir: &Path) -> Result<()> {
    // Every server writes its PID file early in start-up (xtask writes moto's), so a missing one means
    // a daemonizing server failed before or right after writing it (clickhouse when a port is taken);
    // there is no other way to learn the PID of what `--daemon` forked.
    const PID_FILE_GRACE: Duration = Duration::from_secs(15);
    let endpoint = Endpoint::local(spec.dedicated_port);
    let started = Instant::now();
    let deadline = started + spec.start_timeout;
    let mut pid_seen = false;
    loop {
        if probe::answers(spec.probe, &endpoint) {
            return Ok(());
        }
        match process::read_pid(&dir.join(spec.pid_file)) {
            Some(pid) if !process::process_runs(pid, spec.process_name) => bail!(
                "{} (pid {pid}) exited while starting; see {}",
                spec.name,
                log_hint(spec, dir)
            ),
            Some(_) => pid_seen = true,
            None if pid_seen || started.elapsed() >= PID_FILE_GRACE => bail!(
                "{} exited while starting (no PID file at {}); see {}",
                spec.name,
                dir.join(spec.pid_file).display(),
                log_hint(spec, dir)
            ),
            None => {}
        }
        if Instant::now() >= deadline {
            bail!(
                "{} did not answer on 127.0.0.1:{} within {} s; see {}",
                spec.name,
                spec.dedicated_port,
                spec.start_timeout.as_secs(),
                log_hint(spec, dir)
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn log_hint(spec: &Spec, dir: &Path) -> String {
    format!(
        "{} and {}",
        dir.join(spec.server_log).display(),
        commands_log(dir).display()
    )
}

fn down(infra_dir: &Path) -> Result<()> {
    let mut failures = Vec::new();
    for service in Service::ALL {
        let spec = service.spec();
        let dir = infra_dir.join(spec.name);
        let pid_file = dir.join(spec.pid_file);
        let Some(pid) = own_pid(spec, &dir) else {
            if pid_file.exists() {
                fs::remove_file(&pid_file)
                    .with_context(|| format!("cannot remove stale {}", pid_file.display()))?;
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
    // The file described what `up` arranged; after `down` some of its URLs would point at nothing.
    let env_file = infra_dir.join("env");
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
    let rows = Service::ALL.map(|service| {
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
    });
    print_table(["SERVICE", "URL", "ANSWERS", "STARTED BY INFRA UP"], rows);
}

fn print_table<const N: usize>(header: [&str; N], rows: impl IntoIterator<Item = [String; N]>) {
    let rows: Vec<[String; N]> = rows.into_iter().collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let print_row = |cells: &[&str]| {
        let line: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    };
    print_row(&header);
    for row in &rows {
        print_row(&row.each_ref().map(String::as_str));
    }
}

fn render_env_file(running: &[Running]) -> String {
    let header =
        "# Written by `cargo xtask infra up`; `source` it to use these servers from a shell.\n";
    let exports = running.iter().map(|found| {
        format!(
            "export {}={}\n",
            found.service.spec().env_var,
            groundwork_config::quote_env_value(&found.url)
        )
    });
    std::iter::once(header.to_owned()).chain(exports).collect()
}

/// Writes `path` through a temporary file, so that a reader never sees half of it.
fn write_atomically(path: &Path, contents: &str) -> Result<()> {
    let temporary = path.with_extension("tmp");
    fs::write(&temporary, contents)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    fs::rename(&temporary, path).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::{Origin, Running, Service, render_env_file};

    #[test]
    fn env_file_exports_urls_and_quotes_only_what_a_shell_would_interpret() {
        let running = [
            Running {
                service: Service::Postgres,
                url: "postgres://postgres@127.0.0.1:55432/postgres".to_owned(),
                origin: Origin::Started { pid: 1 },
            },
            Running {
                service: Service::RabbitMq,
                url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
                origin: Origin::StandardPort,
            },
            Running {
                service: Service::Redis,
                url: "redis://:it's&$secret@cache:6379".to_owned(),
                origin: Origin::EnvVar,
            },
        ];
        let text = render_env_file(&running);
        let exports: Vec<&str> = text.lines().filter(|line| !line.starts_with('#')).collect();
        assert_eq!(
            exports,
            [
                "export DATABASE_URL=postgres://postgres@127.0.0.1:55432/postgres",
                "export RABBITMQ_URL=amqp://guest:guest@127.0.0.1:5672/%2f",
                r"export REDIS_URL='redis://:it'\''s&$secret@cache:6379'",
            ]
        );
    }

    /// What `infra up` writes, the test kit and `cargo xtask config|flags|backup` read back.
    #[test]
    fn every_url_reads_back_as_written() -> anyhow::Result<()> {
        let urls = [
            "",
            "postgres://app:it's@db/app",
            "postgres://app:\"quoted\"@db/app",
            "redis://:$HOME${X}@cache:6379",
            r"amqp://u:back\slash\@mq/%2f",
            r"amqp://u:\'@mq/%2f",
            "http://u:two words@ch:8123",
            "http://u:a=b@ch:8123/?x=1&y=2",
            "http://u:#hash@ch:8123#frag",
            "http://u:new\nline@ch:8123",
            "http://u:cr\r\n@ch:8123",
        ];
        for url in urls {
            let running = [Running {
                service: Service::Postgres,
                url: url.to_owned(),
                origin: Origin::EnvVar,
            }];
            let text = render_env_file(&running);
            assert_eq!(
                groundwork_config::parse_env_file(&text)?,
                [("DATABASE_URL".to_owned(), url.to_owned())],
                "{text}"
            );
        }
        Ok(())
    }
}
