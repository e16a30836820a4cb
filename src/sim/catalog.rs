//! The simulator's model catalog: a built-in set of realistic models and prices, and a TOML file
//! format for loading your own. Prices are kept exactly as published (per-token decimal strings,
//! `"-1"` for a router's variable price), so apf meets the same strings it would meet on
//! OpenRouter, junk included; they are parsed only when a request is billed.
//!
//! # Catalog file (TOML)
//!
//! ```toml
//! # Keep the built-in models and add or replace these (false), or serve only these (true).
//! replace_builtin = false
//!
//! [[models]]
//! id = "acme/widget-1"                 # required, "author/slug"
//! name = "Acme: Widget 1"              # default: the id
//! provider = "Acme"                    # provider_name in /generation; default: the author
//! context_length = 131072              # default 131072
//! max_completion_tokens = 16384        # default 16384; the 402 worst case when max_tokens is absent
//! prompt = "0.000001"                  # required: USD per prompt token, "0" free, "-1" variable
//! completion = "0.000002"              # required: USD per completion token
//! input_cache_read = "0.0000001"       # optional: USD per cached prompt token read
//! input_cache_write = "0.00000125"     # optional: USD per prompt token written (5 min lifetime)
//! input_cache_write_1h = "0.000002"    # optional: the same for a one-hour lifetime
//! cache = "explicit"                   # none (default) | explicit (cache_control) | implicit
//! cache_min_tokens = 1024              # shortest prefix that is cached; default 1024
//! route_to = "openai/gpt-4o-mini"      # for "-1" routers: the model that serves and bills
//! supported_parameters = ["tools", "tool_choice", "max_tokens", "temperature"]
//! tokenizer = "Other"                  # architecture.tokenizer
//! input_modalities = ["text"]          # default ["text"]
//! description = "A widget."
//! created = 1735689600                 # unix seconds
//! ```

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::money::{Price, PriceError, Usd};
use crate::openrouter::wire;

use super::cost::Rates;

/// How a model caches prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheMode {
    /// No prompt caching.
    #[default]
    None,
    /// Anthropic style: only prefixes marked with `cache_control` are cached; writes are billed
    /// at `input_cache_write` and reported as `cache_write_tokens`.
    Explicit,
    /// OpenAI/DeepSeek/Gemini style: a repeated prefix (everything before the last message) is
    /// read from cache automatically; writes are free and not reported.
    Implicit,
}

/// One model as the simulator serves and bills it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogModel {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub canonical_slug: Option<String>,
    #[serde(default = "default_context")]
    pub context_length: u64,
    #[serde(default = "default_max_completion")]
    pub max_completion_tokens: u64,
    pub prompt: String,
    pub completion: String,
    #[serde(default)]
    pub input_cache_read: Option<String>,
    #[serde(default)]
    pub input_cache_write: Option<String>,
    #[serde(default)]
    pub input_cache_write_1h: Option<String>,
    #[serde(default)]
    pub cache: CacheMode,
    #[serde(default = "default_cache_min")]
    pub cache_min_tokens: u64,
    #[serde(default)]
    pub route_to: Option<String>,
    #[serde(default)]
    pub supported_parameters: Vec<String>,
    #[serde(default)]
    pub tokenizer: Option<String>,
    #[serde(default)]
    pub instruct_type: Option<String>,
    #[serde(default = "default_modalities")]
    pub input_modalities: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub created: Option<i64>,
}

fn default_context() -> u64 {
    131_072
}

fn default_max_completion() -> u64 {
    16_384
}

fn default_cache_min() -> u64 {
    1024
}

fn default_modalities() -> Vec<String> {
    vec!["text".into()]
}

/// Why a model cannot be billed.
#[derive(Debug, thiserror::Error)]
#[error("model {model}: {field} price {source}")]
pub struct PricingError {
    pub model: String,
    pub field: &'static str,
    #[source]
    pub source: PriceError,
}

impl CatalogModel {
    pub fn author(&self) -> &str {
        self.id.split('/').next().unwrap_or(&self.id)
    }

    pub fn provider_name(&self) -> String {
        self.provider.clone().unwrap_or_else(|| capitalise(self.author()))
    }

    /// True for a router whose price is the sentinel `"-1"`.
    pub fn is_variable(&self) -> bool {
        matches!(Price::parse(&self.prompt), Ok(Price::Variable))
    }

    /// The fixed per-token prices, or the field that has none.
    pub(crate) fn rates(&self) -> Result<Rates, PricingError> {
        let prompt = self.fixed("prompt", &self.prompt)?;
        let completion = self.fixed("completion", &self.completion)?;
        let optional = |field, raw: &Option<String>, fallback| match raw {
            Some(raw) => self.fixed(field, raw),
            None => Ok(fallback),
        };
        let cache_read = optional("input_cache_read", &self.input_cache_read, prompt)?;
        let cache_write = optional("input_cache_write", &self.input_cache_write, prompt)?;
        let cache_write_1h =
            optional("input_cache_write_1h", &self.input_cache_write_1h, cache_write)?;
        Ok(Rates { prompt, completion, cache_read, cache_write, cache_write_1h })
    }

    fn fixed(&self, field: &'static str, raw: &str) -> Result<Usd, PricingError> {
        let err = |source| PricingError { model: self.id.clone(), field, source };
        match Price::parse(raw).map_err(err)? {
            Price::PerToken(p) => Ok(p),
            Price::Variable => Err(err(PriceError::Negative(raw.to_string()))),
        }
    }

    /// The model object of `/models` and `/model/{author}/{slug}`.
    pub fn to_wire(&self) -> wire::Model {
        wire::Model {
            id: self.id.clone(),
            canonical_slug: Some(self.canonical_slug.clone().unwrap_or_else(|| self.id.clone())),
            name: Some(self.name.clone().unwrap_or_else(|| self.id.clone())),
            created: Some(self.created.unwrap_or(1_735_689_600)),
            description: Some(self.description.clone().unwrap_or_default()),
            context_length: Some(self.context_length),
            architecture: Some(self.architecture()),
            pricing: self.wire_pricing(),
            top_provider: Some(wire::TopProvider {
                context_length: Some(self.context_length),
                max_completion_tokens: Some(self.max_completion_tokens),
                is_moderated: self.author() == "openai" || self.author() == "anthropic",
            }),
            per_request_limits: None,
            supported_parameters: self.supported_parameters.clone(),
            default_parameters: None,
            extra: self.wire_extra(),
        }
    }

    fn architecture(&self) -> Value {
        let inputs = self.input_modalities.join("+");
        json!({
            "modality": format!("{inputs}->text"),
            "input_modalities": self.input_modalities,
            "output_modalities": ["text"],
            "tokenizer": self.tokenizer.clone().unwrap_or_else(|| "Other".into()),
            "instruct_type": self.instruct_type,
        })
    }

    fn wire_pricing(&self) -> wire::Pricing {
        let mut extra = Map::new();
        if let Some(p) = &self.input_cache_write_1h {
            extra.insert("input_cache_write_1h".into(), Value::String(p.clone()));
        }
        wire::Pricing {
            prompt: self.prompt.clone(),
            completion: self.completion.clone(),
            request: Some("0".into()),
            image: Some("0".into()),
            web_search: Some("0".into()),
            internal_reasoning: Some("0".into()),
            input_cache_read: self.input_cache_read.clone(),
            input_cache_write: self.input_cache_write.clone(),
            extra,
        }
    }

    fn wire_extra(&self) -> Map<String, Value> {
        let mut extra = Map::new();
        extra.insert("supported_voices".into(), Value::Null);
        extra.insert(
            "links".into(),
            json!({"details": format!("/api/v1/models/{}/endpoints", self.id)}),
        );
        extra.insert("expiration_date".into(), Value::Null);
        extra.insert("knowledge_cutoff".into(), Value::Null);
        extra.insert("hugging_face_id".into(), Value::Null);
        extra
    }
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    replace_builtin: bool,
    #[serde(default)]
    models: Vec<CatalogModel>,
}

/// The models the simulator serves, in listing order.
#[derive(Debug, Clone)]
pub struct Catalog {
    models: Vec<CatalogModel>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog::builtin()
    }
}

impl Catalog {
    pub fn new(models: Vec<CatalogModel>) -> Catalog {
        Catalog { models }
    }

    /// Read a catalog file (see the module documentation for its format).
    pub fn load(path: &Path) -> anyhow::Result<Catalog> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading catalog file {}", path.display()))?;
        Catalog::parse(&text).with_context(|| format!("in catalog file {}", path.display()))
    }

    /// Parse a catalog file's text. Unparseable prices are accepted on purpose: the simulator
    /// serves them as published so clients can be tested against junk, and refuses to bill them.
    pub fn parse(text: &str) -> anyhow::Result<Catalog> {
        let file: CatalogFile = toml::from_str(text)?;
        let mut catalog =
            if file.replace_builtin { Catalog::new(vec![]) } else { Catalog::builtin() };
        for model in file.models {
            anyhow::ensure!(model.id.contains('/'), "model id {:?} is not author/slug", model.id);
            catalog.upsert(model);
        }
        catalog.check_routes()?;
        Ok(catalog)
    }

    fn upsert(&mut self, model: CatalogModel) {
        match self.models.iter_mut().find(|m| m.id == model.id) {
            Some(slot) => *slot = model,
            None => self.models.push(model),
        }
    }

    fn check_routes(&self) -> anyhow::Result<()> {
        for m in &self.models {
            if let Some(target) = &m.route_to {
                let t = self.get(target).with_context(|| {
                    format!("model {}: route_to {target:?} is not in the catalog", m.id)
                })?;
                anyhow::ensure!(!t.is_variable(), "model {}: route_to {target} is a router", m.id);
            }
        }
        Ok(())
    }

    pub fn models(&self) -> &[CatalogModel] {
        &self.models
    }

    pub fn get(&self, id: &str) -> Option<&CatalogModel> {
        self.models.iter().find(|m| m.id == id)
    }

    /// The model that serves and bills a request for `id`: the model itself, or for a router
    /// its `route_to` target (else the first model with a fixed, nonzero price).
    pub fn serving(&self, id: &str) -> Option<&CatalogModel> {
        let model = self.get(id)?;
        if !model.is_variable() {
            return Some(model);
        }
        match &model.route_to {
            Some(target) => self.get(target),
            None => self.models.iter().find(|m| m.rates().is_ok_and(|r| !r.prompt.0.is_zero())),
        }
    }

    /// The model used when a request names none: `openrouter/auto` if listed, else the first.
    pub fn default_model(&self) -> Option<&CatalogModel> {
        self.get("openrouter/auto").or_else(|| self.models.first())
    }

    /// The built-in models, with prices as OpenRouter listed them.
    pub fn builtin() -> Catalog {
        let text = include_str!("builtin_catalog.toml");
        let file: Result<CatalogFile, _> = toml::from_str(text);
        // The built-in file is part of the source and checked by a unit test; an empty catalog
        // is the harmless answer should it ever fail to parse.
        Catalog::new(file.map(|f| f.models).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_parses_with_the_required_models() {
        let text = include_str!("builtin_catalog.toml");
        let file: CatalogFile = toml::from_str(text).expect("builtin catalog parses");
        let catalog = Catalog::new(file.models);
        catalog.check_routes().expect("routes resolve");
        for id in [
            "meta-llama/llama-3.3-70b-instruct",
            "openai/gpt-4o-mini",
            "anthropic/claude-sonnet-4",
            "anthropic/claude-opus-4",
            "google/gemini-2.5-flash",
            "deepseek/deepseek-chat",
            "z-ai/glm-4.6",
            "qwen/qwen3-coder",
            "meta-llama/llama-3.3-70b-instruct:free",
            "openrouter/auto",
        ] {
            assert!(catalog.get(id).is_some(), "{id} missing");
        }
        let opus = catalog.get("anthropic/claude-opus-4").and_then(|m| m.rates().ok());
        let opus = opus.expect("opus has fixed prices");
        assert_eq!(opus.prompt * rust_decimal::Decimal::from(1_000_000), "15".parse().unwrap());
        assert_eq!(opus.completion * rust_decimal::Decimal::from(1_000_000), "75".parse().unwrap());
        let free = catalog.get("meta-llama/llama-3.3-70b-instruct:free").expect("free model");
        assert_eq!(free.prompt, "0");
        let auto = catalog.get("openrouter/auto").expect("router");
        assert!(auto.is_variable());
        assert_eq!(
            catalog.serving("openrouter/auto").map(|m| m.id.as_str()),
            Some("openai/gpt-4o-mini")
        );
        let sonnet = catalog.get("anthropic/claude-sonnet-4").expect("sonnet");
        assert_eq!((sonnet.cache, sonnet.cache_min_tokens), (CacheMode::Explicit, 1024));
    }

    #[test]
    fn a_file_adds_models_and_keeps_junk_prices_unbillable() {
        let catalog = Catalog::parse(
            r#"
            [[models]]
            id = "acme/junk"
            prompt = "abc"
            completion = "0.000001"
            "#,
        )
        .expect("parses");
        assert!(catalog.get("openai/gpt-4o-mini").is_some());
        let err = catalog.get("acme/junk").expect("listed").rates().expect_err("junk");
        assert_eq!(err.model, "acme/junk");
        assert_eq!(err.field, "prompt");
    }

    #[test]
    fn the_sample_catalog_parses() {
        let catalog = Catalog::parse(include_str!("../../examples/sim/catalog.toml")).expect("ok");
        let large = catalog.get("acme/widget-large").expect("listed");
        assert_eq!(large.cache, CacheMode::Explicit);
        assert!(large.rates().is_ok());
        assert_eq!(catalog.serving("acme/router").map(|m| m.id.as_str()), Some("acme/widget-mini"));
        assert!(catalog.get("anthropic/claude-sonnet-4").is_some(), "built-ins kept");
    }

    #[test]
    fn replace_builtin_serves_only_the_file() {
        let catalog = Catalog::parse(
            r#"
            replace_builtin = true
            [[models]]
            id = "acme/one"
            prompt = "0.000001"
            completion = "0.000002"
            "#,
        )
        .expect("parses");
        assert_eq!(catalog.models().len(), 1);
        assert_eq!(catalog.get("acme/one").map(|m| m.provider_name()), Some("Acme".into()));
    }

    #[test]
    fn a_route_to_an_unknown_model_is_an_error() {
        let err = Catalog::parse(
            r#"
            [[models]]
            id = "acme/router"
            prompt = "-1"
            completion = "-1"
            route_to = "acme/missing"
            "#,
        )
        .expect_err("unknown route");
        assert!(format!("{err:#}").contains("acme/missing"));
    }
}
