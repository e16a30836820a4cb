//! One event per request the gateway answers for a known token: the live record apf's status
//! table, idle detection and cache report read, with no polling lag.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::money::Usd;

/// Which endpoint a request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /chat/completions`: LLM activity, the only endpoint that costs money.
    ChatCompletions,
    /// `GET /key` (or the legacy `/auth/key`), answered by the gateway from its ledger.
    Key,
    /// `GET /models`, passed through.
    Models,
}

/// Where the cost of a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CostSource {
    /// `usage.cost` of the response body or of the final stream chunk.
    Usage,
    /// `usage` came without `cost`: its token counts at the model's dearest listed rates.
    Tokens,
    /// The response never carried usage; `GET /generation?id=` gave the cost.
    Generation,
    /// Nothing told the cost, so the worst case that was reserved was booked.
    Reservation,
    /// Nothing was billed: refused by the gateway, refused by upstream (any non-2xx status), a
    /// request that never reached upstream, or an endpoint that costs nothing.
    NotBilled,
}

/// A request, as the gateway saw it end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestEvent {
    pub alias: String,
    pub endpoint: Endpoint,
    /// The model the response named, else the one requested.
    pub model: Option<String>,
    pub generation_id: Option<String>,
    /// The HTTP status the client was given (upstream's, when forwarded).
    pub status: u16,
    /// True when the request went upstream.
    pub forwarded: bool,
    pub streamed: bool,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub cache_write_tokens: u64,
    /// The worst case held while it ran.
    pub reserved: Usd,
    /// What it was booked at.
    pub cost: Usd,
    pub cost_source: CostSource,
    /// True when `cost` is the reservation, not a figure from upstream.
    pub cost_estimated: bool,
    /// True when the client went away before the response ended; the gateway read on to the
    /// end to settle it.
    pub client_disconnected: bool,
    /// From the request's arrival to its settlement.
    pub latency_ms: u64,
    /// From the request's arrival to upstream's response headers.
    pub first_byte_ms: Option<u64>,
    pub at: DateTime<Utc>,
    /// Why it failed or was refused (the message the client got), if it did.
    pub error: Option<String>,
}

impl RequestEvent {
    pub(crate) fn new(alias: &str, endpoint: Endpoint) -> RequestEvent {
        RequestEvent {
            alias: alias.to_string(),
            endpoint,
            model: None,
            generation_id: None,
            status: 200,
            forwarded: false,
            streamed: false,
            prompt_tokens: 0,
            completion_tokens: 0,
            cached_tokens: 0,
            cache_write_tokens: 0,
            reserved: Usd::ZERO,
            cost: Usd::ZERO,
            cost_source: CostSource::NotBilled,
            cost_estimated: false,
            client_disconnected: false,
            latency_ms: 0,
            first_byte_ms: None,
            at: Utc::now(),
            error: None,
        }
    }
}
