//! The run's clock: reading spend, applying eject rules, and rewriting budget files.
//!
//! Spend comes from one listing of the account's keys per poll (every page, disabled keys
//! included), never one request per model, so fifty models cost what one does. A failed poll
//! marks readings stale and ejects nobody.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::budget_file::{self, Action};
use super::eject::{self, View};
use super::{Run, Stop, record_intent, save};
use crate::money::Usd;
use crate::printer;

pub(crate) async fn poll_loop(run: Arc<Run>) {
    let mut tick = tokio::time::interval(run.exp.budget.poll_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if read_spend(&run).await {
            apply_rules(&run).await;
        }
    }
}

/// Read every key's usage once; returns whether the reading succeeded.
pub(crate) async fn read_spend(run: &Run) -> bool {
    let listing = run.client.list_keys(&run.mgmt, true).await;
    let usage: BTreeMap<String, Usd> = match listing {
        Ok(keys) => keys.into_iter().map(|k| (k.hash, k.usage)).collect(),
        Err(e) => {
            tracing::warn!("spend poll failed: {e}");
            let mut state = run.state.lock().await;
            for m in state.models.values_mut().filter(|m| m.key.is_some()) {
                m.spend_stale = true;
            }
            save(run, &state);
            return false;
        }
    };
    let now = Utc::now();
    let mut changed = Vec::new();
    let mut state = run.state.lock().await;
    for m in state.models.values_mut() {
        let Some(key) = &m.key else { continue };
        let Some(&used) = usage.get(&key.hash) else { continue };
        let total = m.spent_earlier + used;
        // Spend only grows; a lagging replica must not make it look smaller.
        if total > m.spent || m.spent_read_at.is_none() {
            m.spent = m.spent.max(total);
            changed.push((m.alias.clone(), m.spent));
        }
        m.spent_read_at = Some(now);
        m.spend_stale = false;
    }
    save(run, &state);
    drop(state);
    for (alias, spent) in &changed {
        append_spend(run, alias, now, *spent);
    }
    let mut live = run.live.lock().await;
    for (alias, _) in changed {
        if let Some(l) = live.get_mut(&alias) {
            l.last_activity = Instant::now();
        }
    }
    true
}

/// One line of `spend.jsonl`, the model's spend over time, for reports.
fn append_spend(run: &Run, alias: &str, at: chrono::DateTime<Utc>, spent: Usd) {
    use std::io::Write;
    let line = serde_json::json!({ "at": at, "spent": spent }).to_string();
    let path = run.dir.spend(alias);
    // The first reading can come before the model's folder is made.
    let _ = std::fs::create_dir_all(run.dir.model(alias));
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{line}"));
    if let Err(e) = written {
        tracing::warn!("{alias}: could not append to {}: {e}", path.display());
    }
}

async fn apply_rules(run: &Arc<Run>) {
    let views: Vec<(String, View, Vec<usize>)> = {
        let state = run.state.lock().await;
        let live = run.live.lock().await;
        state
            .models
            .values()
            .filter_map(|m| {
                let l = live.get(&m.alias)?;
                if !l.running || l.ejecting {
                    return None;
                }
                let view = View {
                    budget: m.budget,
                    spent: m.spent,
                    counts: m.counts.clone(),
                    elapsed: l.started.map_or(Duration::ZERO, |s| s.elapsed()),
                    idle: l.last_activity.elapsed(),
                    spent_at_progress: l.spent_at_progress,
                    kill_at: run.exp.budget.kill_at,
                };
                Some((m.alias.clone(), view, l.warned.clone()))
            })
            .collect()
    };
    for (alias, view, warned) in views {
        let verdicts = eject::evaluate_all(&run.exp.eject, &run.exp.eject_all, &view);
        for v in verdicts.iter().filter(|v| v.warn_only && !warned.contains(&v.rule)) {
            printer::warn(format!("{alias}: {}", v.reason));
            let mut state = run.state.lock().await;
            if let Some(m) = state.models.get_mut(&alias) {
                m.warnings.push(v.reason.clone());
            }
            save(run, &state);
            if let Some(l) = run.live.lock().await.get_mut(&alias) {
                l.warned.push(v.rule);
            }
        }
        if let Some(v) = verdicts.into_iter().find(|v| !v.warn_only) {
            eject_model(run, &alias, v).await;
        }
    }
}

async fn eject_model(run: &Arc<Run>, alias: &str, v: eject::Verdict) {
    // Locks are always taken state first, then live.
    let container = {
        let state = run.state.lock().await;
        state.models.get(alias).and_then(|m| m.container.as_ref()).map(|c| c.id.clone())
    };
    if let Some(l) = run.live.lock().await.get_mut(alias) {
        l.ejecting = true;
    }
    let Some(id) = container else { return };
    let rule = run.exp.eject.get(v.rule).map_or("all", |r| rule_name(&r.kind));
    let signal = if v.immediate { "kill" } else { "stop" };
    printer::info(format!("{alias}: ejecting ({})", v.reason));
    record_intent(run, alias, &v.reason, rule, signal).await;
    let run = run.clone();
    let alias = alias.to_string();
    // The kill runs on its own so a slow docker never delays the next poll.
    tokio::spawn(async move {
        let result = if v.immediate {
            run.docker.kill(&id).await
        } else {
            run.docker.stop(&id, run.exp.container.stop_grace).await
        };
        if let Err(e) = result {
            printer::error(format!("{alias}: could not stop its container: {e}"));
        }
        if v.immediate {
            super::disable_key(&run, &alias).await;
        }
    });
}

fn rule_name(kind: &crate::manifest::resolve::EjectKind) -> &'static str {
    use crate::manifest::resolve::EjectKind::*;
    match kind {
        BudgetExceeded => "budget_exceeded",
        Idle { .. } => "idle",
        BudgetFraction { .. } => "budget_fraction",
        NoProgress { .. } => "no_progress",
        WallClock { .. } => "wall_clock",
        Expr { .. } => "expr",
    }
}

pub(crate) async fn budget_loop(run: Arc<Run>) {
    let mut tick = tokio::time::interval(run.exp.budget.inject_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let running: Vec<String> = {
            let live = run.live.lock().await;
            live.iter().filter(|(_, l)| l.running).map(|(a, _)| a.clone()).collect()
        };
        for alias in running {
            write_budget(&run, &alias).await;
        }
    }
}

/// Rewrite one model's budget.txt, atomically, on the host side of its output mount.
pub(crate) async fn write_budget(run: &Run, alias: &str) {
    let (budget, spent, tool_calls) = {
        let state = run.state.lock().await;
        let Some(m) = state.models.get(alias) else { return };
        (m.budget, m.spent, m.counts.tool_calls)
    };
    let actions: Vec<Action> = {
        let live = run.live.lock().await;
        let Some(l) = live.get(alias) else { return };
        let marks = &l.actions;
        let start = marks.len().saturating_sub(budget_file::RECENT);
        (start..marks.len())
            .map(|i| {
                let next = marks.get(i + 1).map_or(spent, |n| n.1);
                Action { name: marks[i].0.clone(), cost: (next - marks[i].1).max(Usd::ZERO) }
            })
            .collect()
    };
    let text = budget_file::render(run.exp.budget.mode, budget, spent, &actions, tool_calls);
    let path = run.dir.output(alias).join("budget.txt");
    if let Err(e) = crate::state::write_atomic(&path, text.as_bytes()) {
        tracing::warn!("{alias}: {e:#}");
    }
}

/// How long spend must stay unchanged before it counts as settled.
const QUIET: Duration = Duration::from_secs(3);

/// Read spend until it has not changed for [`QUIET`], so late settlements are counted
/// (HAZARDS H3). Bounded by the run's settle time; a second Ctrl-C cuts it short. Returns
/// whether spend did settle.
pub(crate) async fn settle(run: &Run) -> bool {
    let deadline = Instant::now()
        .checked_add(run.settle)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(24 * 3600));
    let every = run.exp.budget.poll_every.clamp(Duration::from_millis(200), Duration::from_secs(1));
    let mut previous: Option<Vec<Usd>> = None;
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline && *run.stop.borrow() != Stop::Hurry {
        if read_spend(run).await {
            let now: Vec<Usd> = run.state.lock().await.models.values().map(|m| m.spent).collect();
            if previous.as_ref() != Some(&now) {
                quiet_since = Instant::now();
                previous = Some(now);
            } else if quiet_since.elapsed() >= QUIET {
                return true;
            }
        }
        tokio::time::sleep(every).await;
    }
    false
}
