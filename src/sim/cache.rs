//! Prompt caching, per account as OpenRouter's providers do it. For a model with explicit caching
//! the cached prefix runs up to the last `cache_control` marker (on a content part, a message or a
//! tool), or over the whole prompt when the request carries a top-level `cache_control`; the first
//! call writes it (`cache_write_tokens`), a repeat within its lifetime reads it (`cached_tokens`).
//! For a model with implicit caching the prefix is everything before the last message, writes are
//! free and unreported, and repeats are read. Prefixes shorter than the model's minimum are not
//! cached, silently, as on the real service.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::catalog::{CacheMode, CatalogModel};
use super::script::{content_text, message_chars, tools_chars};

const FIVE_MINUTES: Duration = Duration::from_secs(300);
const ONE_HOUR: Duration = Duration::from_secs(3600);

/// How the prompt of one request met the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CacheUse {
    pub cached: u64,
    pub written: u64,
    pub one_hour: bool,
}

/// A prefix that may be cached.
#[derive(Debug)]
struct Prefix {
    digest: [u8; 32],
    tokens: u64,
    ttl: Duration,
}

/// Cached prefixes of the account, by digest, with their expiry.
#[derive(Debug, Default)]
pub(crate) struct PromptCache {
    entries: HashMap<[u8; 32], Instant>,
}

impl PromptCache {
    /// Look the request's prefix up, and write or refresh it.
    pub fn apply(&mut self, model: &CatalogModel, body: &Value, now: Instant) -> CacheUse {
        let prefix = match model.cache {
            CacheMode::None => None,
            CacheMode::Explicit => explicit_prefix(model, body),
            CacheMode::Implicit => implicit_prefix(model, body),
        };
        let Some(prefix) = prefix.filter(|p| p.tokens >= model.cache_min_tokens) else {
            return CacheUse::default();
        };
        let hit = self.entries.get(&prefix.digest).is_some_and(|expiry| *expiry > now);
        self.entries.insert(prefix.digest, now + prefix.ttl);
        match (hit, model.cache) {
            (true, _) => CacheUse { cached: prefix.tokens, ..CacheUse::default() },
            (false, CacheMode::Explicit) => CacheUse {
                written: prefix.tokens,
                one_hour: prefix.ttl == ONE_HOUR,
                ..CacheUse::default()
            },
            (false, _) => CacheUse::default(),
        }
    }
}

/// Feeds the text of a prompt, in order, into a digest while counting its characters.
struct PrefixBuilder {
    hasher: Sha256,
    chars: usize,
}

impl PrefixBuilder {
    fn new(model: &str) -> PrefixBuilder {
        let mut hasher = Sha256::new();
        hasher.update(model.as_bytes());
        PrefixBuilder { hasher, chars: 0 }
    }

    fn add(&mut self, text: &str, chars: usize) {
        self.hasher.update((text.len() as u64).to_le_bytes());
        self.hasher.update(text.as_bytes());
        self.chars += chars;
    }

    fn add_message(&mut self, message: &Value) {
        self.add(&message.to_string(), message_chars(message));
    }

    fn finish(self, ttl: Duration) -> Prefix {
        Prefix { digest: self.hasher.finalize().into(), tokens: (self.chars / 4) as u64, ttl }
    }
}

fn messages(body: &Value) -> &[Value] {
    body.get("messages").and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn tools(body: &Value) -> &[Value] {
    body.get("tools").and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn ttl_of(cache_control: &Value) -> Duration {
    match cache_control.get("ttl").and_then(Value::as_str) {
        Some("1h") => ONE_HOUR,
        _ => FIVE_MINUTES,
    }
}

fn marker(v: &Value) -> Option<&Value> {
    v.get("cache_control").filter(|c| c.is_object())
}

/// Where the last explicit breakpoint sits: a message index and, inside its content array, the
/// part index (or the whole message).
fn last_breakpoint(body: &Value) -> Option<(usize, Option<usize>, Duration)> {
    let mut found = None;
    for (i, message) in messages(body).iter().enumerate() {
        if let Some(c) = marker(message) {
            found = Some((i, None, ttl_of(c)));
        }
        if let Some(parts) = message.get("content").and_then(Value::as_array) {
            for (j, part) in parts.iter().enumerate() {
                if let Some(c) = marker(part) {
                    found = Some((i, Some(j), ttl_of(c)));
                }
            }
        }
    }
    found
}

fn explicit_prefix(model: &CatalogModel, body: &Value) -> Option<Prefix> {
    let all = messages(body);
    let (end, part, ttl) = match (marker(body), last_breakpoint(body)) {
        (Some(top), _) => (all.len().checked_sub(1)?, None, ttl_of(top)),
        (None, Some(bp)) => bp,
        (None, None) => return tools_only_prefix(model, body),
    };
    let mut builder = PrefixBuilder::new(&model.id);
    let tool_text = Value::Array(tools(body).to_vec()).to_string();
    builder.add(&tool_text, tools_chars(tools(body)));
    for message in &all[..end] {
        builder.add_message(message);
    }
    let last = &all[end];
    match (part, last.get("content").and_then(Value::as_array)) {
        (Some(j), Some(parts)) => {
            for p in &parts[..=j.min(parts.len().saturating_sub(1))] {
                let text = content_text(Some(&Value::Array(vec![p.clone()])));
                builder.add(&p.to_string(), text.chars().count());
            }
        }
        _ => builder.add_message(last),
    }
    Some(builder.finish(ttl))
}

/// A `cache_control` on a tool definition caches the tools alone.
fn tools_only_prefix(model: &CatalogModel, body: &Value) -> Option<Prefix> {
    let all = tools(body);
    let last = all.iter().rposition(|t| marker(t).is_some())?;
    let ttl = marker(&all[last]).map_or(FIVE_MINUTES, ttl_of);
    let mut builder = PrefixBuilder::new(&model.id);
    let marked = &all[..=last];
    builder.add(&Value::Array(marked.to_vec()).to_string(), tools_chars(marked));
    Some(builder.finish(ttl))
}

fn implicit_prefix(model: &CatalogModel, body: &Value) -> Option<Prefix> {
    let all = messages(body);
    let head = &all[..all.len().checked_sub(1)?];
    let mut builder = PrefixBuilder::new(&model.id);
    builder.add(&Value::Array(tools(body).to_vec()).to_string(), tools_chars(tools(body)));
    for message in head {
        builder.add_message(message);
    }
    Some(builder.finish(FIVE_MINUTES))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::catalog::Catalog;
    use serde_json::json;

    fn body(system: &str, user: &str) -> Value {
        json!({"messages": [
            {"role": "system", "content": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]},
            {"role": "user", "content": user}
        ]})
    }

    #[test]
    fn explicit_prefix_is_written_then_read() {
        let catalog = Catalog::builtin();
        let sonnet = catalog.get("anthropic/claude-sonnet-4").expect("sonnet");
        let mut cache = PromptCache::default();
        let now = Instant::now();
        let system = "x".repeat(4400);
        let first = cache.apply(sonnet, &body(&system, "one"), now);
        assert_eq!(first, CacheUse { written: 1100, ..CacheUse::default() });
        let second = cache.apply(sonnet, &body(&system, "two"), now);
        assert_eq!(second, CacheUse { cached: 1100, ..CacheUse::default() });
        let later = cache.apply(sonnet, &body(&system, "three"), now + Duration::from_secs(301));
        assert_eq!(later.written, 1100, "expired after five minutes");
    }

    #[test]
    fn short_or_unmarked_prefixes_are_not_cached() {
        let catalog = Catalog::builtin();
        let sonnet = catalog.get("anthropic/claude-sonnet-4").expect("sonnet");
        let mut cache = PromptCache::default();
        let now = Instant::now();
        let short = body(&"x".repeat(4000), "one");
        assert_eq!(cache.apply(sonnet, &short, now), CacheUse::default());
        assert_eq!(cache.apply(sonnet, &short, now), CacheUse::default());
        let plain = json!({"messages": [{"role": "user", "content": "y".repeat(8000)}]});
        assert_eq!(cache.apply(sonnet, &plain, now), CacheUse::default());
    }

    #[test]
    fn implicit_caching_reads_a_repeated_history_for_free() {
        let catalog = Catalog::builtin();
        let mini = catalog.get("openai/gpt-4o-mini").expect("mini");
        let mut cache = PromptCache::default();
        let now = Instant::now();
        let history = json!({"role": "system", "content": "z".repeat(5000)});
        let a = json!({"messages": [history, {"role": "user", "content": "a"}]});
        let b = json!({"messages": [history, {"role": "user", "content": "b"}]});
        assert_eq!(cache.apply(mini, &a, now), CacheUse::default());
        assert_eq!(cache.apply(mini, &b, now).cached, 1250);
    }
}
