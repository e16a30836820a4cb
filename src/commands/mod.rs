//! What each subcommand does, on top of the library. Each function returns the process's exit
//! code; errors carry their context and are printed once, by `main`.

mod destroy;
mod endpoint;
mod init;
mod plan;
mod runs;
mod validate;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::cli::{self, Command};
use crate::manifest;
use crate::printer;
use crate::state::{self, RunState};

pub use endpoint::Endpoint;

/// Exit codes, decided here once.
pub mod exit {
    pub const OK: i32 = 0;
    pub const ERROR: i32 = 1;
    /// `plan --detailed-exitcode`: there are actions.
    pub const CHANGES: i32 = 2;
    pub const INTERRUPTED: i32 = 130;
}

pub async fn run(cli: cli::Cli) -> Result<i32> {
    match cli.command {
        Command::Validate(a) => validate::validate(&a),
        Command::Schema => {
            printer::data(schema_text());
            Ok(exit::OK)
        }
        Command::Init(a) => init::init(&a),
        Command::Plan(a) => plan::plan(&a).await,
        Command::Apply(a) => plan::apply(&a).await,
        Command::Status(a) => runs::status(&a).await,
        Command::Runs(a) => runs::runs(&a),
        Command::Logs(a) => runs::logs(&a).await,
        Command::Report(a) => runs::report(&a),
        Command::Destroy(a) => destroy::destroy(&a).await,
        Command::Sim(a) => crate::sim::run(a).await.map(|_| exit::OK),
        Command::Completions { shell } => {
            let mut cmd = <cli::Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "apf", &mut out);
            printer::data(String::from_utf8_lossy(&out).trim_end());
            Ok(exit::OK)
        }
    }
}

/// The schema as committed in `schemas/experiment.schema.json`.
pub fn schema_text() -> String {
    serde_json::to_string_pretty(&manifest::schema()).unwrap_or_default()
}

/// The width to fit tables to: `COLUMNS`, or the terminal's; `None` when stdout is not a
/// terminal, so piped tables are never wrapped.
pub fn terminal_width() -> Option<u16> {
    if let Some(cols) = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()) {
        return Some(cols);
    }
    if !std::io::stdout().is_terminal() {
        return None;
    }
    comfy_table::Table::new().width()
}

/// The manifest a run command is about: the one named, or `experiment.toml` here.
fn manifest_dir(manifest: Option<&PathBuf>) -> PathBuf {
    let path = manifest.cloned().unwrap_or_else(|| PathBuf::from("experiment.toml"));
    let dir =
        if path.is_dir() { path } else { path.parent().map(Path::to_path_buf).unwrap_or_default() };
    if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir }
}

/// A run's state, by id or the latest.
fn find_run(manifest: Option<&PathBuf>, run: Option<&str>) -> Result<(state::RunDir, RunState)> {
    let dir = manifest_dir(manifest);
    let runs = state::list_runs(&dir);
    let id = match run {
        Some(id) => id.to_string(),
        None => match runs.first() {
            Some((id, _)) => id.clone(),
            None => bail!(
                "no runs under {}; pass --manifest FILE to look beside another manifest",
                state::runs_dir(&dir).display()
            ),
        },
    };
    let rd = state::RunDir::new(&dir, &id);
    let st = RunState::load(&rd.state())?;
    Ok((rd, st))
}
