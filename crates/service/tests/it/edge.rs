//! The HTTP edge of `serve` against misbehaving clients on real sockets: slow request heads,
//! silent kept-alive connections, slow handlers, more requests than the limit, oversize bodies.
//! Timeouts are short through `EdgeSettings`; the limit test holds its handlers on a semaphore, so
//! nothing races.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use axum::body::Bytes;
use axum::routing::{get, post};
use groundwork_health::Health;
use groundwork_service::{EdgeMetrics, EdgeSettings, ServeOptions, Shutdown};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// How long a test waits for what must happen much sooner; hitting it fails the test.
const PATIENCE: Duration = Duration::from_secs(5);

struct Server {
    address: std::net::SocketAddr,
    shutdown: Shutdown,
    task: JoinHandle<std::io::Result<()>>,
    shed: Arc<AtomicU64>,
    timed_out: Arc<AtomicU64>,
    malformed: Arc<AtomicU64>,
}

impl Server {
    async fn start(app: axum::Router, edge: EdgeSettings) -> Result<Self> {
        let health = Health::builder().service_id("edge-test").build()?;
        let app = app.merge(health.router());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let shutdown = Shutdown::new();
        let (shed, timed_out, malformed) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let options = ServeOptions {
            drain_delay: Duration::ZERO,
            edge,
            metrics: EdgeMetrics {
                shed: metrics::Counter::from_arc(Arc::clone(&shed)),
                timed_out: metrics::Counter::from_arc(Arc::clone(&timed_out)),
                malformed: metrics::Counter::from_arc(Arc::clone(&malformed)),
            },
            ..ServeOptions::default()
        };
        let task = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { groundwork_service::serve(listener, app, &health, shutdown, options).await }
        });
        Ok(Self {
            address,
            shutdown,
            task,
            shed,
            timed_out,
            malformed,
        })
    }

    async fn stop(self) -> Result<()> {
        self.shutdown.trigger();
        timeout(PATIENCE, self.task)
            .await
            .context("serve did not return after shutdown")???;
        Ok(())
    }
}

/// Settings with every timeout long, so a test shortens only the one it is about.
fn patient() -> EdgeSettings {
    let mut edge = EdgeSettings::default();
    edge.header_read_timeout_ms = 60_000;
    edge.idle_timeout_ms = 60_000;
    edge.request_timeout_ms = 60_000;
    edge
}

#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// Reads one response (with `Content-Length`) from `stream`, leaving the connection open.
async fn read_reply(stream: &mut TcpStream) -> Result<Reply> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            bail!(
                "connection closed before the end of the head: {:?}",
                String::from_utf8_lossy(&raw)
            );
        }
        raw.push(byte[0]);
    }
    let head = String::from_utf8(raw)?;
    let status = head.split(' ').nth(1).context("no status line")?.parse()?;
    let mut reply = Reply {
        status,
        head,
        body: String::new(),
    };
    let length: usize = reply.header("content-length").unwrap_or("0").parse()?;
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await?;
    reply.body = String::from_utf8(body)?;
    Ok(reply)
}

/// One request on a fresh connection.
async fn send(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<Reply> {
    let mut stream = TcpStream::connect(address).await?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    read_reply(&mut stream).await
}

/// Waits until the server closes `stream`, reading and keeping whatever it sends first.
async fn closed_by_server(stream: &mut TcpStream) -> Result<String> {
    let mut received = Vec::new();
    let read = timeout(PATIENCE, async {
        let mut buffer = [0u8; 1024];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    ensure!(
        read.is_ok(),
        "the server kept the connection open for {PATIENCE:?}"
    );
    Ok(String::from_utf8_lossy(&received).into_owned())
}

fn hello() -> axum::Router {
    axum::Router::new().route("/", get(|| async { "hello" }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_sending_a_head_slowly_are_disconnected() -> Result<()> {
    let mut edge = patient();
    edge.header_read_timeout_ms = 300;
    let server = Server::start(hello(), edge).await?;

    // Five clients, each sending one header line every 50 ms and never finishing the head: the
    // connections are never silent, so only the header-read timeout can end them.
    let mut clients = Vec::new();
    for client in 0..5 {
        let mut stream = TcpStream::connect(server.address).await?;
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n")
            .await?;
        let (mut reader, mut writer) = stream.into_split();
        let trickle = tokio::spawn(async move {
            let mut line = 0u64;
            loop {
                line += 1;
                let header = format!("X-Slow-{client}-{line}: x\r\n");
                if writer.write_all(header.as_bytes()).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        clients.push(tokio::spawn(async move {
            let mut received = Vec::new();
            let read = timeout(PATIENCE, reader.read_to_end(&mut received)).await;
            trickle.abort();
            (
                read.is_ok(),
                String::from_utf8_lossy(&received).into_owned(),
            )
        }));
    }
    for client in clients {
        let (closed, received) = client.await?;
        ensure!(
            closed,
            "a slow client was still connected after {PATIENCE:?}"
        );
        ensure!(received.is_empty(), "expected no answer, got {received:?}");
    }
    // Prompt clients are still served.
    assert_eq!(send(server.address, "GET", "/", b"").await?.status, 200);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_kept_alive_connection_is_closed_but_a_long_request_keeps_it() -> Result<()> {
    let mut edge = patient();
    edge.idle_timeout_ms = 200;
    let app = hello().route(
        "/slow",
        // Works for three idle timeouts without a byte on the wire: a running request is not idle.
        get(|| async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            "slow"
        }),
    );
    let server = Server::start(app, edge).await?;

    let mut stream = TcpStream::connect(server.address).await?;
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
        .await?;
    let slow = read_reply(&mut stream).await?;
    assert_eq!((slow.status, slow.body.as_str()), (200, "slow"));
    assert_ne!(slow.header("connection"), Some("close"), "{}", slow.head);

    // Still open for the next request...
    let started = tokio::time::Instant::now();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        .await?;
    assert_eq!(read_reply(&mut stream).await?.status, 200);
    // ...then closed once silent: the header-read timeout is a minute, so only the idle
    // timeout can close it, no sooner than 200 ms after the last byte.
    let received = closed_by_server(&mut stream).await?;
    assert_eq!(received, "", "nothing is sent on an idle close");
    assert!(started.elapsed() >= Duration::from_millis(150));
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unparseable_request_is_answered_by_the_parser_and_counted() -> Result<()> {
    let server = Server::start(hello(), patient()).await?;
    for (head, status) in [
        ("NOT A REQUEST\r\n\r\n".to_owned(), "400"),
        (
            format!(
                "GET / HTTP/1.1\r\nHost: test\r\nX-Big: {}\r\n\r\n",
                "a".repeat(512 * 1024)
            ),
            "431",
        ),
    ] {
        let mut stream = TcpStream::connect(server.address).await?;
        // The parser may answer and close before the whole head is written.
        let _ = stream.write_all(head.as_bytes()).await;
        let answer = closed_by_server(&mut stream).await?;
        ensure!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{answer:?}"
        );
    }
    // Counted when the connection's task ends, just after the client saw it close.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while server.malformed.load(Ordering::Relaxed) < 2 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "malformed requests counted: {}",
            server.malformed.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.malformed.load(Ordering::Relaxed), 2);
    assert_eq!(send(server.address, "GET", "/", b"").await?.status, 200);
    assert_eq!(server.malformed.load(Ordering::Relaxed), 2);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_timeout_is_answered_503_and_counted() -> Result<()> {
    let mut edge = patient();
    edge.request_timeout_ms = 200;
    let app = hello().route("/stuck", get(std::future::pending::<&'static str>));
    let server = Server::start(app, edge).await?;

    let reply = timeout(PATIENCE, send(server.address, "GET", "/stuck", b"")).await??;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(
        reply.body.contains("took longer than 200 ms"),
        "{}",
        reply.body
    );
    assert_eq!(server.timed_out.load(Ordering::Relaxed), 1);
    assert_eq!(server.shed.load(Ordering::Relaxed), 0);
    assert_eq!(send(server.address, "GET", "/", b"").await?.status, 200);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_limit_are_shed_with_retry_after_and_counted() -> Result<()> {
    let mut edge = patient();
    edge.max_concurrent_requests = 2;
    edge.retry_after_secs = 3;
    // Handlers report that they started, then hold until the test releases them.
    let (entered_tx, mut entered) = mpsc::unbounded_channel::<()>();
    let gate = Arc::new(Semaphore::new(0));
    let app = hello().route(
        "/held",
        get({
            let gate = Arc::clone(&gate);
            move || {
                let (gate, entered_tx) = (Arc::clone(&gate), entered_tx.clone());
                async move {
                    let _ = entered_tx.send(());
                    let _permit = gate.acquire().await;
                    "released"
                }
            }
        }),
    );
    let server = Server::start(app, edge).await?;

    let address = server.address;
    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { send(address, "GET", "/held", b"").await }))
        .collect();
    for _ in 0..2 {
        timeout(PATIENCE, entered.recv())
            .await?
            .context("a held handler never started")?;
    }

    // Both slots are taken: the third request is answered at once, not queued.
    let shed = timeout(PATIENCE, send(address, "GET", "/", b"")).await??;
    assert_eq!(shed.status, 503, "{}", shed.body);
    assert_eq!(shed.header("retry-after"), Some("3"));
    assert!(shed.body.contains("limit of 2 requests"), "{}", shed.body);
    assert_eq!(server.shed.load(Ordering::Relaxed), 1);
    // Probes are never shed: a busy service is alive.
    assert_eq!(send(address, "GET", "/livez", b"").await?.status, 200);
    assert_eq!(send(address, "GET", "/health", b"").await?.status, 200);

    gate.add_permits(2);
    for request in held {
        let reply = request.await??;
        assert_eq!((reply.status, reply.body.as_str()), (200, "released"));
    }
    // The slots are free again.
    assert_eq!(send(address, "GET", "/", b"").await?.status, 200);
    assert_eq!(server.shed.load(Ordering::Relaxed), 1);
    assert_eq!(server.timed_out.load(Ordering::Relaxed), 0);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_413_declared_or_streamed() -> Result<()> {
    let mut edge = patient();
    edge.max_body_bytes = 1024;
    let app = hello().route(
        "/echo",
        post(|body: Bytes| async move { body.len().to_string() }),
    );
    let server = Server::start(app, edge).await?;

    let fits = send(server.address, "POST", "/echo", &[b'a'; 1024]).await?;
    assert_eq!((fits.status, fits.body.as_str()), (200, "1024"));

    // Declared too long: answered from the head alone. (The body is not sent, so the server
    // closes a connection with nothing unread, which a reset could otherwise race the answer.)
    let mut stream = TcpStream::connect(server.address).await?;
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 4096\r\n\r\n")
        .await?;
    let declared = timeout(PATIENCE, read_reply(&mut stream)).await??;
    assert_eq!(declared.status, 413, "{}", declared.body);
    assert_json_error(&declared, "limit of 1024 bytes")?;

    // Chunked, so no length is declared: the reading stops at the byte over the limit, the
    // last one sent.
    let mut stream = TcpStream::connect(server.address).await?;
    let head = b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n";
    stream.write_all(head).await?;
    let chunk = format!("400\r\n{}\r\n1\r\na", "a".repeat(1024));
    stream.write_all(chunk.as_bytes()).await?;
    let streamed = timeout(PATIENCE, read_reply(&mut stream)).await??;
    assert_eq!(streamed.status, 413, "{}", streamed.body);
    assert_json_error(&streamed, "limit of 1024 bytes")?;
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_answers_without_a_body_are_json_and_errors_with_one_pass_unchanged() -> Result<()> {
    let app = hello()
        .route(
            "/broken",
            get(|| async { axum::http::StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .route(
            "/teapot",
            get(|| async { (axum::http::StatusCode::BAD_REQUEST, "a body of its own") }),
        );
    let server = Server::start(app, patient()).await?;

    // axum's own 405 for a method the route does not take, with its `Allow` header.
    let wrong_method = send(server.address, "DELETE", "/", b"").await?;
    assert_eq!(wrong_method.status, 405, "{}", wrong_method.body);
    assert_json_error(&wrong_method, "method not allowed; this path takes GET")?;
    assert!(
        wrong_method
            .header("allow")
            .is_some_and(|allow| allow.contains("GET")),
        "{wrong_method:?}"
    );
    // The router's default 404 for a path nothing matches.
    let unknown = send(server.address, "GET", "/wp-admin.php", b"").await?;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert_json_error(&unknown, "not found")?;
    // A handler's bare status code.
    let broken = send(server.address, "GET", "/broken", b"").await?;
    assert_eq!(broken.status, 500, "{}", broken.body);
    assert_json_error(&broken, "internal server error")?;
    // An error with a body of its own keeps it.
    let own = send(server.address, "GET", "/teapot", b"").await?;
    assert_eq!(
        (own.status, own.body.as_str()),
        (400, "a body of its own"),
        "{own:?}"
    );
    assert_eq!(
        own.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    server.stop().await
}

/// The answer is `{"error": "..."}` containing `text`, as every error Groundwork answers.
fn assert_json_error(reply: &Reply, text: &str) -> Result<()> {
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{}",
        reply.body
    );
    let body: serde_json::Value = serde_json::from_str(&reply.body)?;
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|error| error.contains(text)),
        "{body}"
    );
    Ok(())
}

#[test]
fn settings_left_out_keep_their_defaults() -> Result<()> {
    let edge: EdgeSettings = serde_json::from_str(r#"{"idle_timeout_ms": 750}"#)?;
    let mut expected = EdgeSettings::default();
    expected.idle_timeout_ms = 750;
    assert_eq!(edge, expected);
    assert_eq!(
        serde_json::from_str::<EdgeSettings>("{}")?,
        EdgeSettings::default()
    );
    Ok(())
}
