//! The simulator-only control surface under `/api/v1/_sim/`, for tests that drive `apf sim` from
//! outside the process. It does not exist on OpenRouter. Every route takes the management key;
//! none is logged or subject to faults.
//!
//! | route | body | answer |
//! | --- | --- | --- |
//! | `GET /_sim/state` | | account figures, faults in force, request counts |
//! | `GET /_sim/faults` | | the faults in force |
//! | `POST /_sim/faults` | a [`Faults`] object (JSON) | replaces the faults; the new ones |
//! | `POST /_sim/faults/reload` | | re-reads the `--faults` file; the new faults |
//! | `POST /_sim/keys/{hash}/spend` | `{"usd": "0.05"}` | sets the key's recorded usage; the key |
//! | `POST /_sim/credits` | `{"usd": "10"}` | sets the account's total credits; `/credits` |
//! | `GET /_sim/requests` | | the request log and its counts per `"METHOD /route"` |

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use crate::money::Usd;
use crate::openrouter::wire::Data;

use super::errors::ApiError;
use super::faults::Faults;
use super::lock;
use super::server::Sim;

type Answer = Result<Response, ApiError>;

pub(crate) fn router() -> Router<Arc<Sim>> {
    Router::new()
        .route("/state", get(state))
        .route("/faults", get(faults).post(set_faults))
        .route("/faults/reload", post(reload_faults))
        .route("/keys/{hash}/spend", post(set_spend))
        .route("/credits", post(set_credits))
        .route("/requests", get(requests))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Amount {
    usd: Usd,
}

fn amount(body: &Bytes) -> Result<Usd, ApiError> {
    let usd = serde_json::from_slice::<Amount>(body)
        .map(|a| a.usd)
        .map_err(|e| ApiError::bad_request(format!("expected {{\"usd\": \"0.05\"}}: {e}")))?;
    if usd.is_negative() {
        return Err(ApiError::bad_request("usd: must not be negative"));
    }
    Ok(usd)
}

async fn state(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Answer {
    sim.management(&headers)?;
    let account = sim.ledger().state();
    let faults = lock(&sim.faults).faults.clone();
    let body = json!({
        "account": account,
        "faults": faults,
        "models": sim.catalog.models().len(),
        "counts": sim.log.counts(),
    });
    Ok(Json(body).into_response())
}

async fn faults(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Answer {
    sim.management(&headers)?;
    Ok(Json(lock(&sim.faults).faults.clone()).into_response())
}

async fn set_faults(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Answer {
    sim.management(&headers)?;
    let faults: Faults = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("not a fault description: {e}")))?;
    faults.validate().map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
    lock(&sim.faults).faults = faults.clone();
    Ok(Json(faults).into_response())
}

async fn reload_faults(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Answer {
    sim.management(&headers)?;
    let faults = sim.reload_faults().map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
    Ok(Json(faults).into_response())
}

async fn set_spend(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Path(hash): Path<String>,
    body: Bytes,
) -> Answer {
    sim.management(&headers)?;
    let usd = amount(&body)?;
    let mut ledger = sim.ledger();
    if !ledger.set_key_usage(&hash, usd) {
        return Err(ApiError::not_found("API key not found"));
    }
    let key = ledger.key(&hash).map(|k| k.to_wire(Utc::now()));
    Ok(Json(Data { data: key }).into_response())
}

async fn set_credits(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Answer {
    sim.management(&headers)?;
    let usd = amount(&body)?;
    let mut ledger = sim.ledger();
    ledger.set_credits(usd);
    Ok(Json(Data { data: ledger.credits() }).into_response())
}

async fn requests(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Answer {
    sim.management(&headers)?;
    let body = json!({"counts": sim.log.counts(), "requests": sim.log.entries()});
    Ok(Json(body).into_response())
}
