//! TLS endpoints for the TLS tests: a test CA and server certificate made with `openssl` at `up`
//! time (never committed), Redis's own TLS port (`redis-tls`), and stunnel terminating TLS in front
//! of RabbitMQ (`amqps`) and ClickHouse's HTTP interface (`clickhouse-tls`).
//!
//! The certificates live in `<target>/infra/tls/`: `ca.crt` (named by `GROUNDWORK_TEST_CA_CERT` in
//! the env file), `server.crt`/`server.key` (for `127.0.0.1` and `localhost`), and
//! `client.crt`/`client.key` (a client certificate from the same CA, for mutual TLS).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::probe::Probe;
use super::{Running, Service, Spec, commands_log, process};

/// The variable naming the test CA's certificate file in the env file.
pub(super) const CA_ENV_VAR: &str = "GROUNDWORK_TEST_CA_CERT";

pub(super) const REDIS_SPEC: Spec = Spec {
    name: "redis-tls",
    env_var: "REDIS_TLS_URL",
    standard_port: None,
    dedicated_port: 56380,
    probe: Probe::Tcp,
    url: |port| format!("rediss://127.0.0.1:{port}"),
    pid_file: "redis.pid",
    server_log: "redis.log",
    process_name: "redis-server",
    start_timeout: Duration::from_secs(20),
};

pub(super) const AMQPS_SPEC: Spec = Spec {
    name: "amqps",
    env_var: "RABBITMQ_TLS_URL",
    standard_port: None,
    dedicated_port: 56671,
    probe: Probe::Tcp,
    url: |port| format!("amqps://guest:guest@127.0.0.1:{port}/%2f"),
    pid_file: "stunnel.pid",
    server_log: "stunnel.log",
    process_name: "stunnel",
    start_timeout: Duration::from_secs(20),
};

pub(super) const CLICKHOUSE_SPEC: Spec = Spec {
    name: "clickhouse-tls",
    env_var: "CLICKHOUSE_TLS_URL",
    standard_port: None,
    dedicated_port: 58443,
    probe: Probe::Tcp,
    url: |port| format!("https://127.0.0.1:{port}"),
    pid_file: "stunnel.pid",
    server_log: "stunnel.log",
    process_name: "stunnel",
    start_timeout: Duration::from_secs(20),
};

/// Where the test certificates live.
pub(super) fn cert_dir(infra_dir: &Path) -> PathBuf {
    infra_dir.join("tls")
}

pub(super) fn ca_cert(infra_dir: &Path) -> PathBuf {
    cert_dir(infra_dir).join("ca.crt")
}

pub(super) fn missing_packages(service: Service) -> Vec<&'static str> {
    let mut missing = Vec::new();
    if process::find_program("openssl").is_none() {
        missing.push("openssl");
    }
    match service {
        Service::RedisTls if process::find_program("redis-server").is_none() => {
            missing.push("redis-server");
        }
        Service::AmqpTls | Service::ClickHouseTls if stunnel().is_none() => {
            missing.push("stunnel4");
        }
        _ => {}
    }
    missing
}

fn stunnel() -> Option<PathBuf> {
    process::find_program("stunnel4").or_else(|| process::find_program("stunnel"))
}

/// Makes the test CA, a server certificate and a client certificate, unless they exist.
pub(super) fn ensure_certificates(infra_dir: &Path) -> Result<()> {
    let dir = cert_dir(infra_dir);
    let files = [
        "ca.crt",
        "server.crt",
        "server.key",
        "client.crt",
        "client.key",
    ];
    if files.iter().all(|file| dir.join(file).is_file()) {
        return Ok(());
    }
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let log = commands_log(&dir);
    let openssl = || {
        let mut command = Command::new("openssl");
        command.current_dir(&dir);
        command
    };
    let ec_key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    process::run_logged(
        openssl()
            .args(["req", "-x509", "-days", "3650"])
            .args(ec_key)
            .args(["-keyout", "ca.key", "-out", "ca.crt"])
            .args(["-subj", "/CN=Groundwork test CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
        &log,
    )?;
    for (name, subject, extensions) in [
        (
            "server",
            "/CN=localhost",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        ),
        (
            "client",
            "/CN=groundwork-test-client",
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
        ),
    ] {
        let extensions_file = dir.join(format!("{name}.ext"));
        fs::write(&extensions_file, extensions)
            .with_context(|| format!("cannot write {}", extensions_file.display()))?;
        process::run_logged(
            openssl()
                .arg("req")
                .args(ec_key)
                .args(["-keyout", &format!("{name}.key")])
                .args(["-out", &format!("{name}.csr"), "-subj", subject]),
            &log,
        )?;
        process::run_logged(
            openssl()
                .args([
                    "x509",
                    "-req",
                    "-days",
                    "825",
                    "-in",
                    &format!("{name}.csr"),
                ])
                .args(["-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial"])
                .args(["-out", &format!("{name}.crt")])
                .args(["-extfile", &format!("{name}.ext")]),
            &log,
        )?;
    }
    // Servers run as other users (redis-server and stunnel here run as root, but keep the keys
    // private anyway); the certificates are public.
    for key in ["ca.key", "server.key", "client.key"] {
        set_mode(&dir.join(key), 0o600)?;
    }
    for cert in ["ca.crt", "server.crt", "client.crt"] {
        set_mode(&dir.join(cert), 0o644)?;
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))
}

/// Checks that every TLS endpoint in `running` presents a certificate the test CA in `infra_dir`
/// signed. An endpoint started from another target directory has another CA, and the TLS tests
/// would fail with certificate errors that do not say why.
pub(super) fn verify_endpoints(infra_dir: &Path, running: &[Running]) -> Result<()> {
    let ca = ca_cert(infra_dir);
    for found in running {
        if !matches!(
            found.service,
            Service::RedisTls | Service::AmqpTls | Service::ClickHouseTls
        ) {
            continue;
        }
        let spec = found.service.spec();
        let Some(endpoint) = super::probe::parse_url(&found.url) else {
            bail!("cannot tell host and port from {}", spec.env_var);
        };
        let status = Command::new("openssl")
            .args(["s_client", "-brief", "-verify_return_error", "-connect"])
            .arg(format!("{}:{}", endpoint.host, endpoint.port))
            .arg("-CAfile")
            .arg(&ca)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .context("cannot run openssl")?;
        if !status.success() {
            bail!(
                "{} at {}:{} does not present a certificate signed by the test CA {}; it was \
                 probably started by `infra up` in another target directory: stop it there with \
                 `cargo xtask infra down`, or stop the process listening on port {}",
                spec.name,
                endpoint.host,
                endpoint.port,
                ca.display(),
                endpoint.port
            );
        }
    }
    Ok(())
}

/// Starts the TLS endpoint `service` in `dir`, in front of the servers already `running`.
pub(super) fn start(service: Service, dir: &Path, running: &[Running]) -> Result<()> {
    let infra_dir = dir
        .parent()
        .context("the service directory has no parent")?;
    ensure_certificates(infra_dir)?;
    let certs = cert_dir(infra_dir);
    let log = commands_log(dir);
    match service {
        Service::RedisTls => {
            let redis_server =
                process::find_program("redis-server").context("redis-server is not installed")?;
            process::run_logged(
                Command::new(redis_server)
                    .args(["--daemonize", "yes", "--port", "0", "--tls-port"])
                    .arg(REDIS_SPEC.dedicated_port.to_string())
                    .args(["--bind", "127.0.0.1", "--dir"])
                    .arg(dir)
                    .arg("--pidfile")
                    .arg(dir.join(REDIS_SPEC.pid_file))
                    .arg("--logfile")
                    .arg(dir.join(REDIS_SPEC.server_log))
                    .args(["--save", "", "--appendonly", "no"])
                    .arg("--tls-cert-file")
                    .arg(certs.join("server.crt"))
                    .arg("--tls-key-file")
                    .arg(certs.join("server.key"))
                    .arg("--tls-ca-cert-file")
                    .arg(certs.join("ca.crt"))
                    // A client certificate is checked when one is given, not required.
                    .args(["--tls-auth-clients", "optional"]),
                &log,
            )
        }
        Service::AmqpTls | Service::ClickHouseTls => {
            let (spec, backend) = if service == Service::AmqpTls {
                (&AMQPS_SPEC, Service::RabbitMq)
            } else {
                (&CLICKHOUSE_SPEC, Service::ClickHouse)
            };
            let Some(backend_url) = running
                .iter()
                .find(|found| found.service == backend)
                .map(|found| found.url.as_str())
            else {
                bail!("{} needs {} running first", spec.name, backend.spec().name);
            };
            let Some(endpoint) = super::probe::parse_url(backend_url) else {
                bail!("cannot tell host and port from ${}", backend.spec().env_var);
            };
            let config = format!(
                "pid = {pid}\noutput = {log}\nforeground = no\n\n[{name}]\nclient = no\n\
                 accept = 127.0.0.1:{port}\nconnect = {host}:{backend_port}\ncert = {cert}\n\
                 key = {key}\n",
                pid = dir.join(spec.pid_file).display(),
                log = dir.join(spec.server_log).display(),
                name = spec.name,
                port = spec.dedicated_port,
                host = endpoint.host,
                backend_port = endpoint.port,
                cert = certs.join("server.crt").display(),
                key = certs.join("server.key").display(),
            );
            let config_file = dir.join("stunnel.conf");
            fs::write(&config_file, config)
                .with_context(|| format!("cannot write {}", config_file.display()))?;
            let stunnel = stunnel().context("stunnel4 is not installed")?;
            process::run_logged(Command::new(stunnel).arg(&config_file), &log)
        }
        _ => bail!("{} is not a TLS endpoint", service.spec().name),
    }
}
