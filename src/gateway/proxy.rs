//! The HTTP side of the gateway: the routes, the check of the gateway token, and the exchange
//! with upstream that reserves, forwards, passes the answer back and settles.
//!
//! Each forwarded chat request runs in a task of its own that owns the reservation, so a client
//! that goes away (which drops the handler) cannot leave it unsettled: a stream is read on to its
//! end after the client has gone, and the cost comes from its final usage chunk. When no usage
//! ever arrives (a cut connection, a body that is not JSON), the generation is looked up with
//! `GET /generation?id=` a few times over about eight seconds (it 404s for a while after an
//! interrupted stream), and failing that the request is booked at its reservation, the worst
//! case, and its event says `cost_estimated`. A non-2xx answer from upstream, or a connection
//! refused before anything was sent, is booked at zero: OpenRouter bills no refused request.
//! Should the task end any other way, dropping it books the reservation.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, broadcast, mpsc, oneshot};

use crate::money::Usd;
use crate::openrouter::wire;
use crate::secret::Secret;

use super::estimate::{self, ChatShape, times};
use super::event::{CostSource, Endpoint, RequestEvent};
use super::ledger::{Ledger, Refusal, Registry, Settlement, Standing, Usage};
use super::prices::WorstRates;
use super::scan::{self, Lines, Seen, scrub};

/// Every route lives below this path, as on `https://openrouter.ai/api/v1`.
pub(crate) const BASE_PATH: &str = "/api/v1";

/// Agent conversations with tools and files fit well within this.
const BODY_LIMIT: usize = 32 * 1024 * 1024;

/// Request headers passed upstream; everything else (the gateway token above all) stays here.
const FORWARD_REQUEST: &[&str] = &[
    "accept",
    "user-agent",
    "http-referer",
    "x-title",
    "x-openrouter-title",
    "x-openrouter-categories",
    "x-openrouter-metadata",
    "x-openrouter-cache",
    "x-openrouter-cache-ttl",
    "x-session-id",
];

/// Waits before each `/generation` lookup of a request that ended without usage.
pub(crate) const LOOKUP_DELAYS: [Duration; 5] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_millis(1000),
    Duration::from_millis(2000),
    Duration::from_millis(4000),
];

/// Lock a mutex, taking over its data if a panicking thread left it poisoned: the registry is
/// consistent between statements, so a poisoned lock is still usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The state every handler shares.
pub(crate) struct Shared {
    pub registry: Mutex<Registry>,
    /// The upstream API root, without a trailing slash.
    pub upstream: String,
    pub http: reqwest::Client,
    pub events: broadcast::Sender<RequestEvent>,
    /// Woken whenever a request settles.
    pub settled: Notify,
    pub lookup_delays: Vec<Duration>,
}

impl Shared {
    fn emit(&self, event: RequestEvent) {
        tracing::debug!(
            alias = %event.alias,
            status = event.status,
            cost = %event.cost,
            "gateway: {:?} {}",
            event.endpoint,
            event.model.as_deref().unwrap_or("-")
        );
        // No subscriber is not an error: events are for whoever listens.
        let _ = self.events.send(event);
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/chat/completions", post(chat))
        .route("/key", get(key))
        .route("/auth/key", get(key))
        .route("/models", get(models));
    Router::new()
        .nest(BASE_PATH, api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared)
}

/// A response in OpenRouter's error envelope.
pub(crate) fn error(status: StatusCode, message: &str, metadata: Option<Value>) -> Response {
    let body = wire::ErrorBody {
        error: wire::ErrorDetail {
            code: Some(i64::from(status.as_u16())),
            message: message.to_string(),
            metadata,
        },
        user_id: None,
    };
    (status, axum::Json(body)).into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not Found", None)
}

async fn method_not_allowed() -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed", None)
}

/// The token of an `Authorization: Bearer …` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The alias the request's token opens, or OpenRouter's 401 for a missing or unknown key.
#[allow(clippy::result_large_err)]
fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<String, Response> {
    let Some(token) = bearer(headers) else {
        return Err(error(StatusCode::UNAUTHORIZED, "No auth credentials found", None));
    };
    let alias = lock(&shared.registry).authenticate(token);
    alias.ok_or_else(|| error(StatusCode::UNAUTHORIZED, "User not found.", None))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn budget_words(s: &Standing) -> String {
    format!(
        "raise this model's budget in the apf experiment ({} of {} spent, {} reserved by requests \
         in flight)",
        s.spent, s.budget, s.reserved
    )
}

fn standing_metadata(error_type: &str, s: &Standing) -> Value {
    json!({
        "error_type": error_type,
        "apf_gateway": {
            "budget": s.budget.to_f64(),
            "spent": s.spent.to_f64(),
            "reserved": s.reserved.to_f64(),
        },
    })
}

/// The status, message and metadata a refusal is answered with, in OpenRouter's words where
/// OpenRouter has words for it (agents parse "can only afford N" to retry with less).
fn refusal(r: &Refusal) -> (StatusCode, String, Option<Value>) {
    match r {
        Refusal::Bad(bad) => (StatusCode::BAD_REQUEST, bad.message(), None),
        Refusal::ModelNotAllowed { model, allowed } => (
            StatusCode::FORBIDDEN,
            format!(
                "Model {model} is not allowed for this key by the apf gateway. Allowed: {}.",
                allowed.join(", ")
            ),
            Some(json!({"error_type": "model_not_allowed"})),
        ),
        Refusal::Spent(s) => (
            StatusCode::FORBIDDEN,
            format!(
                "Key limit exceeded (total limit). This model's apf budget of {} is spent ({}).",
                s.budget, s.spent
            ),
            Some(standing_metadata("key_limit_exceeded", s)),
        ),
        Refusal::Prompt { tokens, can, standing } => (
            StatusCode::PAYMENT_REQUIRED,
            format!(
                "Prompt tokens limit exceeded: {tokens} > {can}. To increase, {}",
                budget_words(standing)
            ),
            Some(standing_metadata("payment_required", standing)),
        ),
        Refusal::Completion { requested, can, standing } => {
            let requested = match requested {
                Some(n) => format!("{n} tokens"),
                None => "the model's largest output".to_string(),
            };
            (
                StatusCode::PAYMENT_REQUIRED,
                format!(
                    "This request requires more credits, or fewer max_tokens. You requested up to \
                     {requested}, but can only afford {can}. To increase, {}",
                    budget_words(standing)
                ),
                Some(standing_metadata("payment_required", standing)),
            )
        }
    }
}

fn refuse(shared: &Shared, mut event: RequestEvent, started: Instant, r: &Refusal) -> Response {
    let (status, message, metadata) = refusal(r);
    event.status = status.as_u16();
    event.error = Some(message.clone());
    event.latency_ms = millis(started.elapsed());
    shared.emit(event);
    error(status, &message, metadata)
}

async fn chat(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let started = Instant::now();
    let alias = match authenticate(&shared, &headers) {
        Ok(alias) => alias,
        Err(response) => return response,
    };
    let mut event = RequestEvent::new(&alias, Endpoint::ChatCompletions);
    let shape = match estimate::read(&body) {
        Ok(shape) => shape,
        Err(bad) => {
            lock(&shared.registry).count_refusal(&alias);
            return refuse(&shared, event, started, &Refusal::Bad(bad));
        }
    };
    event.model = Some(shape.model.clone());
    event.streamed = shape.stream;
    let admission = lock(&shared.registry).admit(&alias, &shape);
    let admitted = match admission {
        Ok(admitted) => admitted,
        Err(r) => return refuse(&shared, event, started, &r),
    };
    tracing::debug!(
        alias = %alias,
        reserved = %admitted.reservation,
        prompt_bound = admitted.prompt_bound,
        "gateway: admitted {}",
        shape.model
    );
    event.reserved = admitted.reservation;
    event.forwarded = true;
    let exchange = Exchange {
        shared: shared.clone(),
        alias,
        shape,
        reservation: admitted.reservation,
        rates: admitted.rates,
        key: admitted.upstream_key,
        started,
        event,
        settled: false,
    };
    let (reply, response) = oneshot::channel();
    tokio::spawn(exchange.run(headers, body, reply));
    response.await.unwrap_or_else(|_| {
        error(StatusCode::BAD_GATEWAY, "The apf gateway lost the upstream response.", None)
    })
}

/// One forwarded chat request, from reservation to settlement.
struct Exchange {
    shared: Arc<Shared>,
    alias: String,
    shape: ChatShape,
    reservation: Usd,
    rates: WorstRates,
    key: Secret,
    started: Instant,
    event: RequestEvent,
    settled: bool,
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if !self.settled {
            self.event.error.get_or_insert_with(|| "the request ended unsettled".to_string());
            self.settle(self.reservation, CostSource::Reservation, Usage::default());
        }
    }
}

impl Exchange {
    async fn run(mut self, headers: HeaderMap, body: Bytes, reply: oneshot::Sender<Response>) {
        let url = format!("{}/chat/completions", self.shared.upstream);
        let mut request = self
            .shared
            .http
            .post(url)
            .bearer_auth(self.key.expose())
            .header(header::CONTENT_TYPE, "application/json");
        for name in FORWARD_REQUEST {
            for value in headers.get_all(*name) {
                request = request.header(*name, value.clone());
            }
        }
        let response = match request.body(body).send().await {
            Ok(response) => response,
            Err(e) => {
                // A refused connection never reached upstream; anything later may have been
                // generated and billed.
                let source =
                    if e.is_connect() { CostSource::NotBilled } else { CostSource::Reservation };
                let message = "The apf gateway could not complete the request to OpenRouter.";
                self.event.status = StatusCode::BAD_GATEWAY.as_u16();
                self.event.error = Some(format!("{message} ({})", transport_kind(&e)));
                let cost =
                    if source == CostSource::Reservation { self.reservation } else { Usd::ZERO };
                self.settle(cost, source, Usage::default());
                let _ = reply.send(error(StatusCode::BAD_GATEWAY, message, None));
                return;
            }
        };
        self.event.first_byte_ms = Some(millis(self.started.elapsed()));
        self.event.status = response.status().as_u16();
        let is_stream = response.status().is_success()
            && response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"));
        if is_stream {
            self.stream(response, reply).await
        } else {
            self.whole(response, reply).await
        }
    }

    /// A response read whole: settled before the client sees it, so `/key` agrees at once.
    async fn whole(mut self, response: reqwest::Response, reply: oneshot::Sender<Response>) {
        let status = response.status();
        let head = response_headers(response.headers(), self.key.expose());
        let mut body = Vec::new();
        let mut cut = false;
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            match chunk {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(_) => {
                    cut = true;
                    break;
                }
            }
        }
        let mut seen = Seen::default();
        seen.body(&body);
        self.note(&seen);
        let body = scrub(Bytes::from(body), self.key.expose());
        if !status.is_success() {
            self.event.error = Some(upstream_message(&body));
            self.settle(Usd::ZERO, CostSource::NotBilled, Usage::default());
            let _ = reply.send(respond(status, head, Body::from(body)));
            return;
        }
        match (&seen.usage, cut) {
            (Some(usage), false) => {
                self.settle_usage(usage);
                let _ = reply.send(respond(status, head, Body::from(body)));
            }
            (_, true) => {
                let message =
                    "The connection to OpenRouter broke before the response was complete.";
                self.event.status = StatusCode::BAD_GATEWAY.as_u16();
                self.event.error = Some(message.to_string());
                let _ = reply.send(error(StatusCode::BAD_GATEWAY, message, None));
                self.settle_unknown(seen.id).await;
            }
            (None, false) => {
                let _ = reply.send(respond(status, head, Body::from(body)));
                self.settle_unknown(seen.id).await;
            }
        }
    }

    /// A stream passed on line by line as it arrives, and read to its end whether or not the
    /// client is still there.
    async fn stream(mut self, response: reqwest::Response, reply: oneshot::Sender<Response>) {
        let status = response.status();
        let head = response_headers(response.headers(), self.key.expose());
        let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
        let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|frame| (frame, rx))
        }));
        let mut client_gone = reply.send(respond(status, head, body)).is_err();
        let mut upstream = response.bytes_stream();
        let mut lines = Lines::default();
        let mut seen = Seen::default();
        let mut cut = false;
        loop {
            let (ready, end) = match upstream.next().await {
                Some(Ok(chunk)) => (lines.push(chunk), false),
                Some(Err(_)) => {
                    cut = true;
                    (lines.finish(), true)
                }
                None => (lines.finish(), true),
            };
            if let Some(ready) = ready {
                seen.sse(&ready);
                // Booked before the usage chunk goes on, so a client that reads its usage and
                // then asks `/key` sees it counted.
                if !self.settled
                    && let Some(usage) = seen.usage.clone()
                {
                    self.note(&seen);
                    self.event.client_disconnected = client_gone;
                    self.settle_usage(&usage);
                }
                if !client_gone && tx.send(Ok(scrub(ready, self.key.expose()))).await.is_err() {
                    client_gone = true;
                }
            }
            if end {
                break;
            }
        }
        if cut && !client_gone {
            let broken = std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the upstream stream broke",
            );
            let _ = tx.send(Err(broken)).await;
        }
        drop(tx);
        if !self.settled {
            self.note(&seen);
            self.event.client_disconnected = client_gone;
            if cut {
                self.event.error = Some("the upstream stream broke before its usage".into());
            }
            self.settle_unknown(seen.id).await;
        }
    }

    fn note(&mut self, seen: &Seen) {
        if let Some(model) = &seen.model {
            self.event.model = Some(model.clone());
        }
        if seen.id.is_some() {
            self.event.generation_id.clone_from(&seen.id);
        }
    }

    fn settle_usage(&mut self, usage: &wire::Usage) {
        let counts = scan::counts(usage);
        match usage.cost {
            Some(cost) => self.settle(cost, CostSource::Usage, counts),
            None => {
                let r = &self.rates;
                let cost = r.request
                    + times(r.prompt, counts.prompt)
                    + times(r.completion, counts.completion);
                self.settle(cost, CostSource::Tokens, counts);
            }
        }
    }

    /// Settle a request whose response told no cost: from `/generation`, else the worst case.
    async fn settle_unknown(&mut self, id: Option<String>) {
        let found = match id.as_deref().filter(|id| plain_id(id)) {
            Some(id) => self.lookup(id).await,
            None => None,
        };
        match found {
            Some((cost, usage)) => self.settle(cost, CostSource::Generation, usage),
            None => self.settle(self.reservation, CostSource::Reservation, Usage::default()),
        }
    }

    async fn lookup(&self, id: &str) -> Option<(Usd, Usage)> {
        let url = format!("{}/generation?id={id}", self.shared.upstream);
        for delay in &self.shared.lookup_delays {
            tokio::time::sleep(*delay).await;
            let Ok(response) =
                self.shared.http.get(&url).bearer_auth(self.key.expose()).send().await
            else {
                continue;
            };
            if !response.status().is_success() {
                continue;
            }
            let Ok(body) = response.json::<Value>().await else { continue };
            let data = &body["data"];
            let Some(cost) = data.get("total_cost").and_then(Value::as_f64).and_then(Usd::from_f64)
            else {
                continue;
            };
            let count = |native: &str, normal: &str| {
                data.get(native).or_else(|| data.get(normal)).and_then(Value::as_u64).unwrap_or(0)
            };
            let usage = Usage {
                prompt: count("native_tokens_prompt", "tokens_prompt"),
                completion: count("native_tokens_completion", "tokens_completion"),
                cached: count("native_tokens_cached", "native_tokens_cached"),
                cache_write: 0,
            };
            return Some((cost, usage));
        }
        None
    }

    fn settle(&mut self, cost: Usd, source: CostSource, usage: Usage) {
        if self.settled {
            return;
        }
        self.settled = true;
        let estimated = source == CostSource::Reservation;
        let measured = matches!(source, CostSource::Usage | CostSource::Generation);
        let settlement = Settlement { cost, usage, estimated, measured };
        lock(&self.shared.registry).settle(&self.alias, self.reservation, &self.shape, &settlement);
        let e = &mut self.event;
        e.cost = cost;
        e.cost_source = source;
        e.cost_estimated = estimated;
        e.prompt_tokens = usage.prompt;
        e.completion_tokens = usage.completion;
        e.cached_tokens = usage.cached;
        e.cache_write_tokens = usage.cache_write;
        e.latency_ms = millis(self.started.elapsed());
        e.at = Utc::now();
        self.shared.emit(self.event.clone());
        self.shared.settled.notify_waiters();
    }
}

/// A generation id safe to put in a query string.
fn plain_id(id: &str) -> bool {
    !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// What kind of transport failure this was, without the URL or anything else from the request.
fn transport_kind(e: &reqwest::Error) -> &'static str {
    if e.is_connect() {
        "connection refused or unreachable"
    } else if e.is_timeout() {
        "timed out"
    } else {
        "connection broken"
    }
}

/// The message of upstream's error envelope, for the event.
fn upstream_message(body: &[u8]) -> String {
    match serde_json::from_slice::<wire::ErrorBody>(body) {
        Ok(b) if !b.error.message.is_empty() => b.error.message,
        _ => String::from_utf8_lossy(&body[..body.len().min(300)]).trim().to_string(),
    }
}

/// Upstream response headers a client may see: the content type, caching and rate-limit
/// headers, and OpenRouter's own; never one that carries the real key.
fn response_headers(upstream: &HeaderMap, key: &str) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in upstream {
        let n = name.as_str();
        let wanted =
            matches!(n, "content-type" | "cache-control" | "retry-after" | "x-generation-id")
                || n.starts_with("x-ratelimit-")
                || n.starts_with("x-openrouter-");
        let leaks = value.to_str().map_or(true, |v| !key.is_empty() && v.contains(key));
        if wanted && !leaks {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

fn respond(status: StatusCode, headers: HeaderMap, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// `GET /key`: the token's own view of its budget, from the gateway's ledger, in the shape of
/// OpenRouter's answer for an inference key. Usage windows all read the run's spend: the real
/// key is minted for the run, so its lifetime is the run.
async fn key(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let started = Instant::now();
    let alias = match authenticate(&shared, &headers) {
        Ok(alias) => alias,
        Err(response) => return response,
    };
    let ledger = lock(&shared.registry).ledger(&alias).unwrap_or_default();
    let label = bearer(&headers).map(token_label);
    let info = key_info(&ledger, label);
    let mut event = RequestEvent::new(&alias, Endpoint::Key);
    event.latency_ms = millis(started.elapsed());
    shared.emit(event);
    axum::Json(wire::Data { data: info }).into_response()
}

fn token_label(token: &str) -> String {
    let head: String = token.chars().take(10).collect();
    let count = token.chars().count();
    let tail: String = token.chars().skip(count.saturating_sub(3).max(10)).collect();
    format!("{head}...{tail}")
}

pub(crate) fn key_info(ledger: &Ledger, label: Option<String>) -> wire::KeyInfo {
    let spent = ledger.spent.to_f64();
    let mut extra = Map::new();
    for field in ["usage_daily", "usage_weekly", "usage_monthly"] {
        extra.insert(field.into(), json!(spent));
    }
    for field in ["byok_usage", "byok_usage_daily", "byok_usage_weekly", "byok_usage_monthly"] {
        extra.insert(field.into(), json!(0.0));
    }
    extra.insert("include_byok_in_limit".into(), json!(false));
    extra.insert("is_provisioning_key".into(), json!(false));
    extra.insert("creator_user_id".into(), Value::Null);
    extra.insert(
        "rate_limit".into(),
        json!({"requests": -1, "interval": "10s", "note": "This field is deprecated and safe to ignore."}),
    );
    wire::KeyInfo {
        label,
        limit: Some(ledger.budget),
        limit_remaining: Some(ledger.remaining()),
        limit_reset: None,
        usage: ledger.spent,
        is_free_tier: false,
        is_management_key: false,
        expires_at: None,
        extra,
    }
}

/// `GET /models`, passed through. It is public upstream, so no key goes with it.
async fn models(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let started = Instant::now();
    let alias = match authenticate(&shared, &headers) {
        Ok(alias) => alias,
        Err(response) => return response,
    };
    let key = lock(&shared.registry).upstream_key(&alias).unwrap_or_else(|| Secret::new(""));
    let mut url = format!("{}/models", shared.upstream);
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(&q);
    }
    let mut event = RequestEvent::new(&alias, Endpoint::Models);
    event.forwarded = true;
    let response = match shared.http.get(url).send().await {
        Ok(upstream) => {
            let status = upstream.status();
            let head = response_headers(upstream.headers(), key.expose());
            match upstream.bytes().await {
                Ok(body) => respond(status, head, Body::from(scrub(body, key.expose()))),
                Err(_) => error(StatusCode::BAD_GATEWAY, "The model list was cut short.", None),
            }
        }
        Err(_) => {
            error(StatusCode::BAD_GATEWAY, "The apf gateway could not reach OpenRouter.", None)
        }
    };
    event.status = response.status().as_u16();
    event.latency_ms = millis(started.elapsed());
    shared.emit(event);
    response
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn key_info_reads_the_ledger() {
        let ledger = Ledger {
            budget: "0.25".parse().expect("usd"),
            spent: "0.1".parse().expect("usd"),
            ..Ledger::default()
        };
        let info = key_info(&ledger, Some(token_label("apf-gw-abcdefghijklmnop")));
        assert_eq!(info.limit, "0.25".parse().ok());
        assert_eq!(info.limit_remaining, "0.15".parse().ok());
        assert_eq!(info.usage, "0.1".parse().expect("usd"));
        assert!(!info.is_management_key);
        assert_eq!(info.label.as_deref(), Some("apf-gw-abc...nop"));
    }

    #[test]
    fn only_safe_upstream_headers_reach_the_client() {
        let mut up = HeaderMap::new();
        up.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        up.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        up.insert("set-cookie", HeaderValue::from_static("a=b"));
        up.insert("x-openrouter-echo", HeaderValue::from_static("Bearer sk-or-v1-real"));
        let out = response_headers(&up, "sk-or-v1-real");
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out.contains_key("x-ratelimit-remaining"));
    }

    #[test]
    fn refusals_use_openrouters_words() {
        let s = Standing {
            budget: "0.02".parse().expect("usd"),
            spent: "0.01".parse().expect("usd"),
            reserved: "0.009".parse().expect("usd"),
        };
        let (status, message, _) =
            refusal(&Refusal::Completion { requested: Some(300), can: 66, standing: s });
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
        assert!(message.starts_with(
            "This request requires more credits, or fewer max_tokens. You requested up to 300 \
             tokens, but can only afford 66. To increase, "
        ));
        let (status, message, _) = refusal(&Refusal::Spent(s));
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(message.starts_with("Key limit exceeded (total limit)."));
    }
}
