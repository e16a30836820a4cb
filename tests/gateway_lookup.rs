//! Responses that tell no cost. One that ends without usage is looked up with
//! `GET /generation?id=`, retried while it 404s, and booked at its `total_cost`; a usage without
//! `cost` is priced from its token counts. The upstream here is a small stub, because a cut
//! connection must deliver its first bytes (and so the id) before it breaks, which the
//! simulator's drops do not promise.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apf::gateway::{CostSource, GatewayConfig, ModelPrice, ModelPrices};
use apf::money::Usd;
use apf::secret::Secret;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use serde_json::{Value, json};

const REAL_KEY: &str = concat!("sk-or-v1-", "stub-upstream-key-0123456789");
const MODEL: &str = "stub/model";

#[derive(Default)]
struct Stub {
    /// Lookups per generation id.
    lookups: Mutex<HashMap<String, u32>>,
    /// Bearer tokens upstream was called with.
    bearers: Mutex<Vec<String>>,
}

fn note_bearer(stub: &Stub, headers: &HeaderMap) {
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if let Ok(mut seen) = stub.bearers.lock() {
        seen.push(bearer.unwrap_or("").to_string());
    }
}

/// Send `head`, wait long enough for it to reach the other side, then break the connection.
fn head_then_break(head: &'static str, content_type: &'static str) -> Response {
    let frames = futures_util::stream::unfold(0u8, move |step| async move {
        match step {
            0 => Some((Ok(Bytes::from_static(head.as_bytes())), 1)),
            1 => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let cut = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "cut");
                Some((Err(cut), 2))
            }
            _ => None,
        }
    });
    let mut response = Response::new(Body::from_stream(frames));
    response.headers_mut().insert(header::CONTENT_TYPE, content_type.parse().expect("a type"));
    response
}

async fn completions(State(stub): State<Arc<Stub>>, headers: HeaderMap, body: Bytes) -> Response {
    note_bearer(&stub, &headers);
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if request["messages"][0]["content"] == "no cost" {
        // Usage without a cost, as a BYOK or an older answer may come.
        return axum::Json(json!({
            "id": "gen-nocost", "object": "chat.completion", "created": 1, "model": MODEL,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "ok"}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 100, "total_tokens": 110},
        }))
        .into_response();
    }
    if request["stream"] == json!(true) {
        head_then_break(
            ": OPENROUTER PROCESSING\n\ndata: {\"id\":\"gen-streamed\",\"model\":\"stub/model\",\
             \"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
            "text/event-stream",
        )
    } else {
        head_then_break(
            "{\"id\":\"gen-plain\",\"object\":\"chat.completion\",\"choices\":[{\"message\":",
            "application/json",
        )
    }
}

/// 404 at first, as OpenRouter's `/generation` does for a while after an interrupted stream.
async fn generation(
    State(stub): State<Arc<Stub>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    note_bearer(&stub, &headers);
    let id = q.get("id").cloned().unwrap_or_default();
    let n = {
        let mut lookups = stub.lookups.lock().expect("lock");
        let n = lookups.entry(id.clone()).or_insert(0);
        *n += 1;
        *n
    };
    if n < 2 {
        let body = json!({"error": {"code": 404, "message": format!("Generation {id} not found")}});
        return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
    }
    axum::Json(json!({"data": {
        "id": id, "total_cost": 0.0042, "usage": 0.0042,
        "native_tokens_prompt": 12, "native_tokens_completion": 276, "native_tokens_cached": 0,
    }}))
    .into_response()
}

async fn stub_upstream() -> (String, Arc<Stub>) {
    let stub = Arc::new(Stub::default());
    let app = Router::new()
        .route("/api/v1/chat/completions", post(completions))
        .route("/api/v1/generation", get(generation))
        .with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/api/v1"), stub)
}

#[tokio::test]
async fn a_response_cut_after_its_id_is_settled_from_the_generation_lookup() {
    let (upstream, stub) = stub_upstream().await;
    let config = GatewayConfig::new("127.0.0.1:0".parse().expect("addr"), &upstream);
    let gateway = apf::gateway::start(config).await.expect("starts");
    let price = ModelPrice::per_token("0.000003".parse().unwrap(), "0.000015".parse().unwrap());
    let budget: Usd = "0.05".parse().unwrap();
    let token = gateway
        .register("m", Secret::new(REAL_KEY), budget, ModelPrices::new().with(MODEL, price))
        .expect("registers");
    let mut events = gateway.subscribe();
    let http = reqwest::Client::new();
    let url = format!("{}/chat/completions", gateway.base_url());
    let ask = |stream: bool| {
        json!({"model": MODEL, "max_tokens": 300, "stream": stream,
               "messages": [{"role": "user", "content": "hi"}]})
    };

    let response =
        http.post(&url).bearer_auth(token.expose()).json(&ask(true)).send().await.expect("head");
    assert_eq!(response.status(), 200);
    let mut chunks = response.bytes_stream();
    let mut text = String::new();
    let mut broke = false;
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(c) => text.push_str(&String::from_utf8_lossy(&c)),
            Err(_) => broke = true,
        }
    }
    assert!(text.contains("gen-streamed"), "what came before the cut passed through: {text}");
    assert!(broke, "and then the client saw the stream break");

    let plain = http.post(&url).bearer_auth(token.expose()).json(&ask(false)).send().await;
    let plain = plain.expect("answered");
    assert_eq!(plain.status(), 502);
    let body: Value = plain.json().await.expect("an envelope");
    assert_eq!(body["error"]["code"], 502);

    assert!(gateway.wait_idle(Duration::from_secs(15)).await, "both settle");
    let ledger = gateway.account("m").expect("account");
    let each: Usd = "0.0042".parse().unwrap();
    assert_eq!((ledger.spent, ledger.reserved, ledger.estimated), (each + each, Usd::ZERO, 0));
    assert_eq!(ledger.completion_tokens, 552);
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    assert_eq!(seen.len(), 2);
    for e in &seen {
        assert_eq!(
            (e.cost, e.cost_source, e.cost_estimated),
            (each, CostSource::Generation, false)
        );
    }
    let ids: Vec<_> = seen.iter().filter_map(|e| e.generation_id.clone()).collect();
    assert!(ids.contains(&"gen-streamed".to_string()) && ids.contains(&"gen-plain".to_string()));
    let lookups = stub.lookups.lock().expect("lock").clone();
    assert_eq!(lookups.get("gen-streamed"), Some(&2), "retried after the first 404");
    assert_eq!(lookups.get("gen-plain"), Some(&2));
    let bearers = stub.bearers.lock().expect("lock").clone();
    assert!(
        bearers.iter().all(|b| *b == format!("Bearer {REAL_KEY}")),
        "upstream only ever sees the real key, never the gateway token: {bearers:?}"
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_usage_without_a_cost_is_priced_from_its_tokens() {
    let (upstream, _stub) = stub_upstream().await;
    let config = GatewayConfig::new("127.0.0.1:0".parse().expect("addr"), &upstream);
    let gateway = apf::gateway::start(config).await.expect("starts");
    let price = ModelPrice::per_token("0.000003".parse().unwrap(), "0.000015".parse().unwrap());
    let token = gateway
        .register(
            "m",
            Secret::new(REAL_KEY),
            "1".parse().unwrap(),
            ModelPrices::new().with(MODEL, price),
        )
        .expect("registers");
    let mut events = gateway.subscribe();
    let body = json!({"model": MODEL, "max_tokens": 300,
                      "messages": [{"role": "user", "content": "no cost"}]});
    let r = reqwest::Client::new()
        .post(format!("{}/chat/completions", gateway.base_url()))
        .bearer_auth(token.expose())
        .json(&body)
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status(), 200);
    // 10 prompt tokens at $3/M and 100 completion tokens at $15/M.
    let expected: Usd = "0.00153".parse().unwrap();
    assert_eq!(gateway.account("m").map(|l| l.spent), Some(expected));
    let e = events.try_recv().expect("an event");
    assert_eq!((e.cost, e.cost_source, e.cost_estimated), (expected, CostSource::Tokens, false));
}
