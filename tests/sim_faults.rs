//! Fault injection: latency, 429 with Retry-After, 5xx, dropped connections, late spend, the
//! path filter, seeded repeatability, and the fault file with its reloads.

#[path = "fixtures/sim/common.rs"]
mod common;

use std::time::{Duration, Instant};

use apf::sim::{Faults, ScriptedFault, SimArgs, SimConfig};
use common::{Api, ask, dec, usd};
use serde_json::json;

async fn faulty(faults: Faults) -> Api {
    Api::start(SimConfig { faults, ..SimConfig::default() }).await
}

fn args() -> SimArgs {
    SimArgs {
        listen: "127.0.0.1:0".parse().expect("addr"),
        management_key: Some("sk-or-v1-test-admin".into()),
        catalog: None,
        credits: "100".parse().expect("usd"),
        seed: 0,
        latency: None,
        rate_429: None,
        rate_5xx: None,
        spend_delay: None,
        drop_rate: None,
        faults: None,
        tool_calls: 3,
        log: None,
    }
}

#[tokio::test]
async fn latency_delays_every_request() {
    let api = faulty(Faults { latency_ms: 250, ..Faults::default() }).await;
    let (key, _) = api.create_key("slow", None).await;
    let t = Instant::now();
    api.get("/key", Some(&key)).await;
    assert!(t.elapsed() >= Duration::from_millis(250));
    let t = Instant::now();
    assert_eq!(api.chat(&key, &ask("openai/gpt-4o-mini", "hi", Some(5))).await.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn rate_limited_requests_get_429_with_retry_after_and_cost_nothing() {
    let api = Api::default().await;
    let (key, _) = api.create_key("limited", None).await;
    api.sim
        .set_faults(Faults { rate_429: 1.0, retry_after_secs: 7, ..Faults::default() })
        .expect("valid");
    let r = api.chat(&key, &ask("openai/gpt-4o-mini", "hi", Some(5))).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["retry-after"], "7");
    assert_eq!(r.headers["x-ratelimit-remaining"], "0");
    assert_eq!(r.body["error"]["message"], "Rate limit exceeded");
    assert!(r.body["error"]["metadata"]["headers"]["X-RateLimit-Reset"].is_string());
    api.sim.set_faults(Faults::default()).expect("valid");
    assert_eq!(usd(&api.key_info(&key).await["usage"]), dec("0"));
    assert_eq!(api.requests_with_fault("429"), 1);
}

#[tokio::test]
async fn server_errors_use_the_configured_status() {
    let api = faulty(Faults { rate_5xx: 1.0, status_5xx: 503, ..Faults::default() }).await;
    let r = api.get("/models", None).await;
    assert_eq!((r.status, r.body["error"]["code"].as_u64()), (503, Some(503)));
}

#[tokio::test]
async fn random_faults_can_be_limited_to_some_routes() {
    let faults =
        Faults { rate_429: 1.0, paths: vec!["/chat/completions".into()], ..Faults::default() };
    let api = faulty(faults).await;
    let (key, _) = api.create_key("k", None).await;
    assert_eq!(api.get("/key", Some(&key)).await.status, 200);
    assert_eq!(api.chat(&key, &ask("openai/gpt-4o-mini", "hi", Some(5))).await.status, 429);
}

#[tokio::test]
async fn the_same_seed_gives_the_same_faults() {
    let statuses = |seed: u64| async move {
        let faults = Faults { rate_429: 0.3, rate_5xx: 0.2, ..Faults::default() };
        let api = Api::start(SimConfig { seed, faults, ..SimConfig::default() }).await;
        let mut out = Vec::new();
        for _ in 0..30 {
            out.push(api.get("/models", None).await.status);
        }
        out
    };
    let a = statuses(5).await;
    assert_eq!(a, statuses(5).await);
    assert!(a.contains(&200) && a.contains(&429) && a.contains(&502), "{a:?}");
}

#[tokio::test]
async fn a_dropped_connection_fails_the_client_but_a_dropped_completion_is_billed() {
    let api = Api::default().await;
    let (key, _) = api.create_key("dropped", None).await;
    let drop_next =
        |path: &str| ScriptedFault { path: path.into(), status: None, drop: true, times: 1 };
    let script =
        vec![drop_next("/key"), drop_next("/chat/completions"), drop_next("/chat/completions")];
    api.sim.set_faults(Faults { script, ..Faults::default() }).expect("valid");

    let outcome = async |request: reqwest::RequestBuilder| match request.send().await {
        Err(_) => Err(()),
        Ok(response) => response.bytes().await.map_err(|_| ()).map(|b| b.to_vec()),
    };
    let key_info = api.http.get(format!("{}/key", api.base)).bearer_auth(&key);
    assert!(outcome(key_info).await.is_err(), "GET /key dropped");

    let chat = |stream: bool| {
        let mut body = ask("openai/gpt-4o-mini", "hi", Some(50));
        body["stream"] = json!(stream);
        api.http.post(format!("{}/chat/completions", api.base)).bearer_auth(&key).json(&body)
    };
    assert!(outcome(chat(false)).await.is_err(), "a plain completion dropped mid-body");
    match outcome(chat(true)).await {
        Err(()) => {}
        Ok(bytes) => {
            panic!("a stream cut short must error, got {}", String::from_utf8_lossy(&bytes))
        }
    }
    let usage = usd(&api.key_info(&key).await["usage"]);
    assert!(usage > dec("0"), "both dropped completions were billed");
    assert_eq!(api.requests_with_fault("drop"), 3);
    assert_eq!(api.chat(&key, &ask("openai/gpt-4o-mini", "hi", Some(5))).await.status, 200);
}

#[tokio::test]
async fn spend_shows_late_on_key_keys_credits_and_generation() {
    let api = faulty(Faults { spend_delay_ms: 700, ..Faults::default() }).await;
    let (key, hash) = api.create_key("late", Some(1.0)).await;
    let r = api.chat(&key, &ask("anthropic/claude-sonnet-4", "hi", Some(100))).await;
    let cost = usd(&r.body["usage"]["cost"]);
    assert!(cost > dec("0"));
    let generation = format!("/generation?id={}", r.body["id"].as_str().expect("id"));

    assert_eq!(usd(&api.key_info(&key).await["usage"]), dec("0"));
    assert_eq!(
        usd(&api.get(&format!("/keys/{hash}"), api.admin()).await.body["data"]["usage"]),
        dec("0")
    );
    assert_eq!(usd(&api.get("/credits", api.admin()).await.body["data"]["total_usage"]), dec("0"));
    assert_eq!(api.get(&generation, Some(&key)).await.status, 404, "not yet recorded");
    assert_eq!(api.sim.account().pending_usage.0, cost);

    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(usd(&api.key_info(&key).await["usage"]), cost);
    let listed = api.get("/keys", api.admin()).await;
    assert_eq!(usd(&listed.body["data"][0]["usage"]), cost);
    assert_eq!(usd(&api.get("/credits", api.admin()).await.body["data"]["total_usage"]), cost);
    assert_eq!(api.get(&generation, Some(&key)).await.status, 200);
}

#[tokio::test]
async fn faults_come_from_a_file_flags_override_it_and_it_reloads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("faults.toml");
    std::fs::write(&file, "latency_ms = 10\nrate_429 = 1.0\npaths = [\"/models\"]\n")
        .expect("write");
    let mut args = args();
    args.faults = Some(file.clone());
    args.latency = Some(20);
    let config = SimConfig::from_args(&args).expect("resolves");
    assert_eq!((config.faults.latency_ms, config.faults.rate_429), (20, 1.0), "flags win");
    assert!(!config.management_key_generated);

    let api = Api::start(config).await;
    assert_eq!(api.admin, "sk-or-v1-test-admin");
    assert_eq!(api.get("/models", None).await.status, 429);
    std::fs::write(&file, "rate_5xx = 1.0\nstatus_5xx = 500\n").expect("rewrite");
    let reloaded = api.sim.reload_faults().expect("reloads");
    assert_eq!(reloaded.rate_5xx, 1.0);
    assert_eq!(api.get("/models", None).await.status, 500);

    std::fs::write(&file, "spend_delay_ms = 5\n").expect("rewrite");
    let r = api.post("/_sim/faults/reload", api.admin(), &json!({})).await;
    assert_eq!((r.status, r.body["spend_delay_ms"].as_u64()), (200, Some(5)));
    assert_eq!(api.get("/models", None).await.status, 200);

    std::fs::write(&file, "rate_429 = 2").expect("rewrite");
    assert!(api.sim.reload_faults().is_err(), "an invalid file is refused");
    assert_eq!(api.sim.faults().spend_delay_ms, 5, "and the faults in force stay");
}

#[tokio::test]
async fn the_fault_control_route_takes_json_and_the_management_key() {
    let api = Api::default().await;
    let (key, _) = api.create_key("k", None).await;
    let faults = json!({"script": [{"path": "/models", "status": 500, "times": 2}]});
    assert_eq!(api.post("/_sim/faults", Some(&key), &faults).await.status, 403);
    assert_eq!(api.post("/_sim/faults", api.admin(), &json!({"rate_429": "x"})).await.status, 400);
    let r = api.post("/_sim/faults", api.admin(), &faults).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(api.get("/models", None).await.status, 500);
    let left = api.get("/_sim/faults", api.admin()).await;
    assert_eq!(left.body["script"][0]["times"], 1);
    assert_eq!(api.get("/models", None).await.status, 500);
    assert_eq!(api.get("/models", None).await.status, 200);
}

#[tokio::test]
async fn only_loopback_addresses_are_served() {
    let mut a = args();
    a.listen = "0.0.0.0:0".parse().expect("addr");
    let err = SimConfig::from_args(&a).expect_err("refused");
    assert!(err.to_string().contains("loopback"), "{err}");
    let config = SimConfig { listen: "192.0.2.1:0".parse().expect("addr"), ..SimConfig::default() };
    assert!(apf::sim::start(config).await.is_err());
    let mut v6 = args();
    v6.listen = "[::1]:0".parse().expect("addr");
    SimConfig::from_args(&v6).expect("::1 is loopback");
}

trait FaultCount {
    fn requests_with_fault(&self, fault: &str) -> usize;
}

impl FaultCount for Api {
    fn requests_with_fault(&self, fault: &str) -> usize {
        self.sim.requests().iter().filter(|r| r.fault.as_deref() == Some(fault)).count()
    }
}
