//! `POST /chat/completions` and `GET /generation`. A completion is admitted against the spend
//! recorded so far (401/403/402/400 as OpenRouter answers them), its scripted reply and cache use
//! are computed at once, and its charge is scheduled for when the generation ends (after the
//! injected latency) plus the spend delay. It is billed even when the client goes away or the
//! connection is dropped, as on providers that cannot cancel. Management keys may not do
//! inference: they get 403.
//!
//! Streaming sends `: OPENROUTER PROCESSING` keep-alive comments while the generation runs, then
//! `data: {chunk}` lines, the usage once in a last chunk with `choices: []`, then `data: [DONE]`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{SecondsFormat, Utc};
use futures_util::stream;
use rand::distr::{Alphanumeric, SampleString};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::money::Usd;
use crate::openrouter::wire::{self, ChatRequest, Data};

use super::account_api::json_object;
use super::cache::CacheUse;
use super::catalog::CatalogModel;
use super::cost::{self, Bill, Tokens};
use super::errors::ApiError;
use super::ledger::{Caller, Generation, Quote};
use super::lock;
use super::script::{self, Answer, Reply};
use super::server::{Billed, Injected, Sim, dropped};

/// How often a keep-alive comment is sent while a streamed generation runs.
const KEEP_ALIVE: Duration = Duration::from_secs(1);

/// An admitted, billed completion, ready to be sent.
struct Completion {
    id: String,
    created: i64,
    model: String,
    provider: String,
    reply: Reply,
    native_finish_reason: &'static str,
    tokens: Tokens,
    bill: Bill,
    stream: bool,
}

pub(crate) async fn completions(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    injected: Option<Extension<Injected>>,
    body: Bytes,
) -> Response {
    let injected = injected.map(|Extension(i)| i).unwrap_or_default();
    match admit(&sim, &headers, &body, injected.latency) {
        Err(e) => e.into_response(),
        Ok(c) if c.stream => streamed(c, injected),
        Ok(c) => whole(c, injected).await,
    }
}

/// Everything up to the response: authenticate, validate, admit, reply, cache and bill.
fn admit(
    sim: &Sim,
    headers: &HeaderMap,
    body: &Bytes,
    latency: Duration,
) -> Result<Completion, ApiError> {
    let key_hash = inference_key(sim, headers)?;
    let (raw, request) = parse_request(body)?;
    let (requested, serving) = resolve_model(sim, request.model.as_deref())?;
    let rates = serving.rates().map_err(|e| ApiError::internal(format!("Cannot bill: {e}")))?;

    let tools = request.tools.clone().unwrap_or_default();
    let prompt_tokens = script::prompt_tokens(&request.messages, &tools);
    let max_tokens = request.max_completion_tokens.or(request.max_tokens);
    let max_completion = completion_ceiling(serving, prompt_tokens, max_tokens)?;
    let quote = Quote { rates, prompt_tokens, max_completion };
    sim.ledger().admit(&key_hash, &quote, Utc::now())?;

    let cache_use = lock(&sim.cache).apply(serving, &raw, Instant::now());
    let script_request = script::Request {
        model: &serving.id,
        messages: &request.messages,
        tools: &tools,
        tool_choice: request.extra.get("tool_choice"),
        max_tokens,
    };
    let reply = script::reply(sim.seed, &script_request, sim.tool_calls);
    let tokens = token_counts(prompt_tokens, cache_use, reply.completion_tokens);
    let completion = Completion {
        id: generation_id(),
        created: Utc::now().timestamp(),
        model: serving.id.clone(),
        provider: serving.provider_name(),
        native_finish_reason: native_finish_reason(serving, reply.finish_reason),
        reply,
        tokens,
        bill: cost::bill(&rates, &tokens),
        stream: request.stream.unwrap_or(false),
    };

    let record = generation_record(&completion, &requested, &rates, latency, headers, &key_hash);
    sim.ledger().charge(record, completion.bill.total(), latency + sim.spend_delay());
    Ok(completion)
}

/// The hash of the calling inference key; management keys may not do inference.
fn inference_key(sim: &Sim, headers: &HeaderMap) -> Result<String, ApiError> {
    match sim.caller(headers)? {
        Caller::Inference(hash) => Ok(hash),
        Caller::Management => Err(ApiError::forbidden(
            "Management keys cannot be used for inference. Use an API key created with it.",
        )),
    }
}

/// The body as raw JSON (for the cache, which reads `cache_control` markers) and as a request.
fn parse_request(body: &Bytes) -> Result<(Value, ChatRequest), ApiError> {
    let raw = Value::Object(json_object(body)?);
    let request: ChatRequest = serde_json::from_value(raw.clone())
        .map_err(|e| ApiError::bad_request(format!("Invalid chat request: {e}")))?;
    if request.messages.is_empty() {
        return Err(ApiError::bad_request("messages: at least one message is required"));
    }
    Ok((raw, request))
}

/// The requested model (or the default when none is named) and the model that serves it.
fn resolve_model<'a>(
    sim: &'a Sim,
    id: Option<&str>,
) -> Result<(String, &'a CatalogModel), ApiError> {
    let requested = match id {
        Some(id) => sim
            .catalog
            .get(id)
            .ok_or_else(|| ApiError::bad_request(format!("{id} is not a valid model ID")))?,
        None => {
            sim.catalog.default_model().ok_or_else(|| ApiError::bad_request("No model given"))?
        }
    };
    let serving = sim.catalog.serving(&requested.id).ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("No endpoints found for {}", requested.id),
        )
    })?;
    Ok((requested.id.clone(), serving))
}

/// The most completion tokens the request may produce, which the 402 check must afford: the
/// caller's `max_tokens`, else the model's maximum output (bounded by the context left).
fn completion_ceiling(
    model: &CatalogModel,
    prompt: u64,
    max_tokens: Option<u64>,
) -> Result<u64, ApiError> {
    let context = model.context_length;
    let asked = prompt.saturating_add(max_tokens.unwrap_or(0));
    if asked > context || prompt >= context {
        return Err(ApiError::bad_request(format!(
            "This endpoint's maximum context length is {context} tokens. However, you requested \
             about {asked} tokens ({prompt} of text input, {} in the output). Please reduce the \
             length of either one, or use the \"middle-out\" transform to compress your prompt \
             automatically.",
            max_tokens.unwrap_or(0)
        ))
        .with_metadata(json!({"error_type": "context_length_exceeded"})));
    }
    Ok(max_tokens.unwrap_or_else(|| model.max_completion_tokens.min(context - prompt)))
}

fn token_counts(prompt: u64, cache: CacheUse, completion: u64) -> Tokens {
    Tokens {
        prompt,
        cached: cache.cached.min(prompt),
        cache_write: cache.written.min(prompt),
        cache_write_1h: cache.one_hour,
        completion,
    }
}

fn native_finish_reason(model: &CatalogModel, finish: &'static str) -> &'static str {
    match (model.author(), finish) {
        ("anthropic", "stop") => "end_turn",
        ("anthropic", "tool_calls") => "tool_use",
        ("anthropic", "length") => "max_tokens",
        (_, other) => other,
    }
}

fn generation_id() -> String {
    let tail = Alphanumeric.sample_string(&mut rand::rng(), 20);
    format!("gen-{}-{tail}", Utc::now().timestamp())
}

/// The body `GET /generation` will answer for this completion.
fn generation_record(
    c: &Completion,
    requested: &str,
    rates: &cost::Rates,
    latency: Duration,
    headers: &HeaderMap,
    key_hash: &str,
) -> Generation {
    let total = c.bill.total().to_f64();
    let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
    let millis = latency.as_millis() as f64;
    let body = json!({
        "id": c.id,
        "upstream_id": format!("chatcmpl-{}", &c.id[4..]),
        "request_id": format!("req-{}", &c.id[4..]),
        "total_cost": total,
        "usage": total,
        "cache_discount": (c.tokens.cached + c.tokens.cache_write > 0)
            .then(|| cost::cache_discount(rates, &c.tokens).to_f64()),
        "upstream_inference_cost": null,
        "created_at": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        "model": c.model,
        "app_id": null,
        "streamed": c.stream,
        "cancelled": false,
        "provider_name": c.provider,
        "latency": millis,
        "moderation_latency": null,
        "generation_time": millis,
        "finish_reason": c.reply.finish_reason,
        "native_finish_reason": c.native_finish_reason,
        "service_tier": null,
    });
    let counts = json!({
        "tokens_prompt": c.tokens.prompt,
        "tokens_completion": c.tokens.completion,
        "native_tokens_prompt": c.tokens.prompt,
        "native_tokens_completion": c.tokens.completion,
        "native_tokens_completion_images": 0,
        "native_tokens_reasoning": 0,
        "native_tokens_cached": c.tokens.cached,
        "num_media_prompt": null,
        "num_input_audio_prompt": null,
        "num_media_completion": 0,
        "num_search_results": null,
        "num_fetches": null,
        "web_search_engine": null,
    });
    let context = json!({
        "origin": "",
        "is_byok": false,
        "external_user": null,
        "api_type": "completions",
        "preset_id": null,
        "router": (requested != c.model).then_some(requested),
        "provider_responses": null,
        "user_agent": user_agent,
        "http_referer": null,
        "data_region": "global",
        "workspace_id": null,
        "session_id": null,
    });
    let mut body = body;
    for part in [counts, context] {
        if let (Value::Object(all), Value::Object(more)) = (&mut body, part) {
            all.extend(more);
        }
    }
    Generation { id: c.id.clone(), key_hash: key_hash.to_string(), body }
}

fn usage(c: &Completion) -> wire::Usage {
    let t = &c.tokens;
    wire::Usage {
        prompt_tokens: t.prompt,
        completion_tokens: t.completion,
        total_tokens: t.prompt + t.completion,
        prompt_tokens_details: Some(wire::PromptTokensDetails {
            cached_tokens: Some(t.cached),
            cache_write_tokens: Some(t.cache_write),
            audio_tokens: Some(0),
        }),
        completion_tokens_details: Some(json!({"reasoning_tokens": 0})),
        cost: Some(c.bill.total()),
        is_byok: Some(false),
        extra: [(
            "cost_details".to_string(),
            json!({
                "upstream_inference_cost": null,
                "upstream_inference_prompt_cost": c.bill.prompt.to_f64(),
                "upstream_inference_completions_cost": c.bill.completion.to_f64(),
            }),
        )]
        .into_iter()
        .collect(),
    }
}

fn message(reply: &Reply) -> Value {
    match &reply.answer {
        Answer::Text(text) => {
            json!({"role": "assistant", "content": text, "refusal": null, "reasoning": null})
        }
        Answer::ToolCall { id, name, arguments } => json!({
            "role": "assistant",
            "content": null,
            "refusal": null,
            "reasoning": null,
            "tool_calls": [{"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}],
        }),
    }
}

fn chat_response(c: &Completion) -> wire::ChatResponse {
    let choice = json!({
        "index": 0,
        "finish_reason": c.reply.finish_reason,
        "native_finish_reason": c.native_finish_reason,
        "message": message(&c.reply),
    });
    wire::ChatResponse {
        id: c.id.clone(),
        object: Some("chat.completion".into()),
        created: c.created,
        model: c.model.clone(),
        system_fingerprint: None,
        choices: vec![choice],
        usage: Some(usage(c)),
        extra: [("provider".to_string(), json!(c.provider))].into_iter().collect(),
    }
}

fn billed(mut response: Response, cost: Usd) -> Response {
    response.extensions_mut().insert(Billed(cost));
    response
}

async fn whole(c: Completion, injected: Injected) -> Response {
    tokio::time::sleep(injected.latency).await;
    let cost = c.bill.total();
    let body = chat_response(&c);
    if injected.drop {
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let half = Bytes::copy_from_slice(&bytes[..bytes.len() / 2]);
        return billed(dropped(half), cost);
    }
    billed(Json(body).into_response(), cost)
}

fn chunk(c: &Completion, choices: Value) -> Value {
    json!({
        "id": c.id,
        "object": "chat.completion.chunk",
        "created": c.created,
        "model": c.model,
        "provider": c.provider,
        "choices": choices,
    })
}

fn delta_chunk(c: &Completion, delta: Value) -> Value {
    chunk(
        c,
        json!([{"index": 0, "delta": delta, "finish_reason": null, "native_finish_reason": null}]),
    )
}

/// `text` in about `n` pieces, split on character boundaries.
fn pieces(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len().div_ceil(n.max(1)).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// The `data:` payloads of a streamed completion, `[DONE]` last.
fn stream_events(c: &Completion) -> Vec<String> {
    let mut chunks = vec![delta_chunk(c, json!({"role": "assistant", "content": ""}))];
    match &c.reply.answer {
        Answer::Text(text) => {
            for piece in pieces(text, 8) {
                chunks.push(delta_chunk(c, json!({"content": piece})));
            }
        }
        Answer::ToolCall { id, name, arguments } => {
            let head = json!({"index": 0, "id": id, "type": "function", "function": {"name": name, "arguments": ""}});
            chunks.push(delta_chunk(c, json!({"tool_calls": [head]})));
            for piece in pieces(arguments, 3) {
                let part = json!({"index": 0, "function": {"arguments": piece}});
                chunks.push(delta_chunk(c, json!({"tool_calls": [part]})));
            }
        }
    }
    chunks.push(chunk(
        c,
        json!([{"index": 0, "delta": {}, "finish_reason": c.reply.finish_reason,
                "native_finish_reason": c.native_finish_reason}]),
    ));
    let mut last = chunk(c, json!([]));
    last["usage"] = serde_json::to_value(usage(c)).unwrap_or(Value::Null);
    chunks.push(last);
    let mut events: Vec<String> = chunks.iter().map(|v| format!("data: {v}\n\n")).collect();
    events.push("data: [DONE]\n\n".to_string());
    events
}

type Frame = Result<Bytes, std::io::Error>;

fn streamed(c: Completion, injected: Injected) -> Response {
    let (tx, rx) = mpsc::channel::<Frame>(16);
    let cost = c.bill.total();
    let events = stream_events(&c);
    tokio::spawn(feed(tx, events, injected));
    let body = Body::from_stream(stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|frame| (frame, rx))
    }));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    billed(response, cost)
}

/// Send keep-alives while the generation "runs", then the events; cut halfway on a drop.
async fn feed(tx: mpsc::Sender<Frame>, events: Vec<String>, injected: Injected) {
    let keep_alive = || Ok(Bytes::from_static(b": OPENROUTER PROCESSING\n\n"));
    if tx.send(keep_alive()).await.is_err() {
        return;
    }
    let mut left = injected.latency;
    while !left.is_zero() {
        let step = left.min(KEEP_ALIVE);
        tokio::time::sleep(step).await;
        left -= step;
        if !left.is_zero() && tx.send(keep_alive()).await.is_err() {
            return;
        }
    }
    let cut = if injected.drop { events.len() / 2 } else { events.len() };
    for event in events.into_iter().take(cut) {
        if tx.send(Ok(Bytes::from(event))).await.is_err() {
            return;
        }
    }
    if injected.drop {
        let broken = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "simulated drop");
        let _ = tx.send(Err(broken)).await;
    }
}

pub(crate) async fn generation(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let caller = sim.caller(&headers)?;
    let id = query
        .get("id")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::bad_request("id: Required"))?;
    let ledger = sim.ledger();
    let g = ledger
        .generation(id, &caller, Instant::now())
        .ok_or_else(|| ApiError::not_found(format!("Generation {id} not found")))?;
    Ok(Json(Data { data: g.body.clone() }).into_response())
}
