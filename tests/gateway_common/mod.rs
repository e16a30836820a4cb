//! A simulator and a gateway in front of it, started in-process, shared by the `gateway_*`
//! tests: a real key capped on the simulator, registered at the gateway under an alias.

#![allow(dead_code)]

use std::time::Duration;

use apf::gateway::{GatewayConfig, GatewayHandle, ModelPrice, ModelPrices, RequestEvent};
use apf::money::Usd;
use apf::openrouter::{Client, wire};
use apf::secret::Secret;
use apf::sim::{Faults, SimConfig, SimHandle};
use serde_json::{Value, json};

pub const SONNET: &str = "anthropic/claude-sonnet-4";

pub fn usd(s: &str) -> Usd {
    s.parse().expect("a decimal")
}

pub struct Setup {
    pub sim: SimHandle,
    pub gateway: GatewayHandle,
    pub client: Client,
    /// The capped key on the simulator, which only the gateway may hold.
    pub real_key: Secret,
    pub real_hash: String,
    /// The gateway token for alias `m`.
    pub token: Secret,
    pub http: reqwest::Client,
}

/// A response as a client of the gateway sees it: status, headers and body text.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    /// Everything a client could read, for leak checks.
    pub fn visible(&self) -> String {
        let mut all = format!("{}\n", self.status);
        for (name, value) in &self.headers {
            all.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())));
        }
        all.push_str(&self.text);
        all
    }
}

pub async fn start_sim(faults: Faults) -> SimHandle {
    apf::sim::start(SimConfig { faults, ..SimConfig::default() }).await.expect("sim starts")
}

pub async fn mint_key(
    client: &Client,
    sim: &SimHandle,
    name: &str,
    limit: Usd,
) -> (Secret, String) {
    let body = wire::CreateKey {
        name: name.into(),
        limit: Some(limit),
        limit_reset: None,
        include_byok_in_limit: None,
        expires_at: None,
    };
    let (key, secret) = client.create_key(&sim.management_key, &body).await.expect("key created");
    (secret, key.hash)
}

/// The simulator's price for `model`, as apf would take it from `/models`.
pub async fn price_of(client: &Client, model: &str) -> ModelPrice {
    let models = client.models(None).await.expect("models");
    let m = models.iter().find(|m| m.id == model).expect("model listed");
    ModelPrice::from_wire(m).expect("fixed price")
}

impl Setup {
    /// A simulator with `faults`, a key capped at `budget`, a gateway, and alias `m` registered
    /// with `budget` for `model`. The faults come into force once all that is set up, since
    /// the simulator's latency slows every route.
    pub async fn new(faults: Faults, budget: &str, model: &str) -> Setup {
        let sim = start_sim(Faults::default()).await;
        let client = Client::new(&sim.base_url).with_retries(0);
        let (real_key, real_hash) = mint_key(&client, &sim, "gw-test-m", usd(budget)).await;
        let config = GatewayConfig::new("127.0.0.1:0".parse().expect("addr"), &sim.base_url);
        let gateway = apf::gateway::start(config).await.expect("gateway starts");
        let prices = ModelPrices::new().with(model, price_of(&client, model).await);
        let token =
            gateway.register("m", real_key.clone(), usd(budget), prices).expect("registers");
        sim.set_faults(faults).expect("valid faults");
        Setup { sim, gateway, client, real_key, real_hash, token, http: reqwest::Client::new() }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut request = self.http.request(method, format!("{}{path}", self.gateway.base_url()));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("the gateway answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        Reply { status, headers, text }
    }

    pub async fn chat(&self, body: &Value) -> Reply {
        self.send(reqwest::Method::POST, "/chat/completions", Some(self.token.expose()), Some(body))
            .await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(reqwest::Method::GET, path, Some(self.token.expose()), None).await
    }

    /// The real key's usage as the simulator records it, once nothing is pending.
    pub async fn upstream_usage(&self) -> Usd {
        settle_sim(&self.sim).await;
        self.client.key_info(&self.real_key).await.expect("/key").usage
    }

    pub async fn idle(&self) {
        assert!(self.gateway.wait_idle(Duration::from_secs(20)).await, "requests settle");
    }
}

/// Wait until the simulator has recorded every charge it scheduled.
pub async fn settle_sim(sim: &SimHandle) {
    for _ in 0..200 {
        if sim.account().pending_usage == Usd::ZERO {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the simulator's spend never settled");
}

/// A one-message chat request.
pub fn ask(model: &str, text: &str, max_tokens: Option<u64>) -> Value {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": text}]});
    if let Some(max) = max_tokens {
        body["max_tokens"] = json!(max);
    }
    body
}

/// Every event received so far.
pub fn drain(rx: &mut tokio::sync::broadcast::Receiver<RequestEvent>) -> Vec<RequestEvent> {
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    events
}

/// The `data:` payloads of an SSE body.
pub fn sse_data(text: &str) -> Vec<String> {
    text.lines().filter_map(|l| l.strip_prefix("data: ")).map(str::to_string).collect()
}

/// A JSON number as an exact amount, read the way apf reads money.
pub fn money(v: &Value) -> Usd {
    Usd::from_f64(v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"))).expect("finite")
}
