//! The gateway's books: one account per model alias, with its budget, what it has spent, and
//! what requests in flight have reserved. Admission and reservation happen in one step under
//! one lock, so two concurrent requests can never both take the same remaining dollars: every
//! admitted request leaves `spent + reserved <= budget`, and a request settles at no more than
//! it reserved unless the prompt bound was wrong (which is logged and shows as spend past the
//! budget, never hidden).

use std::collections::{BTreeMap, HashMap};

use rust_decimal::Decimal;
use serde::Serialize;

use crate::hash::sha256_hex;
use crate::money::Usd;
use crate::secret::Secret;

use super::estimate::{self, ChatShape, IMAGE_TOKENS, affordable, times};
use super::prices::WorstRates;

/// One account's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Ledger {
    pub budget: Usd,
    /// Settled cost of every forwarded request.
    pub spent: Usd,
    /// Worst cases held by requests in flight.
    pub reserved: Usd,
    pub in_flight: u64,
    /// Chat requests forwarded upstream.
    pub requests: u64,
    /// Chat requests the gateway refused without forwarding.
    pub refused: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Prompt tokens read from a cache.
    pub cached_tokens: u64,
    /// Prompt tokens written to a cache.
    pub cache_write_tokens: u64,
    /// Requests settled at their reservation because their real cost never arrived.
    pub estimated: u64,
    /// True once the account's token was revoked.
    pub revoked: bool,
}

impl Ledger {
    /// What the budget has left after settled spend (requests in flight not counted), as
    /// `limit_remaining` reads on OpenRouter.
    pub fn remaining(&self) -> Usd {
        self.budget - self.spent
    }

    /// What a new request could reserve now.
    pub fn available(&self) -> Usd {
        self.budget - self.spent - self.reserved
    }
}

/// The budget figures a refusal quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Standing {
    pub budget: Usd,
    pub spent: Usd,
    pub reserved: Usd,
}

/// Why a request was refused before it was forwarded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Refusal {
    Bad(estimate::BadRequest),
    ModelNotAllowed {
        model: String,
        allowed: Vec<String>,
    },
    /// The budget is spent: OpenRouter's 403 "Key limit exceeded".
    Spent(Standing),
    /// The prompt alone does not fit.
    Prompt {
        tokens: u64,
        can: u64,
        standing: Standing,
    },
    /// The completion does not fit; `requested` is `None` when the caller set no cap and the
    /// model's largest completion is unknown.
    Completion {
        requested: Option<u64>,
        can: u64,
        standing: Standing,
    },
}

/// A request admitted and reserved.
#[derive(Debug, Clone)]
pub(crate) struct Admitted {
    pub reservation: Usd,
    pub prompt_bound: u64,
    /// The requested model's rates, to price a usage that comes without a cost.
    pub rates: WorstRates,
    pub upstream_key: Secret,
}

/// What a finished request cost, and what it used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    pub prompt: u64,
    pub completion: u64,
    pub cached: u64,
    pub cache_write: u64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Settlement {
    pub cost: Usd,
    pub usage: Usage,
    /// The cost is the reservation, because the real one never arrived.
    pub estimated: bool,
    /// The token counts are the provider's (so the prompt ratio may be learned from them).
    pub measured: bool,
}

#[derive(Debug)]
struct Account {
    token_hash: String,
    upstream_key: Secret,
    rates: BTreeMap<String, WorstRates>,
    ledger: Ledger,
    /// The highest prompt-tokens-per-body-byte ratio a settled request has shown.
    learned_ratio: Decimal,
}

/// Every account, and which token opens which.
#[derive(Debug)]
pub(crate) struct Registry {
    accounts: HashMap<String, Account>,
    tokens: HashMap<String, String>,
    base_ratio: Decimal,
}

impl Registry {
    pub fn new(bytes_per_token: u32) -> Registry {
        Registry {
            accounts: HashMap::new(),
            tokens: HashMap::new(),
            base_ratio: Decimal::ONE / Decimal::from(bytes_per_token.max(1)),
        }
    }

    pub fn register(
        &mut self,
        alias: &str,
        token: &Secret,
        upstream_key: Secret,
        budget: Usd,
        rates: BTreeMap<String, WorstRates>,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(!alias.trim().is_empty(), "an alias is required");
        anyhow::ensure!(
            !self.accounts.contains_key(alias),
            "{alias} is already registered at the gateway"
        );
        anyhow::ensure!(!budget.is_negative(), "{alias}: the budget {budget} is negative");
        let token_hash = sha256_hex(token.expose().as_bytes());
        self.tokens.insert(token_hash.clone(), alias.to_string());
        let ledger = Ledger { budget, ..Ledger::default() };
        let account =
            Account { token_hash, upstream_key, rates, ledger, learned_ratio: Decimal::ZERO };
        self.accounts.insert(alias.to_string(), account);
        Ok(())
    }

    /// The alias a bearer token opens, if it is known and not revoked.
    pub fn authenticate(&self, token: &str) -> Option<String> {
        let alias = self.tokens.get(&sha256_hex(token.as_bytes()))?;
        let account = self.accounts.get(alias)?;
        (!account.ledger.revoked).then(|| alias.clone())
    }

    pub fn revoke(&mut self, alias: &str) {
        if let Some(account) = self.accounts.get_mut(alias) {
            account.ledger.revoked = true;
            self.tokens.remove(&account.token_hash);
        }
    }

    pub fn ledger(&self, alias: &str) -> Option<Ledger> {
        self.accounts.get(alias).map(|a| a.ledger.clone())
    }

    pub fn upstream_key(&self, alias: &str) -> Option<Secret> {
        self.accounts.get(alias).map(|a| a.upstream_key.clone())
    }

    pub fn in_flight(&self) -> u64 {
        self.accounts.values().map(|a| a.ledger.in_flight).sum()
    }

    /// Admit a request and reserve its worst case, or say why not.
    pub fn admit(&mut self, alias: &str, shape: &ChatShape) -> Result<Admitted, Refusal> {
        let base_ratio = self.base_ratio;
        let Some(account) = self.accounts.get_mut(alias) else {
            return Err(Refusal::ModelNotAllowed { model: shape.model.clone(), allowed: vec![] });
        };
        let result = account.quote(shape, base_ratio);
        match &result {
            Ok(admitted) => {
                let l = &mut account.ledger;
                l.reserved += admitted.reservation;
                l.in_flight += 1;
                l.requests += 1;
            }
            Err(_) => account.ledger.refused += 1,
        }
        result
    }

    /// Count a request refused before it could be quoted (a body the gateway cannot read).
    pub fn count_refusal(&mut self, alias: &str) {
        if let Some(account) = self.accounts.get_mut(alias) {
            account.ledger.refused += 1;
        }
    }

    /// Release a reservation and book what the request really cost.
    pub fn settle(
        &mut self,
        alias: &str,
        reservation: Usd,
        shape: &ChatShape,
        settlement: &Settlement,
    ) {
        let Some(account) = self.accounts.get_mut(alias) else { return };
        let l = &mut account.ledger;
        l.reserved = (l.reserved - reservation).max(Usd::ZERO);
        l.in_flight = l.in_flight.saturating_sub(1);
        l.spent += settlement.cost;
        let u = settlement.usage;
        l.prompt_tokens += u.prompt;
        l.completion_tokens += u.completion;
        l.cached_tokens += u.cached;
        l.cache_write_tokens += u.cache_write;
        if settlement.estimated {
            l.estimated += 1;
        }
        if settlement.cost > reservation {
            tracing::warn!(
                "gateway: a request of {alias} cost {} but reserved only {reservation}; the \
                 prompt bound was too low for it",
                settlement.cost
            );
        }
        if settlement.measured && shape.body_bytes > 0 {
            let text_tokens = u.prompt.saturating_sub(shape.images.saturating_mul(IMAGE_TOKENS));
            let ratio =
                (Decimal::from(text_tokens) / Decimal::from(shape.body_bytes)).min(Decimal::ONE);
            account.learned_ratio = account.learned_ratio.max(ratio);
        }
    }
}

impl Account {
    fn standing(&self) -> Standing {
        Standing {
            budget: self.ledger.budget,
            spent: self.ledger.spent,
            reserved: self.ledger.reserved,
        }
    }

    fn quote(&self, shape: &ChatShape, base_ratio: Decimal) -> Result<Admitted, Refusal> {
        let mut candidates = Vec::with_capacity(shape.candidates.len());
        for id in &shape.candidates {
            match self.rates.get(id) {
                Some(rates) => candidates.push(rates),
                None => {
                    return Err(Refusal::ModelNotAllowed {
                        model: id.clone(),
                        allowed: self.rates.keys().cloned().collect(),
                    });
                }
            }
        }
        let Some(&primary) = candidates.first() else {
            return Err(Refusal::ModelNotAllowed {
                model: shape.model.clone(),
                allowed: self.rates.keys().cloned().collect(),
            });
        };
        let standing = self.standing();
        if self.ledger.spent >= self.ledger.budget {
            return Err(Refusal::Spent(standing));
        }
        let available = self.ledger.available();
        let prompt_bound = estimate::prompt_bound(shape, base_ratio.max(self.learned_ratio));
        let mut reservation = Usd::ZERO;
        for rates in &candidates {
            let worst = worst_case(rates, shape, prompt_bound, available, standing)?;
            reservation = reservation.max(worst);
        }
        Ok(Admitted {
            reservation,
            prompt_bound,
            rates: *primary,
            upstream_key: self.upstream_key.clone(),
        })
    }
}

/// The most one candidate model can bill for this request, if `available` covers it.
fn worst_case(
    rates: &WorstRates,
    shape: &ChatShape,
    prompt_tokens: u64,
    available: Usd,
    standing: Standing,
) -> Result<Usd, Refusal> {
    let prompt_cost = rates.request + times(rates.prompt, prompt_tokens);
    if prompt_cost > available {
        let can = affordable(available - rates.request, rates.prompt).unwrap_or(u64::MAX);
        return Err(Refusal::Prompt { tokens: prompt_tokens, can, standing });
    }
    let left = available - prompt_cost;
    let per_choice = |n: u64| n / shape.choices.max(1);
    match estimate::completion_bound(shape, rates) {
        Some(tokens) => {
            let cost = times(rates.completion, tokens);
            if cost > left {
                let can = affordable(left, rates.completion).map_or(u64::MAX, per_choice);
                return Err(Refusal::Completion {
                    requested: Some(per_choice(tokens)),
                    can,
                    standing,
                });
            }
            Ok(prompt_cost + cost)
        }
        None if rates.completion.0.is_zero() => Ok(prompt_cost),
        None => match affordable(left, rates.completion) {
            Some(0) => Err(Refusal::Completion { requested: None, can: 0, standing }),
            // Nothing bounds the completion, so the request holds all that is left.
            _ => Ok(available),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(s: &str) -> Usd {
        s.parse().expect("decimal")
    }

    fn rates(max: Option<u64>) -> BTreeMap<String, WorstRates> {
        let r = WorstRates {
            prompt: usd("0.000003"),
            completion: usd("0.000015"),
            request: Usd::ZERO,
            max_completion_tokens: max,
        };
        [("a/m".to_string(), r)].into_iter().collect()
    }

    fn shape(bytes: u64, max_tokens: Option<u64>) -> ChatShape {
        ChatShape {
            model: "a/m".into(),
            candidates: vec!["a/m".into()],
            max_completion: max_tokens,
            choices: 1,
            stream: false,
            images: 0,
            body_bytes: bytes,
        }
    }

    fn registry(budget: &str, max: Option<u64>) -> Registry {
        let mut r = Registry::new(3);
        let token = Secret::new("apf-gw-test");
        r.register("m", &token, Secret::new("sk-or-v1-real"), usd(budget), rates(max))
            .expect("registers");
        r
    }

    #[test]
    fn concurrent_reservations_never_pass_the_budget() {
        let mut r = registry("0.01", None);
        // 300 bytes bound 100 prompt tokens ($0.0003); 100 completion tokens cost $0.0015.
        let s = shape(300, Some(100));
        let mut admitted = Vec::new();
        while let Ok(a) = r.admit("m", &s) {
            assert_eq!(a.reservation, usd("0.0018"));
            admitted.push(a);
        }
        assert_eq!(admitted.len(), 5, "5 × $0.0018 fit in $0.01, a sixth does not");
        let l = r.ledger("m").expect("account");
        assert_eq!((l.reserved, l.in_flight, l.refused), (usd("0.009"), 5, 1));
        assert!(l.spent + l.reserved <= l.budget);

        let paid = Settlement {
            cost: usd("0.001"),
            usage: Usage { prompt: 20, completion: 60, cached: 5, cache_write: 0 },
            estimated: false,
            measured: true,
        };
        for a in &admitted {
            r.settle("m", a.reservation, &s, &paid);
        }
        let l = r.ledger("m").expect("account");
        assert_eq!((l.spent, l.reserved, l.in_flight), (usd("0.005"), Usd::ZERO, 0));
        assert_eq!((l.prompt_tokens, l.completion_tokens, l.cached_tokens), (100, 300, 25));
        assert_eq!(l.remaining(), usd("0.005"));
    }

    #[test]
    fn refusals_say_what_the_budget_can_afford() {
        let mut r = registry("0.001", None);
        match r.admit("m", &shape(300, Some(100))) {
            // $0.001 - $0.0003 prompt leaves $0.0007: 46 tokens at $15/M.
            Err(Refusal::Completion { requested: Some(100), can: 46, .. }) => {}
            other => panic!("expected a completion refusal, got {other:?}"),
        }
        match r.admit("m", &shape(3_000, Some(1))) {
            Err(Refusal::Prompt { tokens: 1000, can: 333, .. }) => {}
            other => panic!("expected a prompt refusal, got {other:?}"),
        }
        let mut other = shape(3, Some(1));
        other.candidates.push("b/other".into());
        assert!(matches!(r.admit("m", &other), Err(Refusal::ModelNotAllowed { .. })));
    }

    #[test]
    fn without_max_tokens_the_models_ceiling_or_the_whole_budget_is_held() {
        let mut known = registry("1", Some(1000));
        let a = known.admit("m", &shape(3, None)).expect("fits");
        assert_eq!(a.reservation, usd("0.015003"), "1000 tokens at $15/M plus one prompt token");
        let mut unknown = registry("1", None);
        let a = unknown.admit("m", &shape(3, None)).expect("fits");
        assert_eq!(a.reservation, usd("1"), "everything left");
        assert!(unknown.admit("m", &shape(3, Some(1))).is_err(), "nothing is left for others");
    }

    #[test]
    fn a_spent_budget_is_the_key_limit_and_a_revoked_token_opens_nothing() {
        let mut r = registry("0.001", None);
        let s = shape(3, Some(1));
        let a = r.admit("m", &s).expect("fits");
        let over = Settlement {
            cost: usd("0.001"),
            usage: Usage::default(),
            estimated: true,
            measured: false,
        };
        r.settle("m", a.reservation, &s, &over);
        assert!(matches!(r.admit("m", &s), Err(Refusal::Spent(_))));
        assert_eq!(r.ledger("m").map(|l| l.estimated), Some(1));
        assert_eq!(r.authenticate("apf-gw-test").as_deref(), Some("m"));
        assert_eq!(r.authenticate("sk-or-v1-real"), None, "the real key is no gateway token");
        r.revoke("m");
        assert_eq!(r.authenticate("apf-gw-test"), None);
        assert!(r.ledger("m").is_some_and(|l| l.revoked));
    }

    #[test]
    fn dense_prompts_raise_the_bound_for_later_requests() {
        let mut r = registry("1", None);
        let s = shape(300, Some(1));
        assert_eq!(r.admit("m", &s).expect("fits").prompt_bound, 100);
        let dense = Settlement {
            cost: usd("0.0009"),
            usage: Usage { prompt: 240, ..Usage::default() },
            estimated: false,
            measured: true,
        };
        r.settle("m", usd("0.000315"), &s, &dense);
        assert_eq!(r.admit("m", &s).expect("fits").prompt_bound, 240);
    }
}
