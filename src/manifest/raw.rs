//! What `experiment.toml` deserialises into. These types are the user's vocabulary: their doc
//! comments become the JSON Schema's descriptions that editors show on hover, so they are
//! written for the person editing the file. Unknown keys are refused everywhere, and nothing
//! is flattened, so the generated schema accepts exactly what the parser accepts.
//!
//! Defaults and cross-field rules live in [`super::resolve`], not here.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Span;
use crate::money::Usd;

/// An apf experiment: a field of models, each run in its own container with its own
/// spend-capped OpenRouter key, on the same task.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "apf experiment")]
pub struct Manifest {
    /// Version of the manifest format. Always 1.
    pub version: u32,
    /// Name of the experiment: names keys, containers and run folders. Letters, digits, `-`
    /// and `_`.
    #[schemars(length(min = 1, max = 40), regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"))]
    #[schemars(example = &"kurve")]
    pub name: String,
    /// A sentence on what this experiment compares, for plans and reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where OpenRouter is and which environment variables hold its keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openrouter: Option<OpenRouter>,
    /// How much each model may spend, and how the agent is told.
    pub budget: Budget,
    /// The agent container every model runs in.
    pub container: Container,
    /// The models in the field. Each gets its own key and container.
    #[schemars(length(min = 1))]
    pub models: Vec<Model>,
    /// Checks run before anything is created or spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preflight: Option<Preflight>,
    /// When to stop an agent early. Without any, apf ejects a model that exceeds its budget or
    /// is idle for 5 minutes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub eject: Vec<EjectRule>,
    /// How the agent's JSON events on stdout are counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Events>,
}

/// Where OpenRouter is and which environment variables hold its keys. Keys themselves never
/// live in the manifest.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenRouter {
    /// Base URL of the API, e.g. "https://openrouter.ai/api/v1". The environment variable
    /// `OPENROUTER_BASE_URL` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"https://openrouter.ai/api/v1")]
    pub base_url: Option<String>,
    /// Environment variable holding the management key that mints per-model keys.
    /// Default: `OR_ADMIN_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_key_env: Option<String>,
    /// Environment variable holding an inference key for preflight calls. Default:
    /// `OPENROUTER_API_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_key_env: Option<String>,
}

/// How much each model may spend, and how the agent is told.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Each model's budget in US dollars; its key is capped at this. A model may override it
    /// with `budget_usd`.
    #[schemars(extend("exclusiveMinimum" = 0), example = 0.25)]
    pub per_model_usd: Usd,
    /// Format of `/workspace/output/budget.txt`: `simple` (one line) or `detailed` (adds recent
    /// actions and their cost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<BudgetMode>,
    /// How often budget.txt is rewritten. Default "30s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inject_every: Option<Span>,
    /// How often spend is read from OpenRouter. Default "5s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_every: Option<Span>,
    /// Fraction of the budget at which a model is killed, for a margin against spend that
    /// settles late. Default 1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.01, max = 1.0))]
    pub kill_at: Option<f64>,
}

/// Format of budget.txt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BudgetMode {
    /// One line: `Budget: $0.086 remaining of $0.15 (57% left)`.
    Simple,
    /// The line, then recent actions with their cost, the number of actions, the average cost
    /// per action and the estimated actions left.
    Detailed,
}

/// The agent container every model runs in.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Container {
    /// A local image, by tag (`my-agent:latest`) or digest (`my-agent@sha256:…`).
    #[schemars(length(min = 1), example = &"apf-demo-agent:latest")]
    pub image: String,
    /// Replaces the image's entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Arguments passed to the entrypoint (the image's command is replaced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// A file whose contents are piped to the agent's stdin, e.g. a JSON prompt. Relative to
    /// the manifest's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Environment variables for the agent. Values are literal strings, or `{ from_env = "VAR" }`
    /// to pass a host variable through. OpenRouter keys cannot be passed: apf sets
    /// `OPENROUTER_API_KEY` to each model's own capped key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, EnvValue>,
    /// Bind mounts, as tables or as docker-style strings `"./src:/dst[:ro|rw|delegated|cached|consistent]"`.
    /// Sources are relative to the manifest's folder and must exist.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// Longest time an agent may run before it is stopped. Default "30m".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Span>,
    /// How many containers run at once; the rest wait. Default: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_parallel: Option<u32>,
    /// Time a container gets to exit after SIGTERM before it is killed. Default "10s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace: Option<Span>,
    /// Docker network: `bridge`, `host` or `none`. Default: `bridge`, or `host` when the
    /// OpenRouter base URL is on loopback (a bridged container cannot reach the host's
    /// loopback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// Memory limit, as docker takes it: "512m", "2g".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+[bkmgBKMG]?$"))]
    pub memory: Option<String>,
    /// User to run as inside the container, as docker takes it: "1000:1000".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// Docker network mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    Bridge,
    Host,
    None,
}

/// An environment value: a literal string, or a host variable passed through.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum EnvValue {
    /// A literal value.
    Literal(String),
    /// The value of a host environment variable at apply time.
    FromEnv(FromEnv),
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FromEnv {
    /// Name of the host environment variable.
    pub from_env: String,
}

/// A bind mount: a table, or a docker-style string.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Mount {
    /// `"./src:/dst"` with an optional `:ro`, `:rw`, `:delegated`, `:cached` or `:consistent`.
    Short(String),
    /// `{ source = "TASK.md", target = "/workspace/TASK.md", read_only = true }`.
    Long(MountTable),
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MountTable {
    /// Host path, relative to the manifest's folder. It must exist.
    pub source: String,
    /// Absolute path inside the container.
    pub target: String,
    /// Mount read-only. Default false.
    #[serde(default)]
    pub read_only: bool,
}

/// One model of the field.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// OpenRouter model id, e.g. "meta-llama/llama-3.3-70b-instruct". Never substituted.
    #[schemars(length(min = 1), example = &"meta-llama/llama-3.3-70b-instruct")]
    pub id: String,
    /// Short unique name used in tables, key names and container names. Default: derived
    /// from the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9_-]*$"), length(max = 32))]
    pub alias: Option<String>,
    /// This model's budget in US dollars, instead of `budget.per_model_usd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub budget_usd: Option<Usd>,
    /// Other model ids this model's agent may also call with its key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_models: Vec<String>,
    /// Environment variables for this model's container only, added to `container.env`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, EnvValue>,
}

/// Checks run by `apf plan` and `apf apply` before anything is created or spent.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Preflight {
    /// Which checks to run. Default: all of balance, math, models, tool_support, key_smoke,
    /// docker_image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<Vec<CheckName>>,
    /// The account balance must be above this, in US dollars. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_balance_usd: Option<Usd>,
    /// Request parameters every model must support, e.g. ["tools"].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub common_required_params: Vec<String>,
    /// Request parameters a given model must support, by model id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub required_params: BTreeMap<String, Vec<String>>,
    /// Checks of your own: a command that must exit 0.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom: Vec<CustomCheck>,
}

/// A built-in preflight check.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CheckName {
    /// The account balance (management key) is above the minimum.
    Balance,
    /// The balance covers every model's budget.
    Math,
    /// Every model id exists and has a real price.
    Models,
    /// Every model supports the required request parameters.
    ToolSupport,
    /// A key capped at $0.01 is created, read back, used once and deleted.
    KeySmoke,
    /// Two cacheable requests: the second reports cached tokens.
    CacheSmoke,
    /// The image exists locally.
    DockerImage,
}

/// A check of your own: a command run on the host, from the manifest's folder, that must exit 0.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomCheck {
    /// What the check verifies, shown in the plan.
    pub name: String,
    /// The command and its arguments, run without a shell.
    #[schemars(length(min = 1))]
    pub run: Vec<String>,
}

/// A rule that stops an agent early.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum EjectRule {
    /// Kill the agent when its spend reaches its budget (or `budget.kill_at` of it).
    BudgetExceeded {
        /// Only record a warning instead of ejecting.
        #[serde(default)]
        warn_only: bool,
    },
    /// Eject when the agent has printed no event and its spend has not changed for this long.
    Idle {
        /// How long with no events and no spend.
        after: Span,
        /// Only record a warning instead of ejecting.
        #[serde(default)]
        warn_only: bool,
    },
    /// Eject once this fraction of the budget is spent, unless a progress condition holds.
    BudgetFraction {
        /// Fraction of the budget, e.g. 0.25.
        #[schemars(range(min = 0.0, max = 1.0))]
        spent: f64,
        /// A CEL condition over the model's counters that spares it, e.g. "tool_calls > 0".
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unless: Option<String>,
        /// Only record a warning instead of ejecting.
        #[serde(default)]
        warn_only: bool,
    },
    /// Eject when this fraction of the budget has been spent since the last progress event.
    NoProgress {
        /// Fraction of the budget spent with no progress, e.g. 0.2.
        #[schemars(range(min = 0.0, max = 1.0))]
        spent: f64,
        /// Only record a warning instead of ejecting.
        #[serde(default)]
        warn_only: bool,
    },
    /// Eject after this much wall-clock time.
    WallClock {
        /// How long the agent may run.
        after: Span,
        /// Only record a warning instead of ejecting.
        #[serde(default)]
        warn_only: bool,
    },
    /// Eject when a CEL expression over the model's counters holds.
    Expr {
        /// The condition, e.g. "errors > 10 && tool_calls == 0".
        when: String,
        /// Recorded as the reason.
        reason: String,
        /// Only record a warning instead of ejecting.
        #[serde(default)]
        warn_only: bool,
    },
}

/// How the agent's stdout events are counted. Each list holds event `type` names. The defaults
/// fit agents written for apf (`tool_call`, `snapshot`, `progress`, `done`) and
/// pi-coding-agent's RPC mode.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Events {
    /// Event types that count as a tool call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call: Option<Vec<String>>,
    /// Event types that count as a snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Vec<String>>,
    /// Event types that count as progress (for idle and no-progress rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Vec<String>>,
    /// Event types that count as an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Vec<String>>,
    /// Event types that mean the agent has finished its work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<Vec<String>>,
}
