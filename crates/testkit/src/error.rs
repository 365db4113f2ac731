use std::fmt;
use std::path::PathBuf;

use crate::infra_env::Service;

/// Any error a lower layer (a driver, the OS) reported.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong while creating or cleaning up a test resource.
///
/// Every `url` field holds the URL with its password replaced by `***`, so the error can be
/// printed in CI logs as it is.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum TestkitError {
    /// The server did not answer; usually the local test servers are not running.
    #[error(
        "cannot reach {service} at {url}; start the local test servers with `cargo xtask infra up` \
         or point {env_var} at a running server",
        env_var = service.env_var()
    )]
    Unreachable {
        service: Service,
        url: String,
        #[source]
        source: BoxError,
    },

    /// The server answered but refused an operation the testkit needs.
    #[error("{action} failed on {service} at {url}")]
    Server {
        service: Service,
        url: String,
        action: String,
        #[source]
        source: BoxError,
    },

    /// The server URL cannot be used.
    #[error("invalid {service} url {url}: {reason}")]
    InvalidUrl {
        service: Service,
        url: String,
        reason: String,
    },

    /// The file written by `cargo xtask infra up` exists but cannot be read.
    #[error("cannot read the infra env file {path}")]
    InfraEnvFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// `cargo xtask infra up` did not record a TLS test endpoint (or the test CA).
    #[error(
        "{variable} is not set and the infra env file does not name it; start the TLS test \
         endpoints with `cargo xtask infra up`"
    )]
    MissingTlsEndpoint { variable: &'static str },

    /// The infra env file has a line that is not a `NAME=value` assignment.
    #[error("cannot use the infra env file {path}")]
    InfraEnvSyntax {
        path: PathBuf,
        #[source]
        source: groundwork_config::EnvFileError,
    },

    /// A throwaway PostgreSQL cluster could not be created, started or stopped.
    #[error("cannot {action} the throwaway PostgreSQL cluster in {}: {detail}", dir.display())]
    Cluster {
        action: &'static str,
        dir: PathBuf,
        detail: String,
    },

    /// A throwaway Redis deployment (cluster or sentinel set-up) could not be created, started or
    /// stopped.
    #[error("cannot {action} the throwaway Redis {what} in {}: {detail}", dir.display())]
    RedisServers {
        action: &'static str,
        what: &'static str,
        dir: PathBuf,
        detail: String,
    },

    /// A throwaway ClickHouse server could not be created, started or stopped.
    #[error("cannot {action} the throwaway ClickHouse server in {}: {detail}", dir.display())]
    ClickHouseServer {
        action: &'static str,
        dir: PathBuf,
        detail: String,
    },

    /// A condition a test waited for did not hold in time (or its signal closed first).
    #[error("timed out after {timeout:?} waiting until {what}")]
    TimedOut {
        what: String,
        timeout: std::time::Duration,
    },

    /// A test certificate could not be generated.
    #[error("cannot generate a test certificate")]
    Certificate {
        #[source]
        source: BoxError,
    },

    /// [`plant_canary`](crate::plant_canary) cannot put the canary into the URL.
    #[error("cannot plant a canary in {url}: {reason}")]
    Canary { url: String, reason: String },

    /// A directory a program wrote differs from the one it was made from
    /// ([`same_files`](crate::same_files), [`writes_same_files`](crate::writes_same_files)).
    #[error("{} differs from {}: {detail}", written.display(), expected.display())]
    DifferentFiles {
        written: PathBuf,
        expected: PathBuf,
        detail: String,
    },

    /// The helper thread or runtime that runs cleanup could not be started.
    #[error("cannot run cleanup for {what}")]
    CleanupRuntime {
        what: String,
        #[source]
        source: BoxError,
    },
}

#[cfg(any(
    feature = "postgres",
    feature = "redis",
    feature = "amqp",
    feature = "clickhouse",
    feature = "s3"
))]
impl TestkitError {
    pub(crate) fn unreachable(service: Service, url: &str, source: impl Into<BoxError>) -> Self {
        Self::Unreachable {
            service,
            url: groundwork_config::redact_url(url).into_owned(),
            source: source.into(),
        }
    }

    pub(crate) fn server(
        service: Service,
        url: &str,
        action: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Self::Server {
            service,
            url: groundwork_config::redact_url(url).into_owned(),
            action: action.into(),
            source: source.into(),
        }
    }

    #[cfg(any(
        feature = "postgres",
        feature = "redis",
        feature = "clickhouse",
        feature = "s3"
    ))]
    pub(crate) fn invalid_url(service: Service, url: &str, reason: impl Into<String>) -> Self {
        Self::InvalidUrl {
            service,
            url: groundwork_config::redact_url(url).into_owned(),
            reason: reason.into(),
        }
    }
}

/// Shows the message and every cause, because tests that return `Result<(), TestkitError>` or
/// `Box<dyn Error>` print the error with `{:?}`, and the cause is what tells a developer whether
/// the server is down or rejected the password.
impl fmt::Debug for TestkitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            write!(f, "\n  caused by: {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}
