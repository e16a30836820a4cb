//! Where OpenRouter is for this command, and with which management key: the built-in
//! simulator (`--sim`), or the base URL from `OPENROUTER_BASE_URL` or the manifest. There is
//! no built-in default address: apf talks only to the service it is told to.

use anyhow::{Result, bail};

use crate::cli::EndpointArgs;
use crate::manifest::Experiment;
use crate::secret::Secret;

pub struct Endpoint {
    pub base_url: String,
    pub management_key: Option<Secret>,
    pub management_key_env: String,
    sim: Option<crate::sim::SimHandle>,
}

impl Endpoint {
    pub async fn resolve(exp: &Experiment, args: &EndpointArgs) -> Result<Endpoint> {
        let var = exp.openrouter.management_key_env.clone();
        if args.sim {
            let handle = crate::sim::start(crate::sim::SimConfig::default()).await?;
            crate::printer::info(format!("using the built-in simulator at {}", handle.base_url));
            return Ok(Endpoint {
                base_url: handle.base_url.clone(),
                management_key: Some(handle.management_key.clone()),
                management_key_env: var,
                sim: Some(handle),
            });
        }
        let base_url = match std::env::var("OPENROUTER_BASE_URL") {
            Ok(url) if !url.trim().is_empty() => url,
            _ => match &exp.openrouter.base_url {
                Some(url) => url.clone(),
                None => bail!(
                    "no OpenRouter address: set OPENROUTER_BASE_URL or [openrouter] base_url \
                     (OpenRouter's is https://openrouter.ai/api/v1), or pass --sim to use the \
                     built-in simulator"
                ),
            },
        };
        Ok(Endpoint {
            base_url,
            management_key: from_env(&var),
            management_key_env: var,
            sim: None,
        })
    }

    /// Stop the simulator this command started, if any.
    pub async fn shutdown(self) {
        if let Some(sim) = self.sim {
            sim.shutdown().await;
        }
    }
}

pub fn from_env(var: &str) -> Option<Secret> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty()).map(|v| Secret::new(v.trim()))
}
