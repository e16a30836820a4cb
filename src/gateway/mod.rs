//! The metering gateway: a local HTTP server between the agents and OpenRouter that guarantees
//! each model's budget. OpenRouter admits a request against the spend recorded so far and
//! settles its cost afterwards, so concurrent requests pass a key's cap (HAZARDS H3). The
//! gateway instead reserves every chat request's worst case (its prompt bounded by the body's
//! size, plus `max_tokens` at the model's dearest rates) before forwarding it, refuses in
//! OpenRouter's own 402 words a request whose reservation does not fit beside what is spent and
//! reserved, and settles from the real `usage.cost` (streams included) when the answer ends.
//!
//! Each container gets the gateway's [`GatewayHandle::base_url`] as `OPENROUTER_BASE_URL` and a
//! gateway token (`apf-gw-…`) that opens one account and its models only; the real, capped key
//! stays in apf and never enters a container (HAZARDS H6, H13). The gateway answers
//! `POST /chat/completions` (plain and streamed), `GET /key` from its own ledger, and passes
//! `GET /models` through, each for a valid token only (401 otherwise); any other path is a 404,
//! and another method on these a 405, in OpenRouter's envelope. Every request with a valid
//! token becomes a [`RequestEvent`] on a broadcast channel. It listens on loopback only, so containers
//! reach it on the host network.
//!
//! How the costs that upstream never reports are settled, and why, is told in `proxy`; how the
//! prompt is bounded without a tokenizer, in `estimate`.

mod estimate;
mod event;
mod ledger;
mod prices;
mod proxy;
mod scan;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use rand::distr::{Alphanumeric, SampleString};
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

use crate::money::Usd;
use crate::secret::Secret;

pub use event::{CostSource, Endpoint, RequestEvent};
pub use ledger::Ledger;
pub use prices::{ModelPrice, ModelPriceError, ModelPrices};

use ledger::Registry;
use proxy::{BASE_PATH, LOOKUP_DELAYS, Shared, lock};

/// Events a slow subscriber may fall behind by before it misses some (it is told how many).
const EVENT_BUFFER: usize = 4096;

/// Where the gateway listens and what it forwards to.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// A loopback address (127.0.0.1 or ::1); port 0 picks a free port.
    pub listen: SocketAddr,
    /// The OpenRouter API root the gateway forwards to, such as `http://127.0.0.1:PORT/api/v1`
    /// for `apf sim`.
    pub upstream: String,
    /// How many bytes of request body are counted as one prompt token at most (see the
    /// `estimate` module); 3 unless changed, 1 for a hard bound on text.
    pub prompt_bytes_per_token: u32,
}

impl GatewayConfig {
    pub fn new(listen: SocketAddr, upstream: impl Into<String>) -> GatewayConfig {
        GatewayConfig { listen, upstream: upstream.into(), prompt_bytes_per_token: 3 }
    }
}

/// A running gateway. Dropping it stops the server; [`GatewayHandle::shutdown`] also waits for
/// the requests in flight to settle.
pub struct GatewayHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for GatewayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayHandle").field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// Start the gateway in this process.
pub async fn start(config: GatewayConfig) -> anyhow::Result<GatewayHandle> {
    anyhow::ensure!(
        config.listen.ip().is_loopback(),
        "the apf gateway listens on loopback only (127.0.0.1 or ::1), not {}",
        config.listen.ip()
    );
    anyhow::ensure!(config.prompt_bytes_per_token >= 1, "prompt_bytes_per_token must be 1 or more");
    let upstream = config.upstream.trim_end_matches('/').to_string();
    let parsed = reqwest::Url::parse(&upstream)
        .with_context(|| format!("the gateway's upstream {upstream:?} is not a URL"))?;
    anyhow::ensure!(
        matches!(parsed.scheme(), "http" | "https"),
        "the gateway's upstream {upstream:?} is not an http(s) URL"
    );
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        // A stream sends keep-alives; a request that goes quiet this long is not coming back.
        .read_timeout(Duration::from_secs(300))
        .tcp_nodelay(true)
        .user_agent(concat!("apf-gateway/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the gateway's HTTP client")?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let (events, _) = broadcast::channel(EVENT_BUFFER);
    let shared = Arc::new(Shared {
        registry: Mutex::new(Registry::new(config.prompt_bytes_per_token)),
        upstream,
        http,
        events,
        settled: tokio::sync::Notify::new(),
        lookup_delays: LOOKUP_DELAYS.to_vec(),
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let app = proxy::router(shared.clone());
    // Streams go out in many small writes; without TCP_NODELAY each one after the first waits
    // for the client's delayed ACK (40 ms on Linux).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("apf gateway: TCP_NODELAY not set: {e}");
        }
    });
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            // A dropped handle stops the server as surely as an explicit shutdown.
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::error!("apf gateway stopped serving: {e}");
        }
    });
    Ok(GatewayHandle { addr, shared, stop, task })
}

impl GatewayHandle {
    /// What a container gets as `OPENROUTER_BASE_URL`: `http://127.0.0.1:PORT/api/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}{BASE_PATH}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Open an account for `alias`: requests with the returned token are forwarded with
    /// `upstream_key`, may call only the models in `prices`, and may spend at most `budget`
    /// (for a resumed run, what the budget has left). Refused when the alias is taken, the
    /// budget is negative, or a model has a variable (`"-1"`) price, which cannot be reserved.
    pub fn register(
        &self,
        alias: &str,
        upstream_key: Secret,
        budget: Usd,
        prices: ModelPrices,
    ) -> anyhow::Result<Secret> {
        let rates = prices.worst().with_context(|| format!("{alias}: cannot meter its models"))?;
        let token =
            Secret::new(format!("apf-gw-{}", Alphanumeric.sample_string(&mut rand::rng(), 40)));
        lock(&self.shared.registry).register(alias, &token, upstream_key, budget, rates)?;
        Ok(token)
    }

    /// The account's figures, or `None` for an alias never registered.
    pub fn account(&self, alias: &str) -> Option<Ledger> {
        lock(&self.shared.registry).ledger(alias)
    }

    /// Every request from now on, as it ends.
    pub fn subscribe(&self) -> broadcast::Receiver<RequestEvent> {
        self.shared.events.subscribe()
    }

    /// Make the alias's token stop working at once. Requests already forwarded run on and
    /// settle; the account's figures stay readable.
    pub fn revoke(&self, alias: &str) {
        lock(&self.shared.registry).revoke(alias);
    }

    /// Wait until no request is in flight, or `timeout` passes; true when none is.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        idle_within(&self.shared, timeout).await
    }

    /// Stop taking requests, then wait (up to a minute) for those in flight to settle, so the
    /// figures read afterwards are final.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let abort = self.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), self.task).await.is_err() {
            abort.abort();
        }
        if !idle_within(&self.shared, Duration::from_secs(60)).await {
            tracing::warn!("apf gateway: requests still in flight at shutdown stay reserved");
        }
    }
}

async fn idle_within(shared: &Shared, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let settled = shared.settled.notified();
        tokio::pin!(settled);
        settled.as_mut().enable();
        if lock(&shared.registry).in_flight() == 0 {
            return true;
        }
        if tokio::time::timeout_at(deadline, settled).await.is_err() {
            return lock(&shared.registry).in_flight() == 0;
        }
    }
}
