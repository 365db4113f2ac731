//! The server `benches/wrk.sh` drives: a bare axum handler returning `ok` at `/ok`, next to the
//! health endpoints with one (in-process) check, on `127.0.0.1:0`. Prints the port, then serves
//! until stdin closes.

use std::time::Duration;

use groundwork_health::{CheckResult, Component, ComponentType, Health, HealthCheck};
use tokio::io::AsyncReadExt;

/// A check with no dependency, so the figures measure the endpoints and their cache, not a server.
struct InProcess;

impl HealthCheck for InProcess {
    fn component(&self) -> Component {
        Component::new("in-process", ComponentType::Component)
    }

    async fn check(&self) -> CheckResult {
        tokio::task::yield_now().await;
        CheckResult::pass()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let health = Health::builder()
        .ttl(Duration::from_secs(1))
        .check(InProcess)
        .build()?;
    let app = axum::Router::new()
        .route("/ok", axum::routing::get(|| async { "ok" }))
        .merge(health.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?.port());
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            // The script closes our stdin to stop us: a signal, not a timer.
            let mut sink = [0u8; 64];
            let mut stdin = tokio::io::stdin();
            while matches!(stdin.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await?;
    Ok(())
}
