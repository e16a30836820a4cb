//! Gateway mode (`budget.enforce = "gateway"`): apf runs a local metering gateway for the run.
//! Each container gets the gateway's address and a token valid only there and only for its
//! model; the real capped key stays in apf. The gateway reserves each request's worst-case
//! cost before forwarding it, so concurrent requests cannot pass the cap, and every request
//! becomes an event: live cost with no polling lag, LLM activity for idle detection, and token
//! and cache counts for the results.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::{Run, save};
use crate::gateway::{self, GatewayConfig, GatewayHandle, ModelPrice, ModelPrices, RequestEvent};
use crate::manifest::Experiment;
use crate::money::Usd;
use crate::openrouter::Client;
use crate::secret::Secret;
use crate::state::Usage;

pub(crate) struct Metering {
    handle: tokio::sync::Mutex<Option<GatewayHandle>>,
    base_url: String,
    prices: BTreeMap<String, ModelPrices>,
}

impl Metering {
    /// Start the gateway in front of `upstream`, pricing every model each alias may call from
    /// one catalog listing.
    pub(crate) async fn start(exp: &Experiment, upstream: &str) -> Result<Metering> {
        let catalog = Client::new(upstream)
            .models(None)
            .await
            .context("gateway mode needs the model catalog to price requests")?;
        let by_id: BTreeMap<&str, &crate::openrouter::wire::Model> =
            catalog.iter().map(|m| (m.id.as_str(), m)).collect();
        let mut prices = BTreeMap::new();
        for m in &exp.models {
            let mut p = ModelPrices::new();
            for id in std::iter::once(&m.id).chain(&m.extra_models) {
                let listed =
                    by_id.get(id.as_str()).with_context(|| format!("{id} is not listed"))?;
                let price = ModelPrice::from_wire(listed)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", m.alias))?;
                p.insert(id.clone(), price);
            }
            prices.insert(m.alias.clone(), p);
        }
        let listen: SocketAddr = "127.0.0.1:0".parse().context("loopback address")?;
        let handle = gateway::start(GatewayConfig::new(listen, upstream)).await?;
        let base_url = handle.base_url();
        crate::printer::info(format!("metering gateway at {base_url} in front of {upstream}"));
        Ok(Metering { handle: tokio::sync::Mutex::new(Some(handle)), base_url, prices })
    }

    pub(crate) fn base_url(&self) -> &str {
        &self.base_url
    }

    /// A gateway token for `alias`, spending through its real `key` up to `cap`.
    pub(crate) async fn register(&self, alias: &str, key: Secret, cap: Usd) -> Result<Secret> {
        let guard = self.handle.lock().await;
        let handle = guard.as_ref().context("the gateway has stopped")?;
        let prices = self.prices.get(alias).cloned().unwrap_or_else(ModelPrices::new);
        handle.register(alias, key, cap, prices)
    }

    pub(crate) async fn revoke(&self, alias: &str) {
        if let Some(h) = self.handle.lock().await.as_ref() {
            h.revoke(alias);
        }
    }

    pub(crate) async fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<RequestEvent>> {
        self.handle.lock().await.as_ref().map(GatewayHandle::subscribe)
    }

    /// Spent so far through the gateway, per alias.
    pub(crate) async fn spent(&self, alias: &str) -> Option<Usd> {
        self.handle.lock().await.as_ref().and_then(|h| h.account(alias)).map(|l| l.spent)
    }

    /// Stop the gateway, letting requests in flight settle first.
    pub(crate) async fn shutdown(&self) {
        if let Some(h) = self.handle.lock().await.take() {
            let _ = h.wait_idle(Duration::from_secs(30)).await;
            h.shutdown().await;
        }
    }
}

/// Fold the gateway's request events into the run: spend, tokens, activity, and a
/// `requests.jsonl` per model.
pub(crate) async fn follow(run: Arc<Run>) {
    let Some(metering) = &run.metering else { return };
    let Some(mut rx) = metering.subscribe().await else { return };
    loop {
        let event = match rx.recv().await {
            Ok(e) => e,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!("the gateway's event stream dropped {n} events");
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        record(&run, metering, &event).await;
    }
}

async fn record(run: &Run, metering: &Metering, e: &RequestEvent) {
    append(run, e);
    let ledger_spent = metering.spent(&e.alias).await;
    let mut state = run.state.lock().await;
    let Some(m) = state.models.get_mut(&e.alias) else { return };
    let usage =
        m.usage.get_or_insert_with(|| Usage { source: "gateway".into(), ..Usage::default() });
    usage.requests += 1;
    usage.prompt_tokens += e.prompt_tokens;
    usage.completion_tokens += e.completion_tokens;
    usage.cached_prompt_tokens += e.cached_tokens;
    *usage.cache_write_tokens.get_or_insert(0) += e.cache_write_tokens;
    if let Some(spent) = ledger_spent {
        m.spent = m.spent.max(m.spent_earlier + spent);
    }
    save(run, &state);
    drop(state);
    if let Some(l) = run.live.lock().await.get_mut(&e.alias) {
        l.last_activity = Instant::now();
    }
}

fn append(run: &Run, e: &RequestEvent) {
    let Ok(line) = serde_json::to_string(e) else { return };
    let path = run.dir.model(&e.alias).join("requests.jsonl");
    let _ = std::fs::create_dir_all(run.dir.model(&e.alias));
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{}", crate::secret::redact(&line)));
    if let Err(err) = written {
        tracing::warn!("{}: could not append to {}: {err}", e.alias, path.display());
    }
}
