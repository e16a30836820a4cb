//! The status table and its JSON, as snapshots of a finished run and of one still running,
//! built as values so every figure is known; and the table's fit to a terminal's width.

use apf::money::Usd;
use apf::state::{
    ContainerRecord, Counts, ExitRecord, Intent, KeyRecord, ModelState, ModelStatus, RunState,
    RunStatus,
};
use apf::status::{SpendHistory, SpendSample, Style, View, render_view};
use chrono::{DateTime, Duration, Utc};
use unicode_width::UnicodeWidthStr;

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T09:00:00Z").unwrap().to_utc() + Duration::seconds(secs)
}

fn usd(s: &str) -> Usd {
    s.parse().unwrap()
}

fn model(alias: &str, id: &str, budget: &str) -> ModelState {
    let mut m = ModelState::new(alias, id, usd(budget));
    m.key = Some(KeyRecord {
        hash: format!("hash-{alias}"),
        name: format!("apf/field/run/{alias}"),
        limit: usd(budget),
        revoked: false,
    });
    m
}

fn counts(events: u64, tool_calls: u64, snapshots: u64, errors: u64) -> Counts {
    Counts { events, tool_calls, snapshots, progress: events / 2, errors, log_lines: 3 }
}

fn ended(m: &mut ModelState, status: ModelStatus, start: i64, end: i64, code: i64, cause: &str) {
    m.status = status;
    m.started_at = Some(t(start));
    m.ended_at = Some(t(end));
    m.spent_read_at = Some(t(end + 2));
    m.container = Some(ContainerRecord {
        id: "c0ffee".into(),
        name: format!("apf-{}", m.alias),
        removed: true,
    });
    m.exit = Some(ExitRecord { code, oom_killed: false, cause: cause.into(), last_lines: vec![] });
    if let Some(k) = m.key.as_mut() {
        k.revoked = true;
    }
}

fn run(status: RunStatus, models: Vec<ModelState>) -> RunState {
    RunState {
        format_version: apf::state::STATE_FORMAT,
        run_id: "20260301-090000-a1b2".into(),
        experiment: "kurve".into(),
        manifest_path: "/tmp/kurve/experiment.toml".into(),
        manifest_hash: "0".repeat(64),
        base_url: "http://127.0.0.1:9/api/v1".into(),
        started_at: t(0),
        finished_at: None,
        status,
        poll_every_ms: 1000,
        note: None,
        models: models.into_iter().map(|m| (m.alias.clone(), m)).collect(),
    }
}

pub fn finished() -> RunState {
    let mut gpt = model("gpt4o-mini", "openai/gpt-4o-mini", "0.05");
    ended(&mut gpt, ModelStatus::Done, 1, 146, 0, "exited with code 0");
    gpt.spent = usd("0.000339");
    gpt.counts = counts(9, 3, 1, 0);
    gpt.note = Some("exited with code 0".into());

    let mut llama = model("llama", "meta-llama/llama-3.3-70b-instruct", "0.05");
    ended(&mut llama, ModelStatus::BudgetSpent, 1, 305, 1, "exited with code 1");
    llama.spent = usd("0.0503");
    llama.counts = counts(41, 17, 4, 1);
    llama.note = Some("budget spent (key cap)".into());

    let mut opus = model("opus", "anthropic/claude-opus-4", "0.03");
    ended(&mut opus, ModelStatus::Ejected, 2, 71, 137, "killed by apf: budget_fraction");
    opus.spent = usd("0.0061");
    opus.counts = counts(2, 0, 0, 2);
    opus.intent = Some(Intent {
        reason: "spent 20% of its budget with no tool call".into(),
        rule: "budget_fraction".into(),
        signal: "kill".into(),
        at: t(70),
    });
    opus.note = Some("spent 20% of its budget with no tool call".into());

    let mut qwen = model("qwen", "qwen/qwen3-coder", "0.05");
    qwen.status = ModelStatus::Failed;
    qwen.key = None;
    qwen.note = Some("could not create its key: 500 Internal Server Error".into());

    let mut st = run(RunStatus::Finished, vec![gpt, llama, opus, qwen]);
    st.finished_at = Some(t(312));
    st
}

pub fn running() -> RunState {
    let mut gpt = model("gpt4o-mini", "openai/gpt-4o-mini", "0.05");
    gpt.status = ModelStatus::Running;
    gpt.started_at = Some(t(1));
    gpt.spent = usd("0.0123");
    gpt.spent_read_at = Some(t(597));
    gpt.counts = counts(30, 12, 2, 0);
    gpt.attempts = 1;

    let mut glm = model("glm", "z-ai/glm-5", "0.50");
    glm.status = ModelStatus::Running;
    glm.started_at = Some(t(3));
    glm.spent = usd("0.41");
    glm.spent_read_at = Some(t(540));
    glm.spend_stale = true;
    glm.counts = counts(12, 5, 0, 3);
    glm.attempts = 2;
    glm.warnings = vec!["idle for 2m (warn only)".into()];

    let mut llama = model("llama", "meta-llama/llama-3.3-70b-instruct", "0.05");
    ended(&mut llama, ModelStatus::Done, 1, 240, 0, "exited with code 0");
    llama.spent = usd("0.0042");
    llama.counts = counts(15, 6, 1, 0);
    llama.note = Some("exited with code 0".into());

    let mut later = model("mistral", "mistralai/mistral-large", "0.05");
    later.key = None;

    run(RunStatus::Running, vec![gpt, glm, llama, later])
}

/// The spend history of the running run's first model: a minute-by-minute climb.
pub fn history() -> SpendHistory {
    let samples = (0..10)
        .map(|i| SpendSample {
            at: t(60 * i),
            spent: Usd::new(rust_decimal::Decimal::new(i * 12, 4)),
        })
        .collect();
    [("gpt4o-mini".to_string(), samples)].into_iter().collect()
}

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?Z?", "[time]");
    s.add_filter(r"\b\d{2}:\d{2}:\d{2}\b", "[clock]");
    s
}

fn plain(width: Option<u16>) -> Style {
    Style { width, color: false }
}

#[test]
fn the_table_of_a_finished_run() {
    let view = View::new(&finished(), &SpendHistory::new(), t(400));
    settings().bind(|| insta::assert_snapshot!("finished", render_view(&view, plain(None))));
}

#[test]
fn the_table_of_a_running_run() {
    let view = View::new(&running(), &history(), t(600));
    settings().bind(|| insta::assert_snapshot!("running", render_view(&view, plain(None))));
}

#[test]
fn the_table_of_a_running_run_on_a_100_column_terminal() {
    let view = View::new(&running(), &history(), t(600));
    let text = render_view(&view, plain(Some(100)));
    settings().bind(|| insta::assert_snapshot!("running_100", text));
}

#[test]
fn the_json_of_a_running_run() {
    let view = View::new(&running(), &history(), t(600));
    settings().bind(|| insta::assert_json_snapshot!("running_json", view.to_json()));
}

#[test]
fn a_running_model_burns_at_its_recent_rate_and_says_what_remains() {
    let view = View::new(&running(), &history(), t(600));
    let gpt = view.models.iter().find(|r| r.alias == "gpt4o-mini").unwrap();
    let rate = gpt.burn_rate.unwrap();
    // $0.0123 now against $0.006 at 00:05:00 (the last sample at or before now - 5m): 5 minutes.
    assert_eq!(rate.usd_per_min, usd("0.00126"));
    assert_eq!(serde_json::to_value(rate.basis).unwrap(), "recent");
    assert!(gpt.note.starts_with("$0.038 left (~29m55s at this rate)"), "{}", gpt.note);
    assert_eq!(gpt.spend_age_s, Some(3));

    let glm = view.models.iter().find(|r| r.alias == "glm").unwrap();
    assert_eq!(serde_json::to_value(glm.burn_rate.unwrap().basis).unwrap(), "run");
    assert!(glm.note.contains("spend stale since 09:09:00"), "{}", glm.note);
    assert!(glm.note.contains("3 errors") && glm.note.contains("attempt 2"), "{}", glm.note);
}

#[test]
fn every_line_fits_the_terminal_however_narrow() {
    for state in [finished(), running()] {
        let view = View::new(&state, &history(), t(600));
        for width in (60..=200).step_by(7) {
            let text = render_view(&view, plain(Some(width)));
            for line in text.lines().skip(1) {
                assert!(line.width() <= usize::from(width), "width {width}: {line}");
            }
        }
    }
}

#[test]
fn status_is_coloured_only_when_asked_and_reads_the_same_without() {
    let view = View::new(&finished(), &SpendHistory::new(), t(400));
    let colored = render_view(&view, Style { width: None, color: true });
    let bare = render_view(&view, plain(None));
    assert!(colored.contains("\x1b["), "colour is on");
    assert!(!bare.contains('\x1b'), "no escape codes without colour");
    let stripped = strip_ansi(&colored);
    assert_eq!(stripped.lines().count(), bare.lines().count());
    for word in ["done", "ejected", "budget spent", "failed"] {
        assert!(stripped.contains(word) && bare.contains(word), "{word}");
    }
}

#[test]
fn text_from_a_container_cannot_reach_the_terminal_raw() {
    let mut st = finished();
    let opus = st.models.get_mut("opus").unwrap();
    opus.note = Some("bye\x1b[2J\x1b]0;owned\x07 sk-or-v1-abcdef0123456789".into());
    let text = render_view(&View::new(&st, &SpendHistory::new(), t(400)), plain(None));
    assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
    assert!(!text.contains("abcdef0123456789"), "keys are masked");
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
