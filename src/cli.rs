//! The command line, as clap sees it. Only parsing lives here; `commands` acts on it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::printer::ColorChoice;

/// Run a field of LLM agents as a declarative, budget-capped experiment.
#[derive(Debug, Parser)]
#[command(name = "apf", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// More output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors, warnings and data.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// When to colour output. NO_COLOR and CLICOLOR_FORCE are honoured under `auto`.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a manifest; every problem is shown at its line and column.
    Validate(ValidateArgs),
    /// Print the manifest's JSON Schema.
    Schema,
    /// Write a commented starter manifest.
    Init(InitArgs),
    /// Run the preflight checks and show what apply would do.
    Plan(PlanArgs),
    /// Provision keys, run the containers, supervise, tear down and report.
    Apply(ApplyArgs),
    /// Show the field of a run as a table.
    Status(StatusArgs),
    /// List the runs of a manifest folder.
    Runs(RunsArgs),
    /// Show a model's events and container output.
    Logs(LogsArgs),
    /// Write a run's results and charts as one self-contained HTML page.
    Report(ReportArgs),
    /// Revoke every key and remove every container a run left behind.
    Destroy(DestroyArgs),
    /// Serve a local OpenRouter-compatible API for dry runs and tests.
    Sim(crate::sim::SimArgs),
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The manifest.
    pub file: PathBuf,
    /// Problems as JSON (a versioned shape with ranges), for editors and CI.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write it.
    #[arg(default_value = "experiment.toml")]
    pub file: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
}

/// Where OpenRouter is, for commands that talk to it.
#[derive(Debug, Args, Clone)]
pub struct EndpointArgs {
    /// Use apf's built-in OpenRouter simulator, started for this command: no account, no money.
    #[arg(long)]
    pub sim: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The manifest. Without one, PREFLIGHT_MODELS and PREFLIGHT_BUDGET describe the field,
    /// which can then be checked but not applied.
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// The plan as JSON (a versioned shape, the same as a saved plan's).
    #[arg(long)]
    pub json: bool,
    /// Show everything: passed items of each check, and each model's key expiry, labels,
    /// environment and worst-case overshoot.
    #[arg(long)]
    pub detail: bool,
    /// Save the plan to FILE, for `apf apply FILE` to carry out exactly (terraform's `-out FILE`
    /// is accepted too).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Exit 0 when there is nothing to do, 1 on error, 2 when there are actions.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Where `-out FILE` leaves its FILE: clap reads `-out` as `-o ut`.
    #[arg(hide = true)]
    pub rest: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The manifest, or a plan saved by `apf plan --out` (carried out exactly, without asking,
    /// and refused when anything it saw has changed or it was applied already).
    pub file: PathBuf,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// Show the whole plan before asking, as `apf plan --detail` does.
    #[arg(long)]
    pub detail: bool,
    /// Longest time to wait for final spend to settle after the agents stop.
    #[arg(long, default_value = "30s", value_parser = parse_span)]
    pub settle: crate::duration::Span,
    /// Start a new run even when the latest run of this manifest was interrupted (by default
    /// applying again resumes it, starting only the models that did not finish).
    #[arg(long)]
    pub fresh: bool,
}

#[derive(Debug, Args)]
pub struct RunSelector {
    /// A run id (default: the latest run).
    pub run: Option<String>,
    /// The manifest whose runs to look at (default: experiment.toml or the only *.toml here).
    #[arg(long, short = 'f')]
    pub manifest: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub select: RunSelector,
    /// The field as JSON (a versioned shape); with --watch, one document a line.
    #[arg(long)]
    pub json: bool,
    /// Refresh until the run ends: in place on a terminal, else one table after another.
    #[arg(long, short = 'w')]
    pub watch: bool,
    /// How often --watch refreshes.
    #[arg(long, default_value = "2s", value_parser = parse_span, requires = "watch")]
    pub interval: crate::duration::Span,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// The manifest whose runs to list (default: experiment.toml here).
    #[arg(long, short = 'f')]
    pub manifest: Option<PathBuf>,
    /// The runs as JSON (a versioned shape).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The run id, a unique part of one, or `latest`.
    pub run: String,
    /// The model's alias.
    pub alias: String,
    /// The manifest whose runs to look at.
    #[arg(long, short = 'm')]
    pub manifest: Option<PathBuf>,
    /// Keep printing as the model writes, until it stops.
    #[arg(short, long)]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub select: RunSelector,
    /// Where to write the page (default: report.html in the run's folder; `-` for stdout).
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub select: RunSelector,
    /// The experiment name, when there is no manifest or state to read it from.
    #[arg(long)]
    pub experiment: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
}

fn parse_span(s: &str) -> Result<crate::duration::Span, String> {
    crate::duration::Span::parse(s)
}
