//! `apf report` on a run folder written here, with hostile text from "containers" in its
//! state and events: the page is self-contained and escaped, and in a real headless Chromium
//! it loads without errors and draws every model's charts. The page and a screenshot stay
//! under `target/` for a person to look at.
//!
//! Chromium comes from Debian (`scripts/ci-deps.sh`); when it is missing the browser test
//! fails rather than skips, since CI installs it. `APF_CHROMIUM` names another binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use apf::state::{
    ContainerRecord, Counts, ExitRecord, Intent, ModelState, ModelStatus, RunDir, RunState,
    RunStatus,
};
use chrono::{DateTime, Utc};

const RUN: &str = "20260301-090000-c0de";
const PWN: &str = "document.body.setAttribute('data-pwned','1')";

fn t(ms: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T09:00:00Z").unwrap().to_utc()
        + chrono::Duration::milliseconds(ms)
}

fn target() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target")
}

fn model(alias: &str, id: &str, budget: &str, status: ModelStatus) -> ModelState {
    let mut m = ModelState::new(alias, id, budget.parse().unwrap());
    m.status = status;
    m
}

fn ended(m: &mut ModelState, start_s: i64, end_s: i64, spent: &str, code: i64, cause: &str) {
    m.started_at = Some(t(start_s * 1000));
    m.ended_at = Some(t(end_s * 1000));
    m.spent_read_at = Some(t(end_s * 1000 + 1500));
    m.spent = spent.parse().unwrap();
    m.container = Some(ContainerRecord { id: "c".into(), name: "n".into(), removed: true });
    m.exit = Some(ExitRecord { code, oom_killed: false, cause: cause.into(), last_lines: vec![] });
}

/// A finished field of four: one done, one ejected (with hostile text everywhere), one that
/// spent its budget and left no spend history, one that never started.
fn field() -> RunState {
    let mut gpt = model("gpt4o-mini", "openai/gpt-4o-mini", "0.05", ModelStatus::Done);
    ended(&mut gpt, 1, 290, "0.0312", 0, "exited with code 0");
    gpt.counts =
        Counts { events: 240, tool_calls: 80, snapshots: 8, progress: 80, errors: 2, log_lines: 9 };
    gpt.note = Some("exited with code 0".into());

    let evil_id = format!("evil/<img src=x onerror=\"{PWN}\">");
    let mut opus = model("opus", &evil_id, "0.03", ModelStatus::Ejected);
    ended(&mut opus, 2, 71, "0.0061", 137, "killed by apf: budget_fraction");
    opus.counts =
        Counts { events: 6, tool_calls: 0, snapshots: 0, progress: 3, errors: 3, log_lines: 2 };
    let reason = format!("no progress </script><script>{PWN}</script> & 'quotes\"");
    opus.intent = Some(Intent {
        reason: reason.clone(),
        rule: "budget_fraction".into(),
        signal: "kill".into(),
        at: t(70_000),
    });
    opus.note = Some(reason);

    let mut llama =
        model("llama", "meta-llama/llama-3.3-70b-instruct", "0.05", ModelStatus::BudgetSpent);
    ended(&mut llama, 1, 200, "0.0504", 1, "exited with code 1");
    llama.counts =
        Counts { events: 30, tool_calls: 12, snapshots: 1, progress: 15, errors: 1, log_lines: 4 };
    llama.note = Some("budget spent (key cap)".into());

    let mut qwen = model("qwen", "qwen/qwen3-coder", "0.05", ModelStatus::Skipped);
    qwen.note = Some("the run stopped before it started".into());

    RunState {
        format_version: apf::state::STATE_FORMAT,
        run_id: RUN.into(),
        experiment: format!("kurve</title><script>{PWN}</script>"),
        manifest_path: "/nowhere/experiment.toml".into(),
        manifest_hash: String::new(),
        base_url: "http://127.0.0.1:9/api/v1".into(),
        started_at: t(0),
        finished_at: Some(t(300_000)),
        status: RunStatus::Finished,
        poll_every_ms: 1000,
        note: None,
        models: [gpt, opus, llama, qwen].into_iter().map(|m| (m.alias.clone(), m)).collect(),
    }
}

fn event(at_ms: i64, body: serde_json::Value) -> String {
    serde_json::json!({ "at": t(at_ms), "event": body }).to_string()
}

/// The run folder, written afresh under `root`.
fn write_field(root: &Path) -> RunDir {
    let _ = std::fs::remove_dir_all(root);
    let st = field();
    let rd = RunDir::new(root, RUN);
    for alias in st.models.keys() {
        std::fs::create_dir_all(rd.model(alias)).unwrap();
    }
    st.save(&rd).unwrap();

    let mut lines = Vec::new();
    let mut spend = Vec::new();
    for i in 0..240_i64 {
        let at = 1_000 + i * 1_200;
        let body = match i % 30 {
            0 => serde_json::json!({"type": "snapshot", "n": i / 30}),
            7 if i < 100 => serde_json::json!({"type": "error", "message": "tool failed"}),
            n if n % 3 == 0 => serde_json::json!({"type": "tool_call", "name": "write_file"}),
            _ => serde_json::json!({"type": "progress"}),
        };
        lines.push(event(at, body));
        if i % 10 == 0 {
            let spent = rust_decimal::Decimal::new(13 * i, 5);
            spend.push(serde_json::json!({"at": t(at), "spent": spent.to_string()}).to_string());
        }
    }
    lines.push("not json at all".into());
    std::fs::write(rd.events("gpt4o-mini"), lines.join("\n") + "\n").unwrap();
    std::fs::write(rd.spend("gpt4o-mini"), spend.join("\n") + "\n").unwrap();

    let hostile = serde_json::json!({
        "type": "error",
        "message": format!("</script><script>{PWN}</script><img src=x onerror=\"{PWN}\">"),
    });
    let opus: Vec<String> = (0..6).map(|i| event(3_000 + i * 11_000, hostile.clone())).collect();
    std::fs::write(rd.events("opus"), opus.join("\n") + "\n").unwrap();
    let opus_spend: Vec<String> = (0..7)
        .map(|i| {
            let spent = rust_decimal::Decimal::new(9 * i, 4);
            serde_json::json!({"at": t(2_000 + i * 10_000), "spent": spent.to_string()}).to_string()
        })
        .collect();
    std::fs::write(rd.spend("opus"), opus_spend.join("\n") + "\n").unwrap();

    let llama: Vec<String> = (0..30)
        .map(|i| event(2_000 + i * 6_000, serde_json::json!({"type": "tool_call", "name": "bash"})))
        .collect();
    std::fs::write(rd.events("llama"), llama.join("\n") + "\n").unwrap();
    // llama has no spend.jsonl, and qwen nothing at all.
    rd
}

/// `apf report` through the binary, as a user runs it.
fn report(root: &Path, out: &Path) -> String {
    let status = Command::new(env!("CARGO_BIN_EXE_apf"))
        .args(["report", "c0de", "-f"])
        .arg(root.join("experiment.toml"))
        .arg("-o")
        .arg(out)
        .status()
        .expect("run apf report");
    assert!(status.success(), "apf report exits 0");
    std::fs::read_to_string(out).expect("the report is written")
}

#[test]
fn the_page_is_self_contained_and_escapes_everything_it_was_given() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("field");
    write_field(&root);
    let html = report(&root, &root.join("static.html"));

    let (tags, script, style) = scan(&html);
    let allowed = [
        "!doctype", "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3",
        "p", "span", "code", "div", "section", "table", "thead", "tbody", "tr", "th", "td", "svg",
        "rect", "article", "footer", "ul", "li", "noscript", "script",
    ];
    for tag in &tags {
        let name = tag.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
        assert!(allowed.contains(&name.as_str()), "an unexpected element: <{tag}>");
        for attr in ["src=", "href=", "srcset=", "action=", "on"] {
            let hit =
                tag.split_whitespace().skip(1).any(|a| a.to_ascii_lowercase().starts_with(attr));
            assert!(!hit, "an element that could load or run something: <{tag}>");
        }
    }
    assert_eq!(tags.iter().filter(|t| t.starts_with("script")).count(), 2, "data and chart only");
    assert!(!style.contains("url(") && !style.contains("@import"), "the style loads nothing");
    let outside: Vec<&str> = script.matches("http").collect();
    assert_eq!(outside.len(), 1, "the script names no address but the SVG namespace");
    assert!(html.contains("Content-Security-Policy") && html.contains("default-src 'none'"));
    assert!(!html.contains(&format!("<script>{PWN}")), "no injected script");
    assert!(html.contains("kurve&lt;/title&gt;&lt;script&gt;"), "the experiment name is escaped");
    assert!(html.contains("evil/&lt;img src=x"), "the model id is escaped as text");
    assert!(html.contains("\\u003c/script\\u003e"), "text in the JSON is escaped");
    assert!(html.contains("No spend history (spend.jsonl) for llama, qwen"), "{}", caveats(&html));
    assert!(html.contains("default mapping"), "the manifest was missing: {}", caveats(&html));
}

#[test]
fn a_report_of_a_run_without_any_history_still_renders() {
    let dir = tempfile::tempdir().unwrap();
    let mut st = field();
    st.status = RunStatus::Running;
    st.finished_at = None;
    let rd = RunDir::new(dir.path(), RUN);
    std::fs::create_dir_all(&rd.root).unwrap();
    st.save(&rd).unwrap();
    let html = apf::report::build(&rd, &st, t(400_000));
    assert!(html.contains("running for 6m40s"), "a running run says so");
    assert_eq!(html.matches("<article class=\"model\">").count(), 4);
}

/// The page's tags (the text between `<` and `>`, outside scripts and styles), and the text of
/// its scripts and of its style.
fn scan(html: &str) -> (Vec<String>, String, String) {
    let (mut tags, mut script, mut style) = (Vec::new(), String::new(), String::new());
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else { break };
        let tag = after[..close].trim().to_string();
        rest = &after[close + 1..];
        if tag.starts_with('/') {
            continue;
        }
        for (name, sink) in [("script", &mut script), ("style", &mut style)] {
            if tag.starts_with(name) {
                let end = rest.find(&format!("</{name}>")).expect("closed");
                sink.push_str(&rest[..end]);
                rest = &rest[end..];
            }
        }
        tags.push(tag);
    }
    (tags, script, style)
}

fn caveats(html: &str) -> &str {
    html.find("<footer>").map_or("", |i| &html[i..])
}

fn chromium() -> String {
    std::env::var("APF_CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

/// Chromium with everything that could reach the network turned off, pointed at a local file.
fn browser(page: &Path, profile: &Path, extra: &[String]) -> std::process::Output {
    let url = format!("file://{}", page.display());
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--disable-breakpad",
        "--metrics-recording-only",
        // Belt and braces: no name resolves, and anything that still tried would go to a
        // closed port on loopback.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=127.0.0.1:9",
        "--enable-logging=stderr",
        "--v=0",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "could not start Chromium ({}): {e}. Install it with scripts/ci-deps.sh, or name \
             the binary in APF_CHROMIUM",
            chromium()
        )
    });
    wait(child, Duration::from_secs(120))
}

fn wait(child: std::process::Child, limit: Duration) -> std::process::Output {
    let id = child.id();
    let start = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    loop {
        if let Ok(out) = rx.try_recv() {
            return out.expect("Chromium ran");
        }
        if start.elapsed() > limit {
            let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
            panic!("Chromium did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What Chromium logged that a clean page would not: console messages (the page logs none of
/// its own), uncaught errors, and anything the page's policy refused.
fn complaints(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught") || l.contains("Refused to"))
        .collect()
}

#[test]
fn the_page_loads_in_chromium_without_errors_and_draws_every_models_chart() {
    // Under target/, so a person can open the page the screenshot shows.
    let root = target().join("report-fixture");
    write_field(&root);
    let page = target().join("report.html");
    report(&root, &page);
    let profile = tempfile::tempdir().unwrap();

    let dom = browser(&page, profile.path(), &["--dump-dom".into()]);
    assert!(dom.status.success(), "chromium --dump-dom: {}", String::from_utf8_lossy(&dom.stderr));
    let html = String::from_utf8_lossy(&dom.stdout);
    let stderr = String::from_utf8_lossy(&dom.stderr);
    let body =
        html.find("<body").map(|i| &html[i..html[i..].find('>').map_or(html.len(), |j| i + j)]);
    let body = body.expect("the page has a body");
    assert!(body.contains("data-charts-drawn=\"4\""), "every model's charts were drawn: {body}");
    assert!(body.contains("data-overview-drawn=\"true\""), "{body}");
    assert!(!body.contains("data-chart-errors"), "no chart failed: {body}");
    assert!(!html.contains("data-pwned=\""), "no text from the run ran as code");
    assert_eq!(html.matches("data-drawn=\"true\"").count(), 4);
    assert!(html.matches("<path").count() > 20, "the charts have lines");
    assert!(html.contains("ejected at 1m10s"), "the eject point is marked");
    assert!(html.contains("not started"), "the model that never started says so");
    let bad = complaints(&stderr);
    assert!(bad.is_empty(), "the console stayed clean: {bad:#?}");

    let shot = target().join("report-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    let out = browser(
        &page,
        profile.path(),
        &[format!("--screenshot={}", shot.display()), "--window-size=1400,2000".into()],
    );
    assert!(
        out.status.success(),
        "chromium --screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("the screenshot is written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a real screenshot ({} bytes)",
        png.len()
    );
    let bad = complaints(&String::from_utf8_lossy(&out.stderr)).len();
    assert_eq!(bad, 0, "no complaints while taking the screenshot");
}
