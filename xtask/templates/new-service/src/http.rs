//! Routes, handlers, and the JSON answers they share.

use std::sync::Arc;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
//@if postgres
use axum::routing::post;
//@end
use serde::Serialize;

use crate::AppState;

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/hello", get(hello))
        //@if postgres
        .route("/v1/visits", post(visit))
        //@end
        // Shared, not cloned per request: the state holds pools and connections.
        .with_state(Arc::new(state))
}

/// `status` with `value` as JSON.
pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot encode a response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// `{"error": message}` with `status`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    #[derive(Serialize)]
    struct ErrorBody {
        error: String,
    }
    json(
        status,
        &ErrorBody {
            error: message.into(),
        },
    )
}

/// The `tenant` query parameter: 1 to 128 characters without control characters. The error is
/// the message of the 400 answer.
fn tenant(query: Option<&str>) -> Result<String, &'static str> {
    let tenant = query.and_then(|query| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "tenant")
            .map(|(_, value)| value.into_owned())
    });
    match tenant {
        None => Err("query parameter tenant is missing: add ?tenant=<tenant id>"),
        Some(tenant)
            if tenant.is_empty()
                || tenant.chars().count() > 128
                || tenant.chars().any(char::is_control) =>
        {
            Err("query parameter tenant must be 1 to 128 characters without control characters")
        }
        Some(tenant) => Ok(tenant),
    }
}

#[derive(Serialize)]
struct Hello {
    tenant: String,
    greeting: String,
}

/// `GET /v1/hello?tenant=T`: the greeting from hot-reload config, upper case when the tenant's
/// flag says so. The log line carries the request's trace id.
//@unless live flags
#[allow(clippy::unused_async, reason = "axum handlers are async")]
//@end
async fn hello(
    //@if live flags
    State(state): State<Arc<AppState>>,
    //@end
    //@unless live flags
    State(_state): State<Arc<AppState>>,
    //@end
    RawQuery(query): RawQuery,
) -> Response {
    let tenant = match tenant(query.as_deref()) {
        Ok(tenant) => tenant,
        Err(problem) => return error(StatusCode::BAD_REQUEST, problem),
    };
    //@if live
    let greeting: String = state
        .config
        .get_or(crate::GREETING_KEY, crate::DEFAULT_GREETING.to_owned());
    //@end
    //@unless live
    let greeting = crate::DEFAULT_GREETING.to_owned();
    //@end
    //@if flags
    let greeting = if state.flags.is_enabled(crate::SHOUT_FLAG, &tenant) {
        greeting.to_uppercase()
    } else {
        greeting
    };
    //@end
    tracing::info!(tenant = %tenant, greeting = %greeting, "greeted");
    json(StatusCode::OK, &Hello { tenant, greeting })
}
//@if postgres

#[derive(Serialize)]
struct Visits {
    tenant: String,
    visits: i64,
}

/// `POST /v1/visits?tenant=T`: counts one visit of the tenant, answers the total.
async fn visit(State(state): State<Arc<AppState>>, RawQuery(query): RawQuery) -> Response {
    let tenant = match tenant(query.as_deref()) {
        Ok(tenant) => tenant,
        Err(problem) => return error(StatusCode::BAD_REQUEST, problem),
    };
    let counted: Result<i64, sqlx::Error> = sqlx::query_scalar(
        "INSERT INTO visits (tenant, visits) VALUES ($1, 1)
         ON CONFLICT (tenant) DO UPDATE SET visits = visits.visits + 1, updated_at = now()
         RETURNING visits",
    )
    .bind(&tenant)
    .fetch_one(&state.db)
    .await;
    match counted {
        Ok(visits) => {
            tracing::info!(tenant = %tenant, visits, "visit counted");
            json(StatusCode::OK, &Visits { tenant, visits })
        }
        Err(failure) => {
            tracing::error!(error = %failure, "counting a visit failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database did not answer; try again",
            )
        }
    }
}
//@end
