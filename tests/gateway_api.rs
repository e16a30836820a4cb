//! The gateway's contract with agents: OpenRouter's shapes for refusals (402, 403) and bad
//! tokens (401), revocation, settlement from `usage.cost` for plain and streamed answers (also
//! when the client leaves mid-stream or the connection breaks), `/key` from the ledger, the
//! paths it serves and refuses, and models it cannot meter.

#[path = "gateway_common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use apf::gateway::{CostSource, Endpoint, GatewayConfig, ModelPrices};
use apf::money::Usd;
use apf::secret::Secret;
use apf::sim::{Faults, ScriptedFault};
use common::{SONNET, Setup, ask, drain, money, price_of, sse_data, usd};
use futures_util::StreamExt;
use serde_json::json;

fn latency(ms: u64) -> Faults {
    Faults { latency_ms: ms, ..Faults::default() }
}

fn chat_count(setup: &Setup) -> usize {
    setup.sim.count("POST", "/chat/completions")
}

#[tokio::test]
async fn a_request_that_cannot_fit_gets_openrouters_402_and_is_never_forwarded() {
    let setup = Setup::new(Faults::default(), "0.001", SONNET).await;
    let mut events = setup.gateway.subscribe();
    let body = ask(SONNET, "hi", Some(1000));
    let r = setup.chat(&body).await;
    assert_eq!(r.status, 402, "{}", r.text);
    let err = &r.json()["error"];
    assert_eq!(err["code"], 402);
    // The body bounds the prompt at its bytes / 3 tokens, at the dearest prompt rate (a
    // one-hour cache write, $6/M); the rest buys completion tokens at $15/M.
    let bytes = serde_json::to_vec(&body).expect("json").len() as u64;
    let prompt = usd("0.000006") * rust_decimal::Decimal::from(bytes.div_ceil(3));
    let can = ((usd("0.001") - prompt).0 / usd("0.000015").0).floor();
    let message = err["message"].as_str().expect("a message");
    assert!(
        message.starts_with(&format!(
            "This request requires more credits, or fewer max_tokens. You requested up to 1000 \
             tokens, but can only afford {can}. To increase, "
        )),
        "{message}"
    );
    assert_eq!(err["metadata"]["error_type"], "payment_required");
    assert_eq!(chat_count(&setup), 0, "nothing reached upstream");

    let huge = ask(SONNET, &"x".repeat(3_000), Some(1));
    let r = setup.chat(&huge).await;
    assert_eq!(r.status, 402);
    let message = r.json()["error"]["message"].as_str().unwrap_or_default().to_string();
    assert!(message.starts_with("Prompt tokens limit exceeded: "), "{message}");

    let ledger = setup.gateway.account("m").expect("account");
    assert_eq!((ledger.refused, ledger.requests, ledger.spent), (2, 0, Usd::ZERO));
    let seen = drain(&mut events);
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|e| e.status == 402 && !e.forwarded && e.cost == Usd::ZERO));
    assert_eq!(chat_count(&setup), 0);
}

#[tokio::test]
async fn without_max_tokens_the_models_largest_output_is_reserved_as_openrouter_does() {
    let setup = Setup::new(Faults::default(), "0.5", SONNET).await;
    let r = setup.chat(&ask(SONNET, "hi", None)).await;
    assert_eq!(r.status, 402, "64000 tokens at $15/M is $0.96: {}", r.text);
    let message = r.json()["error"]["message"].as_str().unwrap_or_default().to_string();
    assert!(
        message.contains("You requested up to 64000 tokens, but can only afford 333"),
        "{message}"
    );
    assert_eq!(setup.chat(&ask(SONNET, "hi", Some(100))).await.status, 200);
}

#[tokio::test]
async fn a_spent_budget_answers_403_key_limit_exceeded() {
    let setup = Setup::new(Faults::default(), "0.01", SONNET).await;
    let prices = ModelPrices::new().with(SONNET, price_of(&setup.client, SONNET).await);
    let token = setup.gateway.register("empty", setup.real_key.clone(), Usd::ZERO, prices).unwrap();
    let r = setup
        .send(
            reqwest::Method::POST,
            "/chat/completions",
            Some(token.expose()),
            Some(&ask(SONNET, "hi", Some(5))),
        )
        .await;
    assert_eq!(r.status, 403);
    let message = r.json()["error"]["message"].as_str().unwrap_or_default().to_string();
    assert!(
        message.starts_with("Key limit exceeded (total limit)."),
        "apf classifies it: {message}"
    );
    assert_eq!(chat_count(&setup), 0);
}

#[tokio::test]
async fn missing_unknown_and_real_keys_get_401_and_a_model_outside_the_account_403() {
    let setup = Setup::new(Faults::default(), "0.05", SONNET).await;
    let body = ask(SONNET, "hi", Some(5));
    let post = reqwest::Method::POST;
    let none = setup.send(post.clone(), "/chat/completions", None, Some(&body)).await;
    assert_eq!(
        (none.status, none.json()["error"]["message"].as_str()),
        (401, Some("No auth credentials found"))
    );
    let wrong =
        setup.send(post.clone(), "/chat/completions", Some("apf-gw-nope"), Some(&body)).await;
    assert_eq!(
        (wrong.status, wrong.json()["error"]["message"].as_str()),
        (401, Some("User not found."))
    );
    assert_eq!(wrong.json()["error"]["code"], 401);
    let real = setup
        .send(post.clone(), "/chat/completions", Some(setup.real_key.expose()), Some(&body))
        .await;
    assert_eq!(real.status, 401, "the real key is no gateway token");
    assert_eq!(
        setup.send(reqwest::Method::GET, "/key", Some("apf-gw-nope"), None).await.status,
        401
    );

    let other = setup.chat(&ask("openai/gpt-4o-mini", "hi", Some(5))).await;
    assert_eq!(other.status, 403, "{}", other.text);
    assert!(other.text.contains("not allowed for this key"), "{}", other.text);
    let fallback = json!({"model": SONNET, "models": ["openai/gpt-4o-mini"], "max_tokens": 5,
                          "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(setup.chat(&fallback).await.status, 403, "a fallback outside the account too");
    let no_model = setup.chat(&json!({"messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(no_model.status, 400);
    assert_eq!(chat_count(&setup), 0);
}

#[tokio::test]
async fn revoking_stops_the_token_at_once_and_lets_requests_in_flight_settle() {
    let setup = Setup::new(latency(600), "0.05", SONNET).await;
    assert_eq!(setup.chat(&ask(SONNET, "first", Some(50))).await.status, 200);
    let second_body = ask(SONNET, "second", Some(50));
    let in_flight = setup.chat(&second_body);
    let revoke = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        setup.gateway.revoke("m");
        let r = setup.chat(&ask(SONNET, "third", Some(50))).await;
        let key = setup.get("/key").await;
        (r, key)
    };
    let (second, (third, key)) = tokio::join!(in_flight, revoke);
    assert_eq!(second.status, 200, "admitted before the revocation, so it completes");
    assert_eq!((third.status, key.status), (401, 401));
    assert_eq!(third.json()["error"]["message"], "User not found.");
    setup.idle().await;
    let ledger = setup.gateway.account("m").expect("figures stay readable");
    assert!(ledger.revoked);
    assert_eq!((ledger.requests, ledger.in_flight, ledger.reserved), (2, 0, Usd::ZERO));
    assert_eq!(ledger.spent, setup.upstream_usage().await);
}

#[tokio::test]
async fn a_plain_answer_settles_at_its_usage_cost_and_becomes_an_event() {
    let setup = Setup::new(Faults::default(), "0.05", SONNET).await;
    let mut events = setup.gateway.subscribe();
    let r = setup.chat(&ask(SONNET, "What is two plus two?", Some(200))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    let cost = money(&body["usage"]["cost"]);
    let ledger = setup.gateway.account("m").expect("account");
    assert_eq!(ledger.spent, cost, "booked before the client saw the answer");
    assert_eq!((ledger.reserved, ledger.requests), (Usd::ZERO, 1));
    assert_eq!(ledger.completion_tokens, body["usage"]["completion_tokens"].as_u64().unwrap());
    assert_eq!(setup.upstream_usage().await, cost);

    let e = drain(&mut events).pop().expect("an event");
    assert_eq!(
        (e.endpoint, e.status, e.forwarded, e.streamed),
        (Endpoint::ChatCompletions, 200, true, false)
    );
    assert_eq!((e.cost, e.cost_source, e.cost_estimated), (cost, CostSource::Usage, false));
    assert_eq!(e.model.as_deref(), Some(SONNET));
    assert_eq!(e.generation_id.as_deref(), body["id"].as_str());
    assert_eq!(e.prompt_tokens, body["usage"]["prompt_tokens"].as_u64().unwrap());
    assert!(e.reserved >= cost, "the reservation covered the cost");
}

#[tokio::test]
async fn a_stream_passes_through_as_it_comes_and_settles_from_its_final_chunk() {
    let setup = Setup::new(latency(1500), "0.05", SONNET).await;
    let mut events = setup.gateway.subscribe();
    let mut body = ask(SONNET, "Tell me a story.", Some(200));
    body["stream"] = json!(true);
    let started = Instant::now();
    let response = setup
        .http
        .post(format!("{}/chat/completions", setup.gateway.base_url()))
        .bearer_auth(setup.token.expose())
        .json(&body)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut chunks = response.bytes_stream();
    let first = chunks.next().await.expect("a first chunk").expect("readable");
    let first_at = started.elapsed();
    assert!(first.starts_with(b": OPENROUTER PROCESSING"), "the keep-alive comes first");
    assert!(first_at < Duration::from_millis(700), "not held back: first bytes after {first_at:?}");
    let mut text = String::from_utf8_lossy(&first).to_string();
    while let Some(chunk) = chunks.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.expect("readable")));
    }
    assert!(started.elapsed() >= Duration::from_millis(1500), "the stream ran its course");

    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let usage_chunk: serde_json::Value =
        serde_json::from_str(&data[data.len() - 2]).expect("the usage chunk");
    assert_eq!(usage_chunk["choices"], json!([]));
    let cost = money(&usage_chunk["usage"]["cost"]);
    let ledger = setup.gateway.account("m").expect("account");
    assert_eq!((ledger.spent, ledger.reserved), (cost, Usd::ZERO));
    assert_eq!(setup.upstream_usage().await, cost);
    let e = drain(&mut events).pop().expect("an event");
    assert!(e.streamed && !e.client_disconnected);
    assert_eq!((e.cost, e.cost_source), (cost, CostSource::Usage));
    assert!(e.first_byte_ms.is_some_and(|ms| ms < 700), "{:?}", e.first_byte_ms);
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_still_has_its_cost_settled() {
    let setup = Setup::new(latency(2500), "0.05", SONNET).await;
    let mut events = setup.gateway.subscribe();
    let mut body = ask(SONNET, "A long answer, please.", Some(300));
    body["stream"] = json!(true);
    let response = setup
        .http
        .post(format!("{}/chat/completions", setup.gateway.base_url()))
        .bearer_auth(setup.token.expose())
        .json(&body)
        .send()
        .await
        .expect("answered");
    let mut chunks = response.bytes_stream();
    let first = chunks.next().await.expect("a first chunk").expect("readable");
    assert!(first.starts_with(b": OPENROUTER PROCESSING"));
    drop(chunks);
    let ledger = setup.gateway.account("m").expect("account");
    assert_eq!(ledger.in_flight, 1, "still running after the client left");
    assert!(ledger.reserved > Usd::ZERO);

    setup.idle().await;
    let upstream = setup.upstream_usage().await;
    assert!(upstream > Usd::ZERO, "upstream billed the whole generation");
    let ledger = setup.gateway.account("m").expect("account");
    assert_eq!((ledger.spent, ledger.reserved, ledger.estimated), (upstream, Usd::ZERO, 0));
    let e = drain(&mut events).pop().expect("an event");
    assert_eq!((e.cost, e.cost_source), (upstream, CostSource::Usage), "from the final chunk");
    assert!(e.client_disconnected, "the event says the client left");
}

/// The simulator breaks these connections before the response head is out, so no id ever
/// arrives: the gateway books the worst case (or the generation, should an id get through),
/// never less than upstream charged. `gateway_lookup` covers the lookup itself.
#[tokio::test]
async fn a_connection_cut_by_upstream_is_never_booked_below_its_charge() {
    let drop_chat =
        ScriptedFault { path: "/chat/completions".into(), status: None, drop: true, times: 2 };
    let faults = Faults { script: vec![drop_chat], ..Faults::default() };
    let setup = Setup::new(faults, "0.05", SONNET).await;
    let mut events = setup.gateway.subscribe();

    let mut streamed = ask(SONNET, "Stream, then break.", Some(100));
    streamed["stream"] = json!(true);
    // The cut may come before or after the response head reaches the client, as it would
    // straight from upstream.
    let sent = setup
        .http
        .post(format!("{}/chat/completions", setup.gateway.base_url()))
        .bearer_auth(setup.token.expose())
        .json(&streamed)
        .send()
        .await;
    let broke = match sent {
        Err(_) => true,
        Ok(response) if response.status() != 200 => true,
        Ok(response) => {
            let mut chunks = response.bytes_stream();
            let mut broke = false;
            while let Some(chunk) = chunks.next().await {
                broke |= chunk.is_err();
            }
            broke
        }
    };
    assert!(broke, "the client sees the stream break, as it would from upstream");

    let plain = setup.chat(&ask(SONNET, "Answer, then break.", Some(100))).await;
    assert_eq!(plain.status, 502, "a cut response is a bad gateway: {}", plain.text);
    assert_eq!(plain.json()["error"]["code"], 502);

    setup.idle().await;
    let upstream = setup.upstream_usage().await;
    assert!(upstream > Usd::ZERO, "upstream billed both");
    let ledger = setup.gateway.account("m").expect("account");
    assert!(ledger.spent >= upstream, "{} booked, {upstream} charged", ledger.spent);
    assert_eq!(ledger.reserved, Usd::ZERO);
    let chat = drain(&mut events);
    assert_eq!(chat.len(), 2);
    for e in &chat {
        assert!(matches!(e.cost_source, CostSource::Reservation | CostSource::Generation));
        assert_eq!(e.cost_estimated, e.cost_source == CostSource::Reservation);
        if e.cost_estimated {
            assert_eq!(e.cost, e.reserved, "the worst case");
        }
    }
    assert_eq!(ledger.estimated, chat.iter().filter(|e| e.cost_estimated).count() as u64);
}

#[tokio::test]
async fn upstream_refusals_pass_through_unbilled() {
    let limited = ScriptedFault {
        path: "/chat/completions".into(),
        status: Some(429),
        drop: false,
        times: 1,
    };
    let broken = ScriptedFault {
        path: "/chat/completions".into(),
        status: Some(502),
        drop: false,
        times: 1,
    };
    let faults = Faults { script: vec![limited, broken], retry_after_secs: 7, ..Faults::default() };
    let setup = Setup::new(faults, "0.05", SONNET).await;
    let r = setup.chat(&ask(SONNET, "hi", Some(10))).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["retry-after"], "7", "Retry-After reaches the agent");
    assert_eq!(r.json()["error"]["code"], 429);
    let r = setup.chat(&ask(SONNET, "hi", Some(10))).await;
    assert_eq!(r.status, 502);
    let ledger = setup.gateway.account("m").expect("account");
    assert_eq!((ledger.spent, ledger.reserved, ledger.requests), (Usd::ZERO, Usd::ZERO, 2));
    assert_eq!(setup.chat(&ask(SONNET, "hi", Some(10))).await.status, 200);
}

#[tokio::test]
async fn key_is_answered_from_the_ledger_without_asking_upstream() {
    let setup = Setup::new(Faults::default(), "0.05", SONNET).await;
    for n in 0..3 {
        assert_eq!(setup.chat(&ask(SONNET, &format!("question {n}"), Some(100))).await.status, 200);
    }
    let spent = setup.gateway.account("m").expect("account").spent;
    let r = setup.get("/key").await;
    assert_eq!(r.status, 200);
    let data = &r.json()["data"];
    assert_eq!(money(&data["limit"]), usd("0.05"));
    assert_eq!(money(&data["usage"]), spent);
    assert_eq!(money(&data["limit_remaining"]), usd("0.05") - spent);
    assert_eq!(data["is_management_key"], false);
    assert!(data["label"].as_str().is_some_and(|l| l.starts_with("apf-gw-")), "{data}");
    assert_eq!(setup.get("/auth/key").await.json()["data"]["usage"], data["usage"], "legacy path");
    assert_eq!(setup.sim.count("GET", "/key"), 0, "never asked upstream");
    // And apf's own client reads it like OpenRouter's answer.
    let client = apf::openrouter::Client::new(&setup.gateway.base_url());
    let info = client.key_info(&setup.token).await.expect("readable by apf's client");
    assert_eq!((info.limit, info.usage), (Some(usd("0.05")), spent));
}

#[tokio::test]
async fn models_pass_through_and_every_other_path_is_a_404_envelope() {
    let setup = Setup::new(Faults::default(), "0.05", SONNET).await;
    let r = setup.get("/models").await;
    assert_eq!(r.status, 200);
    let listed = r.json()["data"].as_array().map(Vec::len);
    let direct = setup.client.models(None).await.expect("direct").len();
    assert_eq!(listed, Some(direct));
    for path in ["/credits", "/keys", "/generation?id=gen-1", "/nothing"] {
        let r = setup.get(path).await;
        assert_eq!((r.status, r.json()["error"]["code"].as_i64()), (404, Some(404)), "{path}");
    }
    let r = setup
        .send(reqwest::Method::POST, "/keys", Some(setup.token.expose()), Some(&json!({})))
        .await;
    assert_eq!(r.status, 404);
    let r = setup.get("/chat/completions").await;
    assert_eq!((r.status, r.json()["error"]["code"].as_i64()), (405, Some(405)));
}

#[tokio::test]
async fn variable_price_models_are_refused_at_register_time() {
    let setup = Setup::new(Faults::default(), "0.05", SONNET).await;
    let auto = price_of(&setup.client, "openrouter/auto").await;
    let prices = ModelPrices::new().with("openrouter/auto", auto);
    let err = setup
        .gateway
        .register("router", Secret::new("sk-or-v1-unused"), usd("1"), prices)
        .expect_err("cannot be reserved");
    let text = format!("{err:#}");
    assert!(text.contains("openrouter/auto") && text.contains("variable"), "{text}");
    assert!(!text.contains("sk-or-v1-unused"));
    let taken = ModelPrices::new().with(SONNET, price_of(&setup.client, SONNET).await);
    assert!(setup.gateway.register("m", Secret::new("x"), usd("1"), taken).is_err(), "alias taken");
}

#[tokio::test]
async fn the_gateway_listens_on_loopback_only() {
    let config =
        GatewayConfig::new("0.0.0.0:0".parse().expect("addr"), "http://127.0.0.1:9/api/v1");
    let err = apf::gateway::start(config).await.expect_err("refused");
    assert!(err.to_string().contains("loopback"), "{err}");
}
