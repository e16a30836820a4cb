//! The worst-case overshoot of a key's cap (HAZARDS H3). OpenRouter enforces a cap per request:
//! it admits a request when the request's worst case fits what the key has left, and settles
//! the cost afterwards. A request in flight when the cap is reached can therefore still be
//! billed. The estimate is one such request per agent: its prompt filling the context window
//! but for `max_tokens`, plus `max_tokens` of completion, at the model's prices, and never more
//! than the cap (a request dearer than the whole cap is refused at admission). An agent that
//! sends requests in parallel can overshoot by more; the plan says so.
//!
//! `max_tokens` is the agent's choice, unknown to apf. It is read from a container variable
//! whose name ends in `MAX_TOKENS` when the manifest sets one; otherwise the model's largest
//! output is assumed, and the plan says that too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::manifest::resolve::EnvSource;
use crate::manifest::{Experiment, ModelSettings};
use crate::money::Usd;
use crate::preflight::Priced;

/// One model's worst case past its cap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overshoot {
    /// The estimate, bounded by the cap; `None` when it cannot be made.
    pub usd: Option<Usd>,
    /// The worst single request before the bound.
    pub request_usd: Option<Usd>,
    /// The model of the key whose request is dearest (the model or one of its extras).
    pub model: Option<String>,
    pub max_tokens: Option<u64>,
    /// Where `max_tokens` came from, in words.
    pub max_tokens_from: String,
    pub prompt_tokens: Option<u64>,
    /// True when the cap, not the request, bounds the estimate.
    pub bounded_by_cap: bool,
    /// Why there is no estimate.
    pub unknown: Option<String>,
}

impl Overshoot {
    fn unknown(why: String, max_tokens_from: String) -> Overshoot {
        Overshoot {
            usd: None,
            request_usd: None,
            model: None,
            max_tokens: None,
            max_tokens_from,
            prompt_tokens: None,
            bounded_by_cap: false,
            unknown: Some(why),
        }
    }
}

/// The run's total: the sum of what could be estimated, and the aliases that could not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Total {
    pub known: Option<Usd>,
    pub unknown: Vec<String>,
}

pub fn total(exp: &Experiment, models: &BTreeMap<String, Priced>) -> Total {
    let mut t = Total::default();
    for m in &exp.models {
        match for_model(exp, m, models).usd {
            Some(u) => t.known = Some(t.known.unwrap_or(Usd::ZERO) + u),
            None => t.unknown.push(m.alias.clone()),
        }
    }
    t
}

/// `max_tokens` as the manifest gives it to the agent: a variable named `…MAX_TOKENS` (the
/// model's own env first), as a whole number.
fn env_max_tokens(exp: &Experiment, m: &ModelSettings) -> Option<(u64, String)> {
    let lookup = |env: &BTreeMap<String, EnvSource>| {
        env.iter().find_map(|(name, v)| {
            if !name.to_ascii_uppercase().ends_with("MAX_TOKENS") {
                return None;
            }
            let value = match v {
                EnvSource::Literal(s) => s.clone(),
                EnvSource::Host(var) => std::env::var(var).ok()?,
            };
            let n = value.trim().parse::<u64>().ok().filter(|n| *n > 0)?;
            Some((n, name.clone()))
        })
    };
    lookup(&m.env).or_else(|| lookup(&exp.container.env))
}

pub fn for_model(
    exp: &Experiment,
    m: &ModelSettings,
    models: &BTreeMap<String, Priced>,
) -> Overshoot {
    let from_env = env_max_tokens(exp, m);
    let mut from = match &from_env {
        Some((n, var)) => format!("{var}={n} in the container's environment"),
        None => "max_tokens is not known to apf: the model's largest output is assumed".into(),
    };
    let mut worst: Option<(Usd, &str, u64, u64)> = None;
    for id in std::iter::once(&m.id).chain(m.extra_models.iter()) {
        let Some(p) = models.get(id) else {
            return Overshoot::unknown(format!("{id} has no known price"), from);
        };
        let max_tokens = match (&from_env, p.max_completion_tokens) {
            (Some((n, _)), _) => *n,
            (None, Some(n)) => n,
            (None, None) => {
                return Overshoot::unknown(
                    format!("max_tokens is not known and {id} publishes no largest output"),
                    from,
                );
            }
        };
        let Some(context) = p.context_length else {
            return Overshoot::unknown(format!("{id} publishes no context length"), from);
        };
        let prompt_tokens = context.saturating_sub(max_tokens);
        let (Some(prompt), Some(completion)) =
            (p.prompt.cost(prompt_tokens), p.completion.cost(max_tokens))
        else {
            return Overshoot::unknown(format!("{id} has a variable price"), from);
        };
        let cost = prompt + completion;
        if worst.is_none_or(|(w, ..)| cost > w) {
            worst = Some((cost, id, max_tokens, prompt_tokens));
        }
    }
    let Some((request, id, max_tokens, prompt_tokens)) = worst else {
        return Overshoot::unknown("no model".into(), from);
    };
    if from_env.is_none() {
        from = format!("max_tokens is not known to apf: {id}'s largest output is assumed");
    }
    Overshoot {
        usd: Some(request.min(m.budget)),
        request_usd: Some(request),
        model: Some(id.to_string()),
        max_tokens: Some(max_tokens),
        max_tokens_from: from,
        prompt_tokens: Some(prompt_tokens),
        bounded_by_cap: request > m.budget,
        unknown: None,
    }
}

/// The estimate in words, for `--detail`.
pub fn explain(o: &Overshoot, budget: Usd) -> String {
    match (&o.unknown, o.usd, o.request_usd) {
        (Some(why), ..) => format!("worst-case overshoot unknown: {why}"),
        (None, Some(usd), Some(request)) => {
            let tokens = |n: Option<u64>| n.map_or("?".to_string(), group);
            let req = format!(
                "one request of up to {} prompt and {} completion tokens to {} costs at most {request}",
                tokens(o.prompt_tokens),
                tokens(o.max_tokens),
                o.model.as_deref().unwrap_or("?"),
            );
            if o.bounded_by_cap {
                format!(
                    "{req}, more than the cap {budget}, so OpenRouter admits none dearer than what is left: overshoot up to {usd}"
                )
            } else {
                format!("{req}: overshoot up to {usd}")
            }
        }
        _ => "worst-case overshoot unknown".to_string(),
    }
}

/// 199744 as "199,744".
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group(7), "7");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(199_744), "199,744");
        assert_eq!(group(1_234_567), "1,234,567");
    }
}
