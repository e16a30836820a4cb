//! `apf report`: a run as one self-contained HTML page, for comparing a field at a glance. The
//! page holds the results table and, for each model, its spend over time against its budget
//! and its events over time, with eject points marked, plus one chart of the whole field's
//! spend as a share of each budget.
//!
//! Everything is inline (CSS, the chart script, the data as JSON) and a Content-Security-Policy
//! that names the hashes of exactly that style and script forbids the page anything else, so
//! it fetches nothing and runs nothing it was not built with. Every text in it came from the
//! run's files, which containers wrote, so it is escaped for where it goes: HTML text,
//! attributes, or the JSON the script reads (and the script only ever sets `textContent`).
//!
//! This module gathers what a page needs from a run folder into an [`Input`]; `page` renders
//! it; `series` turns the histories into the chart points.

mod page;
mod series;

use std::io::{BufRead, BufReader};
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::apply::events::{self, Line};
use crate::apply::results::Results;
use crate::manifest::resolve::EventMapping;
use crate::state::{RunDir, RunState};
use crate::status::{SpendSample, read_spend};

pub use page::render;
pub use series::{Chart, ModelChart, chart_data};

/// Everything a report page shows, read from a run folder.
#[derive(Debug, Clone)]
pub struct Input {
    pub state: RunState,
    pub results: Results,
    pub histories: Vec<History>,
    pub generated_at: DateTime<Utc>,
    /// What a reader should know about how the figures were got.
    pub caveats: Vec<String>,
}

/// What one model left behind over time.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub alias: String,
    /// From `spend.jsonl`, oldest first; empty when the file is missing or empty.
    pub spend: Vec<SpendSample>,
    pub events: Vec<EventPoint>,
    /// Lines of `events.jsonl` that were not a timed event.
    pub unreadable: u64,
}

/// One event, as the charts need it: when, and what it counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPoint {
    pub at: DateTime<Utc>,
    pub tool_call: bool,
    pub snapshot: bool,
    pub error: bool,
}

/// The report page of a run, as of `now`.
pub fn build(dir: &RunDir, state: &RunState, now: DateTime<Utc>) -> String {
    render(&collect(dir, state, now))
}

/// Read a run's histories. Nothing here fails: a missing or unreadable file is an empty
/// history and a caveat on the page.
pub fn collect(dir: &RunDir, state: &RunState, now: DateTime<Utc>) -> Input {
    let mut caveats = Vec::new();
    let mapping = match crate::manifest::load(&state.manifest_path) {
        Ok(exp) => {
            if exp.manifest_hash != state.manifest_hash {
                caveats.push(format!(
                    "The manifest {} changed after this run; its events are classed by the \
                     manifest as it is now.",
                    state.manifest_path.display()
                ));
            }
            exp.events
        }
        Err(e) => {
            caveats.push(format!(
                "Events are classed by apf's default mapping: the manifest {} could not be read \
                 ({e}).",
                state.manifest_path.display()
            ));
            EventMapping::default()
        }
    };
    let histories: Vec<History> = state
        .models
        .keys()
        .map(|alias| History {
            alias: alias.clone(),
            spend: read_spend(&dir.spend(alias), None),
            ..read_events(&dir.events(alias), &mapping, alias)
        })
        .collect();

    let bare: Vec<&str> =
        histories.iter().filter(|h| h.spend.is_empty()).map(|h| h.alias.as_str()).collect();
    if !bare.is_empty() {
        caveats.push(format!(
            "No spend history (spend.jsonl) for {}: spend is drawn as a dashed line from the \
             start to the last reading.",
            bare.join(", ")
        ));
    }
    let unreadable: u64 = histories.iter().map(|h| h.unreadable).sum();
    if unreadable > 0 {
        caveats.push(format!(
            "{unreadable} lines of events.jsonl were not timed events and are left out."
        ));
    }
    caveats.push(
        "Token counts and the cache report are unknown in key-only mode: apf sees each key's \
         spend, not its requests."
            .into(),
    );
    Input {
        state: state.clone(),
        results: Results::from_state_at(state, now),
        histories,
        generated_at: now,
        caveats,
    }
}

/// The timed events of an `events.jsonl`, classed by `mapping` as apply classed them.
fn read_events(path: &Path, mapping: &EventMapping, alias: &str) -> History {
    #[derive(serde::Deserialize)]
    struct Record {
        at: DateTime<Utc>,
        event: serde_json::Value,
    }
    let mut h = History { alias: alias.into(), ..History::default() };
    let Ok(file) = std::fs::File::open(path) else { return h };
    for line in BufReader::new(file).lines() {
        let Ok(line) = line else {
            h.unreadable += 1;
            continue;
        };
        if line.trim().is_empty() {
            continue;
        }
        let Ok(r) = serde_json::from_str::<Record>(&line) else {
            h.unreadable += 1;
            continue;
        };
        match events::parse(&r.event.to_string(), mapping) {
            Line::Event(e) => h.events.push(EventPoint {
                at: r.at,
                tool_call: e.class.tool_call,
                snapshot: e.class.snapshot,
                error: e.class.error,
            }),
            Line::Log(_) => h.unreadable += 1,
        }
    }
    h.events.sort_by_key(|e| e.at);
    h
}
