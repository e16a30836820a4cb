//! H6/H13 at the gateway: the real key never shows in anything a client of the gateway can
//! see: statuses, headers and bodies of every kind of answer (success, stream, refusals, bad
//! tokens, unknown paths, upstream errors, cut connections, an unreachable upstream), nor in the
//! events, the ledger, or the errors `register` gives.

#[path = "gateway_common/mod.rs"]
mod common;

use apf::gateway::{GatewayConfig, ModelPrices};
use apf::money::Usd;
use apf::sim::{Faults, ScriptedFault};
use common::{Reply, SONNET, Setup, ask, drain, price_of, usd};
use futures_util::StreamExt;
use serde_json::json;

fn scripted(status: Option<u16>, drop: bool) -> ScriptedFault {
    ScriptedFault { path: "/chat/completions".into(), status, drop, times: 1 }
}

async fn streamed(setup: &Setup, body: &serde_json::Value) -> Reply {
    let sent = setup
        .http
        .post(format!("{}/chat/completions", setup.gateway.base_url()))
        .bearer_auth(setup.token.expose())
        .json(body)
        .send()
        .await;
    let Ok(response) = sent else {
        return Reply { status: 0, headers: Default::default(), text: String::new() };
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let mut text = String::new();
    let mut chunks = response.bytes_stream();
    while let Some(Ok(chunk)) = chunks.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    Reply { status, headers, text }
}

#[tokio::test]
async fn no_answer_of_the_gateway_shows_the_real_key() {
    // The first chat requests meet a 429, a 502 and a cut connection; later ones succeed.
    let faults = Faults {
        script: vec![scripted(Some(429), false), scripted(Some(502), false), scripted(None, true)],
        ..Faults::default()
    };
    let setup = Setup::new(faults, "0.01", SONNET).await;
    let mut events = setup.gateway.subscribe();
    let token = setup.token.expose().to_string();
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;
    let small = ask(SONNET, "hi", Some(20));
    let mut stream_body = ask(SONNET, "stream it", Some(20));
    stream_body["stream"] = json!(true);

    let mut seen: Vec<(String, Reply)> = Vec::new();
    for label in ["upstream 429", "upstream 502", "upstream cut"] {
        seen.push((label.into(), setup.chat(&small).await));
    }
    seen.push(("plain 200".into(), setup.chat(&small).await));
    seen.push(("stream 200".into(), streamed(&setup, &stream_body).await));
    seen.push(("402".into(), setup.chat(&ask(SONNET, "hi", Some(100_000))).await));
    seen.push(("403 model".into(), setup.chat(&ask("openai/gpt-4o-mini", "hi", Some(5))).await));
    seen.push(("400 body".into(), {
        let r = setup.http.post(format!("{}/chat/completions", setup.gateway.base_url()));
        let r = r.bearer_auth(&token).body("{not json").send().await.expect("answered");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        Reply { status, headers, text: r.text().await.unwrap_or_default() }
    }));
    seen.push((
        "401".into(),
        setup.send(post.clone(), "/chat/completions", Some("apf-gw-wrong"), Some(&small)).await,
    ));
    seen.push(("401 none".into(), setup.send(get.clone(), "/key", None, None).await));
    seen.push(("/key".into(), setup.get("/key").await));
    seen.push(("/auth/key".into(), setup.get("/auth/key").await));
    seen.push(("/models".into(), setup.get("/models").await));
    seen.push(("404".into(), setup.get("/credits").await));
    seen.push(("405".into(), setup.get("/chat/completions").await));

    let prices = ModelPrices::new().with(SONNET, price_of(&setup.client, SONNET).await);
    let spent_token = setup.gateway.register("spent", setup.real_key.clone(), Usd::ZERO, prices);
    let spent_token = spent_token.expect("registers");
    seen.push((
        "403 spent".into(),
        setup
            .send(post.clone(), "/chat/completions", Some(spent_token.expose()), Some(&small))
            .await,
    ));

    // A gateway whose upstream does not answer at all.
    let dead =
        GatewayConfig::new("127.0.0.1:0".parse().expect("addr"), "http://127.0.0.1:9/api/v1");
    let dead = apf::gateway::start(dead).await.expect("starts");
    let prices = ModelPrices::new().with(SONNET, price_of(&setup.client, SONNET).await);
    let dead_token =
        dead.register("m", setup.real_key.clone(), usd("1"), prices).expect("registers");
    let r = setup
        .http
        .post(format!("{}/chat/completions", dead.base_url()))
        .bearer_auth(dead_token.expose())
        .json(&small)
        .send()
        .await
        .expect("answered");
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    seen.push((
        "unreachable".into(),
        Reply { status, headers, text: r.text().await.unwrap_or_default() },
    ));

    let statuses: Vec<(String, u16)> = seen.iter().map(|(l, r)| (l.clone(), r.status)).collect();
    let expect = [
        ("upstream 429", 429),
        ("upstream 502", 502),
        ("upstream cut", 502),
        ("plain 200", 200),
        ("stream 200", 200),
        ("402", 402),
        ("403 model", 403),
        ("400 body", 400),
        ("401", 401),
        ("401 none", 401),
        ("/key", 200),
        ("/auth/key", 200),
        ("/models", 200),
        ("404", 404),
        ("405", 405),
        ("403 spent", 403),
        ("unreachable", 502),
    ];
    let expect: Vec<(String, u16)> = expect.iter().map(|(l, s)| (l.to_string(), *s)).collect();
    assert_eq!(statuses, expect, "every kind of answer was met");

    let real = setup.real_key.expose();
    for (label, reply) in &seen {
        let visible = reply.visible();
        assert!(!visible.contains(real), "{label} shows the real key");
        assert!(!visible.contains("sk-or-"), "{label} shows something like a key: {visible}");
    }

    setup.idle().await;
    let all_events = drain(&mut events);
    assert!(all_events.len() >= 12, "{} events", all_events.len());
    let events_json = serde_json::to_string(&all_events).expect("events serialise");
    assert!(!events_json.contains(real) && !events_json.contains("sk-or-"));
    let ledger = format!("{:?}", setup.gateway.account("m"));
    assert!(!ledger.contains(real));
    assert!(!format!("{:?}", setup.gateway).contains(real));
    assert!(!setup.token.expose().contains("sk-or-"), "a gateway token is not an OpenRouter key");
    dead.shutdown().await;
}
