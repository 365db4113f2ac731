//! What the integration tests share: a real server on loopback, a raw HTTP client, a listener
//! that never answers, a port nobody listens on, and a check wrapper that counts runs.
#![allow(dead_code, unreachable_pub)] // Each test binary uses a different part of this module.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context as _;
use groundwork_health::{CheckResult, Component, HealthCheck};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The router served on `127.0.0.1:0` until dropped.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    pub async fn start(router: axum::Router) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            stop: Some(stop),
            task,
        })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        request(self.addr, "GET", path, &[]).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

/// An HTTP/1.1 response, whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then_some(value.trim())
        })
    }

    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(&self.body).with_context(|| format!("body is not JSON: {}", self.body))
    }
}

/// Sends one request on a new connection (`Connection: close`) and reads the whole answer.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<Reply> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let raw = String::from_utf8(raw)?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .with_context(|| format!("no end of headers in {raw:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .with_context(|| format!("no status in {head:?}"))?
        .parse()?;
    Ok(Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}

/// A TCP listener that accepts connections and never answers: a hung dependency. The accepted
/// sockets stay open until the listener is dropped.
pub struct HungListener {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HungListener {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        Ok(Self { addr, task })
    }
}

impl Drop for HungListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A loopback port nobody listens on: bound, read, released. Connections to it are refused.
pub async fn closed_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    Ok(listener.local_addr()?.port())
}

/// Wraps a check and counts how often it runs: every run of a built-in check is one query.
pub struct Counting<C> {
    pub inner: C,
    pub runs: Arc<AtomicUsize>,
}

impl<C> Counting<C> {
    pub fn new(inner: C) -> (Self, Arc<AtomicUsize>) {
        let runs = Arc::new(AtomicUsize::new(0));
        (
            Self {
                inner,
                runs: runs.clone(),
            },
            runs,
        )
    }
}

impl<C: HealthCheck> HealthCheck for Counting<C> {
    fn component(&self) -> Component {
        self.inner.component()
    }

    async fn check(&self) -> CheckResult {
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.inner.check().await
    }
}

/// Tests that time the endpoints run one at a time within a test binary: on a two-core CI
/// machine, other tests of the same binary running alongside would add their CPU time to the
/// measured answer and make the "timeout + 100 ms" bounds flaky.
#[allow(dead_code)] // Not every test binary that includes this module times anything.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}
