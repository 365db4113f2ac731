//! Asking whether a server answers, with std's `TcpStream` only.
//!
//! A TCP connect is enough for the binary protocols; HTTP servers get a real request because a port can
//! accept connections before the server behind it is ready (that is what `clickhouse`'s `/ping` is for).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::process;

const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// Host and port of a server, taken from a connection URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Endpoint {
    pub(super) host: String,
    pub(super) port: u16,
    /// The scheme asks for TLS, which we cannot speak without more dependencies: such endpoints are
    /// only checked with a TCP connect.
    pub(super) tls: bool,
}

impl Endpoint {
    pub(super) fn local(port: u16) -> Self {
        Endpoint {
            host: "127.0.0.1".to_owned(),
            port,
            tls: false,
        }
    }

    pub(super) fn is_loopback(&self) -> bool {
        matches!(self.host.as_str(), "127.0.0.1" | "localhost" | "::1")
    }
}

/// How to tell that a service answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Probe {
    /// A TCP connect succeeds.
    Tcp,
    /// A TCP connect succeeds and, when `pg_isready` is installed, it reports that the server accepts
    /// connections (a starting or shutting down server accepts TCP but refuses sessions).
    Postgres,
    /// `GET /ping` returns `Ok.`.
    ClickHousePing,
    /// `GET /` returns any HTTP response.
    AnyHttp,
}

/// Whether the server at `endpoint` answers as `probe` expects.
pub(super) fn answers(probe: Probe, endpoint: &Endpoint) -> bool {
    match probe {
        Probe::Postgres => connect(endpoint).is_some() && pg_isready(endpoint),
        Probe::ClickHousePing if !endpoint.tls => http_get(endpoint, "/ping")
            .is_some_and(|response| response_body(&response).trim() == "Ok."),
        Probe::AnyHttp if !endpoint.tls => {
            http_get(endpoint, "/").is_some_and(|response| response.starts_with("HTTP/"))
        }
        // Without TLS support, an HTTPS endpoint only gets a TCP connect.
        Probe::Tcp | Probe::ClickHousePing | Probe::AnyHttp => connect(endpoint).is_some(),
    }
}

fn connect(endpoint: &Endpoint) -> Option<TcpStream> {
    let addrs = (endpoint.host.as_str(), endpoint.port)
        .to_socket_addrs()
        .ok()?;
    addrs
        .into_iter()
        .find_map(|addr| TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).ok())
}

fn pg_isready(endpoint: &Endpoint) -> bool {
    let Some(pg_isready) = process::find_program("pg_isready") else {
        return true;
    };
    Command::new(pg_isready)
        .args([
            "-q",
            "-t",
            "3",
            "-h",
            &endpoint.host,
            "-p",
            &endpoint.port.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Sends an HTTP/1.0 GET, so that the server closes the connection after its response and reading to
/// the end needs no parsing of lengths or chunks.
fn http_get(endpoint: &Endpoint, path: &str) -> Option<String> {
    let mut stream = connect(endpoint)?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).ok()?;
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {}:{}\r\n\r\n",
        endpoint.host, endpoint.port
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    // A health answer is tiny; the cap keeps a misbehaving server from feeding us forever.
    stream.take(64 * 1024).read_to_end(&mut response).ok()?;
    Some(String::from_utf8_lossy(&response).into_owned())
}

fn response_body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

/// Host and port of a connection URL such as `postgres://user:secret@db:5432/app` or
/// `http://[::1]:8123`, with the scheme's default port when the URL names none.
pub(super) fn parse_url(url: &str) -> Option<Endpoint> {
    let (scheme, rest) = url.split_once("://")?;
    let (default_port, tls) = match scheme.to_ascii_lowercase().as_str() {
        "postgres" | "postgresql" => (5432, false),
        "redis" => (6379, false),
        "rediss" => (6379, true),
        "amqp" => (5672, false),
        "amqps" => (5671, true),
        "http" => (80, false),
        "https" => (443, true),
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host_port)| host_port);
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    // An empty host means a Unix socket (`postgres:///db?host=/run/postgresql`), which we cannot probe.
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(port) => port.parse().ok()?,
        None => default_port,
    };
    Some(Endpoint {
        host: host.to_owned(),
        port,
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::{Endpoint, parse_url};

    fn endpoint(host: &str, port: u16, tls: bool) -> Endpoint {
        Endpoint {
            host: host.to_owned(),
            port,
            tls,
        }
    }

    #[test]
    fn url_with_credentials_path_and_query_gives_host_and_port() {
        assert_eq!(
            parse_url("postgres://app:s3cr@t@db.internal:6432/app?sslmode=disable"),
            Some(endpoint("db.internal", 6432, false))
        );
        assert_eq!(
            parse_url("amqp://guest:guest@127.0.0.1:55672/%2f"),
            Some(endpoint("127.0.0.1", 55672, false))
        );
    }

    #[test]
    fn url_without_port_uses_the_scheme_default() {
        assert_eq!(
            parse_url("redis://localhost"),
            Some(endpoint("localhost", 6379, false))
        );
        assert_eq!(
            parse_url("https://s3.example.com/"),
            Some(endpoint("s3.example.com", 443, true))
        );
        assert_eq!(parse_url("amqps://mq"), Some(endpoint("mq", 5671, true)));
    }

    #[test]
    fn bracketed_ipv6_host_is_unwrapped() {
        assert_eq!(
            parse_url("http://[::1]:8123"),
            Some(endpoint("::1", 8123, false))
        );
        assert_eq!(parse_url("http://[::1]"), Some(endpoint("::1", 80, false)));
    }

    #[test]
    fn unix_socket_unknown_scheme_and_bad_port_are_not_probed() {
        assert_eq!(parse_url("postgres:///app?host=/run/postgresql"), None);
        assert_eq!(parse_url("mysql://db:3306"), None);
        assert_eq!(parse_url("http://db:http"), None);
        assert_eq!(parse_url("127.0.0.1:5432"), None);
    }
}
