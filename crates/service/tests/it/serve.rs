//! `serve` and `Shutdown` on a real listener: readiness turns 503 as soon as shutdown begins,
//! the listener keeps accepting during the drain, and in-flight requests finish before `serve`
//! returns.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use axum::routing::get;
use groundwork_health::Health;
use groundwork_service::{ServeOptions, Shutdown};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Notify;

async fn status_of(address: std::net::SocketAddr, path: &str) -> Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    response
        .split(' ')
        .nth(1)
        .context("no status line")?
        .parse()
        .context("no status code")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_turns_readiness_off_then_drains_in_flight_requests() -> Result<()> {
    let health = Health::builder().service_id("test").build()?;
    let release = Arc::new(Notify::new());
    let entered = Arc::new(Notify::new());
    let (release_in_handler, entered_in_handler) = (Arc::clone(&release), Arc::clone(&entered));
    let app = axum::Router::new()
        .route(
            "/slow",
            get(move || {
                let (release, entered) = (
                    Arc::clone(&release_in_handler),
                    Arc::clone(&entered_in_handler),
                );
                async move {
                    entered.notify_one();
                    release.notified().await;
                    "done"
                }
            }),
        )
        .merge(health.router());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let shutdown = Shutdown::new();
    let options = ServeOptions {
        drain_delay: Duration::from_secs(3),
        ..ServeOptions::default()
    };
    let server = tokio::spawn({
        let (health, shutdown) = (health.clone(), shutdown.clone());
        async move { groundwork_service::serve(listener, app, &health, shutdown, options).await }
    });

    assert_eq!(status_of(address, "/health").await?, 200);
    let slow = tokio::spawn(async move { status_of(address, "/slow").await });
    entered.notified().await;

    shutdown.trigger();
    assert!(shutdown.is_triggered());
    // During the drain the listener still accepts, and readiness says not to send traffic.
    assert_eq!(status_of(address, "/health").await?, 503);
    assert_eq!(status_of(address, "/livez").await?, 200);
    assert!(
        !server.is_finished(),
        "serve must wait for the in-flight request"
    );

    release.notify_one();
    assert_eq!(slow.await??, 200);
    server.await??;
    Ok(())
}

#[tokio::test]
async fn triggered_completes_for_every_clone_and_after_the_fact() {
    let shutdown = Shutdown::new();
    let waiting = tokio::spawn(shutdown.clone().triggered());
    shutdown.clone().trigger();
    assert!(waiting.await.is_ok());
    // A late subscriber completes at once.
    shutdown.triggered().await;
}

#[tokio::test]
async fn a_taken_port_is_an_error_naming_the_address() -> Result<()> {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = taken.local_addr()?.to_string();
    let health = Health::builder().build()?;
    let error = groundwork_service::serve_at(
        &address,
        axum::Router::new(),
        &health,
        Shutdown::new(),
        ServeOptions::default(),
    )
    .await
    .err()
    .context("serving on a taken port succeeded")?;
    let message = error.to_string();
    assert!(
        message.contains(&address) && message.contains("is another process using the port"),
        "{message}"
    );
    Ok(())
}
