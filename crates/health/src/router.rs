//! The HTTP endpoints, as an axum [`Router`] a service merges into its own.

use std::fmt;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::check::Status;
use crate::health::Health;
use crate::report::Document;

/// The media type of every health response (draft-inadarei-api-health-check).
pub const HEALTH_JSON: &str = "application/health+json";

/// Who may see check details: `/health/status` and `/health/<component>` with `checks`,
/// `serviceId` and `version`. Without permission those endpoints answer `{"status":"…"}` with the
/// same HTTP status, so orchestrators can still use them.
///
/// Details name internal components and their errors (never passwords or URLs), so the default is
/// [`Details::Never`]; use [`Details::with_token`] where monitoring reaches the service over a
/// network others share.
#[derive(Clone)]
#[non_exhaustive]
pub enum Details {
    /// Nobody sees details.
    Never,
    /// Everybody sees details, e.g. when the port is only reachable from inside the cluster.
    Always,
    /// Requests carrying `header: token` see details.
    WithToken {
        /// The request header.
        header: HeaderName,
        /// The value it must have.
        token: String,
    },
}

impl Details {
    /// Details for requests whose `header` equals `token`, e.g. `x-health-token`.
    pub fn with_token(header: HeaderName, token: impl Into<String>) -> Self {
        Self::WithToken {
            header,
            token: token.into(),
        }
    }

    fn allowed(&self, headers: &HeaderMap) -> bool {
        match self {
            Self::Never => false,
            Self::Always => true,
            Self::WithToken { header, token } => headers
                .get(header)
                .is_some_and(|sent| constant_time_eq(sent.as_bytes(), token.as_bytes())),
        }
    }
}

impl fmt::Debug for Details {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Never => f.write_str("Never"),
            Self::Always => f.write_str("Always"),
            Self::WithToken { header, .. } => f
                .debug_struct("WithToken")
                .field("header", header)
                .field("token", &"***")
                .finish(),
        }
    }
}

/// Compares without stopping at the first difference, so response times do not reveal how much
/// of a guessed token was right (the length is not secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Health {
    /// The health endpoints, for any application state `S`:
    ///
    /// | Path | Meaning | Answer |
    /// |---|---|---|
    /// | `/health`, `/health/ready`, `/readyz` | ready to serve traffic | 200 `pass`/`warn`, 503 `fail` |
    /// | `/health/live`, `/livez` | the process answers | always 200; touches no dependency |
    /// | `/health/status` | details ([`Details`]) | 200, or 503 when failing |
    /// | `/health/<component>` | one check, e.g. `/health/database` | 200, or 503 when it fails |
    ///
    /// GET and HEAD both work. Readiness is 503 until every [`StartupTask`](crate::StartupTask)
    /// is done and from [`Health::begin_shutdown`] on.
    pub fn router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let mut router = Router::new()
            .route("/health", get(readiness))
            .route("/health/ready", get(readiness))
            .route("/readyz", get(readiness))
            .route("/health/status", get(status));
        for name in self.components() {
            let component = name.to_owned();
            router = router.route(
                &format!("/health/{name}"),
                get(move |State(health): State<Health>, headers: HeaderMap| {
                    component_status(health, component.clone(), headers)
                }),
            );
        }
        // Liveness is merged without the health state: it needs nothing from it, and axum
        // clones the state of a route for every request.
        let liveness = Router::new()
            .route("/health/live", get(liveness))
            .route("/livez", get(liveness));
        router.with_state(self.clone()).merge(liveness)
    }
}

async fn liveness() -> Response {
    respond(Status::Pass, Bytes::from_static(PASS))
}

async fn readiness(State(health): State<Health>) -> Response {
    let status = health.readiness().await;
    let body = match status {
        Status::Pass => PASS,
        Status::Warn => WARN,
        Status::Fail => FAIL,
    };
    respond(status, Bytes::from_static(body))
}

async fn status(State(health): State<Health>, headers: HeaderMap) -> Response {
    let details = health.inner().details.allowed(&headers);
    let report = health.report().await;
    respond_document(&report.document(details))
}

async fn component_status(health: Health, name: String, headers: HeaderMap) -> Response {
    let details = health.inner().details.allowed(&headers);
    if !health.has_component(&name) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let report = health.report().await;
    match report.component_document(&name, details) {
        Some(document) => respond_document(&document),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

const PASS: &[u8] = br#"{"status":"pass"}"#;
const WARN: &[u8] = br#"{"status":"warn"}"#;
const FAIL: &[u8] = br#"{"status":"fail"}"#;

fn respond_document(document: &Document<'_>) -> Response {
    match serde_json::to_vec(document) {
        Ok(body) => respond(document.status, Bytes::from(body)),
        // Serializing strings, numbers and maps cannot fail; if it ever does, say fail, not pass.
        Err(_) => respond(Status::Fail, Bytes::from_static(FAIL)),
    }
}

fn respond(status: Status, body: Bytes) -> Response {
    let code = match status {
        Status::Pass | Status::Warn => StatusCode::OK,
        Status::Fail => StatusCode::SERVICE_UNAVAILABLE,
    };
    (
        code,
        [
            (CONTENT_TYPE, HeaderValue::from_static(HEALTH_JSON)),
            // A cached health answer is a stale one: proxies and clients must ask every time.
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison_needs_equal_bytes() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn debug_hides_the_token() {
        let details = Details::with_token(HeaderName::from_static("x-health-token"), "hunter2");
        assert!(!format!("{details:?}").contains("hunter2"));
    }
}
