//! The plan: what `apply` would do, as a value. `plan` renders it as text ([`Plan::render`]) or
//! as JSON (this module's types, versioned by [`PLAN_FORMAT`]) and may save it; `apply` shows it
//! before asking for confirmation, and a saved plan is applied only while the world still looks
//! the way it did when the plan was made ([`saved`]).
//!
//! Besides the actions (a key and a container per model), a plan records what it saw (balance,
//! prices, image id, the runs beside the manifest, the input files' hashes) so that a saved
//! plan can be refused when any of them changed (HAZARDS H18), and what earlier runs left
//! behind. apply leaves those alone; `apf destroy` removes them.

pub mod overshoot;
mod render;
pub mod saved;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::duration::Span;
use crate::manifest::Experiment;
use crate::manifest::resolve::{EnvSource, Network, OUTPUT_DIR};
use crate::money::{Price, Usd};
use crate::preflight::{Check, Leftovers, Mark, Report};

pub use overshoot::Overshoot;

/// What a plan file says it is, so `apply` can tell it from a manifest.
pub const PLAN_KIND: &str = "apf-plan";
/// The version of the plan's JSON shape (`--json` and saved plans). Any change to the meaning
/// of a field bumps it; a saved plan of another version is refused, never guessed at.
pub const PLAN_FORMAT: u32 = 1;

/// How far past the run's timeout a model's key stays valid, as apply sets it.
const KEY_EXPIRY_MARGIN: &str = "15m";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub format: String,
    pub format_version: u32,
    /// Unique to this plan; a saved plan is recorded as applied under this id.
    pub plan_id: String,
    pub created_at: DateTime<Utc>,
    pub apf_version: String,
    pub experiment: String,
    pub manifest: PathBuf,
    pub manifest_hash: String,
    /// False for a field described by `PREFLIGHT_MODELS`: it is checked, but there is no
    /// manifest (and no image) to apply.
    #[serde(default = "yes")]
    pub applicable: bool,
    /// Files the containers read (the stdin prompt, mounted files), with their hashes.
    pub inputs: Vec<InputFile>,
    pub endpoint: PlanEndpoint,
    pub checks: Vec<Check>,
    pub models: Vec<PlannedModel>,
    pub container: PlannedContainer,
    pub eject: Vec<String>,
    /// What earlier runs left behind: shown as removals that `apf destroy` makes.
    pub leftovers: Leftovers,
    pub summary: Summary,
    /// What a saved plan is checked against when it is applied.
    pub seen: Seen,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanEndpoint {
    /// The built-in simulator, started for the command; its address changes every time.
    pub simulator: bool,
    pub base_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    pub role: String,
    pub path: PathBuf,
    /// `None` for a folder, or a file too large to hash.
    pub sha256: Option<String>,
}

/// A price for people and programs: exact per token, per million, and as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanPrice {
    pub variable: bool,
    pub usd_per_token: Option<Usd>,
    pub usd_per_million: Option<Usd>,
    pub shown: String,
}

impl From<Price> for PlanPrice {
    fn from(p: Price) -> PlanPrice {
        let per_token = p.per_token();
        PlanPrice {
            variable: p == Price::Variable,
            usd_per_token: per_token,
            usd_per_million: per_token.map(|t| t * rust_decimal::Decimal::from(1_000_000)),
            shown: p.to_string(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedModel {
    pub alias: String,
    pub model: String,
    pub extra_models: Vec<String>,
    pub budget: Usd,
    pub prompt_price: Option<PlanPrice>,
    pub completion_price: Option<PlanPrice>,
    pub image: String,
    pub key: PlannedKey,
    pub container: PlannedContainerName,
    /// Variables set for this model only, on top of the container's.
    pub env: Vec<PlannedEnv>,
    pub overshoot: Overshoot,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedKey {
    /// `<run>` stands for the run id apply chooses.
    pub name: String,
    pub limit: Usd,
    pub expires: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedContainerName {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedEnv {
    pub name: String,
    /// The literal value, or where it comes from; never a key.
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedMount {
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

/// What every container of the run shares.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedContainer {
    pub image: String,
    pub image_id: Option<String>,
    pub timeout: String,
    pub stop_grace: String,
    pub max_parallel: usize,
    pub network: String,
    pub memory: Option<String>,
    pub user: Option<String>,
    pub stdin: Option<PathBuf>,
    pub entrypoint: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub mounts: Vec<PlannedMount>,
    pub env: Vec<PlannedEnv>,
}

/// The footer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub models: usize,
    pub keys_to_create: usize,
    pub containers_to_create: usize,
    /// Leftovers of earlier runs, which `apf destroy` removes (apply does not).
    pub leftovers_to_remove: usize,
    pub total_budget: Usd,
    pub balance: Option<Usd>,
    pub margin: Option<Usd>,
    pub max_parallel: usize,
    /// The sum of the per-model worst cases that could be estimated.
    pub worst_case_overshoot: Option<Usd>,
    /// Aliases whose worst case could not be estimated (variable or unknown prices).
    pub overshoot_unknown: Vec<String>,
    /// Whether apply would create anything.
    pub changes: bool,
}

/// What the plan saw, to compare a saved plan against when it is applied.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Seen {
    pub balance: Option<Usd>,
    pub prices: BTreeMap<String, SeenPrice>,
    pub image_id: Option<String>,
    pub runs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenPrice {
    pub prompt: Price,
    pub completion: Price,
}

/// `apf/<experiment>/<run>/<alias>`, as apply names keys (see `apply::model::key_name`).
pub fn key_name(experiment: &str, run: &str, alias: &str) -> String {
    format!("apf/{experiment}/{run}/{alias}")
}

/// `apf-<experiment>-<run>-<alias>`, as apply names containers.
pub fn container_name(experiment: &str, run: &str, alias: &str) -> String {
    format!("apf-{experiment}-{run}-{alias}")
}

/// The placeholder for the run id apply will choose.
const RUN: &str = "<run>";

impl Plan {
    pub fn new(exp: &Experiment, endpoint: PlanEndpoint, report: &Report) -> Plan {
        let facts = &report.facts;
        let image_id = facts.image.as_ref().map(|i| i.id.clone());
        let models: Vec<PlannedModel> =
            exp.models.iter().map(|m| planned_model(exp, m, report)).collect();
        let total_budget: Usd = exp.models.iter().map(|m| m.budget).sum();
        let over = overshoot::total(exp, &facts.models);
        let leftovers = facts.leftovers.clone();
        let n = models.len();
        let summary = Summary {
            models: n,
            keys_to_create: n,
            containers_to_create: n,
            leftovers_to_remove: leftovers.containers.len() + leftovers.keys.len(),
            total_budget,
            balance: facts.balance,
            margin: facts.balance.map(|b| b - total_budget),
            max_parallel: exp.container.max_parallel.min(n),
            worst_case_overshoot: over.known,
            overshoot_unknown: over.unknown,
            changes: n > 0 && !exp.is_manifest_less(),
        };
        let seen = Seen {
            balance: facts.balance,
            prices: facts
                .models
                .iter()
                .map(|(id, p)| {
                    (id.clone(), SeenPrice { prompt: p.prompt, completion: p.completion })
                })
                .collect(),
            image_id: image_id.clone(),
            runs: facts.runs.clone(),
        };
        Plan {
            format: PLAN_KIND.to_string(),
            format_version: PLAN_FORMAT,
            plan_id: new_plan_id(),
            created_at: Utc::now(),
            apf_version: env!("CARGO_PKG_VERSION").to_string(),
            experiment: exp.name.clone(),
            manifest: exp.manifest_path.clone(),
            manifest_hash: exp.manifest_hash.clone(),
            applicable: !exp.is_manifest_less(),
            inputs: input_files(exp),
            container: planned_container(exp, &endpoint, image_id),
            endpoint,
            checks: report.checks.clone(),
            models,
            eject: exp
                .eject
                .iter()
                .map(|r| r.describe())
                .chain(exp.eject_all.iter().map(|a| a.describe()))
                .collect(),
            leftovers,
            summary,
            seen,
        }
    }

    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.mark == Mark::Failed)
    }

    /// The plan for a person, terraform-style; `detail` shows everything.
    pub fn render(&self, detail: bool) -> String {
        render::render(self, detail)
    }
}

fn yes() -> bool {
    true
}

fn new_plan_id() -> String {
    let suffix: u64 = rand::random();
    format!("{}-{suffix:016x}", Utc::now().format("%Y%m%d-%H%M%S"))
}

fn planned_model(
    exp: &Experiment,
    m: &crate::manifest::ModelSettings,
    report: &Report,
) -> PlannedModel {
    let priced = report.facts.models.get(&m.id);
    let labels = [
        (crate::docker::LABEL_MANAGED, "true".to_string()),
        (crate::docker::LABEL_EXPERIMENT, exp.name.clone()),
        (crate::docker::LABEL_RUN, RUN.to_string()),
        (crate::docker::LABEL_ALIAS, m.alias.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    PlannedModel {
        alias: m.alias.clone(),
        model: m.id.clone(),
        extra_models: m.extra_models.clone(),
        budget: m.budget,
        prompt_price: priced.map(|p| p.prompt.into()),
        completion_price: priced.map(|p| p.completion.into()),
        image: exp.container.image.clone(),
        key: PlannedKey {
            name: key_name(&exp.name, RUN, &m.alias),
            limit: m.budget,
            expires: format!(
                "{KEY_EXPIRY_MARGIN} after the run's timeout ({})",
                Span(exp.container.timeout)
            ),
        },
        container: PlannedContainerName { name: container_name(&exp.name, RUN, &m.alias), labels },
        env: env_list(&m.env),
        overshoot: overshoot::for_model(exp, m, &report.facts.models),
    }
}

fn env_list(env: &BTreeMap<String, EnvSource>) -> Vec<PlannedEnv> {
    env.iter()
        .map(|(name, v)| PlannedEnv {
            name: name.clone(),
            value: match v {
                EnvSource::Literal(s) => crate::secret::redact(s),
                EnvSource::Host(var) => format!("from ${var} on the host"),
            },
        })
        .collect()
}

fn planned_container(
    exp: &Experiment,
    endpoint: &PlanEndpoint,
    image_id: Option<String>,
) -> PlannedContainer {
    let c = &exp.container;
    let shown = |p: &Path| match p.strip_prefix(&exp.manifest_dir) {
        Ok(rel) => rel.display().to_string(),
        Err(_) => p.display().to_string(),
    };
    let mut mounts: Vec<PlannedMount> = c
        .mounts
        .iter()
        .map(|b| PlannedMount {
            source: shown(&b.source),
            target: b.target.clone(),
            read_only: b.read_only,
        })
        .collect();
    mounts.push(PlannedMount {
        source: format!(".apf/runs/{RUN}/models/<alias>/output"),
        target: OUTPUT_DIR.to_string(),
        read_only: false,
    });
    let mut env = vec![
        PlannedEnv {
            name: "OPENROUTER_API_KEY".into(),
            value: "the model's own capped key, passed through docker's environment, never on a \
                    command line"
                .into(),
        },
        PlannedEnv { name: "OPENROUTER_BASE_URL".into(), value: endpoint.base_url.clone() },
        PlannedEnv { name: "APF_MODEL".into(), value: "the model's id".into() },
        PlannedEnv { name: "APF_ALIAS".into(), value: "the model's alias".into() },
        PlannedEnv { name: "APF_RUN".into(), value: RUN.into() },
        PlannedEnv { name: "APF_EXPERIMENT".into(), value: exp.name.clone() },
    ];
    env.extend(env_list(&c.env));
    PlannedContainer {
        image: c.image.clone(),
        image_id,
        timeout: Span(c.timeout).to_string(),
        stop_grace: Span(c.stop_grace).to_string(),
        max_parallel: c.max_parallel.min(exp.models.len()),
        network: network(c.network, &endpoint.base_url),
        memory: c.memory.clone(),
        user: c.user.clone(),
        stdin: c.stdin.clone(),
        entrypoint: c.entrypoint.clone(),
        args: c.args.clone(),
        mounts,
        env,
    }
}

/// The network apply will give containers: the manifest's choice, else the host's network when
/// OpenRouter is on loopback (a bridged container cannot reach the host's loopback).
fn network(chosen: Option<Network>, base_url: &str) -> String {
    match chosen {
        Some(Network::Bridge) => "bridge".into(),
        Some(Network::Host) => "host".into(),
        Some(Network::None) => "none".into(),
        None if crate::apply::is_loopback_url(base_url) => {
            "host (OpenRouter is on loopback)".into()
        }
        None => "docker's default".into(),
    }
}

/// Files larger than this are recorded without a hash.
const HASH_LIMIT: u64 = 64 * 1024 * 1024;

/// The files the containers read whose content a saved plan pins: the stdin prompt and every
/// mounted file. Mounted folders are listed without a hash.
pub fn input_files(exp: &Experiment) -> Vec<InputFile> {
    let mut out = Vec::new();
    if let Some(stdin) = &exp.container.stdin {
        out.push(input_file("stdin", stdin));
    }
    for m in &exp.container.mounts {
        out.push(input_file("mount", &m.source));
    }
    out
}

fn input_file(role: &str, path: &Path) -> InputFile {
    let sha256 = std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_file() && m.len() <= HASH_LIMIT)
        .and_then(|_| std::fs::read(path).ok())
        .map(|bytes| crate::hash::sha256_hex(&bytes));
    InputFile { role: role.to_string(), path: path.to_path_buf(), sha256 }
}
