//! `apf destroy`: remove what a run left behind, found by container labels and key names even
//! when its state file is gone (HAZARDS H7). Keys are listed across every page.

use std::io::IsTerminal;

use anyhow::{Result, bail};

use super::{exit, manifest_dir};
use crate::cli::DestroyArgs;
use crate::docker::{self, Docker};
use crate::openrouter::Client;
use crate::printer;
use crate::state::{self, RunState};

pub async fn destroy(a: &DestroyArgs) -> Result<i32> {
    let dir = manifest_dir(a.select.manifest.as_ref());
    let run_state = match &a.select.run {
        Some(id) => RunState::load(&state::RunDir::new(&dir, id).state()).ok(),
        None => None,
    };
    let default = std::path::PathBuf::from("experiment.toml");
    let manifest = a
        .select
        .manifest
        .as_ref()
        .or(Some(&default))
        .filter(|p| p.is_file())
        .and_then(|p| crate::manifest::load(p).ok());
    let experiment = a
        .experiment
        .clone()
        .or_else(|| run_state.as_ref().map(|s| s.experiment.clone()))
        .or_else(|| manifest.as_ref().map(|m| m.name.clone()));
    let Some(experiment) = experiment else {
        bail!("which experiment? pass --experiment NAME or --manifest FILE");
    };
    let run = a.select.run.clone();
    let scope = match &run {
        Some(r) => format!("run {r} of {experiment}"),
        None => format!("every run of {experiment}"),
    };
    if !a.auto_approve {
        if !std::io::stdin().is_terminal() {
            bail!(
                "destroy needs confirmation, and there is no terminal to ask on; pass --auto-approve"
            );
        }
        printer::info(format!(
            "Destroy the containers and keys of {scope}? Only 'yes' is accepted: "
        ));
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            printer::info("Destroy cancelled.");
            return Ok(exit::ERROR);
        }
    }

    let removed = remove_containers(&experiment, run.as_deref()).await?;
    let base_url = std::env::var("OPENROUTER_BASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| manifest.as_ref().and_then(|m| m.openrouter.base_url.clone()))
        .or_else(|| run_state.as_ref().map(|s| s.base_url.clone()));
    let var = manifest
        .as_ref()
        .map_or("OR_ADMIN_KEY".to_string(), |m| m.openrouter.management_key_env.clone());
    let revoked = match (base_url, super::endpoint::from_env(&var)) {
        (Some(url), Some(key)) => {
            revoke_keys(&Client::new(&url), &key, &experiment, run.as_deref()).await?
        }
        (None, _) => {
            printer::warn("no OpenRouter address (OPENROUTER_BASE_URL); keys were not looked for");
            0
        }
        (_, None) => {
            printer::warn(format!("${var} is not set; keys were not looked for"));
            0
        }
    };
    printer::info(format!("{scope}: removed {removed} containers, deleted {revoked} keys"));
    Ok(exit::OK)
}

async fn remove_containers(experiment: &str, run: Option<&str>) -> Result<usize> {
    let docker = Docker::default();
    let mut labels = vec![(docker::LABEL_MANAGED, "true"), (docker::LABEL_EXPERIMENT, experiment)];
    if let Some(r) = run {
        labels.push((docker::LABEL_RUN, r));
    }
    let found = docker.find(&labels).await?;
    for c in &found {
        docker.remove(&c.id).await?;
        printer::info(format!("  - container {} ({})", c.name, c.state));
    }
    Ok(found.len())
}

async fn revoke_keys(
    client: &Client,
    mgmt: &crate::secret::Secret,
    experiment: &str,
    run: Option<&str>,
) -> Result<usize> {
    let prefix = match run {
        Some(r) => format!("apf/{experiment}/{r}/"),
        None => format!("apf/{experiment}/"),
    };
    let keys = client.list_keys(mgmt, true).await?;
    let mine: Vec<_> = keys.into_iter().filter(|k| k.name.starts_with(&prefix)).collect();
    for k in &mine {
        client.delete_key(mgmt, &k.hash).await?;
        printer::info(format!("  - key {} (spent {})", k.name, k.usage));
    }
    Ok(mine.len())
}
