//! Saved plans (`apf plan --out FILE`, then `apf apply FILE`). A saved plan is carried out only
//! while the world is the one it was made in (HAZARDS H18): the same manifest bytes and input
//! files, no run started since, the same endpoint, a balance that still covers the budgets,
//! every model still listed at the same prices (H5), and the same image id. It is applied at
//! most once: the application is recorded under the plan's id in the manifest folder's
//! `.apf/plans/`, created exclusively, so a copy of the plan file is refused too.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{PLAN_FORMAT, PLAN_KIND, Plan, PlanEndpoint, input_files};
use crate::manifest::Experiment;
use crate::money::Price;
use crate::preflight::Current;

/// What `apf apply FILE` was given.
pub enum Input {
    Plan(Box<Plan>),
    Manifest,
}

/// A plan file is JSON that says it is one; anything else is taken for a manifest.
pub fn detect(path: &Path) -> Result<Input> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read {}", path.display()))?;
    if !text.trim_start().starts_with('{') {
        return Ok(Input::Manifest);
    }
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is neither a manifest nor a readable plan", path.display()))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(PLAN_KIND) {
        bail!("{} is JSON but not an apf plan (no \"format\": \"{PLAN_KIND}\")", path.display());
    }
    let version = value.get("format_version").and_then(|v| v.as_u64());
    if version != Some(u64::from(PLAN_FORMAT)) {
        bail!(
            "{} is a plan of format version {}, and this apf reads version {PLAN_FORMAT}; make \
             the plan again with this apf",
            path.display(),
            version.map_or("unknown".to_string(), |v| v.to_string())
        );
    }
    let plan: Plan = serde_json::from_value(value)
        .with_context(|| format!("{} is not a well-formed apf plan", path.display()))?;
    Ok(Input::Plan(Box::new(plan)))
}

pub fn save(plan: &Plan, path: &Path) -> Result<()> {
    let json = serde_json::to_vec_pretty(plan).context("could not serialise the plan")?;
    crate::state::write_atomic(path, &json)
}

/// Where applications of saved plans are recorded.
pub fn plans_dir(manifest_dir: &Path) -> PathBuf {
    manifest_dir.join(".apf").join("plans")
}

fn marker(plan: &Plan) -> PathBuf {
    let dir = plan.manifest.parent().unwrap_or(Path::new("."));
    plans_dir(dir).join(format!("{}.applied.json", plan.plan_id))
}

/// The record of a saved plan's application.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Applied {
    pub plan_id: String,
    pub plan_file: PathBuf,
    pub applied_at: DateTime<Utc>,
    pub pid: u32,
    pub run_id: Option<String>,
}

/// The plan's application, if it was applied (or is being applied) already.
pub fn applied(plan: &Plan) -> Option<Applied> {
    let text = std::fs::read_to_string(marker(plan)).ok()?;
    serde_json::from_str(&text).ok()
}

fn describe(a: &Applied) -> String {
    let run = a.run_id.as_ref().map_or(String::new(), |r| format!(" as run {r}"));
    format!("applied at {}{run} (pid {})", a.applied_at.to_rfc3339(), a.pid)
}

/// Record that the plan is being applied, or refuse when it was already. The record is created
/// exclusively, so two applies of one plan started together cannot both pass.
pub fn mark_applied(plan: &Plan, plan_file: &Path) -> Result<()> {
    let path = marker(plan);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("could not create {}", dir.display()))?;
    }
    let record = Applied {
        plan_id: plan.plan_id.clone(),
        plan_file: plan_file.to_path_buf(),
        applied_at: Utc::now(),
        pid: std::process::id(),
        run_id: None,
    };
    let mut file = match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let how = applied(plan).map_or("applied already".to_string(), |a| describe(&a));
            bail!("this plan was {how}; a plan is applied once: make a new one with `apf plan`");
        }
        Err(e) => return Err(e).with_context(|| format!("could not create {}", path.display())),
    };
    let json = serde_json::to_vec_pretty(&record).context("could not serialise the record")?;
    file.write_all(&json)
        .and_then(|_| file.sync_all())
        .with_context(|| format!("could not write {}", path.display()))?;
    Ok(())
}

/// Add the run the plan became to its record.
pub fn record_run(plan: &Plan, run_id: &str) -> Result<()> {
    let path = marker(plan);
    let mut record = applied(plan).context("the plan's application record is gone")?;
    record.run_id = Some(run_id.to_string());
    let json = serde_json::to_vec_pretty(&record).context("could not serialise the record")?;
    crate::state::write_atomic(&path, &json)
}

/// Why the plan no longer describes what apply would do, judged from local files: the manifest,
/// the input files, the runs beside the manifest, and an earlier application.
pub fn stale_locally(plan: &Plan, exp: &Experiment) -> Vec<String> {
    let mut why = Vec::new();
    if let Some(a) = applied(plan) {
        why.push(format!("this plan was {}; a plan is applied once", describe(&a)));
    }
    if exp.manifest_hash != plan.manifest_hash {
        why.push(format!(
            "the manifest {} changed since the plan was made",
            exp.manifest_path.display()
        ));
    } else if !matches_manifest(plan, exp) {
        why.push("the plan file does not describe its own manifest: it was edited".into());
    }
    let now = input_files(exp);
    for then in &plan.inputs {
        match now.iter().find(|f| f.role == then.role && f.path == then.path) {
            Some(f) if f.sha256 == then.sha256 => {}
            Some(_) => why.push(format!("{} changed since the plan was made", then.path.display())),
            None => {
                why.push(format!("{} is no longer an input of the manifest", then.path.display()))
            }
        }
    }
    let runs: Vec<String> =
        crate::state::list_runs(&exp.manifest_dir).into_iter().map(|(id, _)| id).collect();
    for r in runs.iter().filter(|r| !plan.seen.runs.contains(r)) {
        why.push(format!("run {r} of this manifest was started after the plan was made"));
    }
    why
}

/// Whether the plan's models and image are the manifest's, so that what was shown is what
/// apply, which works from the manifest, will do.
fn matches_manifest(plan: &Plan, exp: &Experiment) -> bool {
    let planned = plan.models.iter().map(|m| (&m.alias, &m.model, m.budget, &m.extra_models));
    let declared = exp.models.iter().map(|m| (&m.alias, &m.id, m.budget, &m.extra_models));
    planned.eq(declared) && plan.container.image == exp.container.image
}

/// Why the plan does not fit the endpoint apply would talk to.
pub fn wrong_endpoint(plan: &Plan, now: &PlanEndpoint) -> Option<String> {
    match (plan.endpoint.simulator, now.simulator) {
        (true, true) => None,
        (true, false) => {
            Some("the plan was made against the built-in simulator; pass --sim to apply it".into())
        }
        (false, true) => Some(format!(
            "the plan was made against {}, not the built-in simulator; apply it without --sim",
            plan.endpoint.base_url
        )),
        (false, false) => {
            let same =
                plan.endpoint.base_url.trim_end_matches('/') == now.base_url.trim_end_matches('/');
            (!same).then(|| {
                format!(
                    "the plan was made against {}, and apply would talk to {}",
                    plan.endpoint.base_url, now.base_url
                )
            })
        }
    }
}

/// Why the plan no longer fits the account, the catalog or the image.
pub fn stale_remotely(plan: &Plan, exp: &Experiment, now: &Current) -> Vec<String> {
    let mut why = Vec::new();
    let total = plan.summary.total_budget;
    match &now.balance {
        Ok(b) if *b < total => why.push(format!(
            "the balance {b} no longer covers the plan's budgets {total} (it was {})",
            plan.seen.balance.map_or("unknown".to_string(), |s| s.to_string())
        )),
        Ok(b) if *b <= exp.preflight.min_balance => why.push(format!(
            "the balance {b} is no longer above the minimum {}",
            exp.preflight.min_balance
        )),
        Ok(_) => {}
        Err(e) => why.push(format!("the balance could not be read again: {e}")),
    }
    match &now.catalog {
        Ok(catalog) => {
            for (id, then) in &plan.seen.prices {
                match catalog.get(id) {
                    None => {
                        why.push(crate::preflight::unlisted(id, catalog.keys().map(String::as_str)))
                    }
                    Some(Err(e)) => why.push(e.clone()),
                    Some(Ok(p)) => {
                        let changed = |what: &str, a: Price, b: Price| {
                            (a != b).then(|| format!("{id}'s {what} price changed from {a} to {b}"))
                        };
                        why.extend(changed("prompt", then.prompt, p.prompt));
                        why.extend(changed("completion", then.completion, p.completion));
                    }
                }
            }
        }
        Err(e) => why.push(format!("the catalog could not be read again: {e}")),
    }
    match (&now.image, &plan.seen.image_id) {
        (Ok(Some(img)), Some(then)) if img.id != *then => why.push(format!(
            "the image {} is now {}, not the {} the plan saw",
            plan.container.image, img.id, then
        )),
        (Ok(None), Some(_)) => {
            why.push(format!("the image {} is no longer present locally", plan.container.image))
        }
        (Err(e), Some(_)) => why.push(format!("the image could not be inspected again: {e}")),
        _ => {}
    }
    why
}
