//! The worst case of one chat request, from its body alone and before anything is forwarded.
//!
//! The prompt has no tokenizer to count it, so it is bounded by the body's size: the body's
//! bytes divided by the configured bytes-per-token (3 by default), raised to the highest
//! tokens-per-byte ratio this account's settled requests have shown, plus an allowance per
//! image part (an image URL is a few bytes that cost hundreds of tokens). Every byte-level BPE
//! token covers at least one byte, so a ratio of one token per byte is a hard bound for text;
//! three bytes per token holds with margin for English, code and JSON, and the learned ratio
//! covers denser text (CJK, base64) from the second request on.
//!
//! The completion is bounded by `max_completion_tokens` or `max_tokens` (the larger, when both
//! are sent) times `n`; without either, by the model's largest completion when it is known, else
//! by whatever the budget has left. Fallback `models` are priced too, and the dearest one counts.

use rust_decimal::Decimal;
use serde_json::Value;

use crate::money::Usd;

use super::prices::WorstRates;

/// Prompt tokens set aside for each image part on top of the body's bytes.
pub(crate) const IMAGE_TOKENS: u64 = 2_000;

/// What the gateway needs to know of a chat request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChatShape {
    /// `model`.
    pub model: String,
    /// `model` and every fallback in `models`.
    pub candidates: Vec<String>,
    /// The completion cap the caller sent, if any.
    pub max_completion: Option<u64>,
    /// `n`, at least 1.
    pub choices: u64,
    pub stream: bool,
    /// Image parts in the messages.
    pub images: u64,
    pub body_bytes: u64,
}

/// A request the gateway will not meter, and so will not forward.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum BadRequest {
    NotJson(String),
    NoModel,
    /// A tool whose price the gateway does not know (web search).
    Unmetered(&'static str),
}

impl BadRequest {
    pub fn message(&self) -> String {
        match self {
            BadRequest::NotJson(e) => format!("Invalid JSON body: {e}"),
            BadRequest::NoModel => "model: Required. The apf gateway meters each request at its \
                                    model's price, so the model must be named."
                .to_string(),
            BadRequest::Unmetered(what) => format!(
                "{what} is not available through the apf gateway: its cost cannot be reserved \
                 before the request is sent."
            ),
        }
    }
}

fn whole(v: Option<&Value>) -> Option<u64> {
    v.and_then(Value::as_u64)
}

/// Read the fields that decide a request's worst case.
pub(crate) fn read(body: &[u8]) -> Result<ChatShape, BadRequest> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| BadRequest::NotJson(e.to_string()))?;
    let Value::Object(req) = value else {
        return Err(BadRequest::NotJson("expected a JSON object".into()));
    };
    let model = req.get("model").and_then(Value::as_str).map(str::trim).unwrap_or("");
    if model.is_empty() {
        return Err(BadRequest::NoModel);
    }
    let mut candidates = vec![model.to_string()];
    if let Some(list) = req.get("models").and_then(Value::as_array) {
        for id in list.iter().filter_map(Value::as_str) {
            if !candidates.iter().any(|c| c == id) {
                candidates.push(id.to_string());
            }
        }
    }
    let web_plugin = req.get("plugins").and_then(Value::as_array).is_some_and(|plugins| {
        plugins.iter().any(|p| p.get("id").and_then(Value::as_str) == Some("web"))
    });
    if web_plugin {
        return Err(BadRequest::Unmetered("The web plugin"));
    }
    if req.get("web_search_options").is_some_and(|v| !v.is_null()) {
        return Err(BadRequest::Unmetered("web_search_options"));
    }
    let max_completion =
        match (whole(req.get("max_completion_tokens")), whole(req.get("max_tokens"))) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    let images = req
        .get("messages")
        .and_then(Value::as_array)
        .map_or(0, |messages| messages.iter().map(image_parts).sum());
    Ok(ChatShape {
        model: model.to_string(),
        candidates,
        max_completion,
        choices: whole(req.get("n")).unwrap_or(1).max(1),
        stream: req.get("stream").and_then(Value::as_bool).unwrap_or(false),
        images,
        body_bytes: body.len() as u64,
    })
}

fn image_parts(message: &Value) -> u64 {
    message.get("content").and_then(Value::as_array).map_or(0, |parts| {
        parts
            .iter()
            .filter(|p| {
                matches!(p.get("type").and_then(Value::as_str), Some("image_url" | "input_image"))
            })
            .count() as u64
    })
}

/// How many prompt tokens a body of this shape can hold at most, as the gateway bounds it.
pub(crate) fn prompt_bound(shape: &ChatShape, tokens_per_byte: Decimal) -> u64 {
    let text = (Decimal::from(shape.body_bytes) * tokens_per_byte).ceil();
    let text = u64::try_from(text).unwrap_or(u64::MAX);
    text.saturating_add(shape.images.saturating_mul(IMAGE_TOKENS)).max(1)
}

/// The completion tokens a request may produce at most, or `None` when nothing bounds it.
pub(crate) fn completion_bound(shape: &ChatShape, rates: &WorstRates) -> Option<u64> {
    shape.max_completion.or(rates.max_completion_tokens).map(|n| n.saturating_mul(shape.choices))
}

/// How many tokens `available` buys at `price`; `None` when the price is zero.
pub(crate) fn affordable(available: Usd, price: Usd) -> Option<u64> {
    available.tokens_at(price)
}

pub(crate) fn times(price: Usd, tokens: u64) -> Usd {
    price * Decimal::from(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(s: &str) -> Usd {
        s.parse().expect("decimal")
    }

    #[test]
    fn reads_model_fallbacks_caps_and_images() {
        let body = serde_json::json!({
            "model": "a/one", "models": ["a/two", "a/one"], "max_tokens": 100,
            "max_completion_tokens": 300, "n": 2, "stream": true,
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "https://example.invalid/x.png"}},
            ]}],
        });
        let bytes = serde_json::to_vec(&body).expect("json");
        let shape = read(&bytes).expect("readable");
        assert_eq!(shape.candidates, ["a/one", "a/two"]);
        assert_eq!((shape.max_completion, shape.choices, shape.images), (Some(300), 2, 1));
        assert!(shape.stream);
        let third = Decimal::ONE / Decimal::from(3);
        assert_eq!(prompt_bound(&shape, third), (bytes.len() as u64).div_ceil(3) + IMAGE_TOKENS);
        let rates = WorstRates {
            prompt: usd("0.000003"),
            completion: usd("0.000015"),
            request: Usd::ZERO,
            max_completion_tokens: Some(8000),
        };
        assert_eq!(completion_bound(&shape, &rates), Some(600), "max_tokens times n");
        let open = ChatShape { max_completion: None, choices: 1, ..shape };
        assert_eq!(completion_bound(&open, &rates), Some(8000), "the model's largest output");
        let unknown = WorstRates { max_completion_tokens: None, ..rates };
        assert_eq!(completion_bound(&open, &unknown), None);
    }

    #[test]
    fn refuses_what_it_cannot_meter() {
        assert_eq!(read(br#"{"messages": []}"#), Err(BadRequest::NoModel));
        assert!(matches!(read(b"not json"), Err(BadRequest::NotJson(_))));
        assert!(matches!(read(b"[1]"), Err(BadRequest::NotJson(_))));
        let web = br#"{"model": "a/b", "plugins": [{"id": "web"}], "messages": []}"#;
        assert_eq!(read(web), Err(BadRequest::Unmetered("The web plugin")));
    }

    #[test]
    fn affordable_tokens_round_down() {
        assert_eq!(affordable(usd("0.001"), usd("0.000015")), Some(66));
        assert_eq!(affordable(usd("-0.01"), usd("0.000015")), Some(0));
        assert_eq!(affordable(usd("1"), Usd::ZERO), None);
    }
}
