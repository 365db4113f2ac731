//! The services `infra` knows, and what it knows about each: its [`Spec`], and which module
//! installs, starts and stops its server.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use super::Running;
use super::probe::Probe;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Service {
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
pub(super) struct Spec {
    pub(super) name: &'static str,
    pub(super) env_var: &'static str,
    /// Where a server installed the usual way listens; moto has no such place.
    pub(super) standard_port: Option<u16>,
    /// Where the server that `up` starts listens, chosen not to clash with a standard installation.
    pub(super) dedicated_port: u16,
    pub(super) probe: Probe,
    /// The URL clients use for a local server on `port`.
    pub(super) url: fn(u16) -> String,
    /// The server's PID file, relative to the service's directory.
    pub(super) pid_file: &'static str,
    /// Where the server logs, relative to the service's directory; shown when it fails to start.
    pub(super) server_log: &'static str,
    /// A word in the server's command line, to tell our process from an unrelated one that was given
    /// a PID from a stale PID file.
    pub(super) process_name: &'static str,
    pub(super) start_timeout: Duration,
}

impl Service {
    /// In start order: the TLS endpoints come after the servers they front.
    pub(super) const ALL: [Service; 9] = [
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

    pub(super) fn spec(self) -> &'static Spec {
        match self {
            Service::Postgres => &super::postgres::SPEC,
            Service::PgBouncer => &super::pgbouncer::SPEC,
            Service::Redis => &super::redis::SPEC,
            Service::RabbitMq => &super::rabbitmq::SPEC,
            Service::ClickHouse => &super::clickhouse::SPEC,
            Service::S3 => &super::s3::SPEC,
            Service::RedisTls => &super::tls::REDIS_SPEC,
            Service::AmqpTls => &super::tls::AMQPS_SPEC,
            Service::ClickHouseTls => &super::tls::CLICKHOUSE_SPEC,
        }
    }

    /// Debian packages this service's server needs that are not installed.
    pub(super) fn missing_packages(self) -> Vec<&'static str> {
        match self {
            Service::Postgres => super::postgres::missing_packages(),
            Service::PgBouncer => super::pgbouncer::missing_packages(),
            Service::Redis => super::redis::missing_packages(),
            Service::RabbitMq => super::rabbitmq::missing_packages(),
            Service::ClickHouse => super::clickhouse::missing_packages(),
            Service::S3 => super::s3::missing_packages(),
            Service::RedisTls | Service::AmqpTls | Service::ClickHouseTls => {
                super::tls::missing_packages(self)
            }
        }
    }

    /// Starts the server in `dir`; returns once it has been launched, not necessarily answering yet.
    pub(super) fn start(self, dir: &Path, running: &[Running]) -> Result<()> {
        match self {
            Service::Postgres => super::postgres::start(dir),
            Service::PgBouncer => super::pgbouncer::start(dir, running),
            Service::Redis => super::redis::start(dir),
            Service::RabbitMq => super::rabbitmq::start(dir),
            Service::ClickHouse => super::clickhouse::start(dir),
            Service::S3 => super::s3::start(dir),
            Service::RedisTls | Service::AmqpTls | Service::ClickHouseTls => {
                super::tls::start(self, dir, running)
            }
        }
    }

    /// Stops the server running from `dir` as `pid` and waits for it to exit.
    pub(super) fn stop(self, dir: &Path, pid: u32) -> Result<()> {
        match self {
            Service::Postgres => super::postgres::stop(dir),
            Service::RabbitMq => super::rabbitmq::stop(dir),
            Service::PgBouncer
            | Service::Redis
            | Service::ClickHouse
            | Service::S3
            | Service::RedisTls
            | Service::AmqpTls
            | Service::ClickHouseTls => super::process::terminate(pid, Duration::from_secs(20)),
        }
    }
}

/// The log of the commands xtask ran for a service (`initdb`, `pg_ctl`, `rabbitmqctl`, ...).
pub(super) fn commands_log(dir: &Path) -> PathBuf {
    dir.join("commands.log")
}
