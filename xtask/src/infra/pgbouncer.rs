//! PgBouncer in **transaction** pooling mode in front of the test PostgreSQL: how platforms that run
//! many replicas connect, and the mode in which `LISTEN` does not work. `groundwork-live`'s fan-out
//! tests load through it.
//!
//! Every database of the backend is reachable under its own name (`* = host=.. port=..`); clients
//! authenticate as `postgres` without a password (loopback only), and PgBouncer logs in to the
//! backend with the credentials of `DATABASE_URL`. The config and the auth file are mode 0600.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::probe::Probe;
use super::{Running, Service, Spec, commands_log, process};

pub(super) const SPEC: Spec = Spec {
    name: "pgbouncer",
    env_var: "PGBOUNCER_URL",
    // 6432 is PgBouncer's usual port, but a PgBouncer found there may pool by session; only ours
    // is known to pool by transaction.
    standard_port: None,
    dedicated_port: 56432,
    probe: Probe::Postgres,
    url: |port| format!("postgres://postgres@127.0.0.1:{port}/postgres"),
    pid_file: "pgbouncer.pid",
    server_log: "pgbouncer.log",
    process_name: "pgbouncer",
    start_timeout: Duration::from_secs(20),
};

/// PgBouncer refuses to run as root; as root it runs as this user, which owns its directory.
const USER: &str = "postgres";

pub(super) fn missing_packages() -> Vec<&'static str> {
    if process::find_program("pgbouncer").is_some() {
        Vec::new()
    } else {
        vec!["pgbouncer"]
    }
}

pub(super) fn start(dir: &Path, running: &[Running]) -> Result<()> {
    let pgbouncer = process::find_program("pgbouncer").context("pgbouncer is not installed")?;
    let Some(backend_url) = running
        .iter()
        .find(|found| found.service == Service::Postgres)
        .map(|found| found.url.as_str())
    else {
        bail!("pgbouncer needs postgres running first");
    };
    let backend = Backend::parse(backend_url)
        .context("cannot tell host, port and user from $DATABASE_URL")?;
    let log = commands_log(dir);
    let config = render_config(dir, &backend);
    let config_file = dir.join("pgbouncer.ini");
    let auth_file = dir.join("users.txt");
    write_private(&config_file, &config)?;
    write_private(&auth_file, "\"postgres\" \"\"\n")?;
    process::chown(USER, dir, &log)?;
    process::ensure_writable_by(USER, dir)?;
    process::run_logged(
        process::as_user(USER, pgbouncer)
            .arg("-d")
            .arg(&config_file),
        &log,
    )
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot set the mode of {}", path.display()))
}

fn render_config(dir: &Path, backend: &Backend) -> String {
    let mut target = format!(
        "host={} port={}",
        conninfo_value(&backend.host),
        backend.port
    );
    if let Some(user) = &backend.user {
        target.push_str(" user=");
        target.push_str(&conninfo_value(user));
    }
    if let Some(password) = &backend.password {
        target.push_str(" password=");
        target.push_str(&conninfo_value(password));
    }
    format!(
        "[databases]\n* = {target}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
         unix_socket_dir =\nauth_type = trust\nauth_file = {auth}\npool_mode = transaction\n\
         max_client_conn = 2000\ndefault_pool_size = 20\n\
         ignore_startup_parameters = extra_float_digits,options\n\
         logfile = {log}\npidfile = {pid}\n",
        port = SPEC.dedicated_port,
        auth = dir.join("users.txt").display(),
        log = dir.join(SPEC.server_log).display(),
        pid = dir.join(SPEC.pid_file).display(),
    )
}

/// A libpq connection-string value: single-quoted, with `\` and `'` escaped.
fn conninfo_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', r"\\").replace('\'', r"\'"))
}

/// Where PgBouncer connects to.
#[derive(Debug, PartialEq, Eq)]
struct Backend {
    host: String,
    port: u16,
    user: Option<String>,
    password: Option<String>,
}

impl Backend {
    fn parse(url: &str) -> Option<Self> {
        let endpoint = super::probe::parse_url(url)?;
        let (_, rest) = url.split_once("://")?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (user, password) = match authority.rsplit_once('@') {
            Some((userinfo, _)) => match userinfo.split_once(':') {
                Some((user, password)) => {
                    (Some(percent_decode(user)?), Some(percent_decode(password)?))
                }
                None => (Some(percent_decode(userinfo)?), None),
            },
            None => (None, None),
        };
        Some(Self {
            host: endpoint.host,
            port: endpoint.port,
            user: user.filter(|user| !user.is_empty()),
            password,
        })
    }
}

/// `text` with its `%XX` escapes decoded; `None` when the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

#[cfg(test)]
mod tests {
    use super::{Backend, conninfo_value};

    #[test]
    fn the_backend_comes_from_the_database_url() {
        assert_eq!(
            Backend::parse("postgres://app:it%27s%40@db.internal:6543/app?sslmode=disable"),
            Some(Backend {
                host: "db.internal".to_owned(),
                port: 6543,
                user: Some("app".to_owned()),
                password: Some("it's@".to_owned()),
            })
        );
        assert_eq!(
            Backend::parse("postgres://127.0.0.1/postgres"),
            Some(Backend {
                host: "127.0.0.1".to_owned(),
                port: 5432,
                user: None,
                password: None,
            })
        );
        assert_eq!(conninfo_value(r"a'b\c"), r"'a\'b\\c'");
    }
}
