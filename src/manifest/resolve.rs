//! The resolved experiment: what the rest of apf works from. Resolution applies every default
//! (in this one place), makes paths absolute against the manifest's folder, compiles and
//! type-checks conditions, and checks every rule that spans fields or needs the disk.
//!
//! It works on [`Sections`]: whatever parts of the manifest deserialised, so a file with a
//! structural error in one table still gets its other tables checked, and every problem is
//! reported at once. An [`Experiment`] comes out only when every part parsed and no check
//! failed.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::diag::{Locator, Problem, Seg, did_you_mean, string_span};
use super::raw;
use crate::duration::Span;
use crate::expr::{self, Condition, Vocabulary};
use crate::money::Usd;

pub use raw::{BudgetMode, CheckName, Enforce, Network};

/// Where the agent's output folder is mounted; apf owns it.
pub const OUTPUT_DIR: &str = "/workspace/output";

/// Variables apf sets in every container; a manifest may not set them.
pub const RESERVED_ENV: &[&str] = &[
    "OPENROUTER_API_KEY",
    "OPENROUTER_BASE_URL",
    "APF_MODEL",
    "APF_ALIAS",
    "APF_RUN",
    "APF_EXPERIMENT",
];

/// Host variables that hold OpenRouter keys by convention, besides the ones a manifest names in
/// `[openrouter]`.
const KEY_VARIABLES: &[&str] = &["OR_ADMIN_KEY", "OPENROUTER_API_KEY", "OPENROUTER_MANAGEMENT_KEY"];

/// The checks run when a manifest names none.
pub const DEFAULT_CHECKS: &[CheckName] = &[
    CheckName::Balance,
    CheckName::Math,
    CheckName::Models,
    CheckName::ToolSupport,
    CheckName::KeySmoke,
    CheckName::DockerImage,
];

#[derive(Debug, Clone)]
pub struct Experiment {
    pub name: String,
    pub description: Option<String>,
    pub manifest_path: PathBuf,
    pub manifest_dir: PathBuf,
    /// sha256 of the manifest's bytes, for saved plans and run records.
    pub manifest_hash: String,
    pub openrouter: OpenRouterSettings,
    pub budget: BudgetSettings,
    pub container: ContainerSettings,
    pub models: Vec<ModelSettings>,
    pub preflight: PreflightSettings,
    /// Rules of which any one ejects (or warns), in manifest order without the `all` rules.
    pub eject: Vec<EjectRule>,
    /// `rule = "all"` rules: each fires only when every one of its kinds does.
    pub eject_all: Vec<AllRule>,
    pub events: EventMapping,
}

impl Experiment {
    /// Whether this experiment came from `PREFLIGHT_*` variables rather than a manifest: it
    /// has no image, so it can be planned (preflight) but not applied.
    pub fn is_manifest_less(&self) -> bool {
        self.manifest_path.file_name().is_some_and(|n| n == super::preflight_env::PSEUDO_FILE)
    }
}

#[derive(Debug, Clone)]
pub struct OpenRouterSettings {
    pub base_url: Option<String>,
    pub management_key_env: String,
    pub inference_key_env: String,
}

#[derive(Debug, Clone)]
pub struct BudgetSettings {
    pub mode: BudgetMode,
    pub inject_every: Duration,
    pub poll_every: Duration,
    pub kill_at: Decimal,
    pub enforce: raw::Enforce,
}

#[derive(Debug, Clone)]
pub struct ContainerSettings {
    pub image: String,
    pub entrypoint: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub stdin: Option<PathBuf>,
    pub env: BTreeMap<String, EnvSource>,
    pub mounts: Vec<BindMount>,
    pub timeout: Duration,
    pub max_parallel: usize,
    pub stop_grace: Duration,
    pub network: Option<Network>,
    pub memory: Option<String>,
    pub user: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvSource {
    Literal(String),
    Host(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BindMount {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
    /// A macOS consistency hint (`delegated`, `cached`, `consistent`); Linux ignores it.
    pub consistency: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ModelSettings {
    pub id: String,
    pub alias: String,
    pub budget: Usd,
    pub extra_models: Vec<String>,
    pub env: BTreeMap<String, EnvSource>,
}

#[derive(Debug, Clone)]
pub struct PreflightSettings {
    pub checks: BTreeSet<CheckName>,
    pub min_balance: Usd,
    pub common_required_params: Vec<String>,
    pub required_params: BTreeMap<String, Vec<String>>,
    /// Custom checks that run a command, in manifest order.
    pub custom: Vec<CommandCheck>,
    /// Custom checks that are conditions over the fetched data ([`expr::PREFLIGHT`]), in
    /// manifest order; evaluate each with [`Condition::holds_for_check`].
    pub custom_expr: Vec<ExprCheck>,
}

/// A custom check that runs a command from the manifest's folder, without a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandCheck {
    pub name: String,
    /// The program and its arguments; never empty.
    pub run: Vec<String>,
}

/// A custom check that is a condition over what preflight fetched.
#[derive(Debug, Clone)]
pub struct ExprCheck {
    pub name: String,
    pub condition: Condition,
}

/// An eject rule, resolved.
#[derive(Debug, Clone)]
pub struct EjectRule {
    pub kind: EjectKind,
    pub warn_only: bool,
}

#[derive(Debug, Clone)]
pub enum EjectKind {
    BudgetExceeded,
    Idle { after: Duration },
    BudgetFraction { spent: Decimal, unless: Option<Condition> },
    NoProgress { spent: Decimal },
    WallClock { after: Duration },
    Expr { when: Condition, reason: String },
}

/// `rule = "all"`: fires when every kind in `of` fires at the same evaluation.
#[derive(Debug, Clone)]
pub struct AllRule {
    /// Index of this rule in the manifest's `[[eject]]` list, for messages.
    pub position: usize,
    /// At least two kinds. An `Expr` kind here has its condition's text as its `reason`.
    pub of: Vec<EjectKind>,
    /// The reason to record; when `None`, join the reasons of the kinds with " and ".
    pub reason: Option<String>,
    pub warn_only: bool,
}

impl EjectKind {
    /// The condition in words, without "eject" or "warn".
    pub fn describe(&self) -> String {
        match self {
            EjectKind::BudgetExceeded => "when spend reaches the budget".to_string(),
            EjectKind::Idle { after } => {
                format!("when idle (no events, no spend) for {}", Span(*after))
            }
            EjectKind::BudgetFraction { spent, unless } => {
                let pct = (spent * Decimal::from(100)).normalize();
                match unless {
                    Some(c) => format!("at {pct}% of the budget unless {}", c.source()),
                    None => format!("at {pct}% of the budget"),
                }
            }
            EjectKind::NoProgress { spent } => {
                let pct = (spent * Decimal::from(100)).normalize();
                format!("when {pct}% of the budget is spent with no progress event")
            }
            EjectKind::WallClock { after } => format!("after {} of wall-clock time", Span(*after)),
            EjectKind::Expr { when, reason } if reason.is_empty() || reason == when.source() => {
                format!("when {}", when.source())
            }
            EjectKind::Expr { when, reason } => format!("when {} ({reason})", when.source()),
        }
    }
}

impl EjectRule {
    /// The rule in words, for plans and reports.
    pub fn describe(&self) -> String {
        let text = self.kind.describe();
        if self.warn_only { format!("warn {text}") } else { format!("eject {text}") }
    }
}

impl AllRule {
    /// The rule in words, for plans and reports.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self.of.iter().map(EjectKind::describe).collect();
        let verb = if self.warn_only { "warn" } else { "eject" };
        let why = self.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default();
        format!("{verb} when all hold: {}{why}", parts.join("; "))
    }
}

/// Which events count for what: type names, and conditions over the event. An event counts
/// for a class when its `type` is one of the names or any condition holds.
#[derive(Debug, Clone, Serialize)]
pub struct EventMapping {
    pub tool_call: Vec<String>,
    pub snapshot: Vec<String>,
    pub progress: Vec<String>,
    pub error: Vec<String>,
    pub done: Vec<String>,
    /// The `{ expr = ... }` entries of each list.
    pub exprs: EventExprs,
}

/// Conditions over the event, per class.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EventExprs {
    pub tool_call: Vec<EventMatcher>,
    pub snapshot: Vec<EventMatcher>,
    pub progress: Vec<EventMatcher>,
    pub error: Vec<EventMatcher>,
    pub done: Vec<EventMatcher>,
}

/// What an event may count as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventClass {
    ToolCall,
    Snapshot,
    Progress,
    Error,
    Done,
}

/// A compiled `{ expr = "..." }` over one event ([`expr::EVENT`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct EventMatcher(Condition);

impl EventMatcher {
    /// Compile a condition over `event`, as the manifest does.
    pub fn compile(source: &str) -> Result<EventMatcher, crate::expr::ExprError> {
        Condition::compile_in(source, &expr::EVENT).map(EventMatcher)
    }

    /// Whether the condition holds for this event. A condition that fails on it (a missing
    /// field, a wrong type) does not match.
    pub fn matches(&self, event: &serde_json::Map<String, serde_json::Value>) -> bool {
        match self.0.holds_for_event(event) {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!("event expression: {e}");
                false
            }
        }
    }

    pub fn source(&self) -> &str {
        self.0.source()
    }
}

impl EventMapping {
    /// Whether `event` (a JSON object with a `type`) counts for `class`.
    pub fn matches(
        &self,
        class: EventClass,
        event: &serde_json::Map<String, serde_json::Value>,
    ) -> bool {
        let (names, exprs) = self.class(class);
        let kind = event.get("type").and_then(serde_json::Value::as_str);
        kind.is_some_and(|k| names.iter().any(|n| n == k)) || exprs.iter().any(|m| m.matches(event))
    }

    fn class(&self, class: EventClass) -> (&[String], &[EventMatcher]) {
        match class {
            EventClass::ToolCall => (&self.tool_call, &self.exprs.tool_call),
            EventClass::Snapshot => (&self.snapshot, &self.exprs.snapshot),
            EventClass::Progress => (&self.progress, &self.exprs.progress),
            EventClass::Error => (&self.error, &self.exprs.error),
            EventClass::Done => (&self.done, &self.exprs.done),
        }
    }
}

impl Default for EventMapping {
    /// apf's own vocabulary plus pi-coding-agent's RPC mode.
    fn default() -> EventMapping {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect();
        EventMapping {
            tool_call: v(&["tool_call", "tool_execution_start"]),
            snapshot: v(&["snapshot"]),
            progress: v(&["progress", "snapshot", "tool_execution_end", "turn_end"]),
            error: v(&["error"]),
            done: v(&["done", "agent_end"]),
            exprs: EventExprs::default(),
        }
    }
}

/// The parts of a manifest that deserialised. A part that is missing or malformed is `None`;
/// `complete` says whether every part is there.
#[derive(Debug, Default)]
pub struct Sections {
    pub complete: bool,
    pub version: Option<u32>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub openrouter: Option<raw::OpenRouter>,
    pub budget: Option<raw::Budget>,
    pub container: Option<raw::Container>,
    /// When `container` did not parse: the mounts and env entries that did, by index or name.
    pub loose_mounts: Vec<(usize, raw::Mount)>,
    pub loose_env: BTreeMap<String, raw::EnvValue>,
    pub models: Vec<Option<raw::Model>>,
    pub preflight: Option<raw::Preflight>,
    pub eject: Vec<Option<raw::EjectRule>>,
    pub events: Option<raw::Events>,
}

impl Sections {
    /// Deserialise each part of `table` on its own, keeping what parses.
    pub fn salvage(table: &toml::Table) -> Sections {
        let mut complete = true;
        let mut required = |v: Option<&toml::Value>| -> Option<toml::Value> {
            if v.is_none() {
                complete = false;
            }
            v.cloned()
        };
        let version = required(table.get("version"));
        let name = required(table.get("name"));
        let budget = required(table.get("budget"));
        let container = required(table.get("container"));
        let models = required(table.get("models"));

        let mut s = Sections {
            version: part(version, &mut complete),
            name: part(name, &mut complete),
            description: part(table.get("description").cloned(), &mut complete),
            openrouter: part(table.get("openrouter").cloned(), &mut complete),
            budget: part(budget, &mut complete),
            container: part(container, &mut complete),
            preflight: part(table.get("preflight").cloned(), &mut complete),
            events: part(table.get("events").cloned(), &mut complete),
            ..Sections::default()
        };
        s.models = items(models.as_ref(), &mut complete);
        s.eject = items(table.get("eject"), &mut complete);
        if s.container.is_none()
            && let Some(toml::Value::Table(c)) = table.get("container")
        {
            if let Some(toml::Value::Array(mounts)) = c.get("mounts") {
                s.loose_mounts = mounts
                    .iter()
                    .enumerate()
                    .filter_map(|(i, m)| m.clone().try_into().ok().map(|m| (i, m)))
                    .collect();
            }
            if let Some(toml::Value::Table(env)) = c.get("env") {
                s.loose_env = env
                    .iter()
                    .filter_map(|(k, v)| v.clone().try_into().ok().map(|v| (k.clone(), v)))
                    .collect();
            }
        }
        let known = [
            "version",
            "name",
            "description",
            "openrouter",
            "budget",
            "container",
            "models",
            "preflight",
            "eject",
            "events",
        ];
        if table.keys().any(|k| !known.contains(&k.as_str())) {
            complete = false;
        }
        s.complete = complete;
        s
    }
}

/// An optional part: `None` when absent (fine) or when it does not parse (not complete).
fn part<T: DeserializeOwned>(v: Option<toml::Value>, complete: &mut bool) -> Option<T> {
    let v = v?;
    match v.try_into() {
        Ok(t) => Some(t),
        Err(_) => {
            *complete = false;
            None
        }
    }
}

/// An array of tables, element by element.
fn items<T: DeserializeOwned>(v: Option<&toml::Value>, complete: &mut bool) -> Vec<Option<T>> {
    match v {
        None => Vec::new(),
        Some(toml::Value::Array(xs)) => xs
            .iter()
            .map(|x| {
                let t = x.clone().try_into().ok();
                if t.is_none() {
                    *complete = false;
                }
                t
            })
            .collect(),
        Some(_) => {
            *complete = false;
            Vec::new()
        }
    }
}

/// Everything resolution needs besides the parsed parts.
pub struct Input<'a> {
    pub sections: Sections,
    pub path: &'a Path,
    pub source: &'a str,
    pub locator: &'a Locator,
}

/// Resolve what parsed, collecting every problem. The experiment is `Some` only when every
/// part parsed and nothing is wrong.
pub fn resolve(input: Input<'_>) -> (Option<Experiment>, Vec<Problem>) {
    let mut r = Resolver {
        loc: input.locator,
        source: input.source,
        problems: Vec::new(),
        dir: manifest_dir(input.path),
        key_vars: Vec::new(),
    };
    let s = input.sections;

    if let Some(v) = s.version
        && v != 1
    {
        r.problem(
            r.value(&[Seg::Key("version")]),
            format!("manifest version {v} is not supported"),
            "apf reads version 1: write `version = 1`",
        );
    }
    let openrouter = resolve_openrouter(s.openrouter);
    r.key_vars = key_variables(&openrouter);
    let budget = s.budget.as_ref().map(|b| r.budget(b));
    let container = match &s.container {
        Some(c) => Some(r.container(c)),
        None => {
            r.loose_container(&s.loose_mounts, &s.loose_env);
            None
        }
    };
    let per_model = s.budget.as_ref().map(|b| b.per_model_usd);
    let models = r.models(&s.models, per_model);
    let preflight = r.preflight(s.preflight.unwrap_or_default(), &s.models);
    let (eject, eject_all) = r.eject(&s.eject);
    let events = r.events(s.events.unwrap_or_default());

    if !s.complete || !r.problems.is_empty() {
        return (None, r.problems);
    }
    let (Some(name), Some(budget), Some(container), Some(models)) =
        (s.name, budget, container, models)
    else {
        return (None, r.problems);
    };
    let exp = Experiment {
        name,
        description: s.description,
        manifest_path: absolute(input.path),
        manifest_dir: r.dir,
        manifest_hash: crate::hash::sha256_hex(input.source.as_bytes()),
        openrouter,
        budget,
        container,
        models,
        preflight,
        eject,
        eject_all,
        events,
    };
    (Some(exp), Vec::new())
}

fn manifest_dir(path: &Path) -> PathBuf {
    absolute(path).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"))
}

/// An absolute, lexically normalised path; symlinks are left alone so messages show what the
/// user wrote.
pub(crate) fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")).join(path)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

pub(crate) fn resolve_openrouter(o: Option<raw::OpenRouter>) -> OpenRouterSettings {
    let o = o.unwrap_or(raw::OpenRouter {
        base_url: None,
        management_key_env: None,
        inference_key_env: None,
    });
    OpenRouterSettings {
        base_url: o.base_url,
        management_key_env: o.management_key_env.unwrap_or_else(|| "OR_ADMIN_KEY".into()),
        inference_key_env: o.inference_key_env.unwrap_or_else(|| "OPENROUTER_API_KEY".into()),
    }
}

/// Every host variable that may hold an OpenRouter key, by name.
fn key_variables(o: &OpenRouterSettings) -> Vec<String> {
    let mut vars: Vec<String> = KEY_VARIABLES.iter().map(|s| s.to_string()).collect();
    for v in [&o.management_key_env, &o.inference_key_env] {
        if !vars.contains(v) {
            vars.push(v.clone());
        }
    }
    vars
}

struct Resolver<'a> {
    loc: &'a Locator,
    source: &'a str,
    problems: Vec<Problem>,
    dir: PathBuf,
    key_vars: Vec<String>,
}

impl Resolver<'_> {
    fn value(&self, path: &[Seg]) -> Range<usize> {
        self.loc.value(path)
    }

    fn problem(&mut self, span: Range<usize>, message: String, help: &str) {
        let mut p = Problem::new(message, span).label("here");
        if !help.is_empty() {
            p = p.help(help);
        }
        self.problems.push(p);
    }

    fn fraction(&mut self, v: f64, path: &[Seg], what: &str) -> Decimal {
        match Decimal::from_f64(v) {
            Some(d) if d > Decimal::ZERO && d <= Decimal::ONE => d,
            _ => {
                let span = self.value(path);
                self.problem(
                    span,
                    format!("`{what}` must be above 0 and at most 1, not {v}"),
                    "a fraction of the budget: 0.25 is a quarter",
                );
                Decimal::ONE
            }
        }
    }

    fn positive_span(&mut self, d: Duration, path: &[Seg], what: &str) {
        if d.is_zero() {
            let span = self.value(path);
            self.problem(span, format!("`{what}` must be longer than 0"), "");
        }
    }

    fn budget(&mut self, b: &raw::Budget) -> BudgetSettings {
        if b.per_model_usd <= Usd::ZERO {
            let span = self.value(&[Seg::Key("budget"), Seg::Key("per_model_usd")]);
            self.problem(
                span,
                format!("the budget must be positive, not {}", b.per_model_usd),
                "each model's key is capped at this many dollars",
            );
        }
        let kill_at = match b.kill_at {
            Some(v) => self.fraction(v, &[Seg::Key("budget"), Seg::Key("kill_at")], "kill_at"),
            None => Decimal::ONE,
        };
        let inject_every = b.inject_every.map_or(Duration::from_secs(30), |s| s.0);
        let poll_every = b.poll_every.map_or(Duration::from_secs(5), |s| s.0);
        for (key, d) in [("inject_every", inject_every), ("poll_every", poll_every)] {
            if d < Duration::from_millis(100) {
                let span = self.value(&[Seg::Key("budget"), Seg::Key(key)]);
                self.problem(span, format!("`{key}` must be at least 100ms, not {}", Span(d)), "");
            }
        }
        BudgetSettings {
            mode: b.mode.unwrap_or(BudgetMode::Simple),
            inject_every,
            poll_every,
            kill_at,
            enforce: b.enforce.unwrap_or(raw::Enforce::Key),
        }
    }

    fn container(&mut self, c: &raw::Container) -> ContainerSettings {
        let base = Seg::Key("container");
        let stdin = c.stdin.as_ref().and_then(|s| self.stdin(s));
        let env = self.env(&c.env, &[base, Seg::Key("env")]);
        let indexed: Vec<(usize, raw::Mount)> = c.mounts.iter().cloned().enumerate().collect();
        let mounts = self.mounts(&indexed);
        // A leading `-` would reach docker as an option, not an image.
        if c.image.trim().is_empty()
            || c.image.contains(char::is_whitespace)
            || c.image.starts_with('-')
        {
            let span = self.value(&[base, Seg::Key("image")]);
            self.problem(
                span,
                format!("{:?} is not an image reference", c.image),
                "write a tag such as \"my-agent:latest\" or a digest \"my-agent@sha256:...\"",
            );
        }
        let timeout = c.timeout.map_or(Duration::from_secs(30 * 60), |s| s.0);
        self.positive_span(timeout, &[base, Seg::Key("timeout")], "timeout");
        if timeout > Duration::from_secs(365 * 24 * 3600) {
            let span = self.value(&[base, Seg::Key("timeout")]);
            self.problem(span, "`timeout` must be at most a year".into(), "");
        }
        for (key, list) in [("args", &c.args), ("entrypoint", &c.entrypoint)] {
            if list.iter().flatten().any(|a| a.contains("sk-or-")) {
                let span = self.value(&[base, Seg::Key(key)]);
                self.problem(
                    span,
                    format!("`{key}` holds an OpenRouter key, which would show on a command line"),
                    "an agent must only ever hold the capped key apf mints for its model",
                );
            }
        }
        ContainerSettings {
            image: c.image.clone(),
            entrypoint: c.entrypoint.clone(),
            args: c.args.clone(),
            stdin,
            env,
            mounts,
            timeout,
            max_parallel: c.max_parallel.map_or(usize::MAX, |n| n.max(1) as usize),
            stop_grace: c.stop_grace.map_or(Duration::from_secs(10), |s| s.0),
            network: c.network,
            memory: c.memory.clone(),
            user: c.user.clone(),
        }
    }

    /// The checks that need the disk, on what parsed of a `[container]` that did not.
    fn loose_container(
        &mut self,
        mounts: &[(usize, raw::Mount)],
        env: &BTreeMap<String, raw::EnvValue>,
    ) {
        self.mounts(mounts);
        self.env(env, &[Seg::Key("container"), Seg::Key("env")]);
    }

    fn stdin(&mut self, s: &str) -> Option<PathBuf> {
        let path = absolute(&self.dir.join(expand_home(s)));
        if path.is_file() {
            return Some(path);
        }
        let span = self.value(&[Seg::Key("container"), Seg::Key("stdin")]);
        let what = if path.exists() { "is not a file" } else { "does not exist" };
        self.problem(
            span,
            format!("the stdin file {} {what}", path.display()),
            "paths are relative to the manifest's folder",
        );
        None
    }

    fn mounts(&mut self, mounts: &[(usize, raw::Mount)]) -> Vec<BindMount> {
        let mut out: Vec<BindMount> = Vec::new();
        for (i, m) in mounts {
            let at = [Seg::Key("container"), Seg::Key("mounts"), Seg::Index(*i)];
            let Some(mount) = self.mount(m, &at) else { continue };
            if out.iter().any(|o| o.target == mount.target) {
                let span = self.value(&at);
                self.problem(
                    span,
                    format!("two mounts share the target {}", mount.target),
                    "each target can be mounted once",
                );
                continue;
            }
            out.push(mount);
        }
        out
    }

    fn env(
        &mut self,
        env: &BTreeMap<String, raw::EnvValue>,
        at: &[Seg],
    ) -> BTreeMap<String, EnvSource> {
        let mut out = BTreeMap::new();
        for (name, value) in env {
            let mut path = at.to_vec();
            path.push(Seg::Key(name));
            let key_span = self.loc.key(&path);
            if RESERVED_ENV.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                self.problem(
                    key_span,
                    format!("{name} is set by apf and cannot be set in the manifest"),
                    "each container gets its own capped key in OPENROUTER_API_KEY",
                );
                continue;
            }
            let source = match value {
                raw::EnvValue::Literal(v) => EnvSource::Literal(v.clone()),
                raw::EnvValue::FromEnv(f) => EnvSource::Host(f.from_env.clone()),
            };
            if let Some(why) = self.leaks_openrouter_key(&source) {
                let span = self.value(&path);
                self.problem(
                    span,
                    format!("{name} would pass {why} into the container"),
                    "an agent must only ever hold the capped key apf mints for its model",
                );
                continue;
            }
            out.insert(name.clone(), source);
        }
        out
    }

    /// Why an env value would hand an OpenRouter key to an agent, if it would (HAZARDS H6).
    fn leaks_openrouter_key(&self, source: &EnvSource) -> Option<String> {
        match source {
            EnvSource::Literal(v) if v.contains("sk-or-") => {
                Some("an OpenRouter key written in the manifest".into())
            }
            EnvSource::Host(var) => {
                let holds_key = std::env::var(var).is_ok_and(|v| v.contains("sk-or-"));
                (self.key_vars.contains(var) || holds_key)
                    .then(|| format!("the host's OpenRouter key in ${var}"))
            }
            EnvSource::Literal(_) => None,
        }
    }

    fn mount(&mut self, m: &raw::Mount, at: &[Seg]) -> Option<BindMount> {
        // Only the docker-style string can be mistaken for a named volume; a table's source is
        // always a path.
        let short = matches!(m, raw::Mount::Short(_));
        let (source, target, read_only, consistency) = match m {
            raw::Mount::Long(t) => (t.source.clone(), t.target.clone(), t.read_only, None),
            raw::Mount::Short(s) => match parse_short_mount(s) {
                Ok(parts) => parts,
                Err((msg, help)) => {
                    let span = self.value(at);
                    self.problem(span, msg, &help);
                    return None;
                }
            },
        };
        // A table's problems point at its field; a string's at the whole string.
        let span_of = |this: &Self, key: &'static str| {
            let mut p = at.to_vec();
            if !short {
                p.push(Seg::Key(key));
            }
            this.value(&p)
        };
        if short && !looks_like_path(&source) {
            let span = self.value(at);
            self.problem(
                span,
                format!(
                    "mount source {source:?} is a bare name, which docker would take as a named volume"
                ),
                &format!("write \"./{source}\" for a folder beside the manifest"),
            );
            return None;
        }
        if source.trim().is_empty() {
            let span = span_of(self, "source");
            self.problem(span, "a mount source cannot be empty".into(), "");
            return None;
        }
        if !target.starts_with('/') {
            let span = span_of(self, "target");
            self.problem(
                span,
                format!("mount target {target:?} must be an absolute path"),
                &format!("write \"/{}\"", target.trim_start_matches("./")),
            );
            return None;
        }
        let target = normalise_target(&target);
        if target == OUTPUT_DIR || target.starts_with(&format!("{OUTPUT_DIR}/")) || target == "/" {
            let span = span_of(self, "target");
            self.problem(
                span,
                format!("mount target {target:?} overlaps {OUTPUT_DIR}, which apf mounts itself"),
                "mount inputs elsewhere, e.g. under /workspace/input",
            );
            return None;
        }
        let resolved = absolute(&self.dir.join(expand_home(&source)));
        if !resolved.exists() {
            let span = span_of(self, "source");
            self.problem(
                span,
                format!("mount source {} does not exist", resolved.display()),
                "create it first (paths are relative to the manifest's folder); apf never lets \
                 docker create a missing source",
            );
            return None;
        }
        Some(BindMount { source: resolved, target, read_only, consistency })
    }

    fn models(
        &mut self,
        models: &[Option<raw::Model>],
        default_budget: Option<Usd>,
    ) -> Option<Vec<ModelSettings>> {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut out = Vec::new();
        for (i, m) in models.iter().enumerate() {
            let Some(m) = m else { continue };
            let at = [Seg::Key("models"), Seg::Index(i)];
            let field = |k: &'static str| [at[0], at[1], Seg::Key(k)];
            if m.id.trim().is_empty() || m.id.contains(char::is_whitespace) {
                let span = self.value(&field("id"));
                self.problem(span, format!("{:?} is not a model id", m.id), "");
            }
            let alias = m.alias.clone().unwrap_or_else(|| alias_from_id(&m.id));
            if !valid_alias(&alias) {
                let span = self.value(&field(if m.alias.is_some() { "alias" } else { "id" }));
                let derived = if m.alias.is_none() { " (derived from the id)" } else { "" };
                self.problem(
                    span,
                    format!(
                        "alias {alias:?}{derived} must be 1–32 lowercase letters, digits, - or _"
                    ),
                    "set `alias` to a short name such as \"llama\"",
                );
            }
            if let Some(first) = seen.insert(alias.clone(), i) {
                let key = if m.alias.is_some() { "alias" } else { "id" };
                let span = self.value(&field(key));
                self.problem(
                    span,
                    format!("alias {alias:?} is already used by model {}", first + 1),
                    "give each model a distinct `alias`",
                );
            }
            let budget = m.budget_usd.or(default_budget).unwrap_or(Usd::ZERO);
            if m.budget_usd.is_some() && budget <= Usd::ZERO {
                let span = self.value(&field("budget_usd"));
                self.problem(span, format!("the budget must be positive, not {budget}"), "");
            }
            for (j, extra) in m.extra_models.iter().enumerate() {
                if extra.trim().is_empty() || extra.contains(char::is_whitespace) {
                    let span = self.value(&[at[0], at[1], Seg::Key("extra_models"), Seg::Index(j)]);
                    self.problem(span, format!("{extra:?} is not a model id"), "");
                }
            }
            let env = self.env(&m.env, &field("env"));
            out.push(ModelSettings {
                id: m.id.clone(),
                alias,
                budget,
                extra_models: m.extra_models.clone(),
                env,
            });
        }
        (out.len() == models.len() && default_budget.is_some()).then_some(out)
    }

    fn preflight(&mut self, p: raw::Preflight, models: &[Option<raw::Model>]) -> PreflightSettings {
        let base = Seg::Key("preflight");
        let checks = match p.checks {
            Some(list) => list.into_iter().collect(),
            None => DEFAULT_CHECKS.iter().copied().collect(),
        };
        let min_balance = p.min_balance_usd.unwrap_or(Usd::ZERO);
        if min_balance.is_negative() {
            let span = self.value(&[base, Seg::Key("min_balance_usd")]);
            self.problem(span, format!("`min_balance_usd` cannot be negative ({min_balance})"), "");
        }
        let ids: Vec<&str> = models.iter().flatten().map(|m| m.id.as_str()).collect();
        let all_parsed = models.iter().all(Option::is_some);
        for id in p.required_params.keys() {
            if all_parsed && !ids.contains(&id.as_str()) {
                let span = self.loc.key(&[base, Seg::Key("required_params"), Seg::Key(id)]);
                let help = match did_you_mean(id, ids.iter().copied()) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!("the models are {}", ids.join(", ")),
                };
                self.problem(span, format!("no model has the id {id:?}"), &help);
            }
        }
        let mut custom = Vec::new();
        let mut custom_expr = Vec::new();
        for (i, c) in p.custom.into_iter().enumerate() {
            let at = [base, Seg::Key("custom"), Seg::Index(i)];
            match c {
                raw::CustomCheck::Command(c) => {
                    if c.run.first().is_none_or(|p| p.trim().is_empty()) {
                        let span = self.value(&[at[0], at[1], at[2], Seg::Key("run")]);
                        self.problem(span, "`run` needs a program to run".into(), "");
                        continue;
                    }
                    custom.push(CommandCheck { name: c.name, run: c.run });
                }
                raw::CustomCheck::Expr(e) => {
                    let path = [at[0], at[1], at[2], Seg::Key("expr")];
                    if let Some(condition) = self.condition(&e.expr, &path, &expr::PREFLIGHT) {
                        custom_expr.push(ExprCheck { name: e.name, condition });
                    }
                }
            }
        }
        PreflightSettings {
            checks,
            min_balance,
            common_required_params: p.common_required_params,
            required_params: p.required_params,
            custom,
            custom_expr,
        }
    }

    fn eject(&mut self, rules: &[Option<raw::EjectRule>]) -> (Vec<EjectRule>, Vec<AllRule>) {
        if rules.is_empty() {
            let defaults = vec![
                EjectRule { kind: EjectKind::BudgetExceeded, warn_only: false },
                EjectRule {
                    kind: EjectKind::Idle { after: Duration::from_secs(300) },
                    warn_only: false,
                },
            ];
            return (defaults, Vec::new());
        }
        let mut any = Vec::new();
        let mut all = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let Some(rule) = rule else { continue };
            let at = [Seg::Key("eject"), Seg::Index(i)];
            match rule {
                raw::EjectRule::All { of, reason, warn_only } => {
                    if of.len() < 2 {
                        let span = self.value(&[at[0], at[1], Seg::Key("of")]);
                        self.problem(
                            span,
                            format!("`all` needs at least two rules, not {}", of.len()),
                            "a single rule is its own [[eject]]",
                        );
                        continue;
                    }
                    let kinds: Vec<Option<EjectKind>> = of
                        .iter()
                        .enumerate()
                        .map(|(j, t)| {
                            let path = [at[0], at[1], Seg::Key("of"), Seg::Index(j)];
                            self.trigger(t, &path)
                        })
                        .collect();
                    if kinds.iter().all(Option::is_some) {
                        all.push(AllRule {
                            position: i,
                            of: kinds.into_iter().flatten().collect(),
                            reason: reason.clone(),
                            warn_only: *warn_only,
                        });
                    }
                }
                other => {
                    if let Some((kind, warn_only)) = self.rule(other, &at) {
                        any.push(EjectRule { kind, warn_only });
                    }
                }
            }
        }
        (any, all)
    }

    fn rule(&mut self, rule: &raw::EjectRule, at: &[Seg]) -> Option<(EjectKind, bool)> {
        let field = |k: &'static str| {
            let mut p = at.to_vec();
            p.push(Seg::Key(k));
            p
        };
        Some(match rule {
            raw::EjectRule::BudgetExceeded { warn_only } => (EjectKind::BudgetExceeded, *warn_only),
            raw::EjectRule::Idle { after, warn_only } => {
                self.positive_span(after.0, &field("after"), "after");
                (EjectKind::Idle { after: after.0 }, *warn_only)
            }
            raw::EjectRule::WallClock { after, warn_only } => {
                self.positive_span(after.0, &field("after"), "after");
                (EjectKind::WallClock { after: after.0 }, *warn_only)
            }
            raw::EjectRule::BudgetFraction { spent, unless, warn_only } => {
                let spent = self.fraction(*spent, &field("spent"), "spent");
                let unless = match unless {
                    Some(u) => Some(self.condition(u, &field("unless"), &expr::COUNTERS)?),
                    None => None,
                };
                (EjectKind::BudgetFraction { spent, unless }, *warn_only)
            }
            raw::EjectRule::NoProgress { spent, warn_only } => {
                let spent = self.fraction(*spent, &field("spent"), "spent");
                (EjectKind::NoProgress { spent }, *warn_only)
            }
            raw::EjectRule::Expr { when, reason, warn_only } => {
                let when = self.condition(when, &field("when"), &expr::COUNTERS)?;
                (EjectKind::Expr { when, reason: reason.clone() }, *warn_only)
            }
            raw::EjectRule::All { .. } => return None,
        })
    }

    fn trigger(&mut self, t: &raw::Trigger, at: &[Seg]) -> Option<EjectKind> {
        let rule = match t.clone() {
            raw::Trigger::BudgetExceeded {} => raw::EjectRule::BudgetExceeded { warn_only: false },
            raw::Trigger::Idle { after } => raw::EjectRule::Idle { after, warn_only: false },
            raw::Trigger::BudgetFraction { spent, unless } => {
                raw::EjectRule::BudgetFraction { spent, unless, warn_only: false }
            }
            raw::Trigger::NoProgress { spent } => {
                raw::EjectRule::NoProgress { spent, warn_only: false }
            }
            raw::Trigger::WallClock { after } => {
                raw::EjectRule::WallClock { after, warn_only: false }
            }
            // Inside `all` the condition is its own reason, so joined reasons read well.
            raw::Trigger::Expr { when } => {
                raw::EjectRule::Expr { reason: when.clone(), when, warn_only: false }
            }
        };
        self.rule(&rule, at).map(|(kind, _)| kind)
    }

    fn events(&mut self, e: raw::Events) -> EventMapping {
        let d = EventMapping::default();
        let mut exprs = EventExprs::default();
        let class = |this: &mut Self,
                     list: Option<Vec<raw::EventMatch>>,
                     key: &'static str,
                     default: Vec<String>,
                     out: &mut Vec<EventMatcher>|
         -> Vec<String> {
            let Some(list) = list else { return default };
            let mut names = Vec::new();
            for (i, m) in list.into_iter().enumerate() {
                match m {
                    raw::EventMatch::Type(t) => names.push(t),
                    raw::EventMatch::Expr(x) => {
                        let path =
                            [Seg::Key("events"), Seg::Key(key), Seg::Index(i), Seg::Key("expr")];
                        if let Some(c) = this.condition(&x.expr, &path, &expr::EVENT) {
                            out.push(EventMatcher(c));
                        }
                    }
                }
            }
            names
        };
        let tool_call = class(self, e.tool_call, "tool_call", d.tool_call, &mut exprs.tool_call);
        let snapshot = class(self, e.snapshot, "snapshot", d.snapshot, &mut exprs.snapshot);
        let progress = class(self, e.progress, "progress", d.progress, &mut exprs.progress);
        let error = class(self, e.error, "error", d.error, &mut exprs.error);
        let done = class(self, e.done, "done", d.done, &mut exprs.done);
        EventMapping { tool_call, snapshot, progress, error, done, exprs }
    }

    /// Compile a condition; an error points into the expression inside the TOML string.
    fn condition(
        &mut self,
        source: &str,
        at: &[Seg],
        vocabulary: &'static Vocabulary,
    ) -> Option<Condition> {
        match Condition::compile_in(source, vocabulary) {
            Ok(c) => Some(c),
            Err(e) => {
                let value = self.value(at);
                let span = string_span(self.source, value, e.offset..e.offset + e.len.max(1));
                self.problems.push(
                    Problem::new(format!("invalid condition: {}", e.message), span)
                        .label("here")
                        .help(format!(
                            "{} are CEL over: {}",
                            vocabulary.used_for,
                            vocabulary.summary()
                        )),
                );
                None
            }
        }
    }
}

/// `/workspace//task/` → `/workspace/task`.
/// `/a//b/./c/../d` → `/a/b/d`, as the container will see it, so no spelling of a path can
/// reach into `/workspace/output`.
fn normalise_target(target: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in target.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

/// `source:target[:option]`, docker's short form.
/// source, target, read-only, consistency hint.
type ShortMount = (String, String, bool, Option<String>);

/// A message and a hint.
type MountProblem = (String, String);

fn parse_short_mount(s: &str) -> Result<ShortMount, MountProblem> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad =
        |msg: String| Err((msg, "write \"./source:/target\" or \"./source:/target:ro\"".into()));
    let (source, target, option) = match parts.as_slice() {
        [s, t] => (*s, *t, None),
        [s, t, o] => (*s, *t, Some(*o)),
        _ => return bad(format!("{s:?} is not a mount of the form source:target[:options]")),
    };
    if source.is_empty() || target.is_empty() {
        return bad(format!("{s:?} is missing its source or target"));
    }
    let mut read_only = false;
    let mut consistency = None;
    if let Some(opts) = option {
        for opt in opts.split(',') {
            match opt {
                "ro" => read_only = true,
                "rw" => read_only = false,
                "delegated" | "cached" | "consistent" => consistency = Some(opt.to_string()),
                other => {
                    let known = ["ro", "rw", "delegated", "cached", "consistent"];
                    let hint = did_you_mean(other, known)
                        .map(|k| format!("did you mean `{k}`?"))
                        .unwrap_or_else(|| format!("options are {}", known.join(", ")));
                    return Err((format!("unknown mount option {other:?}"), hint));
                }
            }
        }
    }
    Ok((source.to_string(), target.to_string(), read_only, consistency))
}

fn looks_like_path(source: &str) -> bool {
    source.starts_with('.') || source.starts_with('/') || source.starts_with('~')
}

fn expand_home(source: &str) -> PathBuf {
    match (source.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(source),
    }
}

/// `meta-llama/llama-3.3-70b-instruct` → `llama-3-3-70b-instruct`.
pub fn alias_from_id(id: &str) -> String {
    let tail = id.rsplit('/').next().unwrap_or(id);
    let tail = tail.split(':').next().unwrap_or(tail);
    let mut alias: String = tail
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '-' })
        .collect();
    while alias.contains("--") {
        alias = alias.replace("--", "-");
    }
    let alias = alias.trim_matches('-');
    alias.chars().take(32).collect::<String>().trim_end_matches('-').to_string()
}

pub(crate) fn valid_alias(a: &str) -> bool {
    !a.is_empty()
        && a.len() <= 32
        && a.starts_with(|c: char| c.is_ascii_alphanumeric())
        && a.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_targets_cannot_reach_the_output_folder_by_another_spelling() {
        assert_eq!(normalise_target("/workspace//output"), "/workspace/output");
        assert_eq!(normalise_target("/workspace/./output/"), "/workspace/output");
        assert_eq!(
            normalise_target("/workspace/x/../output/budget.txt"),
            "/workspace/output/budget.txt"
        );
        assert_eq!(normalise_target("/../.."), "/");
    }

    #[test]
    fn aliases_derive_from_ids() {
        assert_eq!(alias_from_id("meta-llama/llama-3.3-70b-instruct"), "llama-3-3-70b-instruct");
        assert_eq!(alias_from_id("google/gemma-3-27b-it:free"), "gemma-3-27b-it");
        assert_eq!(alias_from_id("openrouter/auto"), "auto");
    }

    #[test]
    fn short_mounts_parse_docker_options() {
        let (s, t, ro, c) = parse_short_mount("./cache:/workspace/cache:delegated").unwrap();
        assert_eq!(
            (s.as_str(), t.as_str(), ro, c.as_deref()),
            ("./cache", "/workspace/cache", false, Some("delegated"))
        );
        assert!(parse_short_mount("./a:/b:ro").unwrap().2);
        let err = parse_short_mount("./a:/b:r0").unwrap_err();
        assert!(err.1.contains("did you mean `ro`"), "{err:?}");
    }

    #[test]
    fn targets_normalise_so_overlaps_are_seen() {
        assert_eq!(normalise_target("/workspace//output/"), "/workspace/output");
        assert_eq!(normalise_target("/workspace/./x"), "/workspace/x");
    }

    fn load(text: &str) -> Result<Experiment, crate::manifest::ManifestError> {
        let dir = std::env::temp_dir();
        crate::manifest::load_str(&dir.join("resolve-test.toml"), text)
    }

    const BASE: &str = "version = 1\nname = \"t\"\n[budget]\nper_model_usd = 0.5\n[container]\nimage = \"a\"\n[[models]]\nid = \"x/y\"\n";

    #[test]
    fn all_rules_resolve_apart_from_the_any_rules() {
        let text = format!(
            "{BASE}[[eject]]\nrule = \"idle\"\nafter = \"2m\"\n[[eject]]\nrule = \"all\"\nof = [{{ rule = \"budget_fraction\", spent = 0.5 }}, {{ rule = \"expr\", when = \"tool_calls == 0\" }}]\n"
        );
        let exp = load(&text).unwrap();
        assert_eq!(exp.eject.len(), 1);
        let all = &exp.eject_all[0];
        assert_eq!((all.position, all.of.len(), all.warn_only), (1, 2, false));
        assert!(
            matches!(&all.of[1], EjectKind::Expr { reason, .. } if reason == "tool_calls == 0")
        );
        assert_eq!(
            all.describe(),
            "eject when all hold: at 50% of the budget; when tool_calls == 0"
        );
    }

    #[test]
    fn custom_checks_split_into_commands_and_conditions() {
        let text = format!(
            "{BASE}[[preflight.custom]]\nname = \"a\"\nrun = [\"true\"]\n[[preflight.custom]]\nname = \"b\"\nexpr = \"balance_usd > 1.0\"\n"
        );
        let exp = load(&text).unwrap();
        assert_eq!(
            exp.preflight.custom,
            [CommandCheck { name: "a".into(), run: vec!["true".into()] }]
        );
        let check = &exp.preflight.custom_expr[0];
        let facts = crate::expr::CheckFacts { balance_usd: 2.0, ..Default::default() };
        assert_eq!((check.name.as_str(), check.condition.holds_for_check(&facts)), ("b", Ok(true)));
    }

    #[test]
    fn no_eject_rules_means_the_defaults() {
        let exp = load(BASE).unwrap();
        let rules: Vec<String> = exp.eject.iter().map(EjectRule::describe).collect();
        assert_eq!(
            rules,
            ["eject when spend reaches the budget", "eject when idle (no events, no spend) for 5m"]
        );
        assert!(exp.eject_all.is_empty());
    }

    #[test]
    fn event_mapping_matches_names_or_expressions() {
        let mut m = EventMapping::default();
        m.exprs
            .tool_call
            .push(EventMatcher::compile("event.type == 'message' && has(event.tool)").unwrap());
        let obj = |s: &str| -> serde_json::Map<String, serde_json::Value> {
            serde_json::from_str(s).unwrap()
        };
        assert!(m.matches(EventClass::ToolCall, &obj(r#"{"type":"tool_call"}"#)));
        assert!(m.matches(EventClass::ToolCall, &obj(r#"{"type":"message","tool":"x"}"#)));
        assert!(!m.matches(EventClass::ToolCall, &obj(r#"{"type":"message"}"#)));
        assert!(m.matches(EventClass::Done, &obj(r#"{"type":"agent_end"}"#)));
    }
}
