//! Scripted completions: determinism, the tool-call loop, truncation, streaming, prompt caching,
//! routers, and generation lookups.

#[path = "fixtures/sim/common.rs"]
mod common;

use apf::sim::{Faults, SimConfig};
use common::{Api, ask, dec, sse_events, usd};
use rust_decimal::Decimal;
use serde_json::{Value, json};

fn tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "read_file", "description": "Read a file",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}},
        {"type": "function", "function": {"name": "run", "description": "Run a command",
            "parameters": {"type": "object", "properties": {"command": {"type": "string"},
                "timeout": {"type": "integer", "minimum": 1, "maximum": 60}}, "required": ["command"]}}}
    ])
}

async fn with_seed(seed: u64) -> Api {
    Api::start(SimConfig { seed, ..SimConfig::default() }).await
}

#[tokio::test]
async fn the_same_seed_and_requests_give_the_same_answers() {
    let body = ask("z-ai/glm-4.6", "Plan the work.", None);
    let answer = |r: &common::Reply| {
        (
            r.body["choices"][0]["message"]["content"].clone(),
            r.body["usage"]["completion_tokens"].clone(),
        )
    };
    let (a, b, c) = (with_seed(11).await, with_seed(11).await, with_seed(12).await);
    let (ka, kb, kc) = (
        a.create_key("a", None).await.0,
        b.create_key("b", None).await.0,
        c.create_key("c", None).await.0,
    );
    let ra = a.chat(&ka, &body).await;
    let rb = b.chat(&kb, &body).await;
    let rc = c.chat(&kc, &body).await;
    assert_eq!(answer(&ra), answer(&rb));
    assert_ne!(answer(&ra), answer(&rc), "another seed, another answer");
    let tokens = ra.body["usage"]["completion_tokens"].as_u64().expect("tokens");
    assert!((50..=300).contains(&tokens));
    assert_eq!(ra.body["usage"]["prompt_tokens"], 4, "14 characters / 4, rounded up");
}

#[tokio::test]
async fn with_tools_the_assistant_calls_them_until_three_results_then_answers() {
    let api = Api::default().await;
    let (key, _) = api.create_key("agent", None).await;
    let mut messages = vec![json!({"role": "user", "content": "Inspect the repository."})];
    for turn in 0..3 {
        let r = api
            .chat(
                &key,
                &json!({"model": "qwen/qwen3-coder", "messages": messages, "tools": tools()}),
            )
            .await;
        let choice = &r.body["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls", "turn {turn}");
        let call = &choice["message"]["tool_calls"][0];
        let name = call["function"]["name"].as_str().expect("name");
        assert!(name == "read_file" || name == "run");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().expect("args"))
                .expect("JSON");
        assert!(args.get("path").is_some() || args.get("command").is_some(), "{args}");
        messages.push(choice["message"].clone());
        messages
            .push(json!({"role": "tool", "tool_call_id": call["id"], "content": "file contents"}));
    }
    let r = api
        .chat(&key, &json!({"model": "qwen/qwen3-coder", "messages": messages, "tools": tools()}))
        .await;
    assert_eq!(r.body["choices"][0]["finish_reason"], "stop");
    assert!(
        r.body["choices"][0]["message"]["content"]
            .as_str()
            .is_some_and(|t| t.starts_with("Done after 3"))
    );
}

#[tokio::test]
async fn tool_calls_is_configurable() {
    let api = Api::start(SimConfig { tool_calls: 1, ..SimConfig::default() }).await;
    let (key, _) = api.create_key("agent", None).await;
    let messages = json!([
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "run", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"}
    ]);
    let r = api
        .chat(&key, &json!({"model": "qwen/qwen3-coder", "messages": messages, "tools": tools()}))
        .await;
    assert_eq!(r.body["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn max_tokens_truncates_with_finish_reason_length() {
    let api = Api::default().await;
    let (key, _) = api.create_key("short", None).await;
    let r = api.chat(&key, &ask("deepseek/deepseek-chat", "Tell me a long story.", Some(12))).await;
    assert_eq!(r.body["choices"][0]["finish_reason"], "length");
    assert_eq!(r.body["usage"]["completion_tokens"], 12);
    let mut body = ask("deepseek/deepseek-chat", "Tell me a long story.", Some(5000));
    body["max_completion_tokens"] = json!(7);
    let r = api.chat(&key, &body).await;
    assert_eq!(
        r.body["usage"]["completion_tokens"], 7,
        "max_completion_tokens wins over max_tokens"
    );
    let r = api.chat(&key, &ask("deepseek/deepseek-chat", "x", Some(200_000))).await;
    assert_eq!(r.status, 400, "prompt + max_tokens past the context: {}", r.body);
}

async fn stream(api: &Api, key: &str, body: &Value) -> String {
    let mut body = body.clone();
    body["stream"] = json!(true);
    let response = api
        .http
        .post(format!("{}/chat/completions", api.base))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    response.text().await.expect("whole stream")
}

#[tokio::test]
async fn a_stream_has_keep_alives_deltas_one_usage_chunk_then_done() {
    let faults = Faults { latency_ms: 300, ..Faults::default() };
    let api = Api::start(SimConfig { faults, ..SimConfig::default() }).await;
    let (key, _) = api.create_key("streamer", None).await;
    let body = ask("google/gemini-2.5-flash", "Stream, please.", Some(250));
    let text = stream(&api, &key, &body).await;
    assert!(text.starts_with(": OPENROUTER PROCESSING"), "keep-alive first");
    let (events, keep_alive) = sse_events(&text);
    assert!(keep_alive);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).expect("JSON")).collect();
    let with_usage: Vec<&Value> = chunks.iter().filter(|c| c.get("usage").is_some()).collect();
    assert_eq!(with_usage.len(), 1, "usage once");
    let last = chunks.last().expect("chunks");
    assert_eq!((last["choices"].clone(), last.get("usage").is_some()), (json!([]), true));
    let streamed: String =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();

    let whole = api.chat(&key, &body).await;
    assert_eq!(
        json!(streamed),
        whole.body["choices"][0]["message"]["content"],
        "same request, same text"
    );
    assert_eq!(last["usage"]["cost"], whole.body["usage"]["cost"]);
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| f.is_string())
        .collect();
    assert_eq!(finish, [&whole.body["choices"][0]["finish_reason"]]);
}

#[tokio::test]
async fn a_streamed_tool_call_arrives_in_pieces() {
    let api = Api::default().await;
    let (key, _) = api.create_key("streamer", None).await;
    let body = json!({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "go"}], "tools": tools()});
    let (events, _) = sse_events(&stream(&api, &key, &body).await);
    let chunks: Vec<Value> = events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).expect("JSON"))
        .collect();
    let calls: Vec<&Value> =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0)).collect();
    assert!(calls[0]["id"].is_string() && calls[0]["function"]["name"].is_string());
    let arguments: String =
        calls.iter().filter_map(|c| c["function"]["arguments"].as_str()).collect();
    serde_json::from_str::<Value>(&arguments).expect("the pieces join into JSON arguments");
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
}

fn cached_request(system: &str, question: &str) -> Value {
    json!({"model": "anthropic/claude-sonnet-4", "max_tokens": 50, "messages": [
        {"role": "system", "content": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": question}
    ]})
}

fn details(r: &common::Reply) -> (u64, u64, u64, u64) {
    let u = &r.body["usage"];
    let n = |v: &Value| v.as_u64().expect("count");
    (
        n(&u["prompt_tokens"]),
        n(&u["prompt_tokens_details"]["cache_write_tokens"]),
        n(&u["prompt_tokens_details"]["cached_tokens"]),
        n(&u["completion_tokens"]),
    )
}

#[tokio::test]
async fn a_repeated_marked_prefix_is_written_then_read_at_the_cache_prices() {
    let api = Api::default().await;
    let (key, _) = api.create_key("cache", None).await;
    let system = "You are a careful assistant. ".repeat(160); // 4640 characters: 1160 tokens
    let first = api.chat(&key, &cached_request(&system, "First question?")).await;
    let (prompt, written, cached, completion) = details(&first);
    assert_eq!((written, cached), (1160, 0));
    let uncached = Decimal::from(prompt - written);
    let expected = dec("0.000003") * uncached
        + dec("0.00000375") * Decimal::from(written)
        + dec("0.000015") * Decimal::from(completion);
    assert_eq!(usd(&first.body["usage"]["cost"]), expected);

    let second = api.chat(&key, &cached_request(&system, "Second question?")).await;
    let (prompt, written, cached, completion) = details(&second);
    assert_eq!((written, cached), (0, 1160));
    let expected = dec("0.000003") * Decimal::from(prompt - cached)
        + dec("0.0000003") * Decimal::from(cached)
        + dec("0.000015") * Decimal::from(completion);
    assert_eq!(usd(&second.body["usage"]["cost"]), expected);

    let generation = api
        .get(&format!("/generation?id={}", second.body["id"].as_str().expect("id")), Some(&key))
        .await;
    assert_eq!(generation.body["data"]["native_tokens_cached"], 1160);
    assert!(generation.body["data"]["cache_discount"].as_f64().is_some_and(|d| d > 0.0));
}

#[tokio::test]
async fn short_prefixes_and_uncached_models_report_no_cache_use() {
    let api = Api::default().await;
    let (key, _) = api.create_key("cache", None).await;
    let short = "Be brief. ".repeat(100); // 250 tokens, under Sonnet's 1024
    for _ in 0..2 {
        let r = api.chat(&key, &cached_request(&short, "Q?")).await;
        assert_eq!(details(&r).1 + details(&r).2, 0);
    }
    let mut body = cached_request(&"Long text. ".repeat(500), "Q?");
    body["model"] = json!("meta-llama/llama-3.3-70b-instruct");
    for _ in 0..2 {
        let r = api.chat(&key, &body).await;
        assert_eq!(details(&r).1 + details(&r).2, 0, "no caching on this model");
    }
}

#[tokio::test]
async fn implicit_caching_reads_a_repeated_history() {
    let api = Api::default().await;
    let (key, _) = api.create_key("cache", None).await;
    let history = json!({"role": "system", "content": "Context. ".repeat(600)});
    let ask_with = |q: &str| {
        json!({"model": "openai/gpt-4o-mini", "max_tokens": 20,
        "messages": [history, {"role": "user", "content": q}]})
    };
    let first = api.chat(&key, &ask_with("one")).await;
    assert_eq!((details(&first).1, details(&first).2), (0, 0), "implicit writes are not reported");
    let second = api.chat(&key, &ask_with("two")).await;
    assert_eq!(details(&second).2, 1350);
}

#[tokio::test]
async fn the_auto_router_serves_and_bills_as_its_target() {
    let api = Api::default().await;
    let (key, _) = api.create_key("auto", None).await;
    let r = api.chat(&key, &ask("openrouter/auto", "Route me.", Some(30))).await;
    assert_eq!(r.body["model"], "openai/gpt-4o-mini");
    let u = &r.body["usage"];
    let expected = dec("0.00000015") * Decimal::from(u["prompt_tokens"].as_u64().expect("n"))
        + dec("0.0000006") * Decimal::from(u["completion_tokens"].as_u64().expect("n"));
    assert_eq!(usd(&u["cost"]), expected);
    let id = r.body["id"].as_str().expect("id");
    let g = api.get(&format!("/generation?id={id}"), Some(&key)).await;
    assert_eq!(g.body["data"]["router"], "openrouter/auto");

    let r = api
        .chat(
            &key,
            &json!({"messages": [{"role": "user", "content": "no model"}], "max_tokens": 5}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["model"].as_str()),
        (200, Some("openai/gpt-4o-mini")),
        "default is auto"
    );
}

#[tokio::test]
async fn a_free_model_costs_nothing() {
    let api = Api::default().await;
    let (key, _) = api.create_key("free", Some(0.01)).await;
    let r = api.chat(&key, &ask("meta-llama/llama-3.3-70b-instruct:free", "Hi!", None)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["usage"]["cost"].as_f64(), Some(0.0));
}

#[tokio::test]
async fn generations_are_visible_to_their_key_and_the_management_key_only() {
    let api = Api::default().await;
    let (mine, _) = api.create_key("mine", None).await;
    let (other, _) = api.create_key("other", None).await;
    let r = api.chat(&mine, &ask("openai/gpt-4o-mini", "hi", Some(10))).await;
    let path = format!("/generation?id={}", r.body["id"].as_str().expect("id"));
    let g = api.get(&path, Some(&mine)).await;
    assert_eq!(g.status, 200);
    assert_eq!(g.body["data"]["total_cost"], r.body["usage"]["cost"]);
    assert_eq!(g.body["data"]["tokens_completion"], r.body["usage"]["completion_tokens"]);
    assert_eq!(api.get(&path, Some(&other)).await.status, 404);
    assert_eq!(api.get(&path, api.admin()).await.status, 200);
    assert_eq!(api.get("/generation", Some(&mine)).await.status, 400);
}

#[tokio::test]
async fn a_catalog_file_is_served_verbatim_and_junk_prices_are_not_billed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("catalog.toml");
    let sample =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sim/catalog.toml"))
            .expect("sample catalog");
    let junk = "\n[[models]]\nid = \"acme/junk\"\nprompt = \"abc\"\ncompletion = \"0.000001\"\n";
    std::fs::write(&file, format!("{sample}{junk}")).expect("write");
    let catalog = apf::sim::Catalog::load(&file).expect("loads");
    let api = Api::start(SimConfig { catalog, ..SimConfig::default() }).await;

    let r = api.get("/model/acme/junk", None).await;
    assert_eq!(r.body["data"]["pricing"]["prompt"], "abc", "served as published");
    let r = api.get("/model/acme/router", None).await;
    assert_eq!(r.body["data"]["pricing"]["prompt"], "-1");

    let (key, _) = api.create_key("k", None).await;
    let r = api.chat(&key, &ask("acme/junk", "hi", Some(5))).await;
    assert_eq!(r.status, 500);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("acme/junk") && m.contains("prompt"))
    );
    let r = api.chat(&key, &ask("acme/router", "hi", Some(5))).await;
    assert_eq!((r.status, r.body["model"].as_str()), (200, Some("acme/widget-mini")));
}
