//! What a gateway account may call and at what price. The gateway reserves a request's worst
//! case before forwarding it, so every price here must be a fixed number: a router's `"-1"`
//! (variable) price is refused when the account is registered, never at request time.

use std::collections::BTreeMap;

use crate::money::{Price, PriceError, Usd};
use crate::openrouter::wire;

/// The per-token prices of one model, as OpenRouter lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPrice {
    pub prompt: Price,
    pub completion: Price,
    /// `input_cache_read`: cached prompt tokens read.
    pub cache_read: Option<Price>,
    /// `input_cache_write` (the dearer of the 5-minute and one-hour rates when both are listed):
    /// a cache write costs more than a plain prompt token, so it bounds the prompt's worst case.
    pub cache_write: Option<Price>,
    /// `internal_reasoning`, when a model bills reasoning apart from completion.
    pub reasoning: Option<Price>,
    /// `request`: a fixed charge per request.
    pub request: Option<Price>,
    /// The model's largest completion (`top_provider.max_completion_tokens`). With it, a request
    /// without `max_tokens` is reserved at this many tokens, as OpenRouter's own check does;
    /// without it, such a request reserves everything the budget has left.
    pub max_completion_tokens: Option<u64>,
}

/// Why a listed price cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model {model}: {field} price {source}")]
pub struct ModelPriceError {
    pub model: String,
    pub field: &'static str,
    #[source]
    pub source: PriceError,
}

impl ModelPrice {
    /// A model with only prompt and completion prices.
    pub fn per_token(prompt: Usd, completion: Usd) -> ModelPrice {
        ModelPrice {
            prompt: Price::PerToken(prompt),
            completion: Price::PerToken(completion),
            cache_read: None,
            cache_write: None,
            reasoning: None,
            request: None,
            max_completion_tokens: None,
        }
    }

    /// The prices of a `GET /models` entry.
    pub fn from_wire(model: &wire::Model) -> Result<ModelPrice, ModelPriceError> {
        let p = &model.pricing;
        let parse = |field: &'static str, raw: &str| {
            Price::parse(raw).map_err(|source| ModelPriceError {
                model: model.id.clone(),
                field,
                source,
            })
        };
        let optional = |field: &'static str, raw: Option<&str>| raw.map(|r| parse(field, r));
        let write_1h = p.extra.get("input_cache_write_1h").and_then(|v| v.as_str());
        let cache_write = match (
            optional("input_cache_write", p.input_cache_write.as_deref()).transpose()?,
            optional("input_cache_write_1h", write_1h).transpose()?,
        ) {
            (Some(a), Some(b)) => Some(dearer(a, b)),
            (a, b) => a.or(b),
        };
        Ok(ModelPrice {
            prompt: parse("prompt", &p.prompt)?,
            completion: parse("completion", &p.completion)?,
            cache_read: optional("input_cache_read", p.input_cache_read.as_deref()).transpose()?,
            cache_write,
            reasoning: optional("internal_reasoning", p.internal_reasoning.as_deref())
                .transpose()?,
            request: optional("request", p.request.as_deref()).transpose()?,
            max_completion_tokens: model
                .top_provider
                .as_ref()
                .and_then(|t| t.max_completion_tokens),
        })
    }

    /// The fixed rates a worst case is computed from, or the first field with a variable price.
    pub(crate) fn worst(&self) -> Result<WorstRates, &'static str> {
        let fixed = |field: &'static str, price: Price| price.per_token().ok_or(field);
        let optional = |field, price: Option<Price>| match price {
            Some(p) => fixed(field, p),
            None => Ok(Usd::ZERO),
        };
        let prompt = fixed("prompt", self.prompt)?
            .max(optional("input_cache_read", self.cache_read)?)
            .max(optional("input_cache_write", self.cache_write)?);
        let completion = fixed("completion", self.completion)?
            .max(optional("internal_reasoning", self.reasoning)?);
        Ok(WorstRates {
            prompt,
            completion,
            request: optional("request", self.request)?,
            max_completion_tokens: self.max_completion_tokens,
        })
    }
}

/// The dearer of two prices; a variable one wins, so that it is refused.
fn dearer(a: Price, b: Price) -> Price {
    match (a, b) {
        (Price::PerToken(x), Price::PerToken(y)) => Price::PerToken(x.max(y)),
        _ => Price::Variable,
    }
}

/// The highest per-token rates a request to one model can be billed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WorstRates {
    /// The dearest of the prompt, cache read and cache write prices.
    pub prompt: Usd,
    /// The dearer of the completion and reasoning prices.
    pub completion: Usd,
    pub request: Usd,
    pub max_completion_tokens: Option<u64>,
}

/// The models one gateway account may call, by OpenRouter model id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelPrices {
    models: BTreeMap<String, ModelPrice>,
}

impl ModelPrices {
    pub fn new() -> ModelPrices {
        ModelPrices::default()
    }

    /// These prices with `id` added (or replaced).
    pub fn with(mut self, id: impl Into<String>, price: ModelPrice) -> ModelPrices {
        self.insert(id, price);
        self
    }

    pub fn insert(&mut self, id: impl Into<String>, price: ModelPrice) {
        self.models.insert(id.into(), price);
    }

    pub fn get(&self, id: &str) -> Option<&ModelPrice> {
        self.models.get(id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// The worst-case rates of every model, or an error naming a model whose price varies.
    pub(crate) fn worst(&self) -> anyhow::Result<BTreeMap<String, WorstRates>> {
        anyhow::ensure!(!self.models.is_empty(), "no models are priced for this account");
        self.models
            .iter()
            .map(|(id, price)| match price.worst() {
                Ok(rates) => Ok((id.clone(), rates)),
                Err(field) => Err(anyhow::anyhow!(
                    "model {id} has a variable {field} price (\"-1\"): the gateway cannot reserve \
                     a worst case for it before forwarding; name a fixed-price model instead, or \
                     run this model without the gateway"
                )),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(s: &str) -> Usd {
        s.parse().expect("decimal")
    }

    fn wire_model(pricing: serde_json::Value) -> wire::Model {
        serde_json::from_value(serde_json::json!({
            "id": "a/b",
            "pricing": pricing,
            "top_provider": {"max_completion_tokens": 4096, "is_moderated": false},
        }))
        .expect("a model")
    }

    #[test]
    fn worst_rates_take_the_dearest_prompt_and_completion_prices() {
        let m = wire_model(serde_json::json!({
            "prompt": "0.000003", "completion": "0.000015", "input_cache_read": "0.0000003",
            "input_cache_write": "0.00000375", "input_cache_write_1h": "0.000006",
            "internal_reasoning": "0", "request": "0.001",
        }));
        let price = ModelPrice::from_wire(&m).expect("fixed prices");
        let w = price.worst().expect("fixed");
        assert_eq!(w.prompt, usd("0.000006"), "a one-hour cache write is the dearest");
        assert_eq!(w.completion, usd("0.000015"));
        assert_eq!(w.request, usd("0.001"));
        assert_eq!(w.max_completion_tokens, Some(4096));
    }

    #[test]
    fn a_variable_price_is_refused_by_name() {
        let m = wire_model(serde_json::json!({"prompt": "-1", "completion": "-1"}));
        let prices = ModelPrices::new().with("openrouter/auto", ModelPrice::from_wire(&m).unwrap());
        let err = prices.worst().expect_err("variable").to_string();
        assert!(err.contains("openrouter/auto") && err.contains("variable prompt price"), "{err}");
        let junk = wire_model(serde_json::json!({"prompt": "abc", "completion": "0"}));
        let err = ModelPrice::from_wire(&junk).expect_err("junk").to_string();
        assert!(err.contains("prompt price") && err.contains("abc"), "{err}");
        assert!(ModelPrices::new().worst().is_err(), "an account with no models is refused");
    }
}
