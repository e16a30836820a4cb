//! Reading status while the state is rewritten as fast as a writer can: every read is a whole
//! state of one generation, never a parse error or a mix of two, through the library and
//! through the `apf status --json` binary.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use apf::money::Usd;
use apf::state::{Counts, ModelState, ModelStatus, RunDir, RunState, RunStatus};
use apf::status::{SpendHistory, View, load_state};
use chrono::Utc;
use rust_decimal::Decimal;

const MODELS: usize = 20;

/// A state in which every model's figures say which generation it is.
fn generation(n: u64) -> RunState {
    let models = (0..MODELS)
        .map(|i| {
            let alias = format!("m{i:02}");
            let mut m = ModelState::new(&alias, "vendor/model", Usd::new(Decimal::new(5, 2)));
            m.status = ModelStatus::Running;
            m.started_at = Some(Utc::now());
            m.spent = Usd::new(Decimal::new(i64::try_from(n).unwrap(), 6));
            m.counts = Counts { events: n, tool_calls: n, ..Counts::default() };
            // Make each generation's file a different length, so a torn read could not parse.
            m.note = Some("x".repeat(usize::try_from(n % 97).unwrap()));
            (alias, m)
        })
        .collect();
    RunState {
        format_version: apf::state::STATE_FORMAT,
        run_id: "20260301-090000-beef".into(),
        experiment: "race".into(),
        manifest_path: "/nowhere/experiment.toml".into(),
        manifest_hash: String::new(),
        base_url: "http://127.0.0.1:9/api/v1".into(),
        started_at: Utc::now(),
        finished_at: None,
        status: RunStatus::Running,
        poll_every_ms: 1000,
        note: None,
        models,
    }
}

struct Writer {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(rd: RunDir) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let (s, w) = (stop.clone(), written.clone());
        let handle = std::thread::spawn(move || {
            let mut n = 1;
            while !s.load(Ordering::Relaxed) {
                generation(n).save(&rd).expect("the writer saves");
                w.store(n, Ordering::Relaxed);
                n += 1;
            }
        });
        Writer { stop, written, handle: Some(handle) }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn run_dir(root: &std::path::Path) -> RunDir {
    let rd = RunDir::new(root, "20260301-090000-beef");
    std::fs::create_dir_all(&rd.root).unwrap();
    generation(0).save(&rd).unwrap();
    rd
}

#[test]
fn reads_during_rapid_rewrites_are_whole_states_of_one_generation() {
    let dir = tempfile::tempdir().unwrap();
    let rd = run_dir(dir.path());
    let writer = Writer::start(rd.clone());

    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..3000 {
        let st = load_state(&rd.state()).expect("a read during a rewrite never fails");
        let gens: std::collections::BTreeSet<u64> =
            st.models.values().map(|m| m.counts.events).collect();
        assert_eq!(gens.len(), 1, "one generation per read: {gens:?}");
        let n = *gens.first().unwrap();
        assert!(
            st.models.values().all(
                |m| m.counts.tool_calls == n && m.note.as_ref().unwrap().len() as u64 == n % 97
            )
        );
        let view = View::new(&st, &SpendHistory::new(), Utc::now());
        assert_eq!(view.totals.events, n * MODELS as u64);
        seen.insert(n);
    }
    let written = writer.written.load(Ordering::Relaxed);
    drop(writer);
    assert!(written > 50, "the writer kept rewriting ({written} states)");
    assert!(seen.len() > 10, "reads saw the state change under them ({} generations)", seen.len());
}

#[test]
fn the_status_command_reads_whole_states_while_they_are_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let rd = run_dir(dir.path());
    let writer = Writer::start(rd.clone());
    let manifest = dir.path().join("experiment.toml");

    for _ in 0..15 {
        let out = Command::new(env!("CARGO_BIN_EXE_apf"))
            .args(["status", "--json", "-f"])
            .arg(&manifest)
            .output()
            .expect("run apf status");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "apf status failed: {stderr}");
        let doc: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("apf status --json prints one document");
        assert_eq!(doc["format_version"], 1);
        let models = doc["models"].as_array().unwrap();
        assert_eq!(models.len(), MODELS);
        let events: Vec<&serde_json::Value> = models.iter().map(|m| &m["events"]).collect();
        assert!(events.iter().all(|e| *e == events[0]), "one generation: {events:?}");
    }
    drop(writer);
}
