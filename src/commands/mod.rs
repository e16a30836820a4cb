//! What each subcommand does, on top of the library. Each function returns the process's exit
//! code; errors carry their context and are printed once, by `main`.

mod destroy;
mod endpoint;
mod init;
mod runs;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cli::{self, Command};
use crate::manifest::{self, LoadError};
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
        Command::Validate(a) => validate(&a),
        Command::Schema => {
            printer::data(schema_text());
            Ok(exit::OK)
        }
        Command::Init(a) => init::init(&a),
        Command::Plan(a) => plan(&a).await,
        Command::Apply(a) => apply(&a).await,
        Command::Status(a) => runs::status(&a).await,
        Command::Runs(a) => runs::runs(&a),
        Command::Logs(a) => runs::logs(&a).await,
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

fn validate(a: &cli::ValidateArgs) -> Result<i32> {
    match manifest::load(&a.file) {
        Ok(exp) => {
            if a.json {
                let v = serde_json::json!({
                    "format_version": 1, "file": a.file.display().to_string(), "valid": true, "problems": []
                });
                printer::data(v.to_string());
            } else {
                printer::info(format!(
                    "{} is valid: {} models",
                    a.file.display(),
                    exp.models.len()
                ));
            }
            Ok(exit::OK)
        }
        Err(LoadError::Invalid(e)) => {
            if a.json {
                printer::data(e.to_json().to_string());
            } else {
                show_manifest_error(&e);
            }
            Ok(exit::ERROR)
        }
        Err(e @ LoadError::Read { .. }) => Err(e.into()),
    }
}

/// Every problem, each with its snippet and labelled span.
pub fn show_manifest_error(e: &manifest::ManifestError) {
    let handler = miette::GraphicalReportHandler::new_themed(if printer::get().color {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    });
    for (report, short) in e.reports().iter().zip(e.short_lines()) {
        let mut text = String::new();
        let _ = handler.render_report(&mut text, report.as_ref());
        printer::error(short);
        printer::info(text.trim_end_matches('\n'));
    }
    printer::error(e.to_string());
}

/// Load a manifest, showing its problems when it has any.
fn load(path: &Path) -> Result<Option<manifest::Experiment>> {
    match manifest::load(path) {
        Ok(exp) => Ok(Some(exp)),
        Err(LoadError::Invalid(e)) => {
            show_manifest_error(&e);
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

async fn preflight(exp: &manifest::Experiment, ep: &Endpoint) -> crate::plan::Plan {
    let client = crate::openrouter::Client::new(&ep.base_url);
    let docker = crate::docker::Docker::default();
    let report = crate::preflight::run(crate::preflight::Inputs {
        exp,
        client: &client,
        management_key: ep.management_key.as_ref(),
        management_key_env: &ep.management_key_env,
        docker: &docker,
    })
    .await;
    crate::plan::Plan::new(exp, &ep.base_url, &report)
}

async fn plan(a: &cli::PlanArgs) -> Result<i32> {
    let Some(exp) = load(&a.file)? else { return Ok(exit::ERROR) };
    let ep = Endpoint::resolve(&exp, &a.endpoint).await?;
    let plan = preflight(&exp, &ep).await;
    ep.shutdown().await;
    if a.json {
        printer::data(serde_json::to_string_pretty(&plan)?);
    } else {
        printer::data(plan.render());
    }
    Ok(match (plan.failed(), a.detailed_exitcode) {
        (true, _) => exit::ERROR,
        (false, true) if !plan.models.is_empty() => exit::CHANGES,
        _ => exit::OK,
    })
}

async fn apply(a: &cli::ApplyArgs) -> Result<i32> {
    let Some(exp) = load(&a.file)? else { return Ok(exit::ERROR) };
    let ep = Endpoint::resolve(&exp, &a.endpoint).await?;
    let plan = preflight(&exp, &ep).await;
    printer::info(plan.render());
    if plan.failed() {
        ep.shutdown().await;
        bail!("preflight failed; nothing was created");
    }
    if !a.auto_approve && !confirm()? {
        ep.shutdown().await;
        printer::info("Apply cancelled; nothing was created.");
        return Ok(exit::ERROR);
    }
    let Some(management_key) = ep.management_key.clone() else {
        bail!("${} is not set", ep.management_key_env);
    };
    let settings = crate::apply::Settings {
        base_url: ep.base_url.clone(),
        management_key,
        settle: a.settle.0,
    };
    let outcome = crate::apply::apply(exp, settings).await;
    ep.shutdown().await;
    let outcome = outcome?;
    let width = terminal_width();
    printer::data(crate::status::render(&outcome.state, chrono::Utc::now(), width));
    let dir = state::RunDir::new(
        outcome.state.manifest_path.parent().unwrap_or(Path::new(".")),
        &outcome.run_id,
    );
    printer::info(format!("results: {}", dir.results().display()));
    Ok(if outcome.interrupted { exit::INTERRUPTED } else { exit::OK })
}

/// Ask on the terminal; with no terminal, refuse rather than guess.
fn confirm() -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("apply needs confirmation, and there is no terminal to ask on; pass --auto-approve");
    }
    printer::info("Apply this plan? Only 'yes' is accepted: ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).context("could not read the answer")?;
    Ok(answer.trim() == "yes")
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
