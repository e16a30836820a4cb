//! What `experiment.toml` deserialises into. These types are the user's vocabulary: their doc
//! comments become the JSON Schema's descriptions that editors show on hover, so they are
//! written for the person editing the file. Unknown keys are refused everywhere, and nothing
//! is flattened, so the generated schema accepts exactly what the parser accepts (HAZARDS H16).
//! Constraints the schema can state (patterns, ranges, closed sets) are stated here too, so an
//! editor flags them while typing; [`super::resolve`] checks them again with better words, and
//! adds what a schema cannot know (files on disk, duplicates, expressions).
//!
//! Defaults and cross-field rules live in [`super::resolve`], not here; the `default` values
//! shown in the schema document those.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Span;
use crate::money::Usd;

/// Environment variable names, as POSIX shells accept them.
pub const ENV_NAME: &str = r"^[A-Za-z_][A-Za-z0-9_]*$";

/// A docker-style mount string: a path-like source, an absolute target, known options.
pub const SHORT_MOUNT: &str = r"^[./~][^:]*:/[^:]*(:(ro|rw|delegated|cached|consistent)(,(ro|rw|delegated|cached|consistent))*)?$";

/// An apf experiment: a field of models, each run in its own container with its own
/// spend-capped OpenRouter key, on the same task.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "apf experiment")]
#[schemars(extend("x-taplo" = { "initKeys": ["version", "name", "budget", "container", "models"] }))]
pub struct Manifest {
    /// Version of the manifest format. Always 1.
    #[schemars(extend("enum" = [1]))]
    pub version: u32,
    /// Name of the experiment: names keys, containers and run folders. 1–40 letters, digits,
    /// `-` and `_`, starting with a letter or digit.
    #[schemars(length(min = 1, max = 40), regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"))]
    #[schemars(example = &"kurve")]
    pub name: String,
    /// A sentence on what this experiment compares, for plans and reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"Which model underwrites loans best on $0.25?")]
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
    /// When to stop an agent early. Any rule that fires ejects (or warns); `rule = "all"`
    /// fires only when every rule in it does. Without any `[[eject]]`, apf ejects a model that
    /// exceeds its budget or is idle for 5 minutes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub eject: Vec<EjectRule>,
    /// Which of the agent's JSON events on stdout count as tool calls, snapshots, progress,
    /// errors and the end of the work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Events>,
}

/// Where OpenRouter is and which environment variables hold its keys. Keys themselves never
/// live in the manifest.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenRouter {
    /// Base URL of the API. The environment variable `OPENROUTER_BASE_URL` overrides it; apf
    /// has no built-in address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://\S+$"), example = &"https://openrouter.ai/api/v1")]
    pub base_url: Option<String>,
    /// Environment variable holding the management key that reads the balance and mints
    /// per-model keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ENV_NAME), extend("default" = "OR_ADMIN_KEY"))]
    pub management_key_env: Option<String>,
    /// Environment variable holding an inference key for preflight calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ENV_NAME), extend("default" = "OPENROUTER_API_KEY"))]
    pub inference_key_env: Option<String>,
}

/// How much each model may spend, and how the agent is told.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Each model's budget in US dollars; its key is capped at this. A model may override it
    /// with `budget_usd`. Integers are dollars: `1` is `1.0`.
    #[schemars(extend("exclusiveMinimum" = 0, "examples" = [0.25, 1]))]
    pub per_model_usd: Usd,
    /// Format of `/workspace/output/budget.txt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "simple"))]
    pub mode: Option<BudgetMode>,
    /// How often budget.txt is rewritten inside each container. At least 100ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "30s"))]
    pub inject_every: Option<Span>,
    /// How often spend is read from OpenRouter. At least 100ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "5s"))]
    pub poll_every: Option<Span>,
    /// Fraction of the budget at which a model is killed, for a margin against spend that
    /// settles late: 0.9 kills at 90%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("exclusiveMinimum" = 0, "maximum" = 1, "default" = 1.0, "examples" = [0.9]))]
    pub kill_at: Option<f64>,
    /// How the cap is enforced: `key` (OpenRouter's per-key limit, which requests already in
    /// flight can pass) or `gateway` (a local metering gateway reserves each request's
    /// worst-case cost before forwarding it, so concurrent requests cannot pass the cap, and
    /// the real key never enters a container).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "key"))]
    pub enforce: Option<Enforce>,
}

/// How a model's budget is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Enforce {
    /// OpenRouter's per-key limit alone.
    Key,
    /// A local metering gateway in front of OpenRouter, with the key's limit as a backstop.
    Gateway,
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
#[schemars(extend("x-taplo" = { "initKeys": ["image"] }))]
pub struct Container {
    /// A local image, by tag (`my-agent:latest`) or digest (`my-agent@sha256:…`). apf never
    /// pulls.
    #[schemars(length(min = 1), regex(pattern = r"^\S+$"), example = &"apf-demo-agent:latest")]
    pub image: String,
    /// Replaces the image's entrypoint: the program and its first arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = [["pi", "--mode", "rpc"]]))]
    pub entrypoint: Option<Vec<String>>,
    /// Arguments passed to the entrypoint (the image's command is replaced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("examples" = [["--task", "/workspace/TASK.md"]]))]
    pub args: Option<Vec<String>>,
    /// A file whose contents are piped to the agent's stdin, e.g. a JSON prompt. Relative to
    /// the manifest's folder; it must exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1), example = &"prompt.json")]
    pub stdin: Option<String>,
    /// Environment variables for the agent. Values are literal strings, or `{ from_env = "VAR" }`
    /// to pass a host variable through. OpenRouter keys cannot be passed: apf sets
    /// `OPENROUTER_API_KEY` to each model's own capped key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("propertyNames" = { "pattern": ENV_NAME }, "examples" = [{ "LOG_LEVEL": "info" }]))]
    pub env: BTreeMap<String, EnvValue>,
    /// Bind mounts, as tables or as docker-style strings
    /// `"./src:/dst[:ro|rw|delegated|cached|consistent]"`. Sources are relative to the
    /// manifest's folder and must exist; apf never lets docker create one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// Longest time an agent may run before it is stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "30m"))]
    pub timeout: Option<Span>,
    /// How many containers run at once; the rest wait. Default: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1), example = 4)]
    pub max_parallel: Option<u32>,
    /// Time a container gets to exit after SIGTERM before it is killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "10s"))]
    pub stop_grace: Option<Span>,
    /// Docker network. Default: `bridge`, or `host` when the OpenRouter base URL is on
    /// loopback (a bridged container cannot reach the host's loopback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// Memory limit, as docker takes it: a number of bytes with an optional unit b, k, m or g.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+[bkmgBKMG]?$"), example = &"2g")]
    pub memory: Option<String>,
    /// User to run as inside the container, as docker takes it: `uid`, `uid:gid` or a name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1), example = &"1000:1000")]
    pub user: Option<String>,
}

/// Docker network mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// Docker's default bridge network.
    Bridge,
    /// The host's network stack; needed to reach a service on the host's loopback.
    Host,
    /// No network at all (the agent cannot reach OpenRouter).
    None,
}

/// An environment value: a literal string, or a host variable passed through.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum EnvValue {
    /// A literal value. It must not be an OpenRouter key.
    #[schemars(extend("not" = { "pattern": r"^\s*sk-or-" }))]
    Literal(String),
    /// The value of a host environment variable at apply time.
    FromEnv(FromEnv),
}

/// A host environment variable passed through to the container.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FromEnv {
    /// Name of the host environment variable. apf's own key variables cannot be passed.
    #[schemars(regex(pattern = ENV_NAME), example = &"GITHUB_TOKEN")]
    #[schemars(extend("not" = { "enum": ["OR_ADMIN_KEY", "OPENROUTER_API_KEY", "OPENROUTER_MANAGEMENT_KEY"] }))]
    pub from_env: String,
}

/// A bind mount: a table, or a docker-style string.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Mount {
    /// `"./src:/dst"` with an optional `:ro`, `:rw`, `:delegated`, `:cached` or `:consistent`.
    /// The source starts with `./`, `../`, `/` or `~/`: a bare name would be a docker volume.
    #[schemars(extend("pattern" = SHORT_MOUNT, "examples" = ["./cache:/workspace/cache:delegated"]))]
    Short(String),
    /// `{ source = "TASK.md", target = "/workspace/TASK.md", read_only = true }`.
    Long(MountTable),
}

/// A bind mount as a table.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MountTable {
    /// Host path, relative to the manifest's folder. It must exist.
    #[schemars(length(min = 1), example = &"TASK.md")]
    pub source: String,
    /// Absolute path inside the container, outside `/workspace/output` (apf mounts that).
    #[schemars(regex(pattern = r"^/"), example = &"/workspace/TASK.md")]
    pub target: String,
    /// Mount read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// One model of the field.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("x-taplo" = { "initKeys": ["id", "alias"] }))]
pub struct Model {
    /// OpenRouter model id. Never substituted: a missing id fails the plan.
    #[schemars(length(min = 1), regex(pattern = r"^\S+$"))]
    #[schemars(example = &"meta-llama/llama-3.3-70b-instruct")]
    pub id: String,
    /// Short unique name used in tables, key names and container names: 1–32 lowercase
    /// letters, digits, `-` and `_`. Default: derived from the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9_-]*$"), length(min = 1, max = 32))]
    #[schemars(example = &"llama")]
    pub alias: Option<String>,
    /// This model's budget in US dollars, instead of `budget.per_model_usd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("exclusiveMinimum" = 0, "examples" = [0.5]))]
    pub budget_usd: Option<Usd>,
    /// Other model ids this model's agent may also call with its key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("items" = { "type": "string", "minLength": 1, "pattern": r"^\S+$" }))]
    #[schemars(extend("examples" = [["google/gemini-2.5-flash"]]))]
    pub extra_models: Vec<String>,
    /// Environment variables for this model's container only, added to `container.env`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("propertyNames" = { "pattern": ENV_NAME }, "examples" = [{ "DEMO_MODE": "spin" }]))]
    pub env: BTreeMap<String, EnvValue>,
}

/// Checks run by `apf plan` and `apf apply` before anything is created or spent.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Preflight {
    /// Which built-in checks to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = ["balance", "math", "models", "tool_support", "key_smoke", "docker_image"]))]
    pub checks: Option<Vec<CheckName>>,
    /// The account balance must be at least this, in US dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("minimum" = 0, "default" = 0, "examples" = [5]))]
    pub min_balance_usd: Option<Usd>,
    /// Request parameters every model must support.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("examples" = [["tools"]]))]
    pub common_required_params: Vec<String>,
    /// Request parameters a given model must support, by model id (one of `models`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("examples" = [{ "anthropic/claude-sonnet-4": ["tools", "reasoning"] }]))]
    pub required_params: BTreeMap<String, Vec<String>>,
    /// Checks of your own: a command that must exit 0 (`run`), or a CEL condition over the
    /// data preflight fetched (`expr`).
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

/// A check of your own: `run` a command, or hold an `expr`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum CustomCheck {
    /// A command run on the host, from the manifest's folder, without a shell; it must exit 0.
    Command(CommandCheck),
    /// A CEL condition over what preflight fetched; it must hold.
    Expr(ExprCheck),
}

/// A command that must exit 0.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandCheck {
    /// What the check verifies, shown in the plan.
    #[schemars(length(min = 1), example = &"task file is not empty")]
    pub name: String,
    /// The command and its arguments, run without a shell.
    #[schemars(length(min = 1), extend("examples" = [["test", "-s", "TASK.md"]]))]
    pub run: Vec<String>,
}

/// A condition over the data preflight fetched.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExprCheck {
    /// What the check verifies, shown in the plan.
    #[schemars(length(min = 1), example = &"balance covers twice the budgets")]
    pub name: String,
    /// A CEL condition. Variables: `balance_usd` (double), `total_budget_usd` (double),
    /// `model_count` (int), and `models`, a list of maps with `id`, `alias`, `budget_usd`,
    /// `prompt_usd_per_mtok`, `completion_usd_per_mtok`, `context_length` (the last three
    /// absent when unknown; test with `has()`) and `supported_parameters`.
    #[schemars(length(min = 1))]
    #[schemars(extend("examples" = [
        "balance_usd >= 2.0 * total_budget_usd",
        "models.all(m, has(m.context_length) && m.context_length >= 32000)"
    ]))]
    pub expr: String,
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
        /// Fraction of the budget, above 0 and at most 1, e.g. 0.25.
        #[schemars(extend("exclusiveMinimum" = 0, "maximum" = 1, "examples" = [0.25]))]
        spent: f64,
        /// A CEL condition over the model's counters that spares it. Variables: events,
        /// tool_calls, snapshots, progress, errors (ints); spent_usd, budget_usd,
        /// spent_fraction, elapsed_s, idle_s (doubles).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(min = 1), extend("examples" = ["tool_calls > 0"]))]
        unless: Option<String>,
        /// Only record a warning instead of ejecting.
        #[serde(default)]
        warn_only: bool,
    },
    /// Eject when this fraction of the budget has been spent since the last progress event.
    NoProgress {
        /// Fraction of the budget spent with no progress, above 0 and at most 1, e.g. 0.2.
        #[schemars(extend("exclusiveMinimum" = 0, "maximum" = 1, "examples" = [0.2]))]
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
    /// Eject when a CEL condition over the model's counters holds.
    Expr {
        /// The condition. Variables: events, tool_calls, snapshots, progress, errors (ints);
        /// spent_usd, budget_usd, spent_fraction, elapsed_s, idle_s (doubles). Mixing ints and
        /// doubles in arithmetic is an error: write `2.0`, not `2`.
        #[schemars(length(min = 1), extend("examples" = ["errors > 10 && tool_calls == 0"]))]
        when: String,
        /// Recorded as the reason.
        #[schemars(length(min = 1), example = &"broken sandbox")]
        reason: String,
        /// Only record a warning instead of ejecting.
        #[serde(default)]
        warn_only: bool,
    },
    /// Eject only when every rule in `of` fires at the same time.
    All {
        /// The rules that must all fire (at least two). They take no `warn_only` of their own.
        #[schemars(length(min = 2))]
        of: Vec<Trigger>,
        /// Recorded as the reason. Default: the reasons of the rules, joined.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(min = 1), example = &"idle and over half the budget")]
        reason: Option<String>,
        /// Only record a warning instead of ejecting.
        #[serde(default)]
        warn_only: bool,
    },
}

/// One rule inside `rule = "all"`: the same rules as `[[eject]]`, without `warn_only`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// Spend has reached the budget (or `budget.kill_at` of it).
    BudgetExceeded {},
    /// No event and no change in spend for this long.
    Idle {
        /// How long with no events and no spend.
        after: Span,
    },
    /// This fraction of the budget is spent, unless a progress condition holds.
    BudgetFraction {
        /// Fraction of the budget, above 0 and at most 1.
        #[schemars(extend("exclusiveMinimum" = 0, "maximum" = 1, "examples" = [0.5]))]
        spent: f64,
        /// A CEL condition over the model's counters that keeps this rule from firing.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(min = 1), extend("examples" = ["tool_calls > 0"]))]
        unless: Option<String>,
    },
    /// This fraction of the budget was spent since the last progress event.
    NoProgress {
        /// Fraction of the budget, above 0 and at most 1.
        #[schemars(extend("exclusiveMinimum" = 0, "maximum" = 1, "examples" = [0.2]))]
        spent: f64,
    },
    /// The agent has run this long.
    WallClock {
        /// How long the agent may run.
        after: Span,
    },
    /// A CEL condition over the model's counters holds.
    Expr {
        /// The condition, over the same variables as `rule = "expr"`.
        #[schemars(length(min = 1), extend("examples" = ["errors > 3"]))]
        when: String,
    },
}

/// Which events count for what. Each list holds event `type` names, or
/// `{ expr = "..." }` CEL conditions over the event (`event.type`, `event.toolName`, nested
/// fields), for formats where the type alone does not tell. The defaults fit agents written
/// for apf (`tool_call`, `snapshot`, `progress`, `done`) and pi-coding-agent's RPC mode.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Events {
    /// Events that count as a tool call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = ["tool_call", "tool_execution_start"]))]
    pub tool_call: Option<Vec<EventMatch>>,
    /// Events that count as a snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = ["snapshot"]))]
    pub snapshot: Option<Vec<EventMatch>>,
    /// Events that count as progress (for idle and no-progress rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = ["progress", "snapshot", "tool_execution_end", "turn_end"]))]
    pub progress: Option<Vec<EventMatch>>,
    /// Events that count as an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = ["error"]))]
    pub error: Option<Vec<EventMatch>>,
    /// Events that mean the agent has finished its work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = ["done", "agent_end"]))]
    pub done: Option<Vec<EventMatch>>,
}

/// An event `type` name, or a condition over the event.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum EventMatch {
    /// The event's `type`, exactly.
    #[schemars(extend("minLength" = 1, "examples" = ["tool_execution_start"]))]
    Type(String),
    /// A CEL condition over the event.
    Expr(EventExpr),
}

/// A condition over one event.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventExpr {
    /// A CEL condition over `event`, the JSON object the agent printed.
    #[schemars(length(min = 1))]
    #[schemars(extend("examples" = ["event.type == 'message' && has(event.tool)"]))]
    pub expr: String,
}
