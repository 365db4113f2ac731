//! Finding the test servers: environment variables, the file `cargo xtask infra up` writes, and
//! the standard local defaults, in that order.
//!
//! The resolution itself is pure ([`InfraEnv::from_vars`], [`InfraEnv::with_env_file`]) so it is
//! tested with plain maps; only [`InfraEnv::discover`] touches the process environment and the
//! file system. The file is read by `groundwork_config::parse_env_file`, the reader of the quoting
//! `xtask` writes it with.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::TestkitError;

/// Variable naming an explicit infra env file, overriding the search under `target/`.
pub const INFRA_ENV_VAR: &str = "GROUNDWORK_INFRA_ENV";

/// A kind of server the testkit hands out resources on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Service {
    Postgres,
    /// PgBouncer in transaction pooling mode in front of the PostgreSQL server.
    PgBouncer,
    Redis,
    RabbitMq,
    ClickHouse,
    S3,
}

impl Service {
    /// Every service, in the order of the feature table.
    pub const ALL: [Service; 6] = [
        Service::Postgres,
        Service::PgBouncer,
        Service::Redis,
        Service::RabbitMq,
        Service::ClickHouse,
        Service::S3,
    ];

    /// The environment variable (and infra env file key) holding the server URL.
    pub fn env_var(self) -> &'static str {
        match self {
            Service::Postgres => "DATABASE_URL",
            Service::PgBouncer => "PGBOUNCER_URL",
            Service::Redis => "REDIS_URL",
            Service::RabbitMq => "RABBITMQ_URL",
            Service::ClickHouse => "CLICKHOUSE_URL",
            Service::S3 => "S3_ENDPOINT",
        }
    }

    /// The URL used when neither the environment nor the infra env file names one.
    pub fn default_url(self) -> &'static str {
        match self {
            Service::Postgres => "postgres://postgres@127.0.0.1:5432/postgres",
            // Where `cargo xtask infra up` starts one.
            Service::PgBouncer => "postgres://postgres@127.0.0.1:56432/postgres",
            Service::Redis => "redis://127.0.0.1:6379",
            Service::RabbitMq => "amqp://guest:guest@127.0.0.1:5672/%2f",
            Service::ClickHouse => "http://127.0.0.1:8123",
            Service::S3 => "http://127.0.0.1:59000",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::Postgres => "postgresql",
            Service::PgBouncer => "pgbouncer",
            Service::Redis => "redis",
            Service::RabbitMq => "rabbitmq",
            Service::ClickHouse => "clickhouse",
            Service::S3 => "s3",
        })
    }
}

/// Where a resolved server URL came from; useful when a test reports the wrong server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlOrigin {
    /// The service's environment variable, e.g. `DATABASE_URL`.
    EnvVar,
    /// The infra env file at this path.
    EnvFile(PathBuf),
    /// [`Service::default_url`].
    Default,
}

/// The server URLs known to a test process: environment variables first, then the infra env
/// file written by `cargo xtask infra up`, then the standard local defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InfraEnv {
    vars: HashMap<String, String>,
    file_path: Option<PathBuf>,
    file_vars: HashMap<String, String>,
}

impl InfraEnv {
    /// Uses `vars` as the environment; no file is read.
    pub fn from_vars(vars: HashMap<String, String>) -> Self {
        Self {
            vars,
            file_path: None,
            file_vars: HashMap::new(),
        }
    }

    /// Adds the contents of an infra env file, consulted after the environment. A line that is
    /// not a `NAME=value` assignment is an error naming the file and the line.
    pub fn with_env_file(
        mut self,
        path: impl Into<PathBuf>,
        contents: &str,
    ) -> Result<Self, TestkitError> {
        let path = path.into();
        self.file_vars = groundwork_config::parse_env_file(contents)
            .map_err(|source| TestkitError::InfraEnvSyntax {
                path: path.clone(),
                source,
            })?
            .into_iter()
            .collect();
        self.file_path = Some(path);
        Ok(self)
    }

    /// Reads the process environment and, if one is found, the infra env file.
    ///
    /// The file is `$GROUNDWORK_INFRA_ENV` if set, else `infra/env` in `$CARGO_TARGET_DIR`, else
    /// `target/infra/env` in the nearest ancestor of `$CARGO_MANIFEST_DIR` (or the current
    /// directory) that has one. A missing file is not an error: the defaults apply.
    pub fn discover() -> Result<Self, TestkitError> {
        let names = Service::ALL.iter().map(|service| service.env_var()).chain([
            "REDIS_CLUSTER_URL",
            "REDIS_CLUSTER_NODES",
            "REDIS_SENTINEL_URL",
            "REDIS_SENTINEL_NODES",
            "REDIS_SENTINEL_MASTER",
            INFRA_ENV_VAR,
            "CARGO_TARGET_DIR",
            "CARGO_MANIFEST_DIR",
        ]);
        let vars: HashMap<String, String> = names
            .filter_map(|name| Some((name.to_owned(), std::env::var(name).ok()?)))
            .collect();

        let start = match non_empty(&vars, "CARGO_MANIFEST_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        };
        let env = Self::from_vars(vars);
        let Some(path) = env.locate_env_file(&start) else {
            return Ok(env);
        };
        match std::fs::read_to_string(&path) {
            Ok(contents) => env.with_env_file(path, &contents),
            // Only an explicitly named file must exist; a vanished default file means "no file".
            Err(err)
                if err.kind() == std::io::ErrorKind::NotFound
                    && non_empty(&env.vars, INFRA_ENV_VAR).is_none() =>
            {
                Ok(env)
            }
            Err(source) => Err(TestkitError::InfraEnvFile { path, source }),
        }
    }

    /// The URL of `service`.
    pub fn url(&self, service: Service) -> String {
        self.resolve(service).0
    }

    /// The value of `name`: the environment first, then the infra env file; `None` when neither
    /// sets it (or sets it empty).
    pub fn var(&self, name: &str) -> Option<String> {
        non_empty(&self.vars, name)
            .or_else(|| non_empty(&self.file_vars, name))
            .map(str::to_owned)
    }

    /// The URL of `service` and where it came from.
    pub fn resolve(&self, service: Service) -> (String, UrlOrigin) {
        let key = service.env_var();
        if let Some(url) = non_empty(&self.vars, key) {
            return (url.to_owned(), UrlOrigin::EnvVar);
        }
        if let (Some(url), Some(path)) = (non_empty(&self.file_vars, key), &self.file_path) {
            return (url.to_owned(), UrlOrigin::EnvFile(path.clone()));
        }
        (service.default_url().to_owned(), UrlOrigin::Default)
    }

    /// Finds the infra env file for a process whose crate (or working directory) is `start`,
    /// using this environment's `GROUNDWORK_INFRA_ENV` and `CARGO_TARGET_DIR`; see
    /// [`InfraEnv::discover`]. A relative `CARGO_TARGET_DIR` is looked up in `start` and its
    /// ancestors because cargo resolves it against the directory it was started in, which a
    /// test does not know.
    pub fn locate_env_file(&self, start: &Path) -> Option<PathBuf> {
        let vars = &self.vars;
        if let Some(explicit) = non_empty(vars, INFRA_ENV_VAR) {
            return Some(PathBuf::from(explicit));
        }
        if let Some(target_dir) = non_empty(vars, "CARGO_TARGET_DIR") {
            let target_dir = Path::new(target_dir);
            let found = if target_dir.is_absolute() {
                Some(target_dir.join("infra/env")).filter(|path| path.is_file())
            } else {
                first_existing(start, &target_dir.join("infra/env"))
            };
            if found.is_some() {
                return found;
            }
        }
        first_existing(start, Path::new("target/infra/env"))
    }

    /// The infra env file that was read, if any.
    pub fn env_file(&self) -> Option<&Path> {
        self.file_path.as_deref()
    }
}

fn first_existing(start: &Path, relative: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|dir| dir.join(relative))
        .find(|path| path.is_file())
}

fn non_empty<'a>(vars: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    vars.get(key)
        .map(String::as_str)
        .filter(|value| !value.is_empty())
}

/// The parts of a `scheme://userinfo@host/path?query` URL the testkit needs, found without a URL
/// library so that odd but valid server URLs pass through unchanged.
#[cfg(any(feature = "postgres", feature = "clickhouse", feature = "s3", test))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UrlParts<'a> {
    /// Everything up to and including `://`.
    pub(crate) scheme: &'a str,
    /// `user` or `user:password`, without the `@`.
    pub(crate) userinfo: Option<&'a str>,
    /// `host[:port]`.
    pub(crate) host_port: &'a str,
    /// From the first `/` after the authority up to `?` or `#`; may be empty.
    pub(crate) path: &'a str,
    /// `?query#fragment`, possibly empty.
    pub(crate) rest: &'a str,
}

#[cfg(any(feature = "postgres", feature = "clickhouse", feature = "s3", test))]
impl<'a> UrlParts<'a> {
    pub(crate) fn parse(url: &'a str) -> Option<Self> {
        let scheme_end = url.find("://")? + 3;
        let after_scheme = &url[scheme_end..];
        let authority_len = after_scheme
            .find(['/', '?', '#'])
            .unwrap_or(after_scheme.len());
        let authority = &after_scheme[..authority_len];
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => (Some(userinfo), host_port),
            None => (None, authority),
        };
        let tail = &after_scheme[authority_len..];
        let path_len = tail.find(['?', '#']).unwrap_or(tail.len());
        Some(Self {
            scheme: &url[..scheme_end],
            userinfo,
            host_port,
            path: &tail[..path_len],
            rest: &tail[path_len..],
        })
    }

    /// The user name and password in the userinfo, if any.
    #[cfg(any(feature = "clickhouse", test))]
    pub(crate) fn credentials(&self) -> (Option<&'a str>, Option<&'a str>) {
        match self.userinfo {
            None => (None, None),
            Some(userinfo) => match userinfo.split_once(':') {
                Some((user, password)) => (Some(user), Some(password)),
                None => (Some(userinfo), None),
            },
        }
    }

    /// The URL without the userinfo.
    #[cfg(any(feature = "clickhouse", test))]
    pub(crate) fn without_userinfo(&self) -> String {
        format!(
            "{}{}{}{}",
            self.scheme, self.host_port, self.path, self.rest
        )
    }

    /// The URL with `path` (which must start with `/`) in place of the current path.
    #[cfg(any(feature = "postgres", test))]
    pub(crate) fn with_path(&self, path: &str) -> String {
        let userinfo = self.userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        format!(
            "{}{userinfo}{}{path}{}",
            self.scheme, self.host_port, self.rest
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn env_var_wins_over_env_file_and_default() -> Result<(), TestkitError> {
        let env = InfraEnv::from_vars(vars(&[("DATABASE_URL", "postgres://env")]))
            .with_env_file("/x/env", "export DATABASE_URL=postgres://file\n")?;
        assert_eq!(
            env.resolve(Service::Postgres),
            ("postgres://env".to_owned(), UrlOrigin::EnvVar)
        );
        Ok(())
    }

    #[test]
    fn env_file_wins_over_default_and_empty_env_var() -> Result<(), TestkitError> {
        let env = InfraEnv::from_vars(vars(&[("REDIS_URL", "")]))
            .with_env_file("/x/env", "export REDIS_URL=redis://127.0.0.1:56379\n")?;
        assert_eq!(
            env.resolve(Service::Redis),
            (
                "redis://127.0.0.1:56379".to_owned(),
                UrlOrigin::EnvFile(PathBuf::from("/x/env"))
            )
        );
        Ok(())
    }

    #[test]
    fn default_is_used_when_nothing_names_the_server() {
        let env = InfraEnv::default();
        for service in Service::ALL {
            assert_eq!(
                env.resolve(service),
                (service.default_url().to_owned(), UrlOrigin::Default)
            );
        }
        assert_eq!(env.url(Service::S3), "http://127.0.0.1:59000");
    }

    #[test]
    fn env_file_values_are_read_as_a_shell_reads_them() -> Result<(), TestkitError> {
        // A password with a quote, as `cargo xtask infra up` writes it for a reused server.
        let env = InfraEnv::default().with_env_file(
            "/x/env",
            "# written by cargo xtask infra up\n\
             export DATABASE_URL='postgres://app:it'\\''s$x@127.0.0.1:5432/postgres'\n\
             \n\
             export CLICKHOUSE_URL='http://127.0.0.1:18123'\n\
             S3_ENDPOINT=\"http://127.0.0.1:59000\"\n",
        )?;
        assert_eq!(
            env.url(Service::Postgres),
            "postgres://app:it's$x@127.0.0.1:5432/postgres"
        );
        assert_eq!(env.url(Service::ClickHouse), "http://127.0.0.1:18123");
        assert_eq!(env.url(Service::S3), "http://127.0.0.1:59000");
        Ok(())
    }

    #[test]
    fn a_line_that_is_not_an_assignment_is_an_error_naming_file_and_line() {
        let result = InfraEnv::default().with_env_file("/x/env", "A=1\nnot a pair\n");
        let Err(error) = result else {
            panic!("a line that is not an assignment must be refused");
        };
        let message = format!(
            "{error}: {}",
            std::error::Error::source(&error)
                .map(ToString::to_string)
                .unwrap_or_default()
        );
        assert!(
            message.contains("/x/env") && message.contains("line 2"),
            "{message}"
        );
    }

    #[test]
    fn url_path_is_replaced_keeping_credentials_and_query() {
        let parts = UrlParts::parse("postgres://u:p@h:5432/postgres?sslmode=disable");
        assert_eq!(
            parts.map(|p| p.with_path("/gw_test_1")),
            Some("postgres://u:p@h:5432/gw_test_1?sslmode=disable".to_owned())
        );
        let parts = UrlParts::parse("postgres://h");
        assert_eq!(
            parts.map(|p| p.with_path("/db")),
            Some("postgres://h/db".to_owned())
        );
    }

    #[test]
    fn userinfo_is_split_and_removable() {
        let parts = UrlParts::parse("http://default:pw@127.0.0.1:8123/");
        assert_eq!(
            parts.map(|p| p.credentials()),
            Some((Some("default"), Some("pw")))
        );
        assert_eq!(
            parts.map(|p| p.without_userinfo()),
            Some("http://127.0.0.1:8123/".to_owned())
        );
    }
}
