//! The shapes OpenRouter sends and receives, as its published OpenAPI document gives them. Both
//! the client and the simulator use these types, so the two cannot drift apart silently.
//!
//! Responses are read tolerantly: every field the document marks optional or nullable is an
//! `Option` or has a default, and unknown fields are kept in `extra` (OpenRouter adds fields
//! often). Money on the wire is a JSON number and is converted to [`Usd`] here.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::money::{self, Usd};

/// `{"data": T}`, the envelope of most responses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Data<T> {
    pub data: T,
}

/// `GET /credits`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credits {
    #[serde(with = "money::wire")]
    pub total_credits: Usd,
    #[serde(with = "money::wire")]
    pub total_usage: Usd,
}

/// One entry of `GET /models`. Prices stay strings here; [`crate::money::Price::parse`] judges them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Model {
    pub id: String,
    #[serde(default)]
    pub canonical_slug: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub created: Option<i64>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub context_length: Option<u64>,
    #[serde(default)]
    pub architecture: Option<Value>,
    pub pricing: Pricing,
    #[serde(default)]
    pub top_provider: Option<TopProvider>,
    #[serde(default)]
    pub per_request_limits: Option<Value>,
    #[serde(default)]
    pub supported_parameters: Vec<String>,
    #[serde(default)]
    pub default_parameters: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Pricing {
    pub prompt: String,
    pub completion: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_search: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_reasoning: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_cache_read: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_cache_write: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TopProvider {
    #[serde(default)]
    pub context_length: Option<u64>,
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub is_moderated: bool,
}

/// The key object of the `/keys` family.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Key {
    pub hash: String,
    pub name: String,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default, with = "money::wire::option")]
    pub limit: Option<Usd>,
    #[serde(default, with = "money::wire::option")]
    pub limit_remaining: Option<Usd>,
    #[serde(default)]
    pub limit_reset: Option<String>,
    #[serde(default)]
    pub include_byok_in_limit: bool,
    #[serde(default, with = "money::wire")]
    pub usage: Usd,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `POST /keys` request body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateKey {
    pub name: String,
    #[serde(default, with = "money::wire::option", skip_serializing_if = "Option::is_none")]
    pub limit: Option<Usd>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_reset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_byok_in_limit: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// `POST /keys` response: the plaintext key sits beside `data`, and is sent only this once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedKey {
    pub data: Key,
    pub key: String,
}

/// `PATCH /keys/{hash}` request body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UpdateKey {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(default, with = "money::wire::option", skip_serializing_if = "Option::is_none")]
    pub limit: Option<Usd>,
}

/// `DELETE /keys/{hash}` response, with no `data` wrapper.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deleted {
    pub deleted: bool,
}

/// `GET /key`: the calling key's own view of itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyInfo {
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default, with = "money::wire::option")]
    pub limit: Option<Usd>,
    #[serde(default, with = "money::wire::option")]
    pub limit_remaining: Option<Usd>,
    #[serde(default)]
    pub limit_reset: Option<String>,
    #[serde(default, with = "money::wire")]
    pub usage: Usd,
    #[serde(default)]
    pub is_free_tier: bool,
    #[serde(default)]
    pub is_management_key: bool,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `POST /chat/completions` request, with the fields apf and its demo agent send. Anything else
/// a caller sends is kept in `extra` and passed along.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChatRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub messages: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `POST /chat/completions` response (not streamed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatResponse {
    pub id: String,
    #[serde(default)]
    pub object: Option<String>,
    #[serde(default)]
    pub created: i64,
    pub model: String,
    #[serde(default)]
    pub system_fingerprint: Option<String>,
    pub choices: Vec<Value>,
    #[serde(default)]
    pub usage: Option<Usage>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    #[serde(default)]
    pub completion_tokens_details: Option<Value>,
    #[serde(default, with = "money::wire::option")]
    pub cost: Option<Usd>,
    #[serde(default)]
    pub is_byok: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    #[serde(default)]
    pub cached_tokens: Option<u64>,
    #[serde(default)]
    pub cache_write_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_tokens: Option<u64>,
}

/// OpenRouter's error envelope. Every part is optional: availability errors omit `code`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub error: ErrorDetail,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ErrorDetail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}
