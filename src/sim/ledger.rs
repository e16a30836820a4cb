//! The account and its keys: credits, recorded spend, key limits and expiry, and the generations
//! made. Spend is recorded the way OpenRouter records it: a request is admitted against the spend
//! recorded so far, and its real cost is settled afterwards, optionally after a delay. So
//! requests in flight together can all pass admission and push a key past its cap, and `/key`,
//! `/keys` and `/credits` show spend late when a delay is set.
//!
//! Only the sha256 hash of a key is kept; the plaintext is handed out once, at creation.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Duration as ChronoDuration, SecondsFormat, TimeZone, Utc};
use rand::RngCore;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::money::Usd;
use crate::openrouter::wire;

use super::cost::{self, Rates};
use super::errors::ApiError;

/// The id OpenRouter would show as the account's user, for `creator_user_id`.
const USER_ID: &str = "user_sim0000000000000000000000";
/// The default workspace's id.
const WORKSPACE_ID: &str = "00000000-0000-4000-8000-000000000000";

const CREDITS_URL: &str = "https://openrouter.ai/settings/credits";
const KEYS_URL: &str = "https://openrouter.ai/settings/keys";

/// The sha256 of a key's plaintext, in lowercase hex: the key's `hash`.
pub(crate) fn hash_key(plaintext: &str) -> String {
    hex(&Sha256::digest(plaintext.as_bytes()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh key in OpenRouter's form: `sk-or-v1-` and 64 hex digits, from OS randomness.
pub(crate) fn new_key_plaintext() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("sk-or-v1-{}", hex(&bytes))
}

/// The masked form OpenRouter shows as a key's `label`: `sk-or-v1-0e6...1c96`.
fn masked(plaintext: &str) -> String {
    let body = plaintext.strip_prefix("sk-or-v1-").unwrap_or(plaintext);
    let head: String = body.chars().take(3).collect();
    let tail: String = body.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    format!("sk-or-v1-{head}...{tail}")
}

pub(crate) fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The window a key's limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitReset {
    Daily,
    Weekly,
    Monthly,
}

impl LimitReset {
    pub fn parse(s: &str) -> Option<LimitReset> {
        match s {
            "daily" => Some(LimitReset::Daily),
            "weekly" => Some(LimitReset::Weekly),
            "monthly" => Some(LimitReset::Monthly),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LimitReset::Daily => "daily",
            LimitReset::Weekly => "weekly",
            LimitReset::Monthly => "monthly",
        }
    }

    /// The start of the current window, in UTC (weeks start on Monday).
    fn window_start(self, now: DateTime<Utc>) -> DateTime<Utc> {
        let midnight = |d: chrono::NaiveDate| {
            Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
        };
        let today = now.date_naive();
        match self {
            LimitReset::Daily => midnight(today),
            LimitReset::Weekly => {
                let back = i64::from(today.weekday().num_days_from_monday());
                midnight(today - ChronoDuration::days(back))
            }
            LimitReset::Monthly => midnight(today.with_day(1).unwrap_or(today)),
        }
    }
}

/// The words OpenRouter puts in "Key limit exceeded (… limit)".
fn limit_words(reset: Option<LimitReset>) -> &'static str {
    match reset {
        None => "total limit",
        Some(LimitReset::Daily) => "daily limit",
        Some(LimitReset::Weekly) => "weekly limit",
        Some(LimitReset::Monthly) => "monthly limit",
    }
}

/// One inference key.
#[derive(Debug, Clone)]
pub(crate) struct KeyRecord {
    pub hash: String,
    pub name: String,
    pub label: String,
    pub disabled: bool,
    pub limit: Option<Usd>,
    pub limit_reset: Option<LimitReset>,
    pub include_byok_in_limit: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Creation order, for newest-first listing.
    seq: u64,
    /// Settled spend, with when it was recorded, for the daily/weekly/monthly windows.
    spend: Vec<(DateTime<Utc>, Usd)>,
}

impl KeyRecord {
    pub fn usage(&self) -> Usd {
        self.spend.iter().map(|(_, usd)| *usd).sum()
    }

    fn usage_since(&self, start: DateTime<Utc>) -> Usd {
        self.spend.iter().filter(|(t, _)| *t >= start).map(|(_, usd)| *usd).sum()
    }

    fn usage_in(&self, reset: LimitReset, now: DateTime<Utc>) -> Usd {
        self.usage_since(reset.window_start(now))
    }

    /// Spend that counts against the limit: lifetime, or the current window's.
    fn limited_usage(&self, now: DateTime<Utc>) -> Usd {
        match self.limit_reset {
            Some(reset) => self.usage_in(reset, now),
            None => self.usage(),
        }
    }

    /// `limit - spend`, negative once a key has overshot; `None` without a limit.
    pub fn limit_remaining(&self, now: DateTime<Utc>) -> Option<Usd> {
        self.limit.map(|limit| limit - self.limited_usage(now))
    }

    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    fn usage_fields(&self, now: DateTime<Utc>) -> Map<String, Value> {
        let mut m = Map::new();
        for (field, usd) in [
            ("usage_daily", self.usage_in(LimitReset::Daily, now)),
            ("usage_weekly", self.usage_in(LimitReset::Weekly, now)),
            ("usage_monthly", self.usage_in(LimitReset::Monthly, now)),
        ] {
            m.insert(field.into(), json!(usd.to_f64()));
        }
        for field in ["byok_usage", "byok_usage_daily", "byok_usage_weekly", "byok_usage_monthly"] {
            m.insert(field.into(), json!(0.0));
        }
        m.insert("creator_user_id".into(), json!(USER_ID));
        m
    }

    /// The key object of the `/keys` family.
    pub fn to_wire(&self, now: DateTime<Utc>) -> wire::Key {
        let mut extra = self.usage_fields(now);
        extra.insert("workspace_id".into(), json!(WORKSPACE_ID));
        wire::Key {
            hash: self.hash.clone(),
            name: self.name.clone(),
            label: Some(self.label.clone()),
            disabled: self.disabled,
            limit: self.limit,
            limit_remaining: self.limit_remaining(now),
            limit_reset: self.limit_reset.map(|r| r.as_str().to_string()),
            include_byok_in_limit: self.include_byok_in_limit,
            usage: self.usage(),
            created_at: Some(timestamp(self.created_at)),
            updated_at: self.updated_at.map(timestamp),
            expires_at: self.expires_at.map(timestamp),
            extra,
        }
    }

    /// `GET /key` for this key.
    pub fn to_info(&self, now: DateTime<Utc>, free_tier: bool) -> wire::KeyInfo {
        let mut extra = self.usage_fields(now);
        extra.insert("include_byok_in_limit".into(), json!(self.include_byok_in_limit));
        extra.insert("is_provisioning_key".into(), json!(false));
        extra.insert("rate_limit".into(), rate_limit());
        wire::KeyInfo {
            label: Some(self.label.clone()),
            limit: self.limit,
            limit_remaining: self.limit_remaining(now),
            limit_reset: self.limit_reset.map(|r| r.as_str().to_string()),
            usage: self.usage(),
            is_free_tier: free_tier,
            is_management_key: false,
            expires_at: self.expires_at.map(timestamp),
            extra,
        }
    }
}

/// The deprecated `rate_limit` object, with the values the document says it always has.
fn rate_limit() -> Value {
    json!({"requests": -1, "interval": "10s", "note": "This field is deprecated and safe to ignore."})
}

/// What a new key is created with.
#[derive(Debug, Clone, Default)]
pub(crate) struct NewKey {
    pub name: String,
    pub limit: Option<Usd>,
    pub limit_reset: Option<LimitReset>,
    pub include_byok_in_limit: bool,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A change to a key; `limit: Some(None)` removes the cap.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyPatch {
    pub name: Option<String>,
    pub disabled: Option<bool>,
    pub limit: Option<Option<Usd>>,
    pub limit_reset: Option<Option<LimitReset>>,
    pub include_byok_in_limit: Option<bool>,
}

/// One generation, as `/generation` reports it.
#[derive(Debug, Clone)]
pub(crate) struct Generation {
    pub id: String,
    pub key_hash: String,
    pub body: Value,
}

/// Spend that has been incurred but not yet recorded.
#[derive(Debug, Clone)]
struct PendingCharge {
    due: Instant,
    key_hash: String,
    cost: Usd,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    Management,
    Inference(String),
}

/// The account's figures, for `/_sim/state` and `SimHandle::account`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountState {
    /// Credits bought.
    pub total_credits: Usd,
    /// Spend recorded so far (what `/credits` shows).
    pub total_usage: Usd,
    /// Spend incurred but not yet recorded (the `--spend-delay` backlog).
    pub pending_usage: Usd,
    /// Inference keys on the account, disabled ones included.
    pub keys: usize,
    /// Generations made.
    pub generations: usize,
}

/// The whole mutable state of the simulated account.
#[derive(Debug)]
pub(crate) struct Ledger {
    management_hash: String,
    management_label: String,
    credits: Usd,
    usage: Usd,
    keys: HashMap<String, KeyRecord>,
    next_seq: u64,
    pending: Vec<PendingCharge>,
    /// Generations by id, with when they become visible: like OpenRouter's `/generation`, which
    /// 404s for a while after a completion, they show when their spend is recorded.
    generations: HashMap<String, (Generation, Instant)>,
}

impl Ledger {
    pub fn new(management_key: &str, credits: Usd) -> Ledger {
        Ledger {
            management_hash: hash_key(management_key),
            management_label: masked(management_key),
            credits,
            usage: Usd::ZERO,
            keys: HashMap::new(),
            next_seq: 0,
            pending: Vec::new(),
            generations: HashMap::new(),
        }
    }

    /// Record every charge that has come due. Called before any read, so a delayed charge shows
    /// up at the first look after its time.
    pub fn settle(&mut self, now: Instant) {
        let (due, later): (Vec<_>, Vec<_>) = self.pending.drain(..).partition(|c| c.due <= now);
        self.pending = later;
        for charge in due {
            self.record(&charge.key_hash, charge.cost, Utc::now());
        }
    }

    fn record(&mut self, key_hash: &str, cost: Usd, at: DateTime<Utc>) {
        self.usage += cost;
        if let Some(key) = self.keys.get_mut(key_hash) {
            key.spend.push((at, cost));
        }
    }

    /// Who a bearer token belongs to. Unknown, disabled and expired keys are all "User not
    /// found.", as OpenRouter answers them.
    pub fn authenticate(
        &self,
        token: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Caller, ApiError> {
        let token = token.ok_or_else(|| ApiError::unauthorized("No auth credentials found"))?;
        let hash = hash_key(token);
        if hash == self.management_hash {
            return Ok(Caller::Management);
        }
        match self.keys.get(&hash) {
            Some(key) if !key.disabled && !key.is_expired(now) => Ok(Caller::Inference(hash)),
            _ => Err(ApiError::unauthorized("User not found.")),
        }
    }

    /// True when `hash` names the management key or a key on the account.
    pub fn knows(&self, hash: &str) -> bool {
        hash == self.management_hash || self.keys.contains_key(hash)
    }

    pub fn credits(&self) -> wire::Credits {
        wire::Credits { total_credits: self.credits, total_usage: self.usage }
    }

    pub fn set_credits(&mut self, credits: Usd) {
        self.credits = credits;
    }

    /// An account that never bought credits is on the free tier.
    pub fn is_free_tier(&self) -> bool {
        self.credits.0.is_zero()
    }

    pub fn state(&self) -> AccountState {
        AccountState {
            total_credits: self.credits,
            total_usage: self.usage,
            pending_usage: self.pending.iter().map(|c| c.cost).sum(),
            keys: self.keys.len(),
            generations: self.generations.len(),
        }
    }

    /// `GET /key` for the management key.
    pub fn management_info(&self) -> wire::KeyInfo {
        let mut extra = Map::new();
        for field in [
            "usage_daily",
            "usage_weekly",
            "usage_monthly",
            "byok_usage",
            "byok_usage_daily",
            "byok_usage_weekly",
            "byok_usage_monthly",
        ] {
            extra.insert(field.into(), json!(0.0));
        }
        extra.insert("include_byok_in_limit".into(), json!(false));
        extra.insert("is_provisioning_key".into(), json!(true));
        extra.insert("creator_user_id".into(), json!(USER_ID));
        extra.insert("rate_limit".into(), rate_limit());
        wire::KeyInfo {
            label: Some(self.management_label.clone()),
            limit: None,
            limit_remaining: None,
            limit_reset: None,
            usage: Usd::ZERO,
            is_free_tier: self.is_free_tier(),
            is_management_key: true,
            expires_at: None,
            extra,
        }
    }

    /// Create a key; returns its record and its plaintext (shown once, never stored).
    pub fn create_key(&mut self, new: NewKey, now: DateTime<Utc>) -> (KeyRecord, String) {
        let plaintext = new_key_plaintext();
        let record = KeyRecord {
            hash: hash_key(&plaintext),
            name: new.name,
            label: masked(&plaintext),
            disabled: false,
            limit: new.limit,
            limit_reset: new.limit_reset,
            include_byok_in_limit: new.include_byok_in_limit,
            created_at: now,
            updated_at: None,
            expires_at: new.expires_at,
            seq: self.next_seq,
            spend: Vec::new(),
        };
        self.next_seq += 1;
        self.keys.insert(record.hash.clone(), record.clone());
        (record, plaintext)
    }

    pub fn key(&self, hash: &str) -> Option<&KeyRecord> {
        self.keys.get(hash)
    }

    /// Keys newest first, disabled ones only when asked, `page` at a time from `offset`.
    pub fn list_keys(&self, include_disabled: bool, offset: usize, page: usize) -> Vec<&KeyRecord> {
        let mut keys: Vec<&KeyRecord> =
            self.keys.values().filter(|k| include_disabled || !k.disabled).collect();
        keys.sort_by_key(|k| std::cmp::Reverse(k.seq));
        keys.into_iter().skip(offset).take(page).collect()
    }

    pub fn patch_key(
        &mut self,
        hash: &str,
        patch: KeyPatch,
        now: DateTime<Utc>,
    ) -> Option<&KeyRecord> {
        let key = self.keys.get_mut(hash)?;
        if let Some(name) = patch.name {
            key.name = name;
        }
        if let Some(disabled) = patch.disabled {
            key.disabled = disabled;
        }
        if let Some(limit) = patch.limit {
            key.limit = limit;
        }
        if let Some(reset) = patch.limit_reset {
            key.limit_reset = reset;
        }
        if let Some(byok) = patch.include_byok_in_limit {
            key.include_byok_in_limit = byok;
        }
        key.updated_at = Some(now);
        Some(key)
    }

    pub fn delete_key(&mut self, hash: &str) -> bool {
        self.keys.remove(hash).is_some()
    }

    /// Set a key's recorded usage to `usd` (a test hook); the account's usage moves with it.
    pub fn set_key_usage(&mut self, hash: &str, usd: Usd) -> bool {
        let Some(current) = self.keys.get(hash).map(KeyRecord::usage) else {
            return false;
        };
        self.record(hash, usd - current, Utc::now());
        true
    }

    /// Admit a request whose prompt and completion at most cost what `quote` says, against the
    /// spend recorded so far, or refuse it with OpenRouter's status and message.
    pub fn admit(&self, key_hash: &str, quote: &Quote, now: DateTime<Utc>) -> Result<(), ApiError> {
        let account_left = self.credits - self.usage;
        if account_left.0 <= Decimal::ZERO {
            return Err(ApiError::payment_required(
                "Insufficient credits. Add more using https://openrouter.ai/credits",
            ));
        }
        let key =
            self.keys.get(key_hash).ok_or_else(|| ApiError::unauthorized("User not found."))?;
        let key_left = key.limit_remaining(now);
        if key_left.is_some_and(|left| left.0 <= Decimal::ZERO) {
            return Err(ApiError::forbidden(format!(
                "Key limit exceeded ({}). Manage it using {KEYS_URL}",
                limit_words(key.limit_reset)
            )));
        }
        let binding = match key_left {
            Some(left) if left < account_left => Budget::Key(left, key.limit_reset),
            _ => Budget::Account(account_left),
        };
        quote.check(binding)
    }

    /// Record a generation and schedule its charge `delay` from now.
    pub fn charge(&mut self, generation: Generation, cost: Usd, delay: Duration) {
        let due = Instant::now() + delay;
        let key_hash = generation.key_hash.clone();
        self.generations.insert(generation.id.clone(), (generation, due));
        self.pending.push(PendingCharge { due, key_hash, cost });
    }

    /// A generation the caller may see: its own, or any for the management key.
    pub fn generation(&self, id: &str, caller: &Caller, now: Instant) -> Option<&Generation> {
        let (g, visible_at) = self.generations.get(id)?;
        let mine = match caller {
            Caller::Management => true,
            Caller::Inference(hash) => *hash == g.key_hash,
        };
        (mine && *visible_at <= now).then_some(g)
    }
}

/// Which budget limits a request: the key's remaining limit or the account's balance.
#[derive(Debug, Clone, Copy)]
enum Budget {
    Key(Usd, Option<LimitReset>),
    Account(Usd),
}

impl Budget {
    fn available(self) -> Usd {
        match self {
            Budget::Key(usd, _) | Budget::Account(usd) => usd,
        }
    }

    fn how_to_increase(self) -> String {
        match self {
            Budget::Account(_) => format!("visit {CREDITS_URL} and add more credits"),
            Budget::Key(_, reset) => {
                let window = limit_words(reset).trim_end_matches(" limit");
                format!("visit {KEYS_URL} and create a key with a higher {window} limit")
            }
        }
    }
}

/// The most a request may cost: its prompt and its largest possible completion.
#[derive(Debug, Clone)]
pub(crate) struct Quote {
    pub rates: Rates,
    pub prompt_tokens: u64,
    pub max_completion: u64,
}

impl Quote {
    fn check(&self, budget: Budget) -> Result<(), ApiError> {
        let available = budget.available();
        let prompt_cost = cost::worst_case(&self.rates, self.prompt_tokens, 0);
        if prompt_cost > available {
            let can = cost::affordable_tokens(available, self.rates.prompt).unwrap_or(u64::MAX);
            return Err(ApiError::payment_required(format!(
                "Prompt tokens limit exceeded: {} > {can}. To increase, {}",
                self.prompt_tokens,
                budget.how_to_increase()
            )));
        }
        let left = available - prompt_cost;
        match cost::affordable_tokens(left, self.rates.completion) {
            Some(can) if can < self.max_completion => Err(ApiError::payment_required(format!(
                "This request requires more credits, or fewer max_tokens. You requested up to {} \
                 tokens, but can only afford {can}. To increase, {}",
                self.max_completion,
                budget.how_to_increase()
            ))),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(s: &str) -> Usd {
        s.parse().expect("decimal")
    }

    fn rates() -> Rates {
        let p = usd("0.000003");
        Rates {
            prompt: p,
            completion: usd("0.000015"),
            cache_read: p,
            cache_write: p,
            cache_write_1h: p,
        }
    }

    fn ledger_with_key(limit: Option<&str>) -> (Ledger, String) {
        let mut ledger = Ledger::new("sk-or-v1-admin", usd("10"));
        let new = NewKey { name: "k".into(), limit: limit.map(usd), ..NewKey::default() };
        let (record, _) = ledger.create_key(new, Utc::now());
        (ledger, record.hash)
    }

    fn quote(max_completion: u64) -> Quote {
        Quote { rates: rates(), prompt_tokens: 100, max_completion }
    }

    #[test]
    fn a_spent_key_is_403_and_a_short_one_402() {
        let (mut ledger, hash) = ledger_with_key(Some("0.01"));
        let now = Utc::now();
        // 0.01 - 0.0003 prompt leaves 0.0097, which buys 646 completion tokens.
        let err = ledger.admit(&hash, &quote(1000), now).expect_err("cannot afford");
        assert_eq!(err.status.as_u16(), 402);
        assert!(err.message.contains("You requested up to 1000 tokens, but can only afford 646"));
        assert!(err.message.contains("settings/keys"));
        ledger.admit(&hash, &quote(600), now).expect("affordable");

        ledger.set_key_usage(&hash, usd("0.01"));
        let err = ledger.admit(&hash, &quote(1), now).expect_err("spent");
        assert_eq!(err.status.as_u16(), 403);
        assert_eq!(
            err.message,
            "Key limit exceeded (total limit). Manage it using https://openrouter.ai/settings/keys"
        );
    }

    #[test]
    fn an_empty_account_is_402_even_for_an_unlimited_key() {
        let (mut ledger, hash) = ledger_with_key(None);
        ledger.set_credits(Usd::ZERO);
        let err = ledger.admit(&hash, &quote(1), Utc::now()).expect_err("no credits");
        assert_eq!(err.status.as_u16(), 402);
        assert!(err.message.starts_with("Insufficient credits"));
    }

    #[test]
    fn delayed_charges_settle_late_and_may_overshoot() {
        let (mut ledger, hash) = ledger_with_key(Some("0.01"));
        let now = Utc::now();
        for n in 0..3 {
            ledger.admit(&hash, &quote(100), now).expect("admitted against recorded spend");
            let g =
                Generation { id: format!("gen-{n}"), key_hash: hash.clone(), body: Value::Null };
            ledger.charge(g, usd("0.004"), Duration::from_secs(3600));
        }
        assert_eq!(ledger.key(&hash).map(KeyRecord::usage), Some(Usd::ZERO));
        assert_eq!(ledger.state().pending_usage, usd("0.012"));
        ledger.settle(Instant::now() + Duration::from_secs(3601));
        let key = ledger.key(&hash).expect("key");
        assert_eq!(key.usage(), usd("0.012"));
        assert_eq!(key.limit_remaining(now), Some(usd("-0.002")));
        assert_eq!(ledger.credits().total_usage, usd("0.012"));
    }

    #[test]
    fn windows_start_at_utc_midnight_and_monday() {
        let t = Utc.with_ymd_and_hms(2026, 3, 12, 15, 30, 0).single().expect("valid time");
        assert_eq!(timestamp(LimitReset::Daily.window_start(t)), "2026-03-12T00:00:00Z");
        assert_eq!(timestamp(LimitReset::Weekly.window_start(t)), "2026-03-09T00:00:00Z");
        assert_eq!(timestamp(LimitReset::Monthly.window_start(t)), "2026-03-01T00:00:00Z");
    }

    #[test]
    fn labels_mask_the_key() {
        let key = format!("sk-or-v1-0e6{}1c96", "a".repeat(57));
        assert_eq!(masked(&key), "sk-or-v1-0e6...1c96");
        assert_eq!(hash_key("abc").len(), 64);
    }
}
