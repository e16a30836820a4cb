//! `/credits`, `/key` and the `/keys` family. All but `/key` take the management key only; an
//! inference key gets 403 "Only management keys can perform this operation". Request bodies are
//! validated the way the OpenAPI document types them, with 400s naming the bad field.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::money::Usd;
use crate::openrouter::wire::{CreatedKey, Data, Deleted};

use super::errors::ApiError;
use super::ledger::{Caller, KeyPatch, LimitReset, NewKey};
use super::server::Sim;

/// Keys per page of `GET /keys`, as OpenRouter's documentation gives it.
pub(crate) const KEYS_PAGE: usize = 100;

type Answer = Result<Response, ApiError>;

fn ok<T: serde::Serialize>(data: T) -> Answer {
    Ok(Json(Data { data }).into_response())
}

pub(crate) async fn credits(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Answer {
    sim.management(&headers)?;
    ok(sim.ledger().credits())
}

pub(crate) async fn current_key(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Answer {
    let caller = sim.caller(&headers)?;
    let ledger = sim.ledger();
    match caller {
        Caller::Management => ok(ledger.management_info()),
        Caller::Inference(hash) => {
            let key = ledger.key(&hash).ok_or_else(|| ApiError::unauthorized("User not found."))?;
            ok(key.to_info(Utc::now(), ledger.is_free_tier()))
        }
    }
}

pub(crate) async fn list_keys(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Answer {
    sim.management(&headers)?;
    let offset = match query.get("offset").map(|s| s.trim()) {
        None | Some("") => 0,
        Some(raw) => raw.parse::<usize>().map_err(|_| {
            ApiError::bad_request(format!("offset: expected a non-negative integer, got {raw:?}"))
        })?,
    };
    let include_disabled = query.get("include_disabled").is_some_and(|v| v == "true");
    let ledger = sim.ledger();
    let now = Utc::now();
    let page: Vec<_> = ledger
        .list_keys(include_disabled, offset, KEYS_PAGE)
        .into_iter()
        .map(|k| k.to_wire(now))
        .collect();
    ok(page)
}

pub(crate) async fn create_key(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    sim.management(&headers)?;
    let fields = json_object(&body)?;
    let now = Utc::now();
    let new = NewKey {
        name: required_name(&fields)?,
        limit: optional_limit(&fields)?.flatten(),
        limit_reset: optional_reset(&fields)?.flatten(),
        include_byok_in_limit: optional_bool(&fields, "include_byok_in_limit")?.unwrap_or(false),
        expires_at: expires_at(&fields, now)?,
    };
    let (record, key) = sim.ledger().create_key(new, now);
    let body = CreatedKey { data: record.to_wire(now), key };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub(crate) async fn get_key(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(hash): Path<String>,
) -> Answer {
    sim.management(&headers)?;
    let ledger = sim.ledger();
    let key = ledger.key(&hash).ok_or_else(key_not_found)?;
    ok(key.to_wire(Utc::now()))
}

pub(crate) async fn patch_key(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(hash): Path<String>,
    body: Bytes,
) -> Answer {
    sim.management(&headers)?;
    let fields = json_object(&body)?;
    let name = match fields.get("name") {
        None => None,
        Some(_) => Some(required_name(&fields)?),
    };
    let patch = KeyPatch {
        name,
        disabled: optional_bool(&fields, "disabled")?,
        limit: optional_limit(&fields)?,
        limit_reset: optional_reset(&fields)?,
        include_byok_in_limit: optional_bool(&fields, "include_byok_in_limit")?,
    };
    let now = Utc::now();
    let mut ledger = sim.ledger();
    let key = ledger.patch_key(&hash, patch, now).ok_or_else(key_not_found)?;
    ok(key.to_wire(now))
}

pub(crate) async fn delete_key(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(hash): Path<String>,
) -> Answer {
    sim.management(&headers)?;
    if !sim.ledger().delete_key(&hash) {
        return Err(key_not_found());
    }
    Ok(Json(Deleted { deleted: true }).into_response())
}

fn key_not_found() -> ApiError {
    ApiError::not_found("API key not found")
}

/// The request body as a JSON object, or a 400.
pub(crate) fn json_object(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("Request body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("Invalid JSON in request body: {e}"))),
    }
}

fn required_name(fields: &Map<String, Value>) -> Result<String, ApiError> {
    match fields.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(ApiError::bad_request("name: must not be empty")),
        Some(_) => Err(ApiError::bad_request("name: expected a string")),
        None => Err(ApiError::bad_request("name: Required")),
    }
}

fn optional_bool(fields: &Map<String, Value>, field: &str) -> Result<Option<bool>, ApiError> {
    match fields.get(field) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::bad_request(format!("{field}: expected a boolean"))),
    }
}

/// `limit`: absent (`None`), `null` (`Some(None)`, no cap), or a non-negative number of dollars.
fn optional_limit(fields: &Map<String, Value>) -> Result<Option<Option<Usd>>, ApiError> {
    match fields.get("limit") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::Number(n)) => {
            let usd = n.as_f64().and_then(Usd::from_f64).filter(|u| !u.is_negative());
            usd.map(|u| Some(Some(u)))
                .ok_or_else(|| ApiError::bad_request("limit: expected a non-negative number"))
        }
        Some(_) => Err(ApiError::bad_request("limit: expected a number or null")),
    }
}

fn optional_reset(fields: &Map<String, Value>) -> Result<Option<Option<LimitReset>>, ApiError> {
    match fields.get("limit_reset") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => LimitReset::parse(s).map(|r| Some(Some(r))).ok_or_else(|| {
            ApiError::bad_request(format!(
                "limit_reset: expected \"daily\", \"weekly\", \"monthly\" or null, got {s:?}"
            ))
        }),
        Some(_) => Err(ApiError::bad_request("limit_reset: expected a string or null")),
    }
}

/// `expires_at`: an ISO 8601 UTC time in the future, or absent/null for none.
fn expires_at(
    fields: &Map<String, Value>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    let raw = match fields.get("expires_at") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s,
        Some(_) => return Err(ApiError::bad_request("expires_at: expected a string or null")),
    };
    let parsed = DateTime::parse_from_rfc3339(raw).map_err(|_| {
        ApiError::bad_request(format!("expires_at: {raw:?} is not an ISO 8601 time"))
    })?;
    if parsed.offset().local_minus_utc() != 0 {
        return Err(ApiError::bad_request("expires_at: must be in UTC"));
    }
    let at = parsed.with_timezone(&Utc);
    if at <= now {
        return Err(ApiError::bad_request("expires_at: must be in the future"));
    }
    Ok(Some(at))
}
