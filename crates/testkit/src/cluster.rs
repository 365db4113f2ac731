//! A throwaway PostgreSQL cluster that a test can stop, restart and crash at will.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::TestkitError;

/// A private PostgreSQL server for one test: its own data directory and port, started from the
/// installed PostgreSQL binaries, removed on drop.
///
/// Use it where a test must take the database away — restart it under load, stop it to see a
/// client go stale — without disturbing the shared server other tests use. `initdb` takes about
/// half a second. When running as root the server runs as the `postgres` user, as PostgreSQL
/// requires.
///
/// ```no_run
/// # async fn demo() -> Result<(), groundwork_testkit::TestkitError> {
/// let cluster = groundwork_testkit::TestCluster::start().await?;
/// let url = cluster.url(); // postgres://postgres@127.0.0.1:<port>/postgres
/// cluster.restart().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TestCluster {
    dir: PathBuf,
    /// The data directory: `dir/data`, or one the test laid out ([`TestCluster::start_on`]).
    data: PathBuf,
    bin: PathBuf,
    port: u16,
    /// Server options beyond the common ones (TLS), passed on every start.
    options: String,
    /// Settings the test put in `postgresql.conf`, which the common options must not override.
    configured: Vec<String>,
}

/// The TLS set-up of a [`TestCluster`] started with [`TestCluster::start_with_tls`]: the server's
/// certificate and key (PEM) and, optionally, the CA whose client certificates are required.
#[derive(Clone)]
#[non_exhaustive]
pub struct ClusterTls {
    /// The server certificate (chain), PEM.
    pub certificate_pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
    /// When set, TLS connections over TCP must present a client certificate signed by this CA
    /// whose common name is the user name (`cert` authentication); plain connections are trusted.
    pub client_ca_pem: Option<String>,
}

impl ClusterTls {
    /// A server certificate and its key; client certificates are not asked for.
    pub fn new(certificate_pem: impl Into<String>, key_pem: impl Into<String>) -> Self {
        Self {
            certificate_pem: certificate_pem.into(),
            key_pem: key_pem.into(),
            client_ca_pem: None,
        }
    }

    /// Requires TLS clients to present a certificate signed by `ca_pem`, with the user name as
    /// its common name.
    #[must_use]
    pub fn require_client_certificates(mut self, ca_pem: impl Into<String>) -> Self {
        self.client_ca_pem = Some(ca_pem.into());
        self
    }
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls")
            .field("client_certificates", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

impl TestCluster {
    /// Creates and starts a cluster on a free loopback port. It has TLS off (`ssl=off`).
    pub async fn start() -> Result<Self, TestkitError> {
        tokio::task::spawn_blocking(|| Self::start_blocking(None, ""))
            .await
            .map_err(|e| cluster_error("start", Path::new("-"), e.to_string()))?
    }

    /// Creates and starts a cluster with TLS on (`ssl=on`), serving `tls`'s certificate. The
    /// certificate and key are written to the cluster's directory (the key with mode 0600, owned
    /// by the server's user, as PostgreSQL requires). Plain connections are still accepted: the
    /// client's `sslmode` decides.
    ///
    /// ```no_run
    /// # async fn demo(cert_pem: String, key_pem: String, ca_path: &str) -> Result<(), groundwork_testkit::TestkitError> {
    /// use groundwork_testkit::{ClusterTls, TestCluster};
    ///
    /// let cluster = TestCluster::start_with_tls(ClusterTls::new(cert_pem, key_pem)).await?;
    /// let url = format!("{}?sslmode=verify-full&sslrootcert={ca_path}", cluster.url());
    /// # Ok(()) }
    /// ```
    pub async fn start_with_tls(tls: ClusterTls) -> Result<Self, TestkitError> {
        tokio::task::spawn_blocking(move || Self::start_blocking(Some(&tls), ""))
            .await
            .map_err(|e| cluster_error("start", Path::new("-"), e.to_string()))?
    }

    /// Creates and starts a cluster whose `postgresql.conf` ends with `conf` (lines of
    /// `name = value`), e.g. WAL archiving for point-in-time recovery drills:
    ///
    /// ```text
    /// wal_level = replica
    /// archive_mode = on
    /// archive_timeout = 2
    /// archive_command = '/path/to/groundwork-backup --env-file /path/env postgres wal-push %p'
    /// ```
    ///
    /// A setting named in `conf` wins over the test defaults (`max_connections = 250`, `fsync =
    /// off`, `synchronous_commit = off`). [`TestCluster::dir`] is a private directory owned by the server's user, for
    /// files the server's commands need.
    pub async fn start_with_conf(conf: &str) -> Result<Self, TestkitError> {
        let conf = conf.to_owned();
        tokio::task::spawn_blocking(move || Self::start_blocking(None, &conf))
            .await
            .map_err(|e| cluster_error("start", Path::new("-"), e.to_string()))?
    }

    /// Starts a server on an existing data directory `data` (e.g. one a point-in-time restore
    /// laid out), on a free port, with `conf` appended to its `postgresql.conf`. When running as
    /// root, `data` is given to the `postgres` user first. The directory is removed on drop.
    pub async fn start_on(data: PathBuf, conf: &str) -> Result<Self, TestkitError> {
        let conf = conf.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut cluster = Self::new_dir(Some(data))?;
            cluster.append_conf(&conf)?;
            chown_to_postgres(&cluster.data)?;
            pg_ctl_start(&cluster.start_spec())?;
            Ok(cluster)
        })
        .await
        .map_err(|e| cluster_error("start", Path::new("-"), e.to_string()))?
    }

    fn new_dir(data: Option<PathBuf>) -> Result<Self, TestkitError> {
        let bin = postgres_bin()?;
        let port = free_port()
            .map_err(|e| cluster_error("pick a port for", Path::new("-"), e.to_string()))?;
        let dir =
            std::env::temp_dir().join(format!("gw-test-cluster-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sock"))
            .map_err(|e| cluster_error("create", &dir, e.to_string()))?;
        chown_to_postgres(&dir)?;
        Ok(Self {
            data: data.unwrap_or_else(|| dir.join("data")),
            dir,
            bin,
            port,
            options: String::new(),
            configured: Vec::new(),
        })
    }

    fn append_conf(&mut self, conf: &str) -> Result<(), TestkitError> {
        use std::io::Write as _;

        if conf.trim().is_empty() {
            return Ok(());
        }
        let path = self.data.join("postgresql.conf");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut file| writeln!(file, "\n{conf}"))
            .map_err(|e| cluster_error("configure", &self.dir, e.to_string()))?;
        self.configured.extend(
            conf.lines()
                .filter_map(|line| line.split_once('='))
                .map(|(name, _)| name.trim().to_owned()),
        );
        Ok(())
    }

    fn start_blocking(tls: Option<&ClusterTls>, conf: &str) -> Result<Self, TestkitError> {
        let mut cluster = Self::new_dir(None)?;
        cluster.run(
            "initialise",
            &cluster.bin.join("initdb"),
            &[
                "-D".as_ref(),
                cluster.data().as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        if let Some(tls) = tls {
            cluster.options = cluster.write_tls(tls)?;
        }
        cluster.append_conf(conf)?;
        pg_ctl_start(&cluster.start_spec())?;
        Ok(cluster)
    }

    /// Writes the TLS files and returns the server options that use them.
    fn write_tls(&self, tls: &ClusterTls) -> Result<String, TestkitError> {
        use std::os::unix::fs::PermissionsExt as _;

        let write = |name: &str, content: &str| -> Result<PathBuf, TestkitError> {
            let path = self.dir.join(name);
            std::fs::write(&path, content)
                .and_then(|()| {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                })
                .map_err(|e| cluster_error("write the TLS files of", &self.dir, e.to_string()))?;
            Ok(path)
        };
        let certificate = write("server.crt", &tls.certificate_pem)?;
        let key = write("server.key", &tls.key_pem)?;
        let mut options = format!(
            " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            certificate.display(),
            key.display()
        );
        if let Some(ca) = &tls.client_ca_pem {
            let ca = write("client-ca.crt", ca)?;
            options = format!("{options} -c ssl_ca_file={}", ca.display());
            // The first matching line wins: TLS connections over TCP need a client certificate,
            // plain ones stay trusted by the lines initdb wrote.
            let hba = self.data().join("pg_hba.conf");
            let rules = std::fs::read_to_string(&hba)
                .map_err(|e| cluster_error("read pg_hba.conf of", &self.dir, e.to_string()))?;
            std::fs::write(&hba, format!("hostssl all all 127.0.0.1/32 cert\n{rules}"))
                .map_err(|e| cluster_error("write pg_hba.conf of", &self.dir, e.to_string()))?;
        }
        chown_to_postgres(&self.dir)?;
        Ok(options)
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port the server listens on; it stays the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's private directory (owned by the server's user when running as root),
    /// removed on drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Stops the server (fast shutdown: connections are closed, nothing is lost).
    pub async fn stop(&self) -> Result<(), TestkitError> {
        let (dir, data, bin) = (self.dir.clone(), self.data.clone(), self.bin.clone());
        tokio::task::spawn_blocking(move || pg_ctl_stop(&dir, &data, &bin, "fast"))
            .await
            .map_err(|e| cluster_error("stop", &self.dir, e.to_string()))?
    }

    /// Kills the postmaster with SIGKILL, as a crash would; its processes then exit on their own
    /// and nothing is shut down cleanly.
    pub fn kill_postmaster(&self) -> Result<(), TestkitError> {
        let pid_file = self.data.join("postmaster.pid");
        let text = std::fs::read_to_string(&pid_file)
            .map_err(|e| cluster_error("read the postmaster pid of", &self.dir, e.to_string()))?;
        let pid = text.lines().next().unwrap_or_default().trim().to_owned();
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            return Err(cluster_error(
                "read the postmaster pid of",
                &self.dir,
                format!("{} holds no pid", pid_file.display()),
            ));
        }
        let status = Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .map_err(|e| cluster_error("kill", &self.dir, e.to_string()))?;
        if status.success() {
            Ok(())
        } else {
            Err(cluster_error(
                "kill",
                &self.dir,
                format!("kill -KILL {pid} exited with {status}"),
            ))
        }
    }

    /// Starts the server again after [`TestCluster::stop`], on the same port.
    pub async fn resume(&self) -> Result<(), TestkitError> {
        let spec = self.start_spec();
        tokio::task::spawn_blocking(move || pg_ctl_start(&spec))
            .await
            .map_err(|e| cluster_error("start", &self.dir, e.to_string()))?
    }

    fn start_spec(&self) -> StartSpec {
        StartSpec {
            dir: self.dir.clone(),
            data: self.data.clone(),
            bin: self.bin.clone(),
            port: self.port,
            options: self.options.clone(),
            configured: self.configured.clone(),
        }
    }

    /// Stops and starts the server: every client connection is cut.
    pub async fn restart(&self) -> Result<(), TestkitError> {
        self.stop().await?;
        self.resume().await
    }

    fn data(&self) -> PathBuf {
        self.data.clone()
    }

    fn run(
        &self,
        action: &'static str,
        program: &Path,
        args: &[&std::ffi::OsStr],
    ) -> Result<(), TestkitError> {
        run_as_postgres(program, args).map_err(|detail| cluster_error(action, &self.dir, detail))
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // Immediate: the test is over, nothing in this cluster needs to survive.
        if let (true, Err(error)) = (
            self.data.join("postmaster.pid").exists(),
            pg_ctl_stop(&self.dir, &self.data, &self.bin, "immediate"),
        ) {
            eprintln!("groundwork-testkit: {error}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        if !self.data.starts_with(&self.dir) {
            let _ = std::fs::remove_dir_all(&self.data);
        }
    }
}

/// What `pg_ctl start` needs of a cluster.
struct StartSpec {
    dir: PathBuf,
    data: PathBuf,
    bin: PathBuf,
    port: u16,
    options: String,
    configured: Vec<String>,
}

fn pg_ctl_start(cluster: &StartSpec) -> Result<(), TestkitError> {
    let (dir, bin, port) = (&cluster.dir, &cluster.bin, cluster.port);
    let mut options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1",
        dir.join("sock").display()
    );
    for (name, value) in [
        ("max_connections", "250"),
        ("fsync", "off"),
        ("synchronous_commit", "off"),
    ] {
        if !cluster.configured.iter().any(|set| set == name) {
            options = format!("{options} -c {name}={value}");
        }
    }
    options.push_str(&cluster.options);
    let data = &cluster.data;
    let log = dir.join("server.log");
    run_as_postgres(
        &bin.join("pg_ctl"),
        &[
            "-D".as_ref(),
            data.as_os_str(),
            "-l".as_ref(),
            log.as_os_str(),
            "-w".as_ref(),
            "-o".as_ref(),
            options.as_ref(),
            "start".as_ref(),
        ],
    )
    .map_err(|detail| {
        // The server's own words say why it did not start.
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(12)..].join("\n");
        cluster_error("start", dir, format!("{detail}\nserver log:\n{tail}"))
    })
}

fn pg_ctl_stop(dir: &Path, data: &Path, bin: &Path, mode: &str) -> Result<(), TestkitError> {
    run_as_postgres(
        &bin.join("pg_ctl"),
        &[
            "-D".as_ref(),
            data.as_os_str(),
            "-m".as_ref(),
            mode.as_ref(),
            "-w".as_ref(),
            "stop".as_ref(),
        ],
    )
    .map_err(|detail| cluster_error("stop", dir, detail))
}

fn cluster_error(action: &'static str, dir: &Path, detail: String) -> TestkitError {
    TestkitError::Cluster {
        action,
        dir: dir.to_owned(),
        detail,
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

fn run_as_postgres(program: &Path, args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let mut command = if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    };
    let output = command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{} exited with {}: {}",
        program.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}

fn chown_to_postgres(dir: &Path) -> Result<(), TestkitError> {
    if !is_root() {
        return Ok(());
    }
    let status = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(dir)
        .status()
        .map_err(|e| cluster_error("create", dir, e.to_string()))?;
    if status.success() {
        Ok(())
    } else {
        Err(cluster_error(
            "create",
            dir,
            format!("chown exited with {status}"),
        ))
    }
}

/// The newest installed `/usr/lib/postgresql/<version>/bin`.
fn postgres_bin() -> Result<PathBuf, TestkitError> {
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .max();
    let Some(version) = newest else {
        return Err(cluster_error(
            "find the binaries for",
            root,
            "no PostgreSQL server is installed; install it with `apt-get install postgresql`"
                .to_owned(),
        ));
    };
    Ok(root.join(version.to_string()).join("bin"))
}

fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A [`TestCluster`] serving TLS with a certificate that a fresh test CA signed for `127.0.0.1`,
/// and `verify-full` URLs to it: one that trusts that CA, one that trusts another CA (which the
/// client must refuse with `UnknownIssuer`). Both CA files live in the cluster's directory.
#[cfg(feature = "certs")]
#[derive(Debug)]
pub struct TlsTestCluster {
    cluster: TestCluster,
    ca: PathBuf,
    other_ca: PathBuf,
}

#[cfg(feature = "certs")]
impl TlsTestCluster {
    /// Starts the cluster and writes `ca.crt` and `other-ca.crt` beside it.
    pub async fn start() -> Result<Self, TestkitError> {
        use crate::TestCa;

        let ca = TestCa::new("groundwork test CA")?;
        let server = ca.server(&["127.0.0.1"])?;
        let cluster =
            TestCluster::start_with_tls(ClusterTls::new(server.certificate_pem, server.key_pem))
                .await?;
        let write = |name: &str, pem: &str| {
            let path = cluster.dir().join(name);
            std::fs::write(&path, pem)
                .map_err(|e| cluster_error("write a CA file for", cluster.dir(), e.to_string()))?;
            Ok::<_, TestkitError>(path)
        };
        let ca_file = write("ca.crt", ca.certificate_pem())?;
        let other_ca = write("other-ca.crt", TestCa::new("another CA")?.certificate_pem())?;
        Ok(Self {
            ca: ca_file,
            other_ca,
            cluster,
        })
    }

    /// The cluster itself.
    pub fn cluster(&self) -> &TestCluster {
        &self.cluster
    }

    /// `sslmode=verify-full` trusting the CA that signed the server's certificate.
    pub fn trusted_url(&self) -> String {
        self.verify_full(&self.ca)
    }

    /// `sslmode=verify-full` trusting another CA: a client must refuse the server.
    pub fn untrusted_url(&self) -> String {
        self.verify_full(&self.other_ca)
    }

    /// `127.0.0.1:<port>`, as a refusal names the server.
    pub fn server(&self) -> String {
        format!("127.0.0.1:{}", self.cluster.port())
    }

    /// Whether `message` reports the refusal of [`TlsTestCluster::untrusted_url`]: it names the
    /// server and the unknown issuer of its certificate.
    pub fn names_the_refusal(&self, message: &str) -> bool {
        message.contains(&self.server())
            && message.contains("invalid peer certificate: UnknownIssuer")
    }

    fn verify_full(&self, ca: &Path) -> String {
        format!(
            "{}?sslmode=verify-full&sslrootcert={}",
            self.cluster.url(),
            ca.display()
        )
    }
}
