//! The results file of a run, `results.json`: every model's outcome, reason, cost, overshoot,
//! counters, elapsed time, exit cause, tokens and cache report, in a versioned JSON shape that
//! tools can rely on. It is written once, when the run ends, from the final state.
//!
//! Tokens and the cache report are always present as objects, and each figure in them is a
//! number when apf knows it and `null` when it does not; `0` means a known zero. In key-only
//! mode apf sees each key's spend and nothing of the requests made with it, so every token
//! figure is `null` and `source` says `null` too. When a source of usage exists (a metering
//! gateway, or generation lookups) it fills them and names itself in `source`.

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::money::Usd;
use crate::state::{Counts, ModelState, ModelStatus, RunDir, RunState, RunStatus};

/// The version of the `results.json` shape. Fields may be added within a version; none is
/// renamed, retyped or removed without a new one.
pub const RESULTS_FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub format_version: u32,
    pub run_id: String,
    pub experiment: String,
    pub status: RunStatus,
    /// Why the run as a whole ended as it did, when there is more to say than its status.
    pub note: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub elapsed_s: Option<i64>,
    pub total_spent: Usd,
    pub total_budget: Usd,
    pub total_overshoot: Usd,
    pub models: Vec<ModelResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelResult {
    pub alias: String,
    pub model: String,
    /// How it ended: `done`, `budget_spent`, `ejected`, `failed`, `interrupted`, `no_credits`,
    /// `skipped`; `pending` or `running` only in the results of a run that never finished.
    pub outcome: ModelStatus,
    /// The reason in words: the eject reason, the exit cause, or what stopped it starting.
    pub reason: Option<String>,
    /// Set when apf stopped it by a rule.
    pub eject: Option<EjectResult>,
    pub budget: Usd,
    pub spent: Usd,
    /// How far spend went past the budget; zero when it did not.
    pub overshoot: Usd,
    /// When spend was last read; `spend_stale` is set when the last readings failed, so `spent`
    /// may be short of what the key really spent.
    pub spent_read_at: Option<DateTime<Utc>>,
    pub spend_stale: bool,
    pub counts: Counts,
    pub tool_calls: u64,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub elapsed_s: Option<i64>,
    pub attempts: u32,
    pub exit_code: Option<i64>,
    pub exit_cause: Option<String>,
    pub oom_killed: Option<bool>,
    pub tokens: Tokens,
    pub cache: CacheReport,
    pub key_revoked: bool,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EjectResult {
    pub rule: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// Token counts of every request the model made; each `null` when not known (see the module
/// notes), `source` naming where known figures came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub prompt: Option<u64>,
    pub completion: Option<u64>,
    pub total: Option<u64>,
    pub source: Option<String>,
}

/// Prompt caching: how many prompt tokens were served from a cache and how many were not;
/// each `null` when not known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheReport {
    pub cached_prompt_tokens: Option<u64>,
    pub uncached_prompt_tokens: Option<u64>,
    pub source: Option<String>,
}

impl Results {
    pub fn from_state(s: &RunState) -> Results {
        Results::from_state_at(s, Utc::now())
    }

    /// The results as of `now`, which only matters for models with no end time yet.
    pub fn from_state_at(s: &RunState, now: DateTime<Utc>) -> Results {
        let models: Vec<ModelResult> = s.models.values().map(|m| model(m, now)).collect();
        Results {
            format_version: RESULTS_FORMAT,
            run_id: s.run_id.clone(),
            experiment: s.experiment.clone(),
            status: s.status,
            note: s.note.clone(),
            started_at: s.started_at,
            finished_at: s.finished_at,
            elapsed_s: Some((s.finished_at.unwrap_or(now) - s.started_at).num_seconds().max(0)),
            total_spent: s.total_spent(),
            total_budget: s.total_budget(),
            total_overshoot: models.iter().map(|m| m.overshoot).sum(),
            models,
        }
    }

    pub fn write(&self, dir: &RunDir) -> Result<()> {
        let json = serde_json::to_vec_pretty(self)?;
        crate::state::write_atomic(&dir.results(), &json)
    }
}

fn model(m: &ModelState, now: DateTime<Utc>) -> ModelResult {
    let eject = m.intent.as_ref().filter(|i| i.rule != "interrupt").map(|i| EjectResult {
        rule: i.rule.clone(),
        reason: i.reason.clone(),
        at: i.at,
    });
    ModelResult {
        alias: m.alias.clone(),
        model: m.model.clone(),
        outcome: m.status,
        reason: m.note.clone().or_else(|| eject.as_ref().map(|e| e.reason.clone())),
        eject,
        budget: m.budget,
        spent: m.spent,
        overshoot: m.overshoot(),
        spent_read_at: m.spent_read_at,
        spend_stale: m.spend_stale,
        counts: m.counts.clone(),
        tool_calls: m.counts.tool_calls,
        started_at: m.started_at,
        ended_at: m.ended_at,
        elapsed_s: m.started_at.map(|st| (m.ended_at.unwrap_or(now) - st).num_seconds().max(0)),
        attempts: m.attempts,
        exit_code: m.exit.as_ref().map(|e| e.code),
        exit_cause: m.exit.as_ref().map(|e| e.cause.clone()),
        oom_killed: m.exit.as_ref().map(|e| e.oom_killed),
        tokens: m.usage.as_ref().map_or_else(Tokens::default, |u| Tokens {
            prompt: Some(u.prompt_tokens),
            completion: Some(u.completion_tokens),
            total: Some(u.prompt_tokens + u.completion_tokens),
            source: Some(u.source.clone()),
        }),
        cache: m.usage.as_ref().map_or_else(CacheReport::default, |u| CacheReport {
            cached_prompt_tokens: Some(u.cached_prompt_tokens),
            uncached_prompt_tokens: Some(u.prompt_tokens.saturating_sub(u.cached_prompt_tokens)),
            source: Some(u.source.clone()),
        }),
        key_revoked: m.key.as_ref().is_none_or(|k| k.revoked),
        warnings: m.warnings.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ExitRecord, Intent};

    #[test]
    fn an_ejected_model_reports_its_rule_reason_and_overshoot_with_unknown_tokens() {
        let t0 = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().to_utc();
        let mut m = ModelState::new("opus", "anthropic/claude-opus-4", "0.03".parse().unwrap());
        m.status = ModelStatus::Ejected;
        m.spent = "0.0312".parse().unwrap();
        m.started_at = Some(t0);
        m.ended_at = Some(t0 + chrono::Duration::seconds(75));
        m.intent = Some(Intent {
            reason: "spent 20% of its budget with no tool call".into(),
            rule: "budget_fraction".into(),
            signal: "kill".into(),
            at: t0 + chrono::Duration::seconds(70),
        });
        m.exit = Some(ExitRecord {
            code: 137,
            oom_killed: false,
            cause: "killed by apf: budget_fraction".into(),
            last_lines: vec![],
        });
        let r = model(&m, t0);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["outcome"], "ejected");
        assert_eq!(json["reason"], "spent 20% of its budget with no tool call");
        assert_eq!(json["eject"]["rule"], "budget_fraction");
        assert_eq!(json["overshoot"], "0.0012");
        assert_eq!(json["elapsed_s"], 75);
        assert_eq!(json["exit_cause"], "killed by apf: budget_fraction");
        for key in ["prompt", "completion", "total", "source"] {
            assert!(json["tokens"][key].is_null(), "tokens.{key} is present and unknown");
        }
        assert!(json["cache"]["cached_prompt_tokens"].is_null());
        assert!(json["cache"]["uncached_prompt_tokens"].is_null());
    }
}
