//! How long `apf status` and `apf report` take to render a 50-model run: building the view and
//! its table (as piped, and fitted to a terminal), its JSON, and the HTML report page with an
//! hour of history per model. Prints the median of many rounds of each; run with
//! `cargo bench --bench status`.
#![allow(clippy::print_stdout)] // The figures are what a benchmark is for.

use std::hint::black_box;
use std::time::{Duration, Instant};

use apf::apply::results::Results;
use apf::money::Usd;
use apf::report::{EventPoint, History, Input};
use apf::state::{Counts, Intent, ModelState, ModelStatus, RunState, RunStatus};
use apf::status::{SpendHistory, SpendSample, Style, View, render_view};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

const MODELS: i64 = 50;

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T09:00:00Z").unwrap().to_utc()
        + chrono::Duration::seconds(secs)
}

fn field() -> RunState {
    let statuses = [
        ModelStatus::Running,
        ModelStatus::Done,
        ModelStatus::Ejected,
        ModelStatus::BudgetSpent,
        ModelStatus::Pending,
    ];
    let models = (0..MODELS)
        .map(|i| {
            let alias = format!("model-{i:02}");
            let id = format!("vendor-{}/a-rather-long-model-name-{i}-instruct", i % 7);
            let mut m = ModelState::new(&alias, &id, Usd::new(Decimal::new(50 + i, 2)));
            m.status = statuses[usize::try_from(i).unwrap() % statuses.len()];
            if m.status != ModelStatus::Pending {
                m.started_at = Some(t(i));
                m.spent = Usd::new(Decimal::new(i * 731, 6));
                m.spent_read_at = Some(t(3590));
                m.counts = Counts {
                    events: 900,
                    tool_calls: 300,
                    snapshots: 30,
                    progress: 300,
                    errors: 4,
                    log_lines: 50,
                };
            }
            if m.status.is_final() {
                m.ended_at = Some(t(3000 + i));
                m.note = Some("exited with code 0".into());
            }
            if m.status == ModelStatus::Ejected {
                m.intent = Some(Intent {
                    reason: "spent 25% of its budget with no progress event".into(),
                    rule: "budget_fraction".into(),
                    signal: "kill".into(),
                    at: t(2999),
                });
            }
            (alias, m)
        })
        .collect();
    RunState {
        format_version: apf::state::STATE_FORMAT,
        run_id: "20260301-090000-b3nc".into(),
        experiment: "bench".into(),
        manifest_path: "/nowhere/experiment.toml".into(),
        manifest_hash: String::new(),
        base_url: "http://127.0.0.1:9/api/v1".into(),
        started_at: t(0),
        finished_at: None,
        status: RunStatus::Running,
        poll_every_ms: 1000,
        note: None,
        models,
    }
}

/// An hour of spend read every 5 s, and 900 events, for every model.
fn histories(st: &RunState) -> (SpendHistory, Vec<History>) {
    let mut spend = SpendHistory::new();
    let mut all = Vec::new();
    for (n, alias) in st.models.keys().enumerate() {
        let step = i64::try_from(n).unwrap() + 1;
        let samples: Vec<SpendSample> = (0..720)
            .map(|i| SpendSample { at: t(i * 5), spent: Usd::new(Decimal::new(i * step, 7)) })
            .collect();
        let events = (0..900)
            .map(|i| EventPoint {
                at: t(i * 4),
                tool_call: i % 3 == 0,
                snapshot: i % 30 == 0,
                error: i % 200 == 0,
            })
            .collect();
        spend.insert(alias.clone(), samples.clone());
        all.push(History { alias: alias.clone(), spend: samples, events, unreadable: 0 });
    }
    (spend, all)
}

fn measure(name: &str, rounds: usize, mut f: impl FnMut() -> usize) {
    for _ in 0..3 {
        black_box(f());
    }
    let mut times: Vec<Duration> = Vec::with_capacity(rounds);
    let mut size = 0;
    for _ in 0..rounds {
        let start = Instant::now();
        size = black_box(f());
        times.push(start.elapsed());
    }
    times.sort();
    let median = times[times.len() / 2];
    let (min, max) = (times[0], times[times.len() - 1]);
    println!(
        "{name:<44} median {:>9.1} µs  (min {:.1}, max {:.1}; {rounds} rounds; {size} bytes)",
        micros(median),
        micros(min),
        micros(max)
    );
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let st = field();
    let (spend, hist) = histories(&st);
    let now = t(3600);
    println!("a run of {MODELS} models");
    measure("status: view + table, unfitted", 300, || {
        render_view(&View::new(&st, &spend, now), Style { width: None, color: false }).len()
    });
    measure("status: view + table fitted to 120 columns", 300, || {
        render_view(&View::new(&st, &spend, now), Style { width: Some(120), color: true }).len()
    });
    measure("status: view + JSON", 300, || View::new(&st, &spend, now).to_json().to_string().len());

    // What one refresh of `apf status --watch` does, files and all.
    let dir = tempfile::tempdir().expect("a temporary folder");
    let rd = apf::state::RunDir::new(dir.path(), &st.run_id);
    for (alias, samples) in &spend {
        std::fs::create_dir_all(rd.model(alias)).expect("a model folder");
        let lines: Vec<String> =
            samples.iter().map(|s| serde_json::to_string(s).expect("a sample")).collect();
        std::fs::write(rd.spend(alias), lines.join("\n") + "\n").expect("spend.jsonl");
    }
    st.save(&rd).expect("state.json");
    measure("status: read state + spend tails, view, table", 300, || {
        let st = apf::status::load_state(&rd.state()).expect("the state reads");
        let history = apf::status::recent_spend(&rd, &st, now);
        render_view(&View::new(&st, &history, now), Style { width: Some(120), color: false }).len()
    });
    let input = Input {
        state: st.clone(),
        results: Results::from_state_at(&st, now),
        histories: hist,
        generated_at: now,
        caveats: vec![],
    };
    measure("report: HTML page, 720 samples + 900 events each", 50, || {
        apf::report::render(&input).len()
    });
}
