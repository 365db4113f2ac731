//! Routes, the read-only handlers, and the JSON answers every handler shares.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::{AppState, WEIGHTS_KEY};

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/matching/weights", get(matching_weights))
        .route("/v1/features", get(features))
        .route("/v1/orders", post(crate::orders::create_order))
        // Shared, not cloned per request: the state holds pools and a channel.
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

/// A config value kept as its JSON encoding: the live config decodes it once per change, and each
/// response shares those bytes instead of serializing the value again.
struct EncodedJson(Bytes);

impl<'de> Deserialize<'de> for EncodedJson {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        serde_json::to_vec(&value)
            .map(|encoded| Self(Bytes::from(encoded)))
            .map_err(serde::de::Error::custom)
    }
}

/// `GET /v1/matching/weights`: the current value of `matching.algorithm.weights`, as stored.
async fn matching_weights(State(state): State<Arc<AppState>>) -> Response {
    match state.config.get::<EncodedJson>(WEIGHTS_KEY) {
        Some(value) => (
            [(header::CONTENT_TYPE, "application/json")],
            value.0.clone(),
        )
            .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!(
                "config key {WEIGHTS_KEY} is not set for environment {}; set it with `cargo xtask config set`",
                state.settings.config_env
            ),
        ),
    }
}

/// The answer of `GET /v1/features`.
#[derive(Serialize)]
struct Features<'a> {
    tenant: &'a str,
    flags: BTreeMap<&'a str, bool>,
}

/// `GET /v1/features?tenant=T`: every known flag, evaluated for the tenant.
async fn features(State(state): State<Arc<AppState>>, RawQuery(query): RawQuery) -> Response {
    let tenant = query.as_deref().and_then(|query| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "tenant")
            .map(|(_, value)| value.into_owned())
    });
    let Some(tenant) = tenant else {
        return error(
            StatusCode::BAD_REQUEST,
            "query parameter tenant is missing: call /v1/features?tenant=<tenant id>",
        );
    };
    if let Err(message) = crate::tenant::validate_tenant(&tenant) {
        return error(StatusCode::BAD_REQUEST, message);
    }
    let set = state.flags.snapshot();
    let flags: BTreeMap<&str, bool> = set
        .iter()
        .map(|flag| {
            (
                flag.name.as_str(),
                state.flags.is_enabled(&flag.name, &tenant),
            )
        })
        .collect();
    json(
        StatusCode::OK,
        &Features {
            tenant: &tenant,
            flags,
        },
    )
}
