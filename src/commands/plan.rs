//! `apf plan` and `apf apply`: preflight, the plan as a value, confirmation, and handing the
//! experiment to the supervisor.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::validate::load;
use super::{Endpoint, exit, terminal_width};
use crate::cli;
use crate::manifest;
use crate::printer;
use crate::state;

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

pub async fn plan(a: &cli::PlanArgs) -> Result<i32> {
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

pub async fn apply(a: &cli::ApplyArgs) -> Result<i32> {
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
