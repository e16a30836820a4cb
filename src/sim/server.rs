//! The HTTP side: the shared simulator state, the router with every route under `/api/v1`, and
//! the middleware that injects faults and writes the request log around each API request.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::json;

use crate::money::Usd;

use super::cache::PromptCache;
use super::catalog::Catalog;
use super::errors::ApiError;
use super::faults::{Action, FaultState};
use super::ledger::{Caller, Ledger, hash_key, timestamp};
use super::reqlog::{LoggedRequest, RequestLog};
use super::{account_api, chat_api, control, lock, models_api};

/// Every route lives below this path, as on `https://openrouter.ai/api/v1`.
pub(crate) const BASE_PATH: &str = "/api/v1";

/// Requests larger than this are refused; long agent conversations fit well within it.
const BODY_LIMIT: usize = 32 * 1024 * 1024;

/// The state every handler shares.
#[derive(Debug)]
pub(crate) struct Sim {
    pub catalog: Catalog,
    pub ledger: Mutex<Ledger>,
    pub cache: Mutex<PromptCache>,
    pub faults: Mutex<FaultState>,
    pub faults_file: Option<PathBuf>,
    pub log: RequestLog,
    pub seed: u64,
    pub tool_calls: u32,
}

impl Sim {
    /// The ledger, with every charge that has come due recorded.
    pub fn ledger(&self) -> MutexGuard<'_, Ledger> {
        let mut ledger = lock(&self.ledger);
        ledger.settle(Instant::now());
        ledger
    }

    pub fn caller(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        self.ledger().authenticate(bearer(headers), Utc::now())
    }

    /// Refuse anything but the management key.
    pub fn management(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        match self.caller(headers)? {
            Caller::Management => Ok(()),
            Caller::Inference(_) => Err(ApiError::management_only()),
        }
    }

    pub fn spend_delay(&self) -> Duration {
        lock(&self.faults).faults.spend_delay()
    }
}

/// The token of an `Authorization: Bearer …` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Faults the middleware leaves to the chat handler, which must admit and bill first.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Injected {
    pub latency: Duration,
    pub drop: bool,
}

/// What a handler billed, for the request log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Billed(pub Usd);

pub(crate) fn router(sim: Arc<Sim>) -> Router {
    let api = Router::new()
        .route("/credits", get(account_api::credits))
        .route("/key", get(account_api::current_key))
        .route("/keys", get(account_api::list_keys).post(account_api::create_key))
        .route(
            "/keys/{hash}",
            get(account_api::get_key).patch(account_api::patch_key).delete(account_api::delete_key),
        )
        .route("/models", get(models_api::list))
        .route("/model/{author}/{slug}", get(models_api::one))
        .route("/chat/completions", post(chat_api::completions))
        .route("/generation", get(chat_api::generation))
        .nest("/_sim", control::router());
    Router::new()
        .nest(BASE_PATH, api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(sim.clone(), observe))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(sim)
}

async fn not_found() -> ApiError {
    ApiError::not_found("Not Found")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
}

/// The route template a path below the base URL matches, for the log and for faults.
pub(crate) fn route_of(path: &str) -> String {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let route = match segments.as_slice() {
        ["keys", _] => "/keys/{hash}",
        ["model", _, _] => "/model/{author}/{slug}",
        _ => return path.to_string(),
    };
    route.to_string()
}

/// Injects faults and logs every API request; the `/_sim/` control routes pass untouched.
async fn observe(State(sim): State<Arc<Sim>>, mut req: Request, next: Next) -> Response {
    let full = req.uri().path().to_string();
    let path = full.strip_prefix(BASE_PATH).unwrap_or(&full).to_string();
    if path == "/_sim" || path.starts_with("/_sim/") {
        return next.run(req).await;
    }
    let method = req.method().to_string();
    let query = req.uri().query().map(str::to_string);
    let route = route_of(&path);
    let key_hash = bearer(req.headers()).map(hash_key).filter(|h| sim.ledger().knows(h));
    let decision = lock(&sim.faults).decide(&route, &path);
    let is_chat = route == "/chat/completions";

    let (response, fault) = match decision.action {
        Action::Reject { status, retry_after_secs } => {
            tokio::time::sleep(decision.latency).await;
            (injected_error(status, retry_after_secs), Some(status.to_string()))
        }
        Action::Drop if !is_chat => {
            tokio::time::sleep(decision.latency).await;
            (dropped(Bytes::new()), Some("drop".to_string()))
        }
        action => {
            let drop = action == Action::Drop;
            if is_chat {
                req.extensions_mut().insert(Injected { latency: decision.latency, drop });
            } else {
                tokio::time::sleep(decision.latency).await;
            }
            (next.run(req).await, drop.then(|| "drop".to_string()))
        }
    };

    sim.log.push(LoggedRequest {
        at: timestamp(Utc::now()),
        method,
        path,
        query,
        route,
        key_hash,
        status: response.status().as_u16(),
        cost: response.extensions().get::<Billed>().map(|b| b.0),
        fault,
    });
    response
}

/// An injected error with OpenRouter's message for its status.
fn injected_error(status: u16, retry_after_secs: Option<u64>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = match status {
        429 => "Rate limit exceeded",
        500 => "Internal Server Error",
        502 | 529 => "Provider returned error",
        503 => "Service temporarily unavailable",
        524 => "Request timed out. Please try again later.",
        _ => code.canonical_reason().unwrap_or("Error"),
    };
    let mut error = ApiError::new(code, message);
    let Some(secs) = retry_after_secs else {
        return error.into_response();
    };
    let reset_ms = (Utc::now().timestamp_millis() + (secs as i64) * 1000).to_string();
    let headers = json!({"X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset_ms});
    error = error
        .with_retry_after(secs)
        .with_metadata(json!({"headers": headers, "error_type": "rate_limit_exceeded"}));
    let mut response = error.into_response();
    for (name, value) in [("x-ratelimit-limit", "20"), ("x-ratelimit-remaining", "0")] {
        response.headers_mut().insert(name, HeaderValue::from_static(value));
    }
    if let Ok(v) = HeaderValue::from_str(&reset_ms) {
        response.headers_mut().insert("x-ratelimit-reset", v);
    }
    response
}

/// A response that sends `head` and then breaks its connection.
pub(crate) fn dropped(head: Bytes) -> Response {
    let broken = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "simulated drop");
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        if head.is_empty() { vec![Err(broken)] } else { vec![Ok(head), Err(broken)] };
    let mut response = Response::new(Body::from_stream(futures_util::stream::iter(chunks)));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
