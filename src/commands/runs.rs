//! `apf status`, `apf runs` and `apf logs`: reading runs, during and after apply. Every read is
//! of a file written atomically, so a half-written state is never seen.

use std::time::Duration;

use anyhow::{Context, Result};

use super::{exit, find_run, manifest_dir, terminal_width};
use crate::cli::{LogsArgs, RunsArgs, StatusArgs};
use crate::printer;
use crate::state::{self, RunState, RunStatus};

pub async fn status(a: &StatusArgs) -> Result<i32> {
    loop {
        let (_, st) = find_run(a.select.manifest.as_ref(), a.select.run.as_deref())?;
        let now = chrono::Utc::now();
        if a.json {
            printer::data(crate::status::to_json(&st, now).to_string());
        } else {
            if a.watch {
                printer::data("\x1b[2J\x1b[H");
            }
            printer::data(crate::status::render(&st, now, terminal_width()));
        }
        if !a.watch || st.status != RunStatus::Running {
            return Ok(exit::OK);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

pub fn runs(a: &RunsArgs) -> Result<i32> {
    let dir = manifest_dir(a.manifest.as_ref());
    let runs = state::list_runs(&dir);
    if runs.is_empty() {
        printer::info(format!("no runs under {}", state::runs_dir(&dir).display()));
    }
    for (id, path) in runs {
        match RunState::load(&path.join("state.json")) {
            Ok(st) => printer::data(format!(
                "{id}  {:<11} {} models  spent {} of {}",
                format!("{:?}", st.status).to_lowercase(),
                st.models.len(),
                st.total_spent(),
                st.total_budget()
            )),
            Err(e) => printer::data(format!("{id}  unreadable: {e:#}")),
        }
    }
    Ok(exit::OK)
}

pub async fn logs(a: &LogsArgs) -> Result<i32> {
    let (rd, _) = find_run(a.manifest.as_ref(), Some(&a.run))?;
    let events = rd.events(&a.alias);
    let log = rd.log(&a.alias);
    if !rd.model(&a.alias).exists() {
        anyhow::bail!("run {} has no model {:?}", a.run, a.alias);
    }
    let mut offsets = [0u64, 0u64];
    loop {
        for (i, path) in [&events, &log].iter().enumerate() {
            let text = match std::fs::read(path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => {
                    return Err(e).with_context(|| format!("could not read {}", path.display()));
                }
            };
            let start = usize::try_from(offsets[i]).unwrap_or(0).min(text.len());
            let new = String::from_utf8_lossy(&text[start..]);
            for line in new.lines() {
                printer::data(printer::sanitize(line));
            }
            offsets[i] = text.len() as u64;
        }
        if !a.follow {
            return Ok(exit::OK);
        }
        let st = RunState::load(&rd.state())?;
        if st.status != RunStatus::Running {
            return Ok(exit::OK);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
