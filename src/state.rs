//! Run folders and run state. Each run lives in `<manifest folder>/.apf/runs/<run id>/`:
//! `state.json` (rewritten atomically after every step, so a reader never sees half a file),
//! `lock` (held while a run is applied, naming its holder), and one folder per model with its
//! output (mounted at `/workspace/output`), its events and its container log.
//!
//! The state records intent before action: a key's hash before its container starts, and an
//! eject's reason before the signal is sent, so a crash at any point leaves enough behind for
//! `destroy` and for telling exit causes apart.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::money::Usd;

pub const STATE_FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    pub format_version: u32,
    pub run_id: String,
    pub experiment: String,
    pub manifest_path: PathBuf,
    pub manifest_hash: String,
    pub base_url: String,
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
    /// How often the supervisor reads spend, so readers can tell a late reading.
    #[serde(default)]
    pub poll_every_ms: u64,
    #[serde(default)]
    pub note: Option<String>,
    pub models: BTreeMap<String, ModelState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Finished,
    Interrupted,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelStatus {
    /// Waiting for a slot (`max_parallel`) or for its key.
    Pending,
    Running,
    /// The agent said it was done, or exited 0.
    Done,
    /// Its key's cap was reached: an expected end.
    BudgetSpent,
    /// apf stopped it by a rule.
    Ejected,
    /// It exited non-zero, could not start, or its key could not be made.
    Failed,
    /// The run was interrupted before it finished.
    Interrupted,
    /// The account could not pay (402); raising the budget would not help.
    NoCredits,
    /// Not started because the run stopped first.
    Skipped,
}

impl ModelStatus {
    pub fn is_final(self) -> bool {
        !matches!(self, ModelStatus::Pending | ModelStatus::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ModelStatus::Pending => "pending",
            ModelStatus::Running => "running",
            ModelStatus::Done => "done",
            ModelStatus::BudgetSpent => "budget spent",
            ModelStatus::Ejected => "ejected",
            ModelStatus::Failed => "failed",
            ModelStatus::Interrupted => "interrupted",
            ModelStatus::NoCredits => "no credits",
            ModelStatus::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRecord {
    pub hash: String,
    pub name: String,
    pub limit: Usd,
    #[serde(default)]
    pub revoked: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub removed: bool,
}

/// Why apf is about to stop a container, recorded before the signal is sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Intent {
    pub reason: String,
    pub rule: String,
    /// `kill` (at once) or `stop` (SIGTERM, then SIGKILL after the grace period).
    pub signal: String,
    pub at: DateTime<Utc>,
}

/// How a container ended, told apart (HAZARDS H11).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExitRecord {
    pub code: i64,
    pub oom_killed: bool,
    /// "exited", "killed by apf: budget", "OOM-killed", "killed from outside", "stopped after grace" …
    pub cause: String,
    #[serde(default)]
    pub last_lines: Vec<String>,
}

/// Tokens of every request a model made, where apf saw them (in gateway mode, all of them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_prompt_tokens: u64,
    pub cache_write_tokens: Option<u64>,
    pub requests: u64,
    /// Where the figures came from, e.g. "gateway".
    pub source: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counts {
    pub events: u64,
    pub tool_calls: u64,
    pub snapshots: u64,
    pub progress: u64,
    pub errors: u64,
    pub log_lines: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelState {
    pub alias: String,
    pub model: String,
    pub budget: Usd,
    pub status: ModelStatus,
    #[serde(default)]
    pub key: Option<KeyRecord>,
    #[serde(default)]
    pub container: Option<ContainerRecord>,
    #[serde(default)]
    pub intent: Option<Intent>,
    #[serde(default)]
    pub exit: Option<ExitRecord>,
    /// Spend so far, on this model's current key and any earlier ones.
    pub spent: Usd,
    /// Spend on keys of earlier attempts (a resumed run), already settled.
    #[serde(default)]
    pub spent_earlier: Usd,
    /// Keys of earlier attempts, kept so destroy and audits can find them.
    #[serde(default)]
    pub earlier_keys: Vec<KeyRecord>,
    /// How many times this model was started in this run.
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub spent_read_at: Option<DateTime<Utc>>,
    /// Set while spend readings fail: the last good reading is from `spent_read_at`.
    #[serde(default)]
    pub spend_stale: bool,
    /// Set when the final spend was read until it stopped changing; until then `spent` (and any
    /// overshoot) is provisional.
    #[serde(default)]
    pub spend_settled: bool,
    #[serde(default)]
    pub counts: Counts,
    /// Token counts, when apf metered the requests itself (gateway mode).
    #[serde(default)]
    pub usage: Option<Usage>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_event_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl ModelState {
    pub fn new(alias: &str, model: &str, budget: Usd) -> ModelState {
        ModelState {
            alias: alias.into(),
            model: model.into(),
            budget,
            status: ModelStatus::Pending,
            key: None,
            container: None,
            intent: None,
            exit: None,
            spent: Usd::ZERO,
            spent_earlier: Usd::ZERO,
            earlier_keys: Vec::new(),
            attempts: 0,
            spent_read_at: None,
            spend_stale: false,
            spend_settled: false,
            counts: Counts::default(),
            usage: None,
            started_at: None,
            ended_at: None,
            last_event_at: None,
            note: None,
            warnings: Vec::new(),
        }
    }

    /// What is left of the budget for a new key.
    pub fn remaining(&self) -> Usd {
        (self.budget - self.spent).max(Usd::ZERO)
    }

    /// Whether a resumed run should start this model again.
    pub fn unfinished(&self) -> bool {
        matches!(
            self.status,
            ModelStatus::Pending
                | ModelStatus::Running
                | ModelStatus::Interrupted
                | ModelStatus::Skipped
        )
    }

    /// Set aside the last attempt's key and container so the model can start again. Its spend
    /// is settled by the caller, which alone can read the old key.
    pub fn prepare_retry(&mut self) {
        if let Some(k) = self.key.take() {
            self.earlier_keys.push(k);
        }
        self.container = None;
        self.intent = None;
        self.exit = None;
        self.note = None;
        self.status = ModelStatus::Pending;
        self.ended_at = None;
    }

    /// How far spend went past the budget, if it did.
    pub fn overshoot(&self) -> Usd {
        (self.spent - self.budget).max(Usd::ZERO)
    }
}

/// Where a manifest keeps its runs.
pub fn runs_dir(manifest_dir: &Path) -> PathBuf {
    manifest_dir.join(".apf").join("runs")
}

/// A run's folder and the paths inside it.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn new(manifest_dir: &Path, run_id: &str) -> RunDir {
        RunDir { root: runs_dir(manifest_dir).join(run_id) }
    }

    pub fn state(&self) -> PathBuf {
        self.root.join("state.json")
    }

    pub fn results(&self) -> PathBuf {
        self.root.join("results.json")
    }

    pub fn lock(&self) -> PathBuf {
        self.root.join("lock")
    }

    pub fn model(&self, alias: &str) -> PathBuf {
        self.root.join("models").join(alias)
    }

    pub fn output(&self, alias: &str) -> PathBuf {
        self.model(alias).join("output")
    }

    pub fn events(&self, alias: &str) -> PathBuf {
        self.model(alias).join("events.jsonl")
    }

    /// `{"at": …, "spent": "…"}` per line, each time the model's spend changed.
    pub fn spend(&self, alias: &str) -> PathBuf {
        self.model(alias).join("spend.jsonl")
    }

    /// The container's output with times: `{"at", "stream": "stdout"|"stderr", "line"}`.
    pub fn output_log(&self, alias: &str) -> PathBuf {
        self.model(alias).join("output.jsonl")
    }

    pub fn log(&self, alias: &str) -> PathBuf {
        self.model(alias).join("container.log")
    }

    /// Create the folders of a model. The output folder is writable by any user, since the
    /// agent inside may run as one other than apf's.
    pub fn create_model(&self, alias: &str) -> Result<()> {
        let out = self.output(alias);
        fs::create_dir_all(&out).with_context(|| format!("could not create {}", out.display()))?;
        set_mode(&out, 0o777)?;
        Ok(())
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("could not set permissions of {}", path.display()))
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) -> Result<()> {
    Ok(())
}

/// Write `bytes` to `path` so that a reader sees the old file or the new one, never a mix: a
/// temporary file in the same folder, synced, then renamed over the target.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        anyhow::Error::new(e).context(format!("could not write {}", path.display()))
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o644));
    }
    Ok(())
}

impl RunState {
    pub fn save(&self, dir: &RunDir) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).context("could not serialise the run state")?;
        write_atomic(&dir.state(), &json)
    }

    pub fn load(path: &Path) -> Result<RunState> {
        let text = fs::read_to_string(path)
            .with_context(|| format!("could not read the run state {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("the run state {} is not readable", path.display()))
    }

    pub fn total_spent(&self) -> Usd {
        self.models.values().map(|m| m.spent).sum()
    }

    pub fn total_budget(&self) -> Usd {
        self.models.values().map(|m| m.budget).sum()
    }
}

/// The runs of a manifest folder, newest first.
pub fn list_runs(manifest_dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = fs::read_dir(runs_dir(manifest_dir)) else { return Vec::new() };
    let mut runs: Vec<(String, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("state.json").is_file())
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
        .collect();
    runs.sort_by(|a, b| b.0.cmp(&a.0));
    runs
}

/// A run id that sorts by time: `20261204-142600-a1b2`.
pub fn new_run_id() -> String {
    let now = Utc::now();
    let suffix: u16 = rand::random();
    format!("{}-{suffix:04x}", now.format("%Y%m%d-%H%M%S"))
}

/// The exclusive lock of a run being applied. The file names its holder, so a second apply
/// can say who holds it.
pub struct RunLock {
    _file: File,
}

impl RunLock {
    pub fn acquire(dir: &RunDir) -> Result<RunLock> {
        let path = dir.lock();
        let mut file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("could not open {}", path.display()))?;
        if file.try_lock().is_err() {
            let holder = fs::read_to_string(&path).unwrap_or_default();
            anyhow::bail!(
                "run {} is being applied by another apf ({})",
                dir.root.display(),
                holder.trim()
            );
        }
        file.set_len(0).ok();
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "this host".into());
        let _ =
            write!(file, "pid {} on {host} since {}", std::process::id(), Utc::now().to_rfc3339());
        Ok(RunLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("budget.txt");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "second");
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_second_lock_on_a_run_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir { root: dir.path().to_path_buf() };
        let _held = RunLock::acquire(&run).unwrap();
        let err = RunLock::acquire(&run).err().unwrap().to_string();
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
    }
}
