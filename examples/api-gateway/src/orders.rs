//! `POST /v1/orders`: validate, check risk, reserve the idempotency key, store the order with its
//! event.

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use deadpool_redis::redis;
use groundwork_outbox::OutboxMessage;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::AppState;
use crate::http::{error, json};

/// Routing key of the event published for every stored order.
pub const ORDER_CREATED: &str = "order.created";

/// The `order.created` message body (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderCreated {
    /// The order's id in the gateway's `orders` table.
    pub order_id: i64,
    /// The tenant that placed it.
    pub tenant: String,
    /// Its amount.
    pub amount: f64,
}

/// The request body. Unknown fields are ignored, so clients may send more than this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct NewOrder {
    tenant: String,
    amount: f64,
}

/// What the gateway answers for a created order, and replays for a repeated idempotency key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CreatedOrder {
    id: i64,
    tenant: String,
    amount: f64,
    status: String,
}

/// What Redis holds under an idempotency key: the request it was first used with and, once the
/// order is stored, the answer.
#[derive(Debug, Serialize, Deserialize)]
struct IdempotencyRecord {
    request: NewOrder,
    response: Option<CreatedOrder>,
}

const MAX_KEY_LEN: usize = 255;
const MAX_AMOUNT: f64 = 1e12;
/// How long a reservation stays while the order is being stored; a crashed request frees it.
const RESERVATION_SECS: u64 = 60;

pub(crate) async fn create_order(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The body is parsed here rather than by axum's `Json`, so that every client mistake (bad
    // JSON, a missing field, a missing content type) is a 400 with a message, never a 415 or 422.
    let order = match parse_order(&body) {
        Ok(order) => order,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let key = match idempotency_key(&headers) {
        Ok(key) => key,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };

    if state.flags.is_enabled(crate::RISK_FLAG, &order.tenant) {
        let threshold = *state.risk_threshold.get();
        if order.amount > threshold {
            tracing::info!(tenant = %order.tenant, amount = order.amount, threshold, "order rejected by risk policy");
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "order rejected by risk policy: amount {} is over the threshold {threshold} for tenant {}",
                    order.amount, order.tenant
                ),
            );
        }
    }

    let reservation = match &key {
        None => None,
        Some(key) => {
            let redis_key = format!(
                "{}idempotency:{}:{key}",
                state.settings.redis_key_prefix,
                crate::tenant::key_part(&order.tenant)
            );
            match reserve(&state, &redis_key, &order).await {
                Ok(Reservation::New) => Some(redis_key),
                Ok(Reservation::Replay(created)) => return created_response(&created, true),
                Ok(Reservation::InProgress) => {
                    return error(
                        StatusCode::CONFLICT,
                        "a request with this Idempotency-Key is still being processed; retry shortly",
                    );
                }
                Ok(Reservation::Mismatch) => {
                    return error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "this Idempotency-Key was used with a different request; use a new key",
                    );
                }
                Err(failure) => {
                    tracing::error!(error = format!("{failure:#}"), "idempotency check failed");
                    return error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "cannot check the Idempotency-Key (Redis unavailable); retry later",
                    );
                }
            }
        }
    };

    match store(&state, &order, key.as_deref()).await {
        Ok(created) => {
            if let Some(redis_key) = &reservation {
                let record = IdempotencyRecord {
                    request: order,
                    response: Some(created.clone()),
                };
                if let Err(failure) = remember(&state, redis_key, &record).await {
                    // The order exists; a retry with this key would now create a second one, so
                    // say so loudly, but the client still gets its 201.
                    tracing::error!(
                        error = format!("{failure:#}"),
                        order_id = created.id,
                        "cannot record the idempotency key"
                    );
                }
            }
            created_response(&created, false)
        }
        Err(failure) => {
            tracing::error!(error = format!("{failure:#}"), "cannot create order");
            if let Some(redis_key) = &reservation {
                release(&state, redis_key).await;
            }
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot store the order right now; nothing was created, retry later",
            )
        }
    }
}

fn parse_order(body: &[u8]) -> Result<NewOrder, String> {
    // JSON's own whitespace; the first other byte says what kind of value the body is.
    let Some(&first) = body
        .iter()
        .find(|byte| !matches!(byte, b' ' | b'\t' | b'\n' | b'\r'))
    else {
        return Err(
            r#"request body is empty: send JSON like {"tenant":"tenant-1","amount":120.5}"#
                .to_owned(),
        );
    };
    // serde would read a struct from an array too (`["t",1]`); an order is an object.
    if first != b'{' {
        return Err(
            r#"request body must be a JSON object like {"tenant":"tenant-1","amount":120.5}"#
                .to_owned(),
        );
    }
    let order: NewOrder = serde_json::from_slice(body).map_err(|error| {
        format!(r#"request body is not a valid order ({error}): send JSON like {{"tenant":"tenant-1","amount":120.5}}"#)
    })?;
    crate::tenant::validate_tenant(&order.tenant)?;
    if !order.amount.is_finite() || order.amount <= 0.0 || order.amount >= MAX_AMOUNT {
        return Err(format!(
            "amount must be a positive number below {MAX_AMOUNT}"
        ));
    }
    // The shortest decimal that reads back as the same number, which is what the client sent
    // unless it sent more digits than a double holds; never in exponent form.
    let decimal = order.amount.to_string();
    if decimal
        .split_once('.')
        .is_some_and(|(_, decimals)| decimals.len() > 2)
    {
        return Err(
            "amount must have at most two decimal places (the smallest amount is 0.01)".to_owned(),
        );
    }
    Ok(order)
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, String> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| "Idempotency-Key must be visible ASCII".to_owned())?;
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_LEN} characters"
        ));
    }
    Ok(Some(key.to_owned()))
}

enum Reservation {
    /// The key was free and is now held by this request.
    New,
    /// The key already created this order.
    Replay(CreatedOrder),
    /// Another request holds the key and has not finished.
    InProgress,
    /// The key was used with another body.
    Mismatch,
}

async fn reserve(
    state: &AppState,
    redis_key: &str,
    order: &NewOrder,
) -> anyhow::Result<Reservation> {
    let mut connection = state
        .redis
        .get()
        .await
        .context("getting a Redis connection")?;
    let pending = serde_json::to_string(&IdempotencyRecord {
        request: order.clone(),
        response: None,
    })?;
    let set: Option<String> = redis::cmd("SET")
        .arg(redis_key)
        .arg(&pending)
        .arg("NX")
        .arg("EX")
        .arg(RESERVATION_SECS)
        .query_async(&mut connection)
        .await
        .context("SET NX on the idempotency key")?;
    if set.is_some() {
        return Ok(Reservation::New);
    }
    let existing: Option<String> = redis::cmd("GET")
        .arg(redis_key)
        .query_async(&mut connection)
        .await
        .context("GET of the idempotency key")?;
    // Expired between the two commands: rare enough to ask the client to retry.
    let Some(existing) = existing else {
        return Ok(Reservation::InProgress);
    };
    let record: IdempotencyRecord =
        serde_json::from_str(&existing).context("decoding the stored idempotency record")?;
    if record.request != *order {
        return Ok(Reservation::Mismatch);
    }
    Ok(match record.response {
        Some(created) => Reservation::Replay(created),
        None => Reservation::InProgress,
    })
}

async fn remember(
    state: &AppState,
    redis_key: &str,
    record: &IdempotencyRecord,
) -> anyhow::Result<()> {
    let mut connection = state.redis.get().await?;
    let () = redis::cmd("SET")
        .arg(redis_key)
        .arg(serde_json::to_string(record)?)
        .arg("EX")
        .arg(state.settings.idempotency_ttl_secs)
        .query_async(&mut connection)
        .await?;
    Ok(())
}

async fn release(state: &AppState, redis_key: &str) {
    let result: anyhow::Result<()> = async {
        let mut connection = state.redis.get().await?;
        let _: i64 = redis::cmd("DEL")
            .arg(redis_key)
            .query_async(&mut connection)
            .await?;
        Ok(())
    }
    .await;
    if let Err(failure) = result {
        // The reservation expires on its own after RESERVATION_SECS.
        tracing::warn!(
            error = format!("{failure:#}"),
            "cannot release the idempotency key"
        );
    }
}

/// Inserts the order and its `order.created` event in one transaction. The outbox relay publishes
/// the event once the transaction has committed, so the order-worker never receives an event for
/// an order it cannot see yet, and an order that fails to commit leaves no event behind.
async fn store(
    state: &AppState,
    order: &NewOrder,
    key: Option<&str>,
) -> anyhow::Result<CreatedOrder> {
    let mut tx = state.db.begin().await.context("beginning a transaction")?;
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO orders (tenant, amount, idempotency_key) VALUES ($1, $2::float8, $3) RETURNING id",
    )
    .bind(&order.tenant)
    .bind(order.amount)
    .bind(key)
    .fetch_one(&mut *tx)
    .await
    .context("inserting the order")?;

    let event = OrderCreated {
        order_id: id,
        tenant: order.tenant.clone(),
        amount: order.amount,
    };
    groundwork_outbox::enqueue(&mut tx, &order_created(state, &event)?)
        .await
        .context("writing order.created to the outbox")?;
    tx.commit().await.context("committing the order")?;
    tracing::info!(order_id = id, tenant = %order.tenant, "order created");
    Ok(CreatedOrder {
        id,
        tenant: order.tenant.clone(),
        amount: order.amount,
        status: "created".to_owned(),
    })
}

/// The `order.created` message: JSON, persistent, the order id as `message_id`, and the request's
/// trace context in its headers, so the worker's span continues the request's trace.
///
/// The relay publishes it `mandatory`: while no queue is bound (the order-worker has never
/// started and declared its durable queue), the broker returns it and it waits in the outbox.
fn order_created(state: &AppState, event: &OrderCreated) -> anyhow::Result<OutboxMessage> {
    let mut headers = lapin::types::FieldTable::default();
    groundwork_telemetry::amqp::inject_current(&mut headers);
    Ok(OutboxMessage::new(
        state.settings.orders_exchange.as_str(),
        ORDER_CREATED,
        serde_json::to_vec(event)?,
    )
    .amqp_headers(&headers)
    .content_type("application/json")
    .message_id(event.order_id.to_string())
    .kind(ORDER_CREATED))
}

fn created_response(created: &CreatedOrder, replayed: bool) -> Response {
    let mut response = json(StatusCode::CREATED, created);
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/orders/{}", created.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::parse_order;

    fn problem(body: &[u8]) -> String {
        parse_order(body).err().unwrap_or_default()
    }

    #[test]
    fn client_mistakes_are_described() {
        assert!(problem(b"").contains("empty"));
        assert!(problem(b"{").contains("not a valid order"));
        assert!(problem(br#"{"tenant":"t"}"#).contains("missing field `amount`"));
        assert!(problem(br#"{"tenant":"","amount":1}"#).contains("tenant"));
        assert!(problem(br#"{"tenant":"t","amount":-1}"#).contains("positive"));
        assert!(problem(br#"{"tenant":"t","amount":1.234}"#).contains("two decimal"));
        assert!(parse_order(br#"{"tenant":"t","amount":"12"}"#).is_err());
    }

    #[test]
    fn a_valid_order_parses_and_extra_fields_are_ignored() -> Result<(), String> {
        let order = parse_order(br#"{"tenant":"tenant-1","amount":120.5,"note":"x"}"#)?;
        assert_eq!(order.tenant, "tenant-1");
        assert!((order.amount - 120.5).abs() < f64::EPSILON);
        Ok(())
    }
}
