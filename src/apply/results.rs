//! The results file of a run: every model's outcome, reason, cost, overshoot, counters,
//! elapsed time and exit cause, in a versioned JSON shape.

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::money::Usd;
use crate::state::{Counts, RunDir, RunState, RunStatus};

pub const RESULTS_FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub format_version: u32,
    pub run_id: String,
    pub experiment: String,
    pub status: RunStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub total_spent: Usd,
    pub total_budget: Usd,
    pub models: Vec<ModelResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelResult {
    pub alias: String,
    pub model: String,
    pub outcome: String,
    pub reason: Option<String>,
    pub budget: Usd,
    pub spent: Usd,
    pub overshoot: Usd,
    pub counts: Counts,
    pub elapsed_s: Option<i64>,
    pub exit_code: Option<i64>,
    pub exit_cause: Option<String>,
    pub key_revoked: bool,
    pub warnings: Vec<String>,
}

impl Results {
    pub fn from_state(s: &RunState) -> Results {
        let models = s
            .models
            .values()
            .map(|m| ModelResult {
                alias: m.alias.clone(),
                model: m.model.clone(),
                outcome: m.status.as_str().to_string(),
                reason: m.note.clone(),
                budget: m.budget,
                spent: m.spent,
                overshoot: m.overshoot(),
                counts: m.counts.clone(),
                elapsed_s: m
                    .started_at
                    .map(|st| (m.ended_at.unwrap_or_else(Utc::now) - st).num_seconds()),
                exit_code: m.exit.as_ref().map(|e| e.code),
                exit_cause: m.exit.as_ref().map(|e| e.cause.clone()),
                key_revoked: m.key.as_ref().is_none_or(|k| k.revoked),
                warnings: m.warnings.clone(),
            })
            .collect();
        Results {
            format_version: RESULTS_FORMAT,
            run_id: s.run_id.clone(),
            experiment: s.experiment.clone(),
            status: s.status,
            started_at: s.started_at,
            finished_at: s.finished_at,
            total_spent: s.total_spent(),
            total_budget: s.total_budget(),
            models,
        }
    }

    pub fn write(&self, dir: &RunDir) -> Result<()> {
        let json = serde_json::to_vec_pretty(self)?;
        crate::state::write_atomic(&dir.results(), &json)
    }
}
