//! The points the report's charts draw, worked out here rather than in the page's script so
//! they are tested: times as seconds since the run started, spend as step lines, events as a
//! running count, and tool calls, snapshots and errors binned into marks. Long histories are
//! thinned to what a chart can show, so a page stays small however long the run.
//!
//! Dollars become floats here, for drawing only; every figure the page prints as text is the
//! exact decimal.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{EventPoint, History};
use crate::money::Usd;
use crate::printer::sanitize;
use crate::state::{ModelState, RunState, RunStatus};

/// No line keeps more points than this; a chart is about 600 pixels wide.
const MAX_LINE_POINTS: usize = 600;

/// Tool calls, snapshots and errors are counted in this many bins across the run.
const MARK_BINS: f64 = 300.0;

/// The data the page's script draws.
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    /// The shared time axis: every chart runs from 0 to this many seconds.
    pub duration_s: f64,
    pub models: Vec<ModelChart>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelChart {
    pub alias: String,
    pub model: String,
    pub status: String,
    pub status_label: String,
    pub budget: f64,
    pub budget_label: String,
    pub spent_label: String,
    /// `[seconds, dollars]`, a step line.
    pub spend: Vec<[f64; 2]>,
    /// No spend history: the line joins the start to the last reading.
    pub spend_estimated: bool,
    /// `[seconds, events so far]`, a step line.
    pub events: Vec<[f64; 2]>,
    pub events_total: usize,
    /// `[seconds, how many]` per bin.
    pub tool_calls: Vec<[f64; 2]>,
    pub snapshots: Vec<[f64; 2]>,
    pub errors: Vec<[f64; 2]>,
    pub start: Option<f64>,
    pub end: Option<f64>,
    pub eject: Option<Mark>,
}

/// A moment worth a line on the chart, and what to say about it.
#[derive(Debug, Clone, Serialize)]
pub struct Mark {
    pub t: f64,
    pub label: String,
}

/// The chart data of a run, as of `now`; `histories` in the order of `state.models`.
pub fn chart_data(state: &RunState, histories: &[History], now: DateTime<Utc>) -> Chart {
    let t0 = state.started_at;
    let run_end = match state.status {
        RunStatus::Running => now,
        _ => state.finished_at.unwrap_or(now),
    };
    let last_model_end = state.models.values().filter_map(|m| m.ended_at).max();
    let end = last_model_end.map_or(run_end, |e| e.max(run_end));
    let duration_s = secs(t0, end).max(1.0);
    let empty = History::default();
    let models = state
        .models
        .values()
        .map(|m| {
            let h = histories.iter().find(|h| h.alias == m.alias).unwrap_or(&empty);
            model_chart(m, h, t0, now, duration_s)
        })
        .collect();
    Chart { duration_s, models }
}

fn model_chart(
    m: &ModelState,
    h: &History,
    t0: DateTime<Utc>,
    now: DateTime<Utc>,
    duration_s: f64,
) -> ModelChart {
    let end = m.ended_at.or(m.started_at.map(|_| now));
    let (spend, spend_estimated) = spend_points(m, &h.spend, t0, end);
    let bin = duration_s / MARK_BINS;
    let marks = |f: fn(&EventPoint) -> bool| {
        bins(h.events.iter().filter(|e| f(e)).map(|e| secs(t0, e.at)), bin)
    };
    ModelChart {
        alias: sanitize(&m.alias),
        model: sanitize(&m.model),
        status: crate::status::status_key(m.status),
        status_label: m.status.as_str().into(),
        budget: m.budget.to_f64(),
        budget_label: m.budget.to_string(),
        spent_label: m.spent.to_string(),
        spend: thin(spend, duration_s),
        spend_estimated,
        events: thin(event_points(&h.events, m.started_at, end, t0), duration_s),
        events_total: h.events.len(),
        tool_calls: marks(|e| e.tool_call),
        snapshots: marks(|e| e.snapshot),
        errors: marks(|e| e.error),
        start: m.started_at.map(|s| secs(t0, s)),
        end: m.ended_at.map(|e| secs(t0, e)),
        eject: m.intent.as_ref().filter(|i| i.rule != "interrupt").map(|i| Mark {
            t: secs(t0, i.at),
            label: sanitize(&format!("ejected ({}): {}", i.rule, i.reason)),
        }),
    }
}

fn secs(t0: DateTime<Utc>, t: DateTime<Utc>) -> f64 {
    let ms = (t - t0).num_milliseconds().max(0);
    ms as f64 / 1000.0
}

/// Spend as a step line from the model's start to its end. With a history, the samples, held
/// to the end, with the state's own reading added when it is newer; without one, the start
/// and the last reading only (and the caller draws it dashed).
fn spend_points(
    m: &ModelState,
    samples: &[crate::status::SpendSample],
    t0: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
) -> (Vec<[f64; 2]>, bool) {
    let usd = |u: Usd| u.to_f64();
    let mut pts: Vec<[f64; 2]> = Vec::new();
    let first_at = samples.first().map(|s| s.at);
    if let Some(start) = m.started_at
        && first_at.is_none_or(|f| start < f)
    {
        pts.push([secs(t0, start), 0.0]);
    }
    pts.extend(samples.iter().map(|s| [secs(t0, s.at), usd(s.spent)]));
    let last = samples.last();
    if last.is_none_or(|l| l.spent != m.spent) && (m.started_at.is_some() || !m.spent.0.is_zero()) {
        let at = m.spent_read_at.or(end).unwrap_or(t0);
        let t = secs(t0, at).max(pts.last().map_or(0.0, |p| p[0]));
        pts.push([t, usd(m.spent)]);
    }
    if let (Some(end), Some(&[t, v])) = (end, pts.last())
        && secs(t0, end) > t
    {
        pts.push([secs(t0, end), v]);
    }
    (pts, samples.is_empty())
}

/// The running count of events, from 0 at the model's start to its total at its end.
fn event_points(
    events: &[EventPoint],
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    t0: DateTime<Utc>,
) -> Vec<[f64; 2]> {
    let mut pts = Vec::with_capacity(events.len() + 2);
    let first = start.or(events.first().map(|e| e.at));
    if let Some(s) = first {
        pts.push([secs(t0, s), 0.0]);
    }
    pts.extend(events.iter().enumerate().map(|(i, e)| [secs(t0, e.at), (i + 1) as f64]));
    if let (Some(end), Some(&[t, v])) = (end, pts.last())
        && secs(t0, end) > t
    {
        pts.push([secs(t0, end), v]);
    }
    pts
}

/// A step line cut down to at most [`MAX_LINE_POINTS`]: within each slice of time only the
/// last point stays, which for a line that only rises keeps its shape. The first and last
/// points always stay.
pub fn thin(pts: Vec<[f64; 2]>, duration_s: f64) -> Vec<[f64; 2]> {
    if pts.len() <= MAX_LINE_POINTS {
        return pts;
    }
    let slice = duration_s / (MAX_LINE_POINTS - 2) as f64;
    let mut out: Vec<[f64; 2]> = Vec::with_capacity(MAX_LINE_POINTS);
    let mut rest = pts.iter();
    if let Some(first) = rest.next() {
        out.push(*first);
    }
    let mut bucket = None;
    let mut held: Option<[f64; 2]> = None;
    for p in rest {
        let b = (p[0] / slice).floor() as i64;
        if bucket.is_some_and(|x| x != b)
            && let Some(h) = held
        {
            out.push(h);
        }
        bucket = Some(b);
        held = Some(*p);
    }
    if let Some(h) = held {
        out.push(h);
    }
    out
}

/// How many of `times` fall in each bin of `width` seconds, as `[bin start, count]`.
fn bins(times: impl Iterator<Item = f64>, width: f64) -> Vec<[f64; 2]> {
    let mut out: Vec<[f64; 2]> = Vec::new();
    for t in times {
        let start = (t / width).floor() * width;
        match out.last_mut() {
            Some(last) if (last[0] - start).abs() < width / 2.0 => last[1] += 1.0,
            _ => out.push([start, 1.0]),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::SpendSample;

    fn at(s: u32) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().to_utc()
            + chrono::Duration::seconds(i64::from(s))
    }

    fn model(spent: &str) -> ModelState {
        let mut m = ModelState::new("a", "x/y", "0.05".parse().unwrap());
        m.spent = spent.parse().unwrap();
        m.started_at = Some(at(2));
        m.ended_at = Some(at(60));
        m.spent_read_at = Some(at(58));
        m
    }

    #[test]
    fn spend_starts_at_zero_follows_the_samples_and_holds_to_the_end() {
        let m = model("0.02");
        let samples = [
            SpendSample { at: at(10), spent: "0.01".parse().unwrap() },
            SpendSample { at: at(30), spent: "0.02".parse().unwrap() },
        ];
        let (pts, estimated) = spend_points(&m, &samples, at(0), m.ended_at);
        assert!(!estimated);
        assert_eq!(pts, vec![[2.0, 0.0], [10.0, 0.01], [30.0, 0.02], [60.0, 0.02]]);
    }

    #[test]
    fn without_history_spend_joins_the_start_to_the_last_reading() {
        let m = model("0.03");
        let (pts, estimated) = spend_points(&m, &[], at(0), m.ended_at);
        assert!(estimated);
        assert_eq!(pts, vec![[2.0, 0.0], [58.0, 0.03], [60.0, 0.03]]);
        let never = ModelState::new("b", "x/z", "0.05".parse().unwrap());
        assert!(spend_points(&never, &[], at(0), None).0.is_empty(), "a model never started");
    }

    #[test]
    fn long_lines_are_thinned_and_keep_their_ends() {
        let pts: Vec<[f64; 2]> = (0..10_000).map(|i| [f64::from(i) / 10.0, f64::from(i)]).collect();
        let thinned = thin(pts, 1000.0);
        assert!(thinned.len() <= MAX_LINE_POINTS, "{}", thinned.len());
        assert_eq!(thinned.first(), Some(&[0.0, 0.0]));
        assert_eq!(thinned.last(), Some(&[999.9, 9999.0]));
        assert!(thinned.windows(2).all(|w| w[0][0] <= w[1][0] && w[0][1] <= w[1][1]));
    }

    #[test]
    fn marks_count_what_falls_in_each_bin() {
        let b = bins([0.1, 0.2, 0.9, 1.5, 7.0].into_iter(), 1.0);
        assert_eq!(b, vec![[0.0, 3.0], [1.0, 1.0], [7.0, 1.0]]);
    }
}
