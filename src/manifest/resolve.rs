//! The resolved experiment: what the rest of apf works from. Resolution applies every default
//! (in this one place), makes paths absolute against the manifest's folder, compiles
//! conditions, and checks every rule that spans fields. It collects all problems rather than
//! stopping at the first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;
use serde::Serialize;

use super::diag::{Locator, Problem, Seg, did_you_mean};
use super::raw;
use crate::duration::Span;
use crate::expr::Condition;
use crate::money::Usd;

pub use raw::{BudgetMode, CheckName, Network};

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
    pub eject: Vec<EjectRule>,
    pub events: EventMapping,
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
    pub custom: Vec<raw::CustomCheck>,
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

impl EjectRule {
    /// The rule in words, for plans and reports.
    pub fn describe(&self) -> String {
        let text = match &self.kind {
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
            EjectKind::Expr { when, reason } => format!("when {} ({reason})", when.source()),
        };
        if self.warn_only { format!("warn {text}") } else { format!("eject {text}") }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EventMapping {
    pub tool_call: Vec<String>,
    pub snapshot: Vec<String>,
    pub progress: Vec<String>,
    pub error: Vec<String>,
    pub done: Vec<String>,
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
        }
    }
}

/// Everything resolution needs besides the parsed manifest.
pub struct Input<'a> {
    pub manifest: raw::Manifest,
    pub path: &'a Path,
    pub source: &'a str,
    pub locator: &'a Locator,
}

/// Resolve, collecting every problem.
pub fn resolve(input: Input<'_>) -> Result<Experiment, Vec<Problem>> {
    let mut r =
        Resolver { loc: input.locator, problems: Vec::new(), dir: manifest_dir(input.path) };
    let m = input.manifest;

    if m.version != 1 {
        r.problem(
            r.value(&[Seg::Key("version")]),
            format!("manifest version {} is not supported", m.version),
            "apf reads version 1",
        );
    }
    let openrouter = resolve_openrouter(m.openrouter);
    let budget = r.budget(&m.budget);
    let container = r.container(&m.container);
    let models = r.models(&m.models, m.budget.per_model_usd);
    let preflight = r.preflight(m.preflight.unwrap_or_default());
    let eject = r.eject(&m.eject);
    let events = resolve_events(m.events.unwrap_or_default());

    if !r.problems.is_empty() {
        return Err(r.problems);
    }
    Ok(Experiment {
        name: m.name,
        description: m.description,
        manifest_path: absolute(input.path),
        manifest_dir: r.dir,
        manifest_hash: crate::hash::sha256_hex(input.source.as_bytes()),
        openrouter,
        budget,
        container,
        models,
        preflight,
        eject,
        events,
    })
}

fn manifest_dir(path: &Path) -> PathBuf {
    absolute(path).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"))
}

/// An absolute, lexically normalised path; symlinks are left alone so messages show what the
/// user wrote.
fn absolute(path: &Path) -> PathBuf {
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

fn resolve_openrouter(o: Option<raw::OpenRouter>) -> OpenRouterSettings {
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

fn resolve_events(e: raw::Events) -> EventMapping {
    let d = EventMapping::default();
    EventMapping {
        tool_call: e.tool_call.unwrap_or(d.tool_call),
        snapshot: e.snapshot.unwrap_or(d.snapshot),
        progress: e.progress.unwrap_or(d.progress),
        error: e.error.unwrap_or(d.error),
        done: e.done.unwrap_or(d.done),
    }
}

struct Resolver<'a> {
    loc: &'a Locator,
    problems: Vec<Problem>,
    dir: PathBuf,
}

impl Resolver<'_> {
    fn value(&self, path: &[Seg]) -> std::ops::Range<usize> {
        self.loc.value(path)
    }

    fn problem(&mut self, span: std::ops::Range<usize>, message: String, help: &str) {
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
                self.problem(span, format!("{what} must be above 0 and at most 1, not {v}"), "");
                Decimal::ONE
            }
        }
    }

    fn budget(&mut self, b: &raw::Budget) -> BudgetSettings {
        if b.per_model_usd <= Usd::ZERO {
            let span = self.value(&[Seg::Key("budget"), Seg::Key("per_model_usd")]);
            self.problem(span, format!("the budget must be positive, not {}", b.per_model_usd), "");
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
                self.problem(span, format!("{key} must be at least 100ms"), "");
            }
        }
        BudgetSettings {
            mode: b.mode.unwrap_or(BudgetMode::Simple),
            inject_every,
            poll_every,
            kill_at,
        }
    }

    fn container(&mut self, c: &raw::Container) -> ContainerSettings {
        let base = [Seg::Key("container")];
        let stdin = c.stdin.as_ref().and_then(|s| {
            let path = absolute(&self.dir.join(s));
            if path.is_file() {
                Some(path)
            } else {
                let span = self.value(&[base[0], Seg::Key("stdin")]);
                self.problem(
                    span,
                    format!("the stdin file {} does not exist", path.display()),
                    "paths are relative to the manifest's folder",
                );
                None
            }
        });
        let env = self.env(&c.env, &[base[0], Seg::Key("env")]);
        let mounts = c
            .mounts
            .iter()
            .enumerate()
            .filter_map(|(i, m)| self.mount(m, &[base[0], Seg::Key("mounts"), Seg::Index(i)]))
            .collect::<Vec<_>>();
        let mut targets = BTreeSet::new();
        for (i, m) in mounts.iter().enumerate() {
            if !targets.insert(m.target.clone()) {
                let span = self.value(&[base[0], Seg::Key("mounts"), Seg::Index(i)]);
                self.problem(span, format!("two mounts share the target {}", m.target), "");
            }
        }
        if c.image.trim().is_empty() || c.image.contains(char::is_whitespace) {
            let span = self.value(&[base[0], Seg::Key("image")]);
            self.problem(span, format!("{:?} is not an image reference", c.image), "");
        }
        ContainerSettings {
            image: c.image.clone(),
            entrypoint: c.entrypoint.clone(),
            args: c.args.clone(),
            stdin,
            env,
            mounts,
            timeout: c.timeout.map_or(Duration::from_secs(30 * 60), |s| s.0),
            max_parallel: c.max_parallel.map_or(usize::MAX, |n| n.max(1) as usize),
            stop_grace: c.stop_grace.map_or(Duration::from_secs(10), |s| s.0),
            network: c.network,
            memory: c.memory.clone(),
            user: c.user.clone(),
        }
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
            let span = self.value(&path);
            if RESERVED_ENV.contains(&name.as_str()) {
                self.problem(
                    span,
                    format!("{name} is set by apf and cannot be set in the manifest"),
                    "each container gets its own capped key in OPENROUTER_API_KEY",
                );
                continue;
            }
            let source = match value {
                raw::EnvValue::Literal(v) => EnvSource::Literal(v.clone()),
                raw::EnvValue::FromEnv(f) => EnvSource::Host(f.from_env.clone()),
            };
            if let Some(why) = leaks_openrouter_key(&source) {
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
        let span = self.value(at);
        if short && !looks_like_path(&source) {
            self.problem(
                span,
                format!("mount source {source:?} is a bare name, which docker would take as a named volume"),
                &format!("write \"./{source}\" for a folder beside the manifest"),
            );
            return None;
        }
        if !target.starts_with('/') {
            self.problem(span, format!("mount target {target:?} must be an absolute path"), "");
            return None;
        }
        let target = target.trim_end_matches('/').to_string();
        if target == OUTPUT_DIR
            || target.starts_with(&format!("{OUTPUT_DIR}/"))
            || target.is_empty()
        {
            self.problem(
                span,
                format!("mount target {target:?} is inside {OUTPUT_DIR}, which apf mounts itself"),
                "",
            );
            return None;
        }
        let resolved = absolute(&self.dir.join(expand_home(&source)));
        if !resolved.exists() {
            self.problem(
                span,
                format!("mount source {} does not exist", resolved.display()),
                "create it first; apf never lets docker create a missing source",
            );
            return None;
        }
        Some(BindMount { source: resolved, target, read_only, consistency })
    }

    fn models(&mut self, models: &[raw::Model], default_budget: Usd) -> Vec<ModelSettings> {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut out = Vec::new();
        for (i, m) in models.iter().enumerate() {
            let at = [Seg::Key("models"), Seg::Index(i)];
            if m.id.trim().is_empty() || m.id.contains(char::is_whitespace) {
                let span = self.value(&[at[0], at[1], Seg::Key("id")]);
                self.problem(span, format!("{:?} is not a model id", m.id), "");
            }
            let alias = m.alias.clone().unwrap_or_else(|| alias_from_id(&m.id));
            if !valid_alias(&alias) {
                let span = self.value(&[at[0], at[1], Seg::Key("alias")]);
                self.problem(
                    span,
                    format!("alias {alias:?} must be 1–32 lowercase letters, digits, - or _"),
                    "",
                );
            }
            if let Some(first) = seen.insert(alias.clone(), i) {
                let key = if m.alias.is_some() { "alias" } else { "id" };
                let span = self.value(&[at[0], at[1], Seg::Key(key)]);
                self.problem(
                    span,
                    format!("alias {alias:?} is already used by model {}", first + 1),
                    "give each model a distinct `alias`",
                );
            }
            let budget = m.budget_usd.unwrap_or(default_budget);
            if budget <= Usd::ZERO {
                let span = self.value(&[at[0], at[1], Seg::Key("budget_usd")]);
                self.problem(span, format!("the budget must be positive, not {budget}"), "");
            }
            let env_path = [at[0], at[1], Seg::Key("env")];
            let env = self.env(&m.env, &env_path);
            out.push(ModelSettings {
                id: m.id.clone(),
                alias,
                budget,
                extra_models: m.extra_models.clone(),
                env,
            });
        }
        out
    }

    fn preflight(&mut self, p: raw::Preflight) -> PreflightSettings {
        let checks = match p.checks {
            Some(list) => list.into_iter().collect(),
            None => [
                CheckName::Balance,
                CheckName::Math,
                CheckName::Models,
                CheckName::ToolSupport,
                CheckName::KeySmoke,
                CheckName::DockerImage,
            ]
            .into_iter()
            .collect(),
        };
        PreflightSettings {
            checks,
            min_balance: p.min_balance_usd.unwrap_or(Usd::ZERO),
            common_required_params: p.common_required_params,
            required_params: p.required_params,
            custom: p.custom,
        }
    }

    fn eject(&mut self, rules: &[raw::EjectRule]) -> Vec<EjectRule> {
        if rules.is_empty() {
            return vec![
                EjectRule { kind: EjectKind::BudgetExceeded, warn_only: false },
                EjectRule {
                    kind: EjectKind::Idle { after: Duration::from_secs(300) },
                    warn_only: false,
                },
            ];
        }
        let mut out = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let at = [Seg::Key("eject"), Seg::Index(i)];
            let (kind, warn_only) = match rule {
                raw::EjectRule::BudgetExceeded { warn_only } => {
                    (EjectKind::BudgetExceeded, *warn_only)
                }
                raw::EjectRule::Idle { after, warn_only } => {
                    (EjectKind::Idle { after: after.0 }, *warn_only)
                }
                raw::EjectRule::WallClock { after, warn_only } => {
                    (EjectKind::WallClock { after: after.0 }, *warn_only)
                }
                raw::EjectRule::BudgetFraction { spent, unless, warn_only } => {
                    let spent = self.fraction(*spent, &[at[0], at[1], Seg::Key("spent")], "spent");
                    let unless = unless
                        .as_deref()
                        .and_then(|u| self.condition(u, &[at[0], at[1], Seg::Key("unless")]));
                    (EjectKind::BudgetFraction { spent, unless }, *warn_only)
                }
                raw::EjectRule::NoProgress { spent, warn_only } => {
                    let spent = self.fraction(*spent, &[at[0], at[1], Seg::Key("spent")], "spent");
                    (EjectKind::NoProgress { spent }, *warn_only)
                }
                raw::EjectRule::Expr { when, reason, warn_only } => {
                    let Some(when) = self.condition(when, &[at[0], at[1], Seg::Key("when")]) else {
                        continue;
                    };
                    (EjectKind::Expr { when, reason: reason.clone() }, *warn_only)
                }
            };
            out.push(EjectRule { kind, warn_only });
        }
        out
    }

    /// Compile a condition; a syntax error points into the expression inside the TOML string.
    fn condition(&mut self, source: &str, at: &[Seg]) -> Option<Condition> {
        match Condition::compile(source) {
            Ok(c) => Some(c),
            Err(e) => {
                let span = self.value(at);
                // The value's span includes its opening quote.
                let inner = span.start + 1 + e.offset;
                let point = inner.min(span.end.saturating_sub(1)).max(span.start);
                self.problems.push(
                    Problem::new(format!("invalid condition: {}", e.message), point..point + 1)
                        .label("here")
                        .help(format!(
                            "conditions are CEL over: {}",
                            crate::expr::VARIABLES
                                .iter()
                                .map(|v| v.0)
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                );
                None
            }
        }
    }
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

/// Why an env value would hand an OpenRouter key to an agent, if it would.
fn leaks_openrouter_key(source: &EnvSource) -> Option<String> {
    match source {
        EnvSource::Literal(v) if v.trim_start().starts_with("sk-or-") => {
            Some("an OpenRouter key written in the manifest".into())
        }
        EnvSource::Host(var) => {
            let named = ["OR_ADMIN_KEY", "OPENROUTER_API_KEY", "OPENROUTER_MANAGEMENT_KEY"];
            let holds_key = std::env::var(var).is_ok_and(|v| v.trim_start().starts_with("sk-or-"));
            (named.contains(&var.as_str()) || holds_key)
                .then(|| format!("the host's OpenRouter key in ${var}"))
        }
        EnvSource::Literal(_) => None,
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

fn valid_alias(a: &str) -> bool {
    !a.is_empty()
        && a.len() <= 32
        && a.starts_with(|c: char| c.is_ascii_alphanumeric())
        && a.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
