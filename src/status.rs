//! The field at a glance. A run's state (and, for burn rates, the tail of each model's
//! `spend.jsonl`) becomes a [`View`]: one [`Row`] per model and a [`Totals`] row, with every
//! figure `apf status` shows already worked out. The view renders as a table fitted to the
//! terminal, or serialises as the versioned JSON of `apf status --json`. Building and rendering
//! are pure functions of their inputs, so tables are tested as snapshots; the file reading lives
//! beside them, with the single retry that makes reading during an apply safe.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Utc};
use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{Cell, CellAlignment, Color, ContentArrangement, Table};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use crate::money::Usd;
use crate::state::{ModelState, ModelStatus, RunDir, RunState, RunStatus};

/// The version of the `apf status --json` shape. Fields may be added within a version; none is
/// renamed, retyped or removed without a new one.
pub const STATUS_FORMAT: u32 = 1;

/// How far back the burn rate of a running model looks, when its spend history is there.
const BURN_WINDOW_S: i64 = 300;

/// A window shorter than this says more about polling than about spending.
const MIN_RATE_SPAN_S: i64 = 10;

/// How much of each `spend.jsonl` a status read takes: enough lines for the burn window at any
/// sane poll interval, without reading an hours-long history on every refresh.
const SPEND_TAIL_BYTES: u64 = 64 * 1024;

/// The pause before the one retry of a state read that failed.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// One line of a model's `spend.jsonl`: its spend as read at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendSample {
    pub at: DateTime<Utc>,
    pub spent: Usd,
}

/// Spend samples by alias, oldest first.
pub type SpendHistory = BTreeMap<String, Vec<SpendSample>>;

/// Read a run's state. The supervisor replaces `state.json` by rename, so a read sees a whole
/// file; a read can still fail in the instant of a replace on some filesystems, or while the
/// run folder is being created, so one failure is retried once after a short pause.
pub fn load_state(path: &Path) -> Result<RunState> {
    match RunState::load(path) {
        Ok(state) => Ok(state),
        Err(_) => {
            std::thread::sleep(RETRY_PAUSE);
            RunState::load(path)
        }
    }
}

/// The samples of a `spend.jsonl`, oldest first; with `tail`, only those in its last `tail`
/// bytes. A missing file is an empty history; a line that is not a whole sample (the one being
/// appended, or a cut first line of a tail) is skipped.
pub fn read_spend(path: &Path, tail: Option<u64>) -> Vec<SpendSample> {
    let text = read_tail(path, tail);
    let mut samples: Vec<SpendSample> =
        text.split('\n').filter_map(|l| serde_json::from_str(l.trim()).ok()).collect();
    samples.sort_by_key(|s| s.at);
    samples
}

/// The last samples of a `spend.jsonl`, back to the first one at or before `since` (which the
/// burn rate measures from), read from the end so a long history costs no more than a short
/// one.
pub fn read_recent_spend(path: &Path, since: DateTime<Utc>) -> Vec<SpendSample> {
    let text = read_tail(path, Some(SPEND_TAIL_BYTES));
    let mut samples = Vec::new();
    for line in text.rsplit('\n') {
        let Ok(sample) = serde_json::from_str::<SpendSample>(line.trim()) else { continue };
        samples.push(sample);
        if sample.at <= since {
            break;
        }
    }
    samples.reverse();
    samples.sort_by_key(|s| s.at);
    samples
}

/// The text of a file, or of its last `tail` bytes from the first whole line in them.
fn read_tail(path: &Path, tail: Option<u64>) -> String {
    let Ok(mut file) = File::open(path) else { return String::new() };
    let len = file.metadata().map_or(0, |m| m.len());
    let start = tail.map_or(0, |t| len.saturating_sub(t));
    if start > 0 && file.seek(SeekFrom::Start(start)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    if file.take(len - start).read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let from = if start > 0 {
        bytes.iter().position(|b| *b == b'\n').map_or(bytes.len(), |p| p + 1)
    } else {
        0
    };
    String::from_utf8_lossy(&bytes[from..]).into_owned()
}

/// The recent spend history of every model of a run, enough for burn rates as of `now`.
pub fn recent_spend(dir: &RunDir, state: &RunState, now: DateTime<Utc>) -> SpendHistory {
    let since = now - chrono::Duration::seconds(BURN_WINDOW_S);
    state
        .models
        .keys()
        .map(|alias| (alias.clone(), read_recent_spend(&dir.spend(alias), since)))
        .collect()
}

/// Everything `apf status` shows about a run, as of `generated_at`.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    pub format_version: u32,
    pub generated_at: DateTime<Utc>,
    pub run: RunInfo,
    pub models: Vec<Row>,
    pub totals: Totals,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub id: String,
    pub experiment: String,
    pub status: RunStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub elapsed_s: i64,
    /// The state says running, but no apf process holds the run's lock: the apply that wrote
    /// it is gone, and the figures stopped moving when it went.
    pub abandoned: bool,
    pub note: Option<String>,
}

/// One model's line of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub alias: String,
    pub model: String,
    pub status: ModelStatus,
    pub events: u64,
    pub tool_calls: u64,
    pub snapshots: u64,
    pub progress: u64,
    pub errors: u64,
    pub spent: Usd,
    pub budget: Usd,
    pub remaining: Usd,
    pub overshoot: Usd,
    /// Spend as a percentage of the budget, to one decimal; `null` for a zero budget.
    pub budget_used_pct: Option<Decimal>,
    pub burn_rate: Option<BurnRate>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub elapsed_s: Option<i64>,
    /// Still going: its elapsed time and spend will grow.
    pub running: bool,
    pub spend_read_at: Option<DateTime<Utc>>,
    pub spend_age_s: Option<i64>,
    /// Spend readings are failing; `spent` is the last good one, from `spend_read_at`.
    pub spend_stale: bool,
    pub attempts: u32,
    pub eject: Option<Eject>,
    pub exit: Option<Exit>,
    pub warnings: Vec<String>,
    /// One line for people: why it ended, what remains, what went wrong.
    pub note: String,
}

/// Dollars a minute, and what they were measured over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BurnRate {
    pub usd_per_min: Usd,
    pub basis: BurnBasis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BurnBasis {
    /// The spend of the last five minutes, from `spend.jsonl`.
    Recent,
    /// Everything spent over everything elapsed.
    Run,
}

/// Why apf stopped a model, as recorded before it sent the signal.
#[derive(Debug, Clone, Serialize)]
pub struct Eject {
    pub rule: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Exit {
    pub code: i64,
    pub cause: String,
    pub oom_killed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub models: usize,
    /// How many models are in each status, by the status's JSON name.
    pub by_status: BTreeMap<String, usize>,
    pub events: u64,
    pub tool_calls: u64,
    pub snapshots: u64,
    pub errors: u64,
    pub spent: Usd,
    pub budget: Usd,
    pub overshoot: Usd,
    pub budget_used_pct: Option<Decimal>,
    /// The sum of the running models' burn rates; `null` when none is running.
    pub burn_rate_usd_per_min: Option<Usd>,
}

impl View {
    pub fn new(state: &RunState, history: &SpendHistory, now: DateTime<Utc>) -> View {
        let running = state.status == RunStatus::Running;
        let models: Vec<Row> = state
            .models
            .values()
            .map(|m| row(m, history.get(&m.alias).map_or(&[][..], Vec::as_slice), now, running))
            .collect();
        let totals = totals(&models);
        let end = state.finished_at.filter(|_| !running).unwrap_or(now);
        View {
            format_version: STATUS_FORMAT,
            generated_at: now,
            run: RunInfo {
                id: state.run_id.clone(),
                experiment: state.experiment.clone(),
                status: state.status,
                started_at: state.started_at,
                finished_at: state.finished_at,
                elapsed_s: (end - state.started_at).num_seconds().max(0),
                abandoned: false,
                note: state.note.as_deref().map(crate::secret::redact),
            },
            models,
            totals,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

fn row(m: &ModelState, samples: &[SpendSample], now: DateTime<Utc>, run_running: bool) -> Row {
    let running = m.status == ModelStatus::Running;
    let end = m.ended_at.unwrap_or(now);
    let elapsed_s = m.started_at.map(|s| (end - s).num_seconds().max(0));
    let burn_rate = if running {
        recent_rate(samples, m.spent, now).or_else(|| run_rate(m.spent, m.started_at, end))
    } else {
        run_rate(m.spent, m.started_at, end)
    };
    let mut r = Row {
        alias: m.alias.clone(),
        model: m.model.clone(),
        status: m.status,
        events: m.counts.events,
        tool_calls: m.counts.tool_calls,
        snapshots: m.counts.snapshots,
        progress: m.counts.progress,
        errors: m.counts.errors,
        spent: m.spent,
        budget: m.budget,
        remaining: (m.budget - m.spent).max(Usd::ZERO),
        overshoot: m.overshoot(),
        budget_used_pct: m
            .spent
            .fraction_of(m.budget)
            .map(|f| (f * Decimal::ONE_HUNDRED).round_dp(1)),
        burn_rate,
        started_at: m.started_at,
        ended_at: m.ended_at,
        elapsed_s,
        running: running && run_running,
        spend_read_at: m.spent_read_at,
        spend_age_s: m.spent_read_at.map(|t| (now - t).num_seconds().max(0)),
        spend_stale: m.spend_stale,
        attempts: m.attempts,
        eject: m.intent.as_ref().filter(|i| i.rule != "interrupt").map(|i| Eject {
            rule: i.rule.clone(),
            reason: crate::secret::redact(&i.reason),
            at: i.at,
        }),
        exit: m.exit.as_ref().map(|e| Exit {
            code: e.code,
            cause: crate::secret::redact(&e.cause),
            oom_killed: e.oom_killed,
        }),
        warnings: m.warnings.iter().map(|w| crate::secret::redact(w)).collect(),
        note: String::new(),
    };
    r.note = note(m, &r);
    r
}

/// The spend of the last [`BURN_WINDOW_S`], from the history: the spend now less the spend at
/// the window's start (the last sample at or before it). `None` when the history does not reach
/// back that far, so the caller falls back to the whole run.
fn recent_rate(samples: &[SpendSample], spent_now: Usd, now: DateTime<Utc>) -> Option<BurnRate> {
    let start = now - chrono::Duration::seconds(BURN_WINDOW_S);
    let before = samples.iter().rev().find(|s| s.at <= start)?;
    let span = (now - before.at).num_milliseconds().min(BURN_WINDOW_S * 1000);
    per_minute((spent_now - before.spent).max(Usd::ZERO), span)
        .map(|usd_per_min| BurnRate { usd_per_min, basis: BurnBasis::Recent })
}

fn run_rate(spent: Usd, started: Option<DateTime<Utc>>, end: DateTime<Utc>) -> Option<BurnRate> {
    let span = (end - started?).num_milliseconds();
    per_minute(spent, span).map(|usd_per_min| BurnRate { usd_per_min, basis: BurnBasis::Run })
}

fn per_minute(spent: Usd, span_ms: i64) -> Option<Usd> {
    if span_ms < MIN_RATE_SPAN_S * 1000 {
        return None;
    }
    let per_min =
        spent.0.checked_mul(Decimal::from(60_000))?.checked_div(Decimal::from(span_ms))?;
    Some(Usd(per_min.round_dp(8)))
}

/// What a person most needs to know about a model that the other columns do not say.
fn note(m: &ModelState, r: &Row) -> String {
    let mut parts: Vec<String> = Vec::new();
    if m.spend_stale {
        let since =
            m.spent_read_at.map_or("the start".into(), |t| t.format("%H:%M:%S").to_string());
        parts.push(format!("spend stale since {since}"));
    }
    let said = m.note.clone().or_else(|| m.intent.as_ref().map(|i| i.reason.clone()));
    match m.status {
        ModelStatus::Pending => parts.push("waiting for a slot".into()),
        ModelStatus::Running => {
            let mut left = format!("{} left", r.remaining);
            if let Some(eta) = r.burn_rate.and_then(|b| minutes_to_cap(r.remaining, b.usd_per_min))
            {
                left.push_str(&format!(" (~{eta} at this rate)"));
            }
            parts.push(left);
        }
        _ => parts.extend(said),
    }
    if m.counts.errors > 0 {
        let s = if m.counts.errors == 1 { "" } else { "s" };
        parts.push(format!("{} error{s}", m.counts.errors));
    }
    if r.overshoot > Usd::ZERO {
        parts.push(format!("over by {}", r.overshoot));
    }
    if m.attempts > 1 {
        parts.push(format!("attempt {}", m.attempts));
    }
    if let Some(w) = m.warnings.last() {
        parts.push(format!("warning: {w}"));
    }
    crate::secret::redact(&parts.join("; "))
}

fn minutes_to_cap(remaining: Usd, per_min: Usd) -> Option<String> {
    if per_min.0.is_zero() {
        return None;
    }
    let minutes = remaining.0.checked_div(per_min.0)?;
    let secs = rust_decimal::prelude::ToPrimitive::to_i64(&(minutes * Decimal::from(60)).round())?;
    Some(duration_text(secs))
}

fn totals(rows: &[Row]) -> Totals {
    let mut by_status = BTreeMap::new();
    for r in rows {
        *by_status.entry(status_key(r.status)).or_insert(0) += 1;
    }
    let spent: Usd = rows.iter().map(|r| r.spent).sum();
    let budget: Usd = rows.iter().map(|r| r.budget).sum();
    let burning: Vec<Usd> = rows
        .iter()
        .filter(|r| r.running)
        .filter_map(|r| r.burn_rate.map(|b| b.usd_per_min))
        .collect();
    Totals {
        models: rows.len(),
        by_status,
        events: rows.iter().map(|r| r.events).sum(),
        tool_calls: rows.iter().map(|r| r.tool_calls).sum(),
        snapshots: rows.iter().map(|r| r.snapshots).sum(),
        errors: rows.iter().map(|r| r.errors).sum(),
        spent,
        budget,
        overshoot: rows.iter().map(|r| r.overshoot).sum(),
        budget_used_pct: spent.fraction_of(budget).map(|f| (f * Decimal::ONE_HUNDRED).round_dp(1)),
        burn_rate_usd_per_min: (!burning.is_empty()).then(|| burning.into_iter().sum()),
    }
}

/// A status's JSON name (`budget_spent`), the form machines read.
pub fn status_key(s: ModelStatus) -> String {
    serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// `45s`, `4m05s`, `1h02m`, `2d03h`.
pub fn duration_text(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s / 60 % 60),
        _ => format!("{}d{:02}h", s / 86400, s / 3600 % 24),
    }
}

/// How a table is drawn: fitted to `width` columns when given (a terminal; `None` leaves
/// lines whole, for pipes), coloured when `color` (decided once, by `printer`).
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub width: Option<u16>,
    pub color: bool,
}

/// The status table of a state with no spend history, as apply prints it at the end.
pub fn render(state: &RunState, now: DateTime<Utc>, width: Option<u16>) -> String {
    let view = View::new(state, &SpendHistory::new(), now);
    render_view(&view, Style { width, color: crate::printer::get().color })
}

/// The JSON of a state with no spend history.
pub fn to_json(state: &RunState, now: DateTime<Utc>) -> serde_json::Value {
    View::new(state, &SpendHistory::new(), now).to_json()
}

/// The header line, the table, and the run's note.
pub fn render_view(v: &View, style: Style) -> String {
    let table = fit(&status_layout(), &grid(v), style);
    let mut out = format!("{}\n{table}", header_line(v, style.color));
    if let Some(note) = &v.run.note {
        out.push_str(&format!("\nnote: {}", crate::printer::sanitize(note)));
    }
    out
}

fn header_line(v: &View, color: bool) -> String {
    let status = run_status_text(v);
    let status = if color { ansi(&status, run_color(v)) } else { status };
    format!(
        "run {} of {} · {status} · started {} UTC",
        crate::printer::sanitize(&v.run.id),
        crate::printer::sanitize(&v.run.experiment),
        v.run.started_at.format("%Y-%m-%d %H:%M:%S"),
    )
}

fn run_status_text(v: &View) -> String {
    match (v.run.status, v.run.abandoned) {
        (RunStatus::Running, true) => "abandoned: marked running, but no apf holds its lock".into(),
        (s, _) => run_status_key(s),
    }
}

fn run_status_key(s: RunStatus) -> String {
    serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn run_color(v: &View) -> Color {
    match (v.run.status, v.run.abandoned) {
        (RunStatus::Running, true) => Color::Yellow,
        (RunStatus::Running, false) => Color::Cyan,
        (RunStatus::Finished, _) => Color::Green,
        (RunStatus::Interrupted, _) => Color::Yellow,
        (RunStatus::Failed, _) => Color::Red,
    }
}

/// Colour for the header line, which is not a table cell; `color` is `printer`'s decision.
fn ansi(text: &str, c: Color) -> String {
    let code = match c {
        Color::Green => "32",
        Color::Yellow => "33",
        Color::Red => "31",
        Color::Cyan => "36",
        _ => "0",
    };
    let p = crate::printer::Printer { level: crate::printer::get().level, color: true };
    crate::printer::paint(p, text, code)
}

pub fn status_color(s: ModelStatus) -> Color {
    match s {
        ModelStatus::Running => Color::Cyan,
        ModelStatus::Done => Color::Green,
        ModelStatus::BudgetSpent | ModelStatus::Interrupted => Color::Yellow,
        ModelStatus::Ejected => Color::Magenta,
        ModelStatus::Failed | ModelStatus::NoCredits => Color::Red,
        ModelStatus::Pending | ModelStatus::Skipped => Color::DarkGrey,
    }
}

/// The status table's columns, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Alias,
    Model,
    Status,
    Events,
    Tools,
    Snaps,
    Cost,
    Budget,
    Burn,
    Elapsed,
    Read,
    Note,
}

const COLUMNS: [Col; 12] = [
    Col::Alias,
    Col::Model,
    Col::Status,
    Col::Events,
    Col::Tools,
    Col::Snaps,
    Col::Cost,
    Col::Budget,
    Col::Burn,
    Col::Elapsed,
    Col::Read,
    Col::Note,
];

impl Col {
    fn header(self) -> &'static str {
        match self {
            Col::Alias => "alias",
            Col::Model => "model",
            Col::Status => "status",
            Col::Events => "events",
            Col::Tools => "tools",
            Col::Snaps => "snaps",
            Col::Cost => "cost",
            Col::Budget => "budget used",
            Col::Burn => "burn",
            Col::Elapsed => "elapsed",
            Col::Read => "read",
            Col::Note => "note",
        }
    }
}

/// How to make the status table narrower, tried in order until it fits.
const FIT_STEPS: [(Col, Option<usize>); 13] = [
    (Col::Note, Some(24)),
    (Col::Model, Some(18)),
    (Col::Model, None),
    (Col::Read, None),
    (Col::Note, Some(12)),
    (Col::Snaps, None),
    (Col::Burn, None),
    (Col::Alias, Some(10)),
    (Col::Tools, None),
    (Col::Events, None),
    (Col::Note, None),
    (Col::Elapsed, None),
    (Col::Budget, None),
];

fn status_layout() -> Layout {
    use Col::*;
    Layout {
        headers: COLUMNS.map(Col::header).to_vec(),
        right: [Events, Tools, Snaps, Cost, Burn, Elapsed, Read].map(|c| c as usize).to_vec(),
        clip_front: vec![Model as usize],
        steps: FIT_STEPS.iter().map(|(c, cap)| (*c as usize, *cap)).collect(),
        bold_last: true,
    }
}

/// A cell's text, already safe for a terminal, and its colour.
#[derive(Debug, Clone)]
pub struct Text {
    pub text: String,
    pub color: Option<Color>,
}

pub fn plain(text: impl Into<String>) -> Text {
    Text { text: text.into(), color: None }
}

pub fn colored(text: impl Into<String>, color: Color) -> Text {
    Text { text: text.into(), color: Some(color) }
}

fn grid(v: &View) -> Vec<Vec<Text>> {
    let mut rows: Vec<Vec<Text>> =
        v.models.iter().map(|r| model_cells(r, v.run.abandoned)).collect();
    rows.push(total_cells(v));
    rows
}

fn model_cells(r: &Row, abandoned: bool) -> Vec<Text> {
    let sanitize = crate::printer::sanitize;
    let used = r.budget_used_pct.map_or("-".to_string(), |p| format!("{}%", p.round()));
    let used_color = r.budget_used_pct.and_then(|p| {
        if p >= Decimal::ONE_HUNDRED {
            Some(Color::Red)
        } else if p >= Decimal::from(80) {
            Some(Color::Yellow)
        } else {
            None
        }
    });
    let live = r.running && !abandoned;
    let read = match (r.spend_age_s, live) {
        (Some(age), true) if r.spend_stale => {
            colored(format!("{} ago!", duration_text(age)), Color::Yellow)
        }
        (Some(age), true) => plain(format!("{} ago", duration_text(age))),
        _ => plain("-"),
    };
    vec![
        plain(sanitize(&r.alias)),
        plain(sanitize(&r.model)),
        colored(r.status.as_str(), status_color(r.status)),
        plain(r.events.to_string()),
        plain(r.tool_calls.to_string()),
        plain(r.snapshots.to_string()),
        plain(r.spent.to_string()),
        Text { text: format!("{used} of {}", r.budget), color: used_color },
        plain(r.burn_rate.map_or("-".into(), |b| format!("{}/m", b.usd_per_min))),
        plain(elapsed_text(r.elapsed_s, live)),
        read,
        plain(sanitize(&r.note)),
    ]
}

fn total_cells(v: &View) -> Vec<Text> {
    let t = &v.totals;
    let used = t.budget_used_pct.map_or("-".to_string(), |p| format!("{}%", p.round()));
    let mix: Vec<String> =
        t.by_status.iter().map(|(k, n)| format!("{n} {}", k.replace('_', " "))).collect();
    let live = v.run.status == RunStatus::Running && !v.run.abandoned;
    let overshoot =
        if t.overshoot > Usd::ZERO { format!("; over by {}", t.overshoot) } else { String::new() };
    vec![
        plain("total"),
        plain(format!("{} models", t.models)),
        colored(run_status_key(v.run.status), run_color(v)),
        plain(t.events.to_string()),
        plain(t.tool_calls.to_string()),
        plain(t.snapshots.to_string()),
        plain(t.spent.to_string()),
        plain(format!("{used} of {}", t.budget)),
        plain(t.burn_rate_usd_per_min.map_or("-".into(), |b| format!("{b}/m"))),
        plain(elapsed_text(Some(v.run.elapsed_s), live)),
        plain(""),
        plain(format!("{}{overshoot}", mix.join(", "))),
    ]
}

/// Elapsed time, with `…` while it is still growing.
pub fn elapsed_text(secs: Option<i64>, running: bool) -> String {
    match secs {
        None => "-".into(),
        Some(s) if running => format!("{}…", duration_text(s)),
        Some(s) => duration_text(s),
    }
}

/// A table's shape, for [`fit`].
#[derive(Debug, Clone)]
pub struct Layout {
    pub headers: Vec<&'static str>,
    /// Columns of figures, aligned right.
    pub right: Vec<usize>,
    /// Columns cut from the front when too long, where their ends say the most (model ids).
    pub clip_front: Vec<usize>,
    /// How to narrow the table, tried in order until it fits: cut a column to a width, or
    /// (`None`) leave it out.
    pub steps: Vec<(usize, Option<usize>)>,
    /// The last row is a totals row, in bold.
    pub bold_last: bool,
}

/// The table, as wide as its content or narrowed to `style.width`: long text is cut with `…`,
/// and when cutting is not enough the least needed columns go, so no line ever wraps.
pub fn fit(layout: &Layout, grid: &[Vec<Text>], style: Style) -> String {
    let n = layout.headers.len();
    let mut caps: Vec<Option<usize>> = vec![None; n];
    let mut shown = vec![true; n];
    let natural: Vec<usize> = (0..n)
        .map(|i| {
            let cells = grid.iter().filter_map(|r| r.get(i)).map(|t| t.text.width());
            cells.max().unwrap_or(0).max(layout.headers[i].width())
        })
        .collect();
    if let Some(width) = style.width.map(usize::from) {
        let mut steps = layout.steps.iter();
        loop {
            let over = widest(&table(layout, grid, &caps, &shown, false)).saturating_sub(width);
            if over == 0 {
                break;
            }
            let Some(&(i, cap)) = steps.next() else { break };
            match cap {
                Some(min) => {
                    let current = caps[i].unwrap_or(natural[i]);
                    caps[i] = Some(current.saturating_sub(over).max(min).min(current));
                }
                None => shown[i] = false,
            }
        }
        give_back(layout, grid, &natural, &mut caps, &shown, width);
    }
    table(layout, grid, &caps, &shown, style.color)
}

/// Dropping a column can free more room than the cut that came before it needed: hand what
/// is left to the cut columns, in the order they were cut.
fn give_back(
    layout: &Layout,
    grid: &[Vec<Text>],
    natural: &[usize],
    caps: &mut [Option<usize>],
    shown: &[bool],
    width: usize,
) {
    let mut slack = width.saturating_sub(widest(&table(layout, grid, caps, shown, false)));
    for &(i, _) in &layout.steps {
        if slack == 0 {
            break;
        }
        if let (true, Some(cap)) = (shown[i], caps[i]) {
            let more = natural[i].saturating_sub(cap).min(slack);
            caps[i] = Some(cap + more);
            slack -= more;
        }
    }
}

fn widest(text: &str) -> usize {
    text.lines().map(UnicodeWidthStr::width).max().unwrap_or(0)
}

fn table(
    layout: &Layout,
    grid: &[Vec<Text>],
    caps: &[Option<usize>],
    shown: &[bool],
    color: bool,
) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY).set_content_arrangement(ContentArrangement::Disabled);
    if color {
        t.enforce_styling();
    } else {
        t.force_no_tty();
    }
    let visible: Vec<usize> = (0..layout.headers.len()).filter(|i| shown[*i]).collect();
    t.set_header(visible.iter().map(|i| layout.headers[*i]));
    let last = grid.len().saturating_sub(1);
    for (n, r) in grid.iter().enumerate() {
        let cells = visible.iter().map(|&i| {
            let Some(cell) = r.get(i) else { return Cell::new("") };
            let text = match caps[i] {
                Some(cap) if layout.clip_front.contains(&i) => clip_front(&cell.text, cap),
                Some(cap) => clip(&cell.text, cap),
                None => cell.text.clone(),
            };
            let mut out = Cell::new(text);
            if let (true, Some(c)) = (color, cell.color) {
                out = out.fg(c);
            }
            if color && layout.bold_last && n == last {
                out = out.add_attribute(comfy_table::Attribute::Bold);
            }
            out
        });
        t.add_row(cells);
    }
    let last_column = visible.len().saturating_sub(1);
    for (pos, i) in visible.iter().enumerate() {
        let Some(column) = t.column_mut(pos) else { continue };
        // One space between columns is enough without rules between them.
        column.set_padding((1, u16::from(pos == last_column)));
        if layout.right.contains(i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    t.to_string()
}

/// `text` cut to `max` columns at the end, marked with `…`.
pub fn clip(text: &str, max: usize) -> String {
    if text.width() <= max {
        return text.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > max {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
}

/// `text` cut to `max` columns at the front, marked with `…`.
fn clip_front(text: &str, max: usize) -> String {
    if text.width() <= max {
        return text.to_string();
    }
    let mut kept: Vec<char> = Vec::new();
    let mut used = 0;
    for c in text.chars().rev() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > max {
            break;
        }
        used += w;
        kept.push(c);
    }
    std::iter::once('…').chain(kept.into_iter().rev()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).map(|d| d.with_timezone(&Utc)).unwrap()
    }

    fn usd(s: &str) -> Usd {
        s.parse().unwrap()
    }

    #[test]
    fn clipping_keeps_within_the_width_and_marks_the_cut() {
        assert_eq!(clip("abcdef", 6), "abcdef");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip_front("openai/gpt-4o-mini", 8), "…4o-mini");
        assert_eq!(clip("日本語テキスト", 5).width(), 5);
        assert_eq!(clip("日本語テキスト", 6).width(), 5, "a wide char never straddles the edge");
    }

    #[test]
    fn burn_rate_uses_the_last_five_minutes_of_history() {
        let now = at("2026-01-01T00:10:00Z");
        let samples = [
            SpendSample { at: at("2026-01-01T00:00:00Z"), spent: usd("0") },
            SpendSample { at: at("2026-01-01T00:04:00Z"), spent: usd("0.01") },
            SpendSample { at: at("2026-01-01T00:08:00Z"), spent: usd("0.02") },
        ];
        // From 00:04 (the last sample at or before 00:05) to now: $0.03 over 6 minutes.
        let r = recent_rate(&samples, usd("0.04"), now).unwrap();
        assert_eq!(r.basis, BurnBasis::Recent);
        assert_eq!(r.usd_per_min, usd("0.006"));
    }

    #[test]
    fn burn_rate_falls_back_to_the_run_without_enough_history() {
        let now = at("2026-01-01T00:02:00Z");
        let samples = [SpendSample { at: at("2026-01-01T00:01:00Z"), spent: usd("0.01") }];
        assert_eq!(recent_rate(&samples, usd("0.02"), now), None);
        let r = run_rate(usd("0.02"), Some(at("2026-01-01T00:00:00Z")), now).unwrap();
        assert_eq!(r, BurnRate { usd_per_min: usd("0.01"), basis: BurnBasis::Run });
        assert_eq!(run_rate(usd("0.02"), Some(now), now), None, "no rate over no time");
    }

    #[test]
    fn a_tail_read_skips_the_cut_line_and_a_half_written_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("spend.jsonl");
        let mut text = String::new();
        for i in 0..100 {
            text.push_str(&format!(
                "{{\"at\":\"2026-01-01T00:{:02}:{:02}Z\",\"spent\":\"0.{i:03}\"}}\n",
                i / 60,
                i % 60
            ));
        }
        text.push_str("{\"at\":\"2026-01-01T00:02:00Z\",\"sp");
        let since = at("2026-01-01T00:01:20Z");
        std::fs::write(&p, &text).unwrap();
        assert_eq!(read_spend(&p, None).len(), 100);
        let tail = read_spend(&p, Some(200));
        assert!(!tail.is_empty() && tail.len() < 10, "{}", tail.len());
        assert!(read_spend(&dir.path().join("missing"), None).is_empty());

        let recent = read_recent_spend(&p, since);
        assert_eq!(recent.first().map(|s| s.at), Some(since), "back to the sample at the start");
        assert_eq!(recent.len(), 20, "{recent:?}");
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration_text(45), "45s");
        assert_eq!(duration_text(245), "4m05s");
        assert_eq!(duration_text(3720), "1h02m");
        assert_eq!(duration_text(183_600), "2d03h");
        assert_eq!(duration_text(-3), "0s");
    }
}
