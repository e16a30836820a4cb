//! `apf plan` and `apf apply`: preflight, the plan as a value, saving it, confirmation, and
//! handing the experiment to the supervisor. `apply` takes a manifest (plan, show, ask, run) or
//! a saved plan (check that nothing it saw has changed, record that it is applied, run).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::validate::load;
use super::{Endpoint, exit, terminal_width};
use crate::cli;
use crate::manifest::Experiment;
use crate::plan::saved::{self, Input};
use crate::plan::{Plan, PlanEndpoint};
use crate::preflight::{self, Inputs, Schedule};
use crate::printer;
use crate::state;

fn plan_endpoint(args: &cli::EndpointArgs, ep: &Endpoint) -> PlanEndpoint {
    PlanEndpoint { simulator: args.sim, base_url: ep.base_url.clone() }
}

async fn make_plan(exp: &Experiment, args: &cli::EndpointArgs, ep: &Endpoint) -> Plan {
    let client = crate::openrouter::Client::new(&ep.base_url);
    let docker = crate::docker::Docker::default();
    let report = preflight::run(Inputs {
        exp,
        client: &client,
        management_key: ep.management_key.as_ref(),
        management_key_env: &ep.management_key_env,
        docker: &docker,
        schedule: Schedule::Concurrent,
    })
    .await;
    Plan::new(exp, plan_endpoint(args, ep), &report)
}

pub async fn plan(a: &cli::PlanArgs) -> Result<i32> {
    let argv: Vec<String> = std::env::args().collect();
    let (file, out) = terraform_out(a, &argv)?;
    let Some(exp) = load_field(file.as_deref())? else { return Ok(exit::ERROR) };
    if exp.is_manifest_less() && out.is_some() {
        bail!("a field from PREFLIGHT_MODELS cannot be applied, so its plan is not saved");
    }
    let ep = Endpoint::resolve(&exp, &a.endpoint).await?;
    let plan = make_plan(&exp, &a.endpoint, &ep).await;
    ep.shutdown().await;

    if a.json {
        printer::data(serde_json::to_string_pretty(&plan)?);
    } else {
        printer::data(plan.render(a.detail).trim_end());
    }
    if plan.failed() {
        if out.is_some() {
            printer::error("the plan was not saved, since its preflight failed");
        }
        return Ok(exit::ERROR);
    }
    if exp.is_manifest_less() {
        printer::info("`apf init` writes a manifest to start from.");
    }
    if let Some(path) = out {
        saved::save(&plan, &path)?;
        printer::info(format!(
            "Saved the plan to {}. To carry out exactly this plan: apf apply {}{}",
            path.display(),
            if a.endpoint.sim { "--sim " } else { "" },
            path.display()
        ));
    }
    Ok(match (a.detailed_exitcode, plan.summary.changes) {
        (true, true) => exit::CHANGES,
        _ => exit::OK,
    })
}

/// terraform spells the flag `-out FILE` or `-out=FILE`, which clap reads as `-o` with the
/// value `ut` (or `ut=FILE`). When the raw arguments show that spelling, take FILE from them,
/// and the manifest is the other positional argument.
fn terraform_out(a: &cli::PlanArgs, argv: &[String]) -> Result<(Option<PathBuf>, Option<PathBuf>)> {
    let at = argv.iter().position(|x| x == "-out" || x.starts_with("-out="));
    let Some(at) = at else {
        if let Some(extra) = &a.rest {
            bail!("unexpected argument {}: `apf plan` takes one manifest", extra.display());
        }
        return Ok((a.file.clone(), a.out.clone()));
    };
    let out = match argv[at].strip_prefix("-out=") {
        Some(v) => PathBuf::from(v),
        None => match argv.get(at + 1) {
            Some(v) => PathBuf::from(v),
            None => bail!("-out needs a FILE"),
        },
    };
    let mut positionals = a.file.iter().chain(a.rest.as_ref());
    let file = positionals.find(|p| **p != out).cloned();
    Ok((file, Some(out)))
}

/// The manifest named, or the field `PREFLIGHT_MODELS` and `PREFLIGHT_BUDGET` describe.
fn load_field(file: Option<&Path>) -> Result<Option<Experiment>> {
    if let Some(path) = file {
        return load(path);
    }
    match crate::manifest::from_preflight_env() {
        Some(Ok(exp)) => Ok(Some(exp)),
        Some(Err(e)) => {
            super::validate::show_manifest_error(&e);
            Ok(None)
        }
        None => bail!(
            "`apf plan` needs a manifest, or PREFLIGHT_MODELS (and PREFLIGHT_BUDGET) in the \
             environment for a manifest-less preflight"
        ),
    }
}

pub async fn apply(a: &cli::ApplyArgs) -> Result<i32> {
    match saved::detect(&a.file)? {
        Input::Plan(plan) => apply_saved(a, *plan).await,
        Input::Manifest => apply_manifest(a).await,
    }
}

async fn apply_manifest(a: &cli::ApplyArgs) -> Result<i32> {
    let Some(exp) = load(&a.file)? else { return Ok(exit::ERROR) };
    // Refuse before the preflight, whose smoke checks spend money.
    if !a.auto_approve && !std::io::stdin().is_terminal() {
        bail!("apply needs confirmation, and there is no terminal to ask on; pass --auto-approve");
    }
    let ep = Endpoint::resolve(&exp, &a.endpoint).await?;
    let plan = make_plan(&exp, &a.endpoint, &ep).await;
    printer::info(plan.render(a.detail).trim_end());
    if plan.failed() {
        ep.shutdown().await;
        bail!("preflight failed; nothing was created");
    }
    if !a.auto_approve && !confirm()? {
        ep.shutdown().await;
        printer::info("Apply cancelled; nothing was created.");
        return Ok(exit::ERROR);
    }
    run(a, exp, ep, &plan).await
}

/// Carry out a saved plan, after checking that everything it saw is still so.
async fn apply_saved(a: &cli::ApplyArgs, plan: Plan) -> Result<i32> {
    if plan.failed() {
        bail!("{} records failed checks; it cannot be applied", a.file.display());
    }
    let Some(exp) = load(&plan.manifest)? else { return Ok(exit::ERROR) };
    let mut why = saved::stale_locally(&plan, &exp);
    let ep = Endpoint::resolve(&exp, &a.endpoint).await?;
    why.extend(saved::wrong_endpoint(&plan, &plan_endpoint(&a.endpoint, &ep)));
    if why.is_empty() {
        let client = crate::openrouter::Client::new(&ep.base_url);
        let docker = crate::docker::Docker::default();
        let now = preflight::recheck(&Inputs {
            exp: &exp,
            client: &client,
            management_key: ep.management_key.as_ref(),
            management_key_env: &ep.management_key_env,
            docker: &docker,
            schedule: Schedule::Concurrent,
        })
        .await;
        why.extend(saved::stale_remotely(&plan, &exp, &now));
    }
    if !why.is_empty() {
        ep.shutdown().await;
        for w in &why {
            printer::error(printer::sanitize(w));
        }
        bail!(
            "the saved plan {} no longer describes what apply would do; nothing was created. \
             Make a new one with `apf plan`",
            a.file.display()
        );
    }
    printer::info(plan.render(a.detail).trim_end());
    printer::info(format!(
        "Applying the saved plan {} (made {}); it was checked again just now.",
        a.file.display(),
        plan.created_at.format("%Y-%m-%d %H:%M:%S UTC")
    ));
    if let Err(e) = saved::mark_applied(&plan, &absolute(&a.file)) {
        ep.shutdown().await;
        return Err(e);
    }
    run(a, exp, ep, &plan).await
}

/// Hand the experiment to the supervisor, then keep the plan beside the run it became.
async fn run(a: &cli::ApplyArgs, exp: Experiment, ep: Endpoint, plan: &Plan) -> Result<i32> {
    let Some(management_key) = ep.management_key.clone() else {
        let var = ep.management_key_env.clone();
        ep.shutdown().await;
        bail!("${var} is not set");
    };
    let settings = crate::apply::Settings {
        base_url: ep.base_url.clone(),
        management_key,
        settle: a.settle.0,
        fresh: a.fresh,
    };
    let outcome = crate::apply::apply(exp, settings).await;
    ep.shutdown().await;
    let outcome = outcome?;

    let manifest_dir = outcome.state.manifest_path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let dir = state::RunDir::new(&manifest_dir, &outcome.run_id);
    if let Err(e) = keep_plan(plan, &dir, &outcome.run_id) {
        printer::warn(format!("the plan was not recorded beside the run: {e:#}"));
    }
    let width = terminal_width();
    printer::data(crate::status::render(&outcome.state, chrono::Utc::now(), width));
    printer::info(format!("results: {}", dir.results().display()));
    let failed =
        outcome.state.models.values().filter(|m| m.status == state::ModelStatus::Failed).count();
    if outcome.interrupted {
        return Ok(exit::INTERRUPTED);
    }
    if failed > 0 {
        printer::error(format!("{failed} of {} models failed", outcome.state.models.len()));
        return Ok(exit::ERROR);
    }
    Ok(exit::OK)
}

/// The plan a run carried out, in the run's folder; and the run, in the saved plan's record.
fn keep_plan(plan: &Plan, dir: &state::RunDir, run_id: &str) -> Result<()> {
    saved::save(plan, &dir.root.join("plan.json"))?;
    if saved::applied(plan).is_some() {
        saved::record_run(plan, run_id)?;
    }
    Ok(())
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf())
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> (cli::PlanArgs, Vec<String>) {
        let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let cli = cli::Cli::try_parse_from(&argv).unwrap();
        match cli.command {
            cli::Command::Plan(p) => (p, argv),
            _ => unreachable!("a plan command"),
        }
    }

    #[test]
    fn terraforms_out_spelling_is_accepted_in_every_position() {
        for args in [
            &["apf", "plan", "-out", "p.json", "exp.toml"][..],
            &["apf", "plan", "exp.toml", "-out", "p.json"],
            &["apf", "plan", "exp.toml", "-out=p.json"],
            &["apf", "plan", "exp.toml", "--out", "p.json"],
            &["apf", "plan", "-o", "p.json", "exp.toml"],
        ] {
            let (a, argv) = parse(args);
            let (file, out) = terraform_out(&a, &argv).unwrap();
            assert_eq!(file, Some(PathBuf::from("exp.toml")), "{args:?}");
            assert_eq!(out, Some(PathBuf::from("p.json")), "{args:?}");
        }
        let (a, argv) = parse(&["apf", "plan", "exp.toml"]);
        assert_eq!(terraform_out(&a, &argv).unwrap(), (Some(PathBuf::from("exp.toml")), None));
        let (a, argv) = parse(&["apf", "plan", "exp.toml", "other.toml"]);
        assert!(terraform_out(&a, &argv).is_err(), "two manifests are refused");
    }
}
