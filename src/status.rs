//! The field at a glance: one row per model of a run, rendered from its state file. Pure, so
//! the table is tested as a snapshot.

use chrono::{DateTime, Utc};
use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{Cell, ContentArrangement, Table};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::money::Usd;
use crate::state::{ModelState, ModelStatus, RunState};

pub const STATUS_FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub alias: String,
    pub model: String,
    pub status: String,
    pub events: u64,
    pub tool_calls: u64,
    pub snapshots: u64,
    pub cost: Usd,
    pub budget: Usd,
    pub budget_used_pct: Option<Decimal>,
    pub elapsed_s: Option<i64>,
    pub running: bool,
    pub spend_age_s: Option<i64>,
    pub note: String,
}

pub fn rows(state: &RunState, now: DateTime<Utc>) -> Vec<Row> {
    state.models.values().map(|m| row(m, now)).collect()
}

fn row(m: &ModelState, now: DateTime<Utc>) -> Row {
    let running = m.status == ModelStatus::Running;
    let elapsed_s = m.started_at.map(|s| (m.ended_at.unwrap_or(now) - s).num_seconds().max(0));
    let mut note = m.note.clone().unwrap_or_default();
    if m.spend_stale {
        note = format!(
            "spend stale since {}",
            m.spent_read_at.map_or("start".into(), |t| t.format("%H:%M:%S").to_string())
        );
    }
    if m.overshoot() > Usd::ZERO {
        note =
            format!("{note}{}over by {}", if note.is_empty() { "" } else { "; " }, m.overshoot());
    }
    Row {
        alias: m.alias.clone(),
        model: m.model.clone(),
        status: m.status.as_str().to_string(),
        events: m.counts.events,
        tool_calls: m.counts.tool_calls,
        snapshots: m.counts.snapshots,
        cost: m.spent,
        budget: m.budget,
        budget_used_pct: m.spent.fraction_of(m.budget).map(|f| (f * Decimal::from(100)).round()),
        elapsed_s,
        running,
        spend_age_s: m.spent_read_at.map(|t| (now - t).num_seconds().max(0)),
        note,
    }
}

fn elapsed(secs: Option<i64>, running: bool) -> String {
    let Some(s) = secs else { return "-".into() };
    let text = if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s / 60 % 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    };
    if running { format!("{text}…") } else { text }
}

/// The table as text, fitted to `width` columns when given (a terminal), else unwrapped.
pub fn render(state: &RunState, now: DateTime<Utc>, width: Option<u16>) -> String {
    let rows = rows(state, now);
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    match width {
        Some(w) => {
            t.set_content_arrangement(ContentArrangement::Dynamic).set_width(w);
        }
        None => {
            t.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    t.set_header([
        "alias", "model", "status", "events", "tools", "snaps", "cost", "budget", "elapsed", "note",
    ]);
    for r in &rows {
        let pct = r.budget_used_pct.map_or("-".to_string(), |p| format!("{p}%"));
        t.add_row(vec![
            Cell::new(&r.alias),
            Cell::new(&r.model),
            Cell::new(&r.status),
            Cell::new(r.events),
            Cell::new(r.tool_calls),
            Cell::new(r.snapshots),
            Cell::new(r.cost),
            Cell::new(format!("{pct} of {}", r.budget)),
            Cell::new(elapsed(r.elapsed_s, r.running)),
            Cell::new(crate::printer::sanitize(&r.note)),
        ]);
    }
    let spent = state.total_spent();
    let budget = state.total_budget();
    t.add_row(vec![
        Cell::new("total"),
        Cell::new(format!("{} models", rows.len())),
        Cell::new(format!("{:?}", state.status).to_lowercase()),
        Cell::new(rows.iter().map(|r| r.events).sum::<u64>()),
        Cell::new(rows.iter().map(|r| r.tool_calls).sum::<u64>()),
        Cell::new(rows.iter().map(|r| r.snapshots).sum::<u64>()),
        Cell::new(spent),
        Cell::new(format!("of {budget}")),
        Cell::new(""),
        Cell::new(""),
    ]);
    format!("run {} of {}\n{t}", state.run_id, state.experiment)
}

/// The versioned JSON of `apf status --json`.
pub fn to_json(state: &RunState, now: DateTime<Utc>) -> serde_json::Value {
    serde_json::json!({
        "format_version": STATUS_FORMAT,
        "run_id": state.run_id,
        "experiment": state.experiment,
        "status": state.status,
        "total_spent": state.total_spent(),
        "total_budget": state.total_budget(),
        "models": rows(state, now),
    })
}
