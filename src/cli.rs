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
    /// The manifest.
    pub file: PathBuf,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// The plan as JSON.
    #[arg(long)]
    pub json: bool,
    /// Exit 0 when there is nothing to do, 1 on error, 2 when there are actions.
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The manifest.
    pub file: PathBuf,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// Longest time to wait for final spend to settle after the agents stop.
    #[arg(long, default_value = "30s", value_parser = parse_span)]
    pub settle: crate::duration::Span,
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
    /// The table as JSON.
    #[arg(long)]
    pub json: bool,
    /// Refresh until the run ends.
    #[arg(long)]
    pub watch: bool,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// The manifest whose runs to list.
    #[arg(long, short = 'f')]
    pub manifest: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The run id.
    pub run: String,
    /// The model's alias.
    pub alias: String,
    /// The manifest whose runs to look at.
    #[arg(long, short = 'm')]
    pub manifest: Option<PathBuf>,
    /// Keep printing as the model writes.
    #[arg(short, long)]
    pub follow: bool,
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
