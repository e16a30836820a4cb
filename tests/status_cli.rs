//! `apf status`, `apf runs` and `apf logs` as a user runs them, on run folders written here:
//! the real binary, its real output, and `--watch`/`--follow` against a state that changes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use apf::money::Usd;
use apf::state::{Counts, ModelState, ModelStatus, RunDir, RunLock, RunState, RunStatus};
use chrono::{DateTime, Utc};

const OLD: &str = "20260301-090000-aaaa";
const NEW: &str = "20260302-090000-bbbb";

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T09:00:00Z").unwrap().to_utc()
        + chrono::Duration::seconds(secs)
}

fn state(id: &str, status: RunStatus) -> RunState {
    let mut done = ModelState::new("gpt", "openai/gpt-4o-mini", "0.05".parse().unwrap());
    done.status = ModelStatus::Done;
    done.started_at = Some(t(1));
    done.ended_at = Some(t(90));
    done.spent = "0.0021".parse().unwrap();
    done.counts = Counts { events: 3, tool_calls: 1, ..Counts::default() };
    let mut other = ModelState::new("opus", "anthropic/claude-opus-4", "0.03".parse().unwrap());
    other.status =
        if status == RunStatus::Running { ModelStatus::Running } else { ModelStatus::Ejected };
    other.started_at = Some(t(1));
    other.spent = Usd::new(rust_decimal::Decimal::new(61, 4));
    other.spent_read_at = Some(Utc::now());
    RunState {
        format_version: apf::state::STATE_FORMAT,
        run_id: id.into(),
        experiment: "field".into(),
        manifest_path: "/nowhere/experiment.toml".into(),
        manifest_hash: String::new(),
        base_url: "http://127.0.0.1:9/api/v1".into(),
        started_at: t(0),
        finished_at: (status != RunStatus::Running).then(|| t(95)),
        status,
        poll_every_ms: 1000,
        note: None,
        models: [("gpt".to_string(), done), ("opus".to_string(), other)].into_iter().collect(),
    }
}

fn write_run(root: &Path, st: &RunState) -> RunDir {
    let rd = RunDir::new(root, &st.run_id);
    for alias in st.models.keys() {
        std::fs::create_dir_all(rd.model(alias)).unwrap();
    }
    st.save(&rd).unwrap();
    let events = [
        r#"{"at":"2026-03-01T09:00:02Z","event":{"type":"progress","budget":"Budget: $0.05"}}"#,
        r#"{"at":"2026-03-01T09:00:03.250Z","event":{"type":"tool_call","name":"write_file"}}"#,
    ];
    std::fs::write(rd.events("gpt"), events.join("\n") + "\n").unwrap();
    std::fs::write(rd.log("gpt"), "turn 1: calling model\n\x1b[31mred\x1b[0m line\n").unwrap();
    rd
}

fn apf(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_apf"));
    c.args(args).arg("-f").arg(dir.join("experiment.toml")).env("NO_COLOR", "1");
    c.env_remove("COLUMNS");
    c
}

fn ok(mut c: Command) -> (String, String) {
    let out: Output = c.output().expect("run apf");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "apf failed\nstdout: {stdout}\nstderr: {stderr}");
    (stdout, stderr)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn runs_lists_every_run_newest_first_with_outcome_models_and_cost() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path(), &state(OLD, RunStatus::Interrupted));
    write_run(dir.path(), &state(NEW, RunStatus::Finished));

    let (json, _) = ok(apf(dir.path(), &["runs", "--json"]));
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["format_version"], 1);
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs[0]["id"], NEW);
    assert_eq!(runs[0]["status"], "finished");
    assert_eq!(runs[0]["by_status"]["ejected"], 1);
    assert_eq!(runs[0]["spent"], "0.0082");
    assert_eq!(runs[1]["status"], "interrupted");

    let (table, _) = ok(apf(dir.path(), &["runs"]));
    let new_at = table.find(NEW).unwrap();
    assert!(new_at < table.find(OLD).unwrap(), "newest first:\n{table}");
    assert!(
        table.contains("2: 1 done, 1 ejected") && table.contains("$0.0082 of $0.08"),
        "{table}"
    );
}

#[test]
fn status_finds_a_run_by_a_part_of_its_id_and_defaults_to_the_latest() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path(), &state(OLD, RunStatus::Interrupted));
    write_run(dir.path(), &state(NEW, RunStatus::Finished));
    let (latest, _) = ok(apf(dir.path(), &["status"]));
    assert!(latest.starts_with(&format!("run {NEW} of field · finished")), "{latest}");
    let (old, _) = ok(apf(dir.path(), &["status", "aaaa"]));
    assert!(old.starts_with(&format!("run {OLD}")), "{old}");
    let out = apf(dir.path(), &["status", "2026"]).output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("matches 2 runs"), "{}", text(&out.stderr));
}

#[test]
fn logs_shows_events_and_container_output_in_sections_with_no_raw_escapes() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path(), &state(NEW, RunStatus::Finished));
    let mut c = Command::new(env!("CARGO_BIN_EXE_apf"));
    c.args(["logs", "bbbb", "gpt", "-m"]).arg(dir.path().join("experiment.toml"));
    let (out, _) = ok(c);
    let events_at = out.find("── events of gpt").expect("an events section");
    let output_at = out.find("── container output").expect("an output section");
    assert!(events_at < output_at, "{out}");
    assert!(out.contains("09:00:03.250 tool_call"), "{out}");
    assert!(out.contains(r#"{"name":"write_file"}"#), "{out}");
    assert!(out.contains("turn 1: calling model") && out.contains("·[31mred"), "{out}");
    assert!(!out.contains('\x1b'), "{out:?}");

    let mut c = Command::new(env!("CARGO_BIN_EXE_apf"));
    c.args(["logs", NEW, "nobody", "-m"]).arg(dir.path().join("experiment.toml"));
    let err = c.output().unwrap();
    assert!(!err.status.success());
    assert!(text(&err.stderr).contains("its models are gpt, opus"), "{}", text(&err.stderr));
}

#[test]
fn watch_off_a_terminal_prints_a_finished_run_once_and_ends() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path(), &state(NEW, RunStatus::Finished));
    let (out, _) = ok(apf(dir.path(), &["status", "--watch"]));
    assert_eq!(out.matches("run 20260302").count(), 1, "{out}");
    assert!(!out.contains('\x1b'), "no cursor movement into a pipe: {out:?}");
}

#[test]
fn a_running_run_nobody_holds_is_called_abandoned_and_not_watched_forever() {
    let dir = tempfile::tempdir().unwrap();
    let rd = write_run(dir.path(), &state(NEW, RunStatus::Running));
    std::fs::write(rd.lock(), "pid 1 on elsewhere since then").unwrap();
    let start = Instant::now();
    let (out, err) = ok(apf(dir.path(), &["status", "--watch", "--interval", "100ms"]));
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(out.contains("abandoned"), "{out}");
    assert!(err.contains("no apf process holds its lock"), "{err}");
    assert_eq!(std::fs::read_to_string(rd.lock()).unwrap(), "pid 1 on elsewhere since then");
}

#[test]
fn watch_repeats_while_the_run_goes_on_and_ends_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut st = state(NEW, RunStatus::Running);
    let rd = write_run(dir.path(), &st);
    let lock = RunLock::acquire(&rd).unwrap();
    let child = apf(dir.path(), &["status", "--watch", "--json", "--interval", "100ms"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    st.status = RunStatus::Finished;
    st.finished_at = Some(Utc::now());
    st.save(&rd).unwrap();
    drop(lock);
    let out = wait(child, Duration::from_secs(20));
    let docs: Vec<serde_json::Value> =
        out.lines().map(|l| serde_json::from_str(l).expect("one JSON document a line")).collect();
    assert!(docs.len() >= 3, "it kept refreshing: {} documents", docs.len());
    assert_eq!(docs.first().unwrap()["run"]["status"], "running");
    assert_eq!(docs.last().unwrap()["run"]["status"], "finished");
}

#[test]
fn logs_follow_prints_new_lines_as_they_come_and_stops_when_the_model_does() {
    let dir = tempfile::tempdir().unwrap();
    let mut st = state(NEW, RunStatus::Running);
    let rd = write_run(dir.path(), &st);
    let lock = RunLock::acquire(&rd).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_apf"));
    c.args(["logs", NEW, "opus", "-f", "-m"]).arg(dir.path().join("experiment.toml"));
    let child = c.stdout(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    append(
        &rd.events("opus"),
        r#"{"at":"2026-03-01T09:01:00Z","event":{"type":"snapshot","n":1}}"#,
    );
    append(&rd.log("opus"), "a line after the start");
    std::thread::sleep(Duration::from_millis(1200));
    let opus = st.models.get_mut("opus").unwrap();
    opus.status = ModelStatus::Done;
    st.save(&rd).unwrap();
    let out = wait(child, Duration::from_secs(20));
    drop(lock);
    assert!(out.contains("── following"), "{out}");
    assert!(out.contains("event  09:01:00.000 snapshot"), "{out}");
    assert!(out.contains("output a line after the start"), "{out}");
}

fn append(path: &PathBuf, line: &str) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    writeln!(f, "{line}").unwrap();
}

fn wait(mut child: std::process::Child, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
            assert!(status.success(), "exited with {status}: {out}");
            return out;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("apf did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
