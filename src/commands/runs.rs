//! `apf status`, `apf runs`, `apf logs` and `apf report`: reading runs, during and after apply.
//! The supervisor replaces `state.json` by rename and only appends to the other files, so a
//! reader sees whole states; reads of the appended files stop at the last whole line.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{IsTerminal, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{exit, manifest_dir, terminal_width};
use crate::cli::{LogsArgs, ReportArgs, RunsArgs, StatusArgs};
use crate::money::Usd;
use crate::printer;
use crate::state::{self, RunDir, RunState, RunStatus};
use crate::status::{self, Layout, Style, Text, View};

/// The version of the `apf runs --json` shape.
pub const RUNS_FORMAT: u32 = 1;

/// How many read failures in a row `status --watch` rides out before it gives up.
const WATCH_FAILURES: u32 = 5;

/// How often `logs --follow` looks for new lines.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

pub async fn status(a: &StatusArgs) -> Result<i32> {
    let (rd, _) = resolve(a.select.manifest.as_ref(), a.select.run.as_deref())?;
    if !a.watch {
        let view = snapshot(&rd)?;
        warn_if_abandoned(&view);
        emit(&view, a.json, Frame::Plain);
        return Ok(exit::OK);
    }

    let in_place = std::io::stdout().is_terminal() && !a.json;
    let mut failures = 0;
    let mut first = true;
    loop {
        match snapshot(&rd) {
            Ok(view) => {
                failures = 0;
                let frame = match (in_place, first) {
                    (true, true) => Frame::First(a.interval.0),
                    (true, false) => Frame::Again(a.interval.0),
                    (false, _) if a.json => Frame::Plain,
                    (false, _) => Frame::Stamped,
                };
                emit(&view, a.json, frame);
                first = false;
                if view.run.status != RunStatus::Running || view.run.abandoned {
                    warn_if_abandoned(&view);
                    return Ok(exit::OK);
                }
            }
            Err(e) if failures + 1 < WATCH_FAILURES => {
                failures += 1;
                printer::warn(format!("{e:#}; trying again"));
            }
            Err(e) => return Err(e),
        }
        tokio::select! {
            _ = tokio::time::sleep(a.interval.0) => {}
            _ = tokio::signal::ctrl_c() => return Ok(exit::OK),
        }
    }
}

/// How one frame of `status` is printed.
#[derive(Debug, Clone, Copy)]
enum Frame {
    /// As is: a single table, or one JSON document a line.
    Plain,
    /// Repeated output that is not a terminal: each table headed by its time.
    Stamped,
    /// The first frame of an in-place watch: clear the screen.
    First(Duration),
    /// Later frames: redraw over the last one, line by line, so nothing flickers.
    Again(Duration),
}

fn emit(view: &View, json: bool, frame: Frame) {
    if json {
        printer::data(view.to_json().to_string());
        return;
    }
    let style = Style { width: terminal_width(), color: printer::get().color };
    let table = status::render_view(view, style);
    let time = view.generated_at.format("%H:%M:%S UTC");
    match frame {
        Frame::Plain => printer::data(table),
        Frame::Stamped => printer::data(format!("{time}\n{table}\n")),
        Frame::First(every) | Frame::Again(every) => {
            let head = format!("every {} · {time} · Ctrl-C to stop", crate::duration::Span(every));
            let home = if matches!(frame, Frame::First(_)) { "\x1b[2J\x1b[H" } else { "\x1b[H" };
            let body: String =
                format!("{head}\n{table}").lines().map(|l| format!("{l}\x1b[K\n")).collect();
            printer::data(format!("{home}{body}\x1b[J"));
        }
    }
}

fn warn_if_abandoned(view: &View) {
    if view.run.abandoned {
        printer::warn(format!(
            "run {} is marked running, but no apf process holds its lock: the apply that ran it \
             is gone",
            view.run.id
        ));
        printer::info("help: `apf apply` on the same manifest resumes it; `apf destroy` cleans up");
    }
}

/// The view of a run as it is now.
fn snapshot(rd: &RunDir) -> Result<View> {
    let st = status::load_state(&rd.state())?;
    let now = Utc::now();
    let history = status::recent_spend(rd, &st, now);
    let mut view = View::new(&st, &history, now);
    view.run.abandoned = st.status == RunStatus::Running && lock_is_free(rd);
    Ok(view)
}

/// Whether nothing holds the run's lock. A shared lock is taken and dropped at once, so the
/// file is left as it was; a missing lock file says nothing, and counts as held.
fn lock_is_free(rd: &RunDir) -> bool {
    let Ok(file) = File::open(rd.lock()) else { return false };
    file.try_lock_shared().is_ok()
}

pub fn runs(a: &RunsArgs) -> Result<i32> {
    let dir = manifest_dir(a.manifest.as_ref());
    let runs = runs_of(&dir, a.manifest.as_ref());
    let now = Utc::now();
    let listed: Vec<Listed> = runs.iter().map(|(id, path)| listed(id, path, now)).collect();
    if a.json {
        let doc = serde_json::json!({ "format_version": RUNS_FORMAT, "runs": listed });
        printer::data(doc.to_string());
        return Ok(exit::OK);
    }
    if listed.is_empty() {
        printer::info(format!("no runs under {}", state::runs_dir(&dir).display()));
        return Ok(exit::OK);
    }
    let style = Style { width: terminal_width(), color: printer::get().color };
    printer::data(status::fit(
        &runs_layout(),
        &listed.iter().map(run_cells).collect::<Vec<_>>(),
        style,
    ));
    Ok(exit::OK)
}

/// One run in `apf runs`.
#[derive(Debug, Clone, Serialize)]
struct Listed {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    summary: Option<Summary>,
}

#[derive(Debug, Clone, Serialize)]
struct Summary {
    experiment: String,
    status: RunStatus,
    abandoned: bool,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    elapsed_s: i64,
    models: usize,
    by_status: BTreeMap<String, usize>,
    spent: Usd,
    budget: Usd,
}

fn listed(id: &str, path: &Path, now: DateTime<Utc>) -> Listed {
    let rd = RunDir { root: path.to_path_buf() };
    match status::load_state(&rd.state()) {
        Ok(st) => {
            let mut by_status = BTreeMap::new();
            for m in st.models.values() {
                *by_status.entry(status::status_key(m.status)).or_insert(0) += 1;
            }
            let end = st.finished_at.unwrap_or(now);
            let summary = Summary {
                experiment: st.experiment.clone(),
                status: st.status,
                abandoned: st.status == RunStatus::Running && lock_is_free(&rd),
                started_at: st.started_at,
                finished_at: st.finished_at,
                elapsed_s: (end - st.started_at).num_seconds().max(0),
                models: st.models.len(),
                by_status,
                spent: st.total_spent(),
                budget: st.total_budget(),
            };
            Listed { id: id.into(), error: None, summary: Some(summary) }
        }
        Err(e) => Listed { id: id.into(), error: Some(format!("{e:#}")), summary: None },
    }
}

fn runs_layout() -> Layout {
    Layout {
        headers: vec!["run", "experiment", "started (UTC)", "outcome", "models", "cost", "elapsed"],
        right: vec![5, 6],
        clip_front: vec![],
        steps: vec![(4, Some(16)), (1, Some(12)), (2, None), (4, None), (1, None)],
        bold_last: false,
    }
}

fn run_cells(l: &Listed) -> Vec<Text> {
    let sanitize = crate::printer::sanitize;
    let Some(s) = &l.summary else {
        let error = l.error.as_deref().unwrap_or("unreadable");
        return vec![
            status::plain(sanitize(&l.id)),
            status::plain(""),
            status::plain(""),
            status::colored("unreadable", comfy_table::Color::Red),
            status::plain(sanitize(error)),
            status::plain(""),
            status::plain(""),
        ];
    };
    let (outcome, color) = match (s.status, s.abandoned) {
        (RunStatus::Running, true) => ("abandoned".to_string(), comfy_table::Color::Yellow),
        (RunStatus::Running, false) => ("running".into(), comfy_table::Color::Cyan),
        (RunStatus::Finished, _) => ("finished".into(), comfy_table::Color::Green),
        (RunStatus::Interrupted, _) => ("interrupted".into(), comfy_table::Color::Yellow),
        (RunStatus::Failed, _) => ("failed".into(), comfy_table::Color::Red),
    };
    let mix: Vec<String> =
        s.by_status.iter().map(|(k, n)| format!("{n} {}", k.replace('_', " "))).collect();
    let live = s.status == RunStatus::Running && !s.abandoned;
    vec![
        status::plain(sanitize(&l.id)),
        status::plain(sanitize(&s.experiment)),
        status::plain(s.started_at.format("%Y-%m-%d %H:%M").to_string()),
        status::colored(outcome, color),
        status::plain(format!("{}: {}", s.models, mix.join(", "))),
        status::plain(format!("{} of {}", s.spent, s.budget)),
        status::plain(status::elapsed_text(Some(s.elapsed_s), live)),
    ]
}

pub async fn logs(a: &LogsArgs) -> Result<i32> {
    let (rd, st) = resolve(a.manifest.as_ref(), Some(&a.run))?;
    if !st.models.contains_key(&a.alias) {
        let known: Vec<&str> = st.models.keys().map(String::as_str).collect();
        bail!("run {} has no model {:?}; its models are {}", st.run_id, a.alias, known.join(", "));
    }
    let width = terminal_width().map(usize::from);
    let mut events = Tail::new(rd.events(&a.alias));
    let mut log = Tail::new(rd.log(&a.alias));

    printer::data(printer::bold(&format!(
        "── events of {} ({}) ──",
        a.alias,
        events.path.display()
    )));
    let lines = events.read_new()?;
    if lines.is_empty() {
        printer::data("(none yet)");
    }
    for line in lines {
        printer::data(event_line(&line, width));
    }
    printer::data(printer::bold(&format!("── container output ({}) ──", log.path.display())));
    let lines = log.read_new()?;
    if lines.is_empty() {
        printer::data("(none yet)");
    }
    for line in lines {
        printer::data(printer::sanitize(&line));
    }
    if !a.follow {
        return Ok(exit::OK);
    }

    printer::data(printer::bold("── following: new events and output as they arrive ──"));
    loop {
        let ended = match status::load_state(&rd.state()) {
            Ok(st) => {
                st.status != RunStatus::Running
                    || st.models.get(&a.alias).is_none_or(|m| m.status.is_final())
                    || lock_is_free(&rd)
            }
            Err(_) => false,
        };
        for line in events.read_new()? {
            printer::data(format!(
                "event  {}",
                event_line(&line, width.map(|w| w.saturating_sub(7)))
            ));
        }
        for line in log.read_new()? {
            printer::data(format!("output {}", printer::sanitize(&line)));
        }
        if ended {
            return Ok(exit::OK);
        }
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_EVERY) => {}
            _ = tokio::signal::ctrl_c() => return Ok(exit::OK),
        }
    }
}

/// An events.jsonl line for people: its time, its type, and the rest of it, cut to the
/// terminal's width when there is one.
fn event_line(line: &str, width: Option<usize>) -> String {
    #[derive(serde::Deserialize)]
    struct Record {
        at: DateTime<Utc>,
        event: serde_json::Map<String, serde_json::Value>,
    }
    let text = match serde_json::from_str::<Record>(line) {
        Ok(mut r) => {
            let kind = match r.event.remove("type") {
                Some(serde_json::Value::String(s)) => s,
                _ => "?".into(),
            };
            let rest = serde_json::Value::Object(r.event).to_string();
            let text = format!("{} {kind:<20} {rest}", r.at.format("%H:%M:%S%.3f"));
            printer::sanitize(&text)
        }
        Err(_) => printer::sanitize(line),
    };
    match width {
        Some(w) => status::clip(&text, w.max(20)),
        None => text,
    }
}

/// The new whole lines of a file that is being appended to.
struct Tail {
    path: PathBuf,
    offset: u64,
}

impl Tail {
    fn new(path: PathBuf) -> Tail {
        Tail { path, offset: 0 }
    }

    /// Every whole line written since the last call; a line still being written waits for
    /// the next. A file that shrank was replaced, and is read again from its start.
    fn read_new(&mut self) -> Result<Vec<String>> {
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(e).with_context(|| format!("could not read {}", self.path.display()));
            }
        };
        let len = file.metadata().map_or(0, |m| m.len());
        if len < self.offset {
            self.offset = 0;
        }
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(self.offset))
            .and_then(|_| file.take(len - self.offset).read_to_end(&mut bytes))
            .with_context(|| format!("could not read {}", self.path.display()))?;
        let Some(end) = bytes.iter().rposition(|b| *b == b'\n') else { return Ok(Vec::new()) };
        self.offset += end as u64 + 1;
        let text = String::from_utf8_lossy(&bytes[..end]);
        Ok(text.split('\n').map(str::to_string).collect())
    }
}

pub fn report(a: &ReportArgs) -> Result<i32> {
    let (rd, st) = resolve(a.select.manifest.as_ref(), a.select.run.as_deref())?;
    let html = crate::report::build(&rd, &st, Utc::now());
    match a.output.as_deref() {
        Some(p) if p == Path::new("-") => printer::data(html),
        out => {
            let path = out.map_or_else(|| rd.root.join("report.html"), Path::to_path_buf);
            state::write_atomic(&path, html.as_bytes())?;
            printer::info(format!("report: {}", path.display()));
        }
    }
    Ok(exit::OK)
}

/// The runs a command may pick from, newest first. A manifest named as a file narrows them to
/// that manifest's runs, since manifests in one folder share its `.apf/runs`; when none of
/// them names it (the folder was moved, say) they all stay.
fn runs_of(dir: &Path, manifest: Option<&PathBuf>) -> Vec<(String, PathBuf)> {
    let all = state::list_runs(dir);
    let Some(name) = manifest.filter(|m| m.is_file()).and_then(|m| m.file_name()) else {
        return all;
    };
    let mine: Vec<(String, PathBuf)> = all
        .iter()
        .filter(|(_, path)| {
            RunState::load(&path.join("state.json"))
                .is_ok_and(|st| st.manifest_path.file_name() == Some(name))
        })
        .cloned()
        .collect();
    if mine.is_empty() { all } else { mine }
}

/// A run by id, by a part of its id that only it has, or the latest (no id, or `latest`).
fn resolve(manifest: Option<&PathBuf>, run: Option<&str>) -> Result<(RunDir, RunState)> {
    let dir = manifest_dir(manifest);
    let runs = runs_of(&dir, manifest);
    let id = pick(&runs, run).map_err(|e| {
        e.context(format!("looking for runs under {}", state::runs_dir(&dir).display()))
    })?;
    match super::find_run(manifest, Some(&id)) {
        Ok(found) => Ok(found),
        // A read can meet a replace in progress; `load_state` tries again after a pause.
        Err(_) => {
            let rd = RunDir::new(&dir, &id);
            let st = status::load_state(&rd.state())?;
            Ok((rd, st))
        }
    }
}

fn pick(runs: &[(String, PathBuf)], want: Option<&str>) -> Result<String> {
    let ids: Vec<&str> = runs.iter().map(|(id, _)| id.as_str()).collect();
    match want {
        None | Some("latest") => match ids.first() {
            Some(id) => Ok(id.to_string()),
            None => {
                bail!("there are no runs; pass --manifest FILE to look beside another manifest")
            }
        },
        Some(want) if ids.contains(&want) => Ok(want.to_string()),
        Some(want) => {
            let matching: Vec<&str> = ids.iter().copied().filter(|id| id.contains(want)).collect();
            match matching.as_slice() {
                [one] => Ok(one.to_string()),
                [] => {
                    let recent: Vec<&str> = ids.iter().copied().take(5).collect();
                    let known = if recent.is_empty() { "none".into() } else { recent.join(", ") };
                    bail!("there is no run {want:?}; the latest are: {known}")
                }
                many => bail!("{want:?} matches {} runs: {}", many.len(), many.join(", ")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(ids: &[&str]) -> Vec<(String, PathBuf)> {
        ids.iter().map(|id| (id.to_string(), PathBuf::from(id))).collect()
    }

    #[test]
    fn a_run_is_found_by_id_by_a_unique_part_or_as_the_latest() {
        let r = runs(&["20260102-000000-bbbb", "20260101-000000-aaaa"]);
        assert_eq!(pick(&r, None).unwrap(), "20260102-000000-bbbb");
        assert_eq!(pick(&r, Some("latest")).unwrap(), "20260102-000000-bbbb");
        assert_eq!(pick(&r, Some("aaaa")).unwrap(), "20260101-000000-aaaa");
        let many = pick(&r, Some("2026")).unwrap_err().to_string();
        assert!(many.contains("matches 2 runs"), "{many}");
        let none = pick(&r, Some("zzzz")).unwrap_err().to_string();
        assert!(none.contains("20260101-000000-aaaa"), "names the runs there are: {none}");
        assert!(pick(&[], None).is_err());
    }

    #[test]
    fn a_tail_returns_whole_lines_only_and_starts_over_on_a_replaced_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("events.jsonl");
        let mut t = Tail::new(p.clone());
        assert!(t.read_new().unwrap().is_empty(), "a missing file has no lines");
        std::fs::write(&p, "one\ntwo\nthr").unwrap();
        assert_eq!(t.read_new().unwrap(), ["one", "two"]);
        std::fs::write(&p, "one\ntwo\nthree\n").unwrap();
        assert_eq!(t.read_new().unwrap(), ["three"]);
        std::fs::write(&p, "new\n").unwrap();
        assert_eq!(t.read_new().unwrap(), ["new"]);
    }

    #[test]
    fn an_event_line_shows_its_time_and_type_and_no_control_characters() {
        let line =
            r#"{"at":"2026-01-01T10:00:01.5Z","event":{"type":"tool_call","name":"a\u001b[2Jb"}}"#;
        let text = event_line(line, None);
        assert!(text.starts_with("10:00:01.500 tool_call"), "{text}");
        assert!(!text.contains('\x1b'), "{text:?}");
        assert_eq!(event_line("not json \x07", None), "not json ·");
    }
}
