//! Raw HTTP/1.1 requests to a service under test, one connection each.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Sends `head` (`GET /path`) with `headers` and, when given, `body` (as
/// `Content-Type: application/json`) on a new connection (`Connection: close`), and reads the
/// whole answer: its status and body.
pub async fn http_request(
    address: SocketAddr,
    head: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let mut request = format!("{head} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    if body.is_some() {
        request.push_str("Content-Type: application/json\r\n");
    }
    let body = body.unwrap_or_default();
    let _ = write!(request, "Content-Length: {}\r\n\r\n{body}", body.len());
    stream.write_all(request.as_bytes()).await?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await?;
    let invalid =
        |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {raw:?}"));
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| invalid("no end of headers"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .ok_or_else(|| invalid("no status line"))?;
    Ok((status, body.to_owned()))
}
