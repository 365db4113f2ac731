//! Plain HTTP/1.0 over `std::net`: enough to probe health endpoints and send ClickHouse DDL.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, Result, bail};

const TIMEOUT: Duration = Duration::from_secs(3);

/// The status code of `GET path` on `127.0.0.1:port`, or `None` if nothing answers.
pub(super) fn get_status(port: u16, path: &str) -> Option<u16> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let response = exchange(
        address,
        &format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"),
    )
    .ok()?;
    status_code(&response)
}

/// `POST`s `body` to the HTTP endpoint `url` (`http://[user[:password]@]host:port`), e.g. a
/// ClickHouse statement, and fails unless the answer is 200.
pub(super) fn post(url: &str, body: &str) -> Result<()> {
    let rest = url
        .strip_prefix("http://")
        .context("only http:// endpoints are supported here")?;
    let (userinfo, host) = match rest.split_once('@') {
        Some((userinfo, host)) => (Some(userinfo), host),
        None => (None, rest),
    };
    let host = host.trim_end_matches('/');
    let address = host
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .with_context(|| format!("cannot resolve {host}"))?;
    let mut request = format!(
        "POST / HTTP/1.0\r\nHost: {host}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(userinfo) = userinfo {
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        let _ = write!(
            request,
            "X-ClickHouse-User: {user}\r\nX-ClickHouse-Key: {password}\r\n"
        );
    }
    request.push_str("\r\n");
    request.push_str(body);
    let response = exchange(address, &request)?;
    match status_code(&response) {
        Some(200) => Ok(()),
        status => bail!(
            "{host} answered {} to `{body}`: {}",
            status.map_or_else(|| "nothing".to_owned(), |s| s.to_string()),
            response
                .split_once("\r\n\r\n")
                .map_or("", |(_, body)| body)
                .trim()
        ),
    }
}

fn exchange(address: SocketAddr, request: &str) -> Result<String> {
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.take(256 * 1024).read_to_end(&mut response)?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

fn status_code(response: &str) -> Option<u16> {
    response.lines().next()?.split(' ').nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::status_code;

    #[test]
    fn status_codes_are_read_from_the_status_line() {
        assert_eq!(
            status_code("HTTP/1.1 503 Service Unavailable\r\n\r\n"),
            Some(503)
        );
        assert_eq!(status_code("HTTP/1.0 200 OK\r\n"), Some(200));
        assert_eq!(status_code(""), None);
        assert_eq!(status_code("garbage"), None);
    }
}
