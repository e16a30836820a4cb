//! Money and keys in the simulator: paging, key caps (403) versus account credits (402), the
//! preflight affordability check, overshoot under concurrency, expiry, disabling, exact costs,
//! the spend hook and the request log.

#[path = "fixtures/sim/common.rs"]
mod common;

use std::collections::HashSet;
use std::time::Duration;

use apf::money::Usd;
use apf::sim::{Faults, SimConfig};
use common::{Api, ask, dec, usd};
use serde_json::{Value, json};

fn dollars(s: &str) -> Usd {
    s.parse().expect("usd")
}

#[tokio::test]
async fn listing_pages_120_keys_by_100_newest_first() {
    let api = Api::default().await;
    let mut hashes = Vec::new();
    for n in 0..120 {
        let (_, hash) = api.create_key(&format!("run-key-{n:03}"), Some(0.1)).await;
        hashes.push(hash);
    }
    let first = api.get("/keys", api.admin()).await;
    let second = api.get("/keys?offset=100", api.admin()).await;
    let third = api.get("/keys?offset=120", api.admin()).await;
    let page = |r: &common::Reply| r.body["data"].as_array().cloned().expect("a list");
    assert_eq!((page(&first).len(), page(&second).len(), page(&third).len()), (100, 20, 0));
    assert_eq!(page(&first)[0]["name"], "run-key-119", "newest first");
    assert_eq!(page(&second)[19]["name"], "run-key-000");

    let seen: HashSet<String> = page(&first)
        .iter()
        .chain(page(&second).iter())
        .filter_map(|k| k["hash"].as_str().map(str::to_string))
        .collect();
    assert_eq!(seen, hashes.iter().cloned().collect(), "every key once across the pages");
    assert_eq!(api.sim.count("GET", "/keys"), 3, "one logged request per listing");
}

#[tokio::test]
async fn disabled_keys_are_listed_only_on_request_and_cannot_authenticate() {
    let api = Api::default().await;
    let (key, hash) = api.create_key("to-disable", None).await;
    api.create_key("stays", None).await;
    let r = api.patch(&format!("/keys/{hash}"), api.admin(), &json!({"disabled": true})).await;
    assert_eq!(r.body["data"]["disabled"], true);

    let listed = api.get("/keys", api.admin()).await.body["data"].as_array().map(Vec::len);
    assert_eq!(listed, Some(1));
    let all = api.get("/keys?include_disabled=true", api.admin()).await.body["data"]
        .as_array()
        .map(Vec::len);
    assert_eq!(all, Some(2));

    let r = api.chat(&key, &ask("openai/gpt-4o-mini", "hi", Some(5))).await;
    assert_eq!((r.status, r.body["error"]["message"].as_str()), (401, Some("User not found.")));
    api.patch(&format!("/keys/{hash}"), api.admin(), &json!({"disabled": false})).await;
    assert_eq!(api.chat(&key, &ask("openai/gpt-4o-mini", "hi", Some(5))).await.status, 200);
}

#[tokio::test]
async fn an_expired_key_answers_401() {
    let api = Api::default().await;
    let soon = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let expires = soon.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (key, _) = api.create_key_with(json!({"name": "brief", "expires_at": expires})).await;
    assert_eq!(api.chat(&key, &ask("openai/gpt-4o-mini", "hi", Some(5))).await.status, 200);
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let r = api.chat(&key, &ask("openai/gpt-4o-mini", "hi", Some(5))).await;
    assert_eq!((r.status, r.body["error"]["message"].as_str()), (401, Some("User not found.")));
    assert_eq!(api.get("/key", Some(&key)).await.status, 401);
}

/// H2: a key's cap is not the account's credits.
#[tokio::test]
async fn a_spent_key_is_403_and_an_account_that_cannot_pay_is_402() {
    let api = Api::default().await;
    let (capped, hash) = api.create_key("capped", Some(0.05)).await;
    api.sim.set_key_usage(&hash, dollars("0.05")).expect("known key");
    let r = api.chat(&capped, &ask("openai/gpt-4o-mini", "hi", Some(5))).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.body["error"]["message"],
        "Key limit exceeded (total limit). Manage it using https://openrouter.ai/settings/keys"
    );
    // Even a free model needs headroom on the key.
    let r = api.chat(&capped, &ask("meta-llama/llama-3.3-70b-instruct:free", "hi", Some(5))).await;
    assert_eq!(r.status, 403);

    let (unlimited, _) = api.create_key("unlimited", None).await;
    api.sim.set_credits(dollars("0.05"));
    let r = api.chat(&unlimited, &ask("openai/gpt-4o-mini", "hi", Some(5))).await;
    assert_eq!(r.status, 402, "the account's usage (0.05) has reached its credits: {}", r.body);
    assert!(
        r.body["error"]["message"].as_str().is_some_and(|m| m.starts_with("Insufficient credits"))
    );
    let r =
        api.chat(&unlimited, &ask("meta-llama/llama-3.3-70b-instruct:free", "hi", Some(5))).await;
    assert_eq!(r.status, 402, "an account that cannot pay gets 402 even on free models");
}

#[tokio::test]
async fn the_preflight_asks_for_prompt_plus_max_tokens_with_openrouters_message() {
    let api = Api::default().await;
    let (key, _) = api.create_key("preflight", Some(0.01)).await;
    // 12 characters: 3 prompt tokens at $15/M leave 0.009955, which buys 132 tokens at $75/M.
    let body = ask("anthropic/claude-opus-4", "Hello there!", Some(1000));
    let r = api.chat(&key, &body).await;
    assert_eq!(r.status, 402);
    assert_eq!(
        r.body["error"]["message"],
        "This request requires more credits, or fewer max_tokens. You requested up to 1000 tokens, \
         but can only afford 132. To increase, visit https://openrouter.ai/settings/keys and create \
         a key with a higher total limit"
    );
    // Without max_tokens the model's maximum output (32000 for Opus 4) is what must be afforded.
    let r = api.chat(&key, &ask("anthropic/claude-opus-4", "Hello there!", None)).await;
    assert!(r.body["error"]["message"].as_str().is_some_and(|m| m.contains("up to 32000 tokens")));
    assert_eq!(
        api.chat(&key, &ask("anthropic/claude-opus-4", "Hello there!", Some(132))).await.status,
        200
    );

    // When the account is the tighter budget, the message sends you to buy credits.
    let (unlimited, _) = api.create_key("unlimited", None).await;
    api.sim.set_credits(api.sim.account().total_usage + dollars("0.001"));
    let r = api.chat(&unlimited, &ask("anthropic/claude-opus-4", "Hello there!", Some(1000))).await;
    let message = r.body["error"]["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("settings/credits and add more credits"), "{message}");
}

/// H3: caps overshoot under concurrency, because admission sees only recorded spend.
#[tokio::test]
async fn parallel_calls_all_pass_admission_and_overshoot_the_cap() {
    let faults = Faults { latency_ms: 400, ..Faults::default() };
    let api = Api::start(SimConfig { faults, ..SimConfig::default() }).await;
    let (key, hash) = api.create_key("racer", Some(0.05)).await;
    api.sim.set_key_usage(&hash, dollars("0.04")).expect("known key");

    // Each call may cost at most 100 × $75/M = $0.0075, within the $0.01 left.
    let calls = (0..4).map(|n| {
        let body = ask("anthropic/claude-opus-4", &format!("Task {n}"), Some(100));
        let api = &api;
        let key = key.clone();
        async move { api.chat(&key, &body).await }
    });
    let replies = futures_util::future::join_all(calls).await;
    assert!(replies.iter().all(|r| r.status == 200), "all admitted");
    let spent: rust_decimal::Decimal = replies.iter().map(|r| usd(&r.body["usage"]["cost"])).sum();

    let info = api.key_info(&key).await;
    assert_eq!(usd(&info["usage"]), dec("0.04") + spent);
    assert!(usd(&info["usage"]) > dec("0.05"), "usage passed the limit: {info}");
    assert!(usd(&info["limit_remaining"]) < rust_decimal::Decimal::ZERO, "remaining goes negative");
    let r = api.chat(&key, &ask("anthropic/claude-opus-4", "One more", Some(10))).await;
    assert_eq!(r.status, 403, "the next call meets the spent cap");
}

#[tokio::test]
async fn costs_are_exact_and_reach_the_key_and_the_account() {
    let api = Api::default().await;
    let (key, hash) = api.create_key("exact", Some(1.0)).await;
    let mut total = rust_decimal::Decimal::ZERO;
    for n in 0..5 {
        let r = api
            .chat(
                &key,
                &ask("anthropic/claude-sonnet-4", &format!("Question number {n}?"), Some(400)),
            )
            .await;
        let u = &r.body["usage"];
        let expected = dec("0.000003")
            * rust_decimal::Decimal::from(u["prompt_tokens"].as_u64().expect("n"))
            + dec("0.000015")
                * rust_decimal::Decimal::from(u["completion_tokens"].as_u64().expect("n"));
        assert_eq!(usd(&u["cost"]), expected);
        assert_eq!(
            usd(&u["cost_details"]["upstream_inference_prompt_cost"])
                + usd(&u["cost_details"]["upstream_inference_completions_cost"]),
            expected
        );
        total += expected;
    }
    assert_eq!(usd(&api.key_info(&key).await["usage"]), total);
    let credits = api.get("/credits", api.admin()).await;
    assert_eq!(usd(&credits.body["data"]["total_usage"]), total);
    let listed = api.get(&format!("/keys/{hash}"), api.admin()).await;
    assert_eq!(usd(&listed.body["data"]["usage"]), total);
    assert_eq!(usd(&listed.body["data"]["limit_remaining"]), dec("1") - total);
    assert_eq!(api.sim.account().total_usage, Usd::new(total));
}

#[tokio::test]
async fn a_daily_limit_counts_only_todays_spend() {
    let api = Api::default().await;
    let (key, hash) =
        api.create_key_with(json!({"name": "daily", "limit": 1, "limit_reset": "daily"})).await;
    api.sim.set_key_usage(&hash, dollars("0.3")).expect("known key");
    let info = api.key_info(&key).await;
    assert_eq!(
        (usd(&info["usage_daily"]), usd(&info["limit_remaining"])),
        (dec("0.3"), dec("0.7"))
    );
    api.sim.set_key_usage(&hash, dollars("1")).expect("known key");
    let r = api.chat(&key, &ask("openai/gpt-4o-mini", "hi", Some(5))).await;
    assert_eq!(
        r.body["error"]["message"],
        "Key limit exceeded (daily limit). Manage it using https://openrouter.ai/settings/keys"
    );
}

#[tokio::test]
async fn the_spend_hook_needs_the_management_key() {
    let api = Api::default().await;
    let (key, hash) = api.create_key("hooked", Some(5.0)).await;
    let path = format!("/_sim/keys/{hash}/spend");
    let r = api.post(&path, Some(&key), &json!({"usd": "4.75"})).await;
    assert_eq!(r.status, 403);
    assert_eq!(api.post(&path, None, &json!({"usd": "4.75"})).await.status, 401);
    for reading in ["4.75", "5.14", "5.17"] {
        let r = api.post(&path, api.admin(), &json!({"usd": reading})).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(usd(&api.key_info(&key).await["usage"]), dec(reading));
    }
    let state = api.get("/_sim/state", api.admin()).await;
    assert_eq!(state.body["account"]["total_usage"], "5.17");
    assert_eq!(
        api.post("/_sim/keys/nope/spend", api.admin(), &json!({"usd": 1})).await.status,
        404
    );
}

#[tokio::test]
async fn the_request_log_has_hashes_costs_and_counts_but_never_keys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("requests.jsonl");
    let api = Api::start(SimConfig { log_file: Some(log.clone()), ..SimConfig::default() }).await;
    let (key, hash) = api.create_key("logged", None).await;
    let r = api.chat(&key, &ask("openai/gpt-4o-mini", "hi", Some(20))).await;
    api.get("/keys", api.admin()).await;
    api.get("/models", None).await;

    let entries = api.sim.requests();
    let chat = entries.iter().find(|e| e.route == "/chat/completions").expect("chat logged");
    assert_eq!(chat.key_hash.as_deref(), Some(hash.as_str()));
    assert_eq!(chat.cost.map(|c| c.0), Some(usd(&r.body["usage"]["cost"])));
    assert_eq!(chat.status, 200);
    let models = entries.iter().find(|e| e.route == "/models").expect("models logged");
    assert_eq!(models.key_hash, None);
    assert_eq!(api.sim.counts().get("GET /keys"), Some(&1));
    assert_eq!(api.sim.count("POST", "/keys"), 1);

    let text = std::fs::read_to_string(&log).expect("log file");
    let lines: Vec<Value> =
        text.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(lines.len(), entries.len());
    assert!(!text.contains(&key) && !text.contains(&api.admin) && !text.contains("sk-or-"));
    let remote = api.get("/_sim/requests", api.admin()).await;
    assert_eq!(remote.body["counts"]["POST /chat/completions"], 1);
}
