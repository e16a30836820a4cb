//! Live progress on a terminal: one line per model with its status, spend against budget,
//! tool calls and elapsed time, redrawn from the run state. Off the terminal (CI, pipes,
//! `--quiet`) nothing is drawn and the plain lines of the supervisor are all there is.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Run;
use crate::printer;
use crate::state::ModelStatus;

pub(crate) struct Progress {
    bars: MultiProgress,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// Start drawing, when stderr is an interactive terminal.
    pub(crate) fn start(run: &Arc<Run>) -> Option<Progress> {
        if !printer::is_interactive() {
            return None;
        }
        let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4));
        let style = ProgressStyle::with_template("{prefix:>14} {wide_msg}").ok()?;
        let lines: BTreeMap<String, ProgressBar> = run
            .exp
            .models
            .iter()
            .map(|m| {
                let bar = bars.add(ProgressBar::new_spinner().with_style(style.clone()));
                bar.set_prefix(m.alias.clone());
                (m.alias.clone(), bar)
            })
            .collect();
        printer::set_bars(bars.clone());
        let run = run.clone();
        let task = tokio::spawn(async move {
            loop {
                draw(&run, &lines).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Some(Progress { bars, task })
    }

    pub(crate) fn finish(self) {
        self.task.abort();
        printer::clear_bars();
        let _ = self.bars.clear();
    }
}

async fn draw(run: &Run, lines: &BTreeMap<String, ProgressBar>) {
    let state = run.state.lock().await;
    let now = chrono::Utc::now();
    for (alias, bar) in lines {
        let Some(m) = state.models.get(alias) else { continue };
        let elapsed =
            m.started_at.map(|s| (m.ended_at.unwrap_or(now) - s).num_seconds()).unwrap_or(0);
        let status = match m.status {
            ModelStatus::Running => printer::green("running"),
            ModelStatus::Done => printer::green("done"),
            ModelStatus::Pending => "pending".to_string(),
            other => printer::yellow(other.as_str()),
        };
        let stale = if m.spend_stale { " (spend stale)" } else { "" };
        bar.set_message(format!(
            "{status:<14} {} of {}{stale}  {} tool calls  {}m{:02}s",
            m.spent,
            m.budget,
            m.counts.tool_calls,
            elapsed / 60,
            elapsed % 60
        ));
        bar.tick();
    }
}
