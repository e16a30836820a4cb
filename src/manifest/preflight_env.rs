//! The manifest-less preflight: `PREFLIGHT_MODELS` and `PREFLIGHT_BUDGET` describe a field
//! without a file, as the scripts apf grew out of did, so `apf plan` can check an account and a
//! list of models before anyone writes a manifest.
//!
//! `PREFLIGHT_MODELS` lists model ids, separated by commas or whitespace, each optionally
//! `alias=id`. `PREFLIGHT_BUDGET` is each model's budget in dollars (`0.25` or `$0.25`).
//! `PREFLIGHT_CHECKS` optionally names the checks (default: balance, math, models,
//! tool_support: nothing is created, nothing is spent). Problems are reported like a
//! manifest's, pointing into the variables' text.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::diag::{ManifestError, Problem, did_you_mean};
use super::resolve::{
    self, BudgetMode, BudgetSettings, CheckName, ContainerSettings, EjectKind, EjectRule,
    EventMapping, Experiment, ModelSettings, PreflightSettings,
};
use crate::money::Usd;

/// The file name a manifest-less experiment gives as its manifest's, in its own folder.
pub(crate) const PSEUDO_FILE: &str = "(environment)";

/// The checks a manifest-less preflight runs unless `PREFLIGHT_CHECKS` says otherwise.
pub const ENV_CHECKS: &[CheckName] =
    &[CheckName::Balance, CheckName::Math, CheckName::Models, CheckName::ToolSupport];

/// The experiment `PREFLIGHT_MODELS` and `PREFLIGHT_BUDGET` describe, or `None` when
/// `PREFLIGHT_MODELS` is not set.
pub fn from_preflight_env() -> Option<Result<Experiment, ManifestError>> {
    let models = std::env::var("PREFLIGHT_MODELS").ok()?;
    let budget = std::env::var("PREFLIGHT_BUDGET").ok();
    let checks = std::env::var("PREFLIGHT_CHECKS").ok();
    Some(from_preflight_vars(&models, budget.as_deref(), checks.as_deref()))
}

/// [`from_preflight_env`] on given values, for tests and callers with their own environment.
pub fn from_preflight_vars(
    models: &str,
    budget: Option<&str>,
    checks: Option<&str>,
) -> Result<Experiment, ManifestError> {
    let text = Text::new(models, budget, checks);
    let mut problems = Vec::new();

    let budget = match (budget, text.budget.clone()) {
        (Some(b), Some(span)) => match Usd::from_str(b) {
            Ok(usd) if usd > Usd::ZERO => Some(usd),
            Ok(usd) => {
                problems.push(problem(span, format!("the budget must be positive, not {usd}")));
                None
            }
            Err(_) => {
                let msg = format!("{:?} is not an amount of dollars", b.trim());
                problems.push(problem(span, msg).help("write e.g. PREFLIGHT_BUDGET=0.25"));
                None
            }
        },
        _ => {
            let msg = "PREFLIGHT_BUDGET is not set".to_string();
            let help = "set it to each model's budget in dollars, e.g. PREFLIGHT_BUDGET=0.25";
            problems.push(problem(0..0, msg).help(help));
            None
        }
    };

    let mut out: Vec<ModelSettings> = Vec::new();
    for (entry, span) in tokens(models, text.models.start) {
        let (alias, id) = match entry.split_once('=') {
            Some((a, i)) => (a.trim().to_string(), i.trim().to_string()),
            None => (resolve::alias_from_id(entry), entry.to_string()),
        };
        if id.is_empty() || !resolve::valid_alias(&alias) {
            let msg = format!("{entry:?} is not `id` or `alias=id` with a valid alias");
            let help = "aliases are 1–32 lowercase letters, digits, - or _";
            problems.push(problem(span, msg).help(help));
            continue;
        }
        if out.iter().any(|m| m.alias == alias) {
            let msg = format!("alias {alias:?} is used twice");
            problems.push(problem(span, msg).help("write `alias=id` to tell them apart"));
            continue;
        }
        out.push(ModelSettings {
            id,
            alias,
            budget: budget.unwrap_or(Usd::ZERO),
            extra_models: Vec::new(),
            env: BTreeMap::new(),
        });
    }
    if out.is_empty() && problems.is_empty() {
        problems.push(problem(text.models.clone(), "PREFLIGHT_MODELS lists no model".into()));
    }

    let checks = match (checks, text.checks.clone()) {
        (Some(c), Some(span)) => parse_checks(c, span.start, &mut problems),
        _ => ENV_CHECKS.iter().copied().collect(),
    };

    if !problems.is_empty() {
        return Err(ManifestError {
            path: PathBuf::from("environment"),
            source: text.source,
            problems,
        });
    }
    Ok(experiment(text.source, out, checks))
}

fn experiment(
    source: String,
    models: Vec<ModelSettings>,
    checks: BTreeSet<CheckName>,
) -> Experiment {
    let dir = resolve::absolute(std::path::Path::new("."));
    Experiment {
        name: "preflight".into(),
        description: Some("manifest-less preflight from PREFLIGHT_MODELS".into()),
        manifest_path: dir.join(PSEUDO_FILE),
        manifest_dir: dir,
        manifest_hash: crate::hash::sha256_hex(source.as_bytes()),
        openrouter: resolve::resolve_openrouter(None),
        budget: BudgetSettings {
            mode: BudgetMode::Simple,
            inject_every: Duration::from_secs(30),
            poll_every: Duration::from_secs(5),
            kill_at: rust_decimal::Decimal::ONE,
            enforce: crate::manifest::raw::Enforce::Key,
        },
        container: ContainerSettings {
            image: String::new(),
            entrypoint: None,
            args: None,
            stdin: None,
            env: BTreeMap::new(),
            mounts: Vec::new(),
            timeout: Duration::from_secs(30 * 60),
            max_parallel: usize::MAX,
            stop_grace: Duration::from_secs(10),
            network: None,
            memory: None,
            user: None,
        },
        models,
        preflight: PreflightSettings {
            checks,
            min_balance: Usd::ZERO,
            common_required_params: Vec::new(),
            required_params: BTreeMap::new(),
            custom: Vec::new(),
            custom_expr: Vec::new(),
        },
        eject: vec![EjectRule { kind: EjectKind::BudgetExceeded, warn_only: false }],
        eject_all: Vec::new(),
        events: EventMapping::default(),
    }
}

fn parse_checks(text: &str, base: usize, problems: &mut Vec<Problem>) -> BTreeSet<CheckName> {
    let names: Vec<String> = super::schema()["definitions"]["CheckName"]["enum"]
        .as_array()
        .map(|xs| xs.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let mut out = BTreeSet::new();
    for (word, span) in tokens(text, base) {
        match serde_json::from_value::<CheckName>(serde_json::Value::String(word.to_string())) {
            Ok(c) => {
                out.insert(c);
            }
            Err(_) => {
                let help = match did_you_mean(word, names.iter().map(String::as_str)) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!("checks are {}", names.join(", ")),
                };
                problems.push(problem(span, format!("unknown check {word:?}")).help(help));
            }
        }
    }
    out
}

fn problem(span: Range<usize>, message: String) -> Problem {
    Problem::new(message, span).label("here")
}

/// The variables as one text, `NAME=value` a line, with where each value sits in it.
struct Text {
    source: String,
    models: Range<usize>,
    budget: Option<Range<usize>>,
    checks: Option<Range<usize>>,
}

impl Text {
    fn new(models: &str, budget: Option<&str>, checks: Option<&str>) -> Text {
        let mut source = String::new();
        let mut line = |name: &str, value: &str| {
            source.push_str(name);
            source.push('=');
            let start = source.len();
            source.push_str(value);
            let span = start..source.len();
            source.push('\n');
            span
        };
        let models = line("PREFLIGHT_MODELS", models);
        let budget = budget.map(|b| line("PREFLIGHT_BUDGET", b));
        let checks = checks.map(|c| line("PREFLIGHT_CHECKS", c));
        Text { source, models, budget, checks }
    }
}

/// Words separated by commas or whitespace, with their spans offset by `base`.
fn tokens(text: &str, base: usize) -> Vec<(&str, Range<usize>)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices().chain(std::iter::once((text.len(), ','))) {
        let sep = c == ',' || c.is_whitespace();
        match (sep, start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                out.push((&text[s..i], base + s..base + i));
                start = None;
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_and_budget_become_an_experiment() {
        let exp = from_preflight_vars(
            "openai/gpt-4o-mini, llama=meta-llama/llama-3.3-70b-instruct",
            Some("$0.25"),
            None,
        )
        .unwrap();
        let models: Vec<(&str, &str)> =
            exp.models.iter().map(|m| (m.alias.as_str(), m.id.as_str())).collect();
        assert_eq!(
            models,
            [("gpt-4o-mini", "openai/gpt-4o-mini"), ("llama", "meta-llama/llama-3.3-70b-instruct")]
        );
        assert!(exp.models.iter().all(|m| m.budget == Usd::from_str("0.25").unwrap()));
        assert!(!exp.preflight.checks.contains(&CheckName::DockerImage));
        assert!(!exp.preflight.checks.contains(&CheckName::KeySmoke), "nothing is spent");
        assert!(exp.is_manifest_less());
    }

    #[test]
    fn problems_point_into_the_variables() {
        let err = from_preflight_vars("a/b a/b", Some("zero"), Some("balance,modles")).unwrap_err();
        let lines = err.short_lines();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].starts_with("environment:2:18: \"zero\" is not an amount"), "{lines:?}");
        assert!(lines[1].starts_with("environment:1:22: alias \"b\" is used twice"), "{lines:?}");
        assert!(lines[2].contains("unknown check \"modles\""), "{lines:?}");
        assert_eq!(err.problems[2].help.as_deref(), Some("did you mean `models`?"));
    }

    #[test]
    fn a_missing_budget_is_an_error_not_a_default() {
        let err = from_preflight_vars("a/b", None, None).unwrap_err();
        assert!(err.problems[0].message.contains("PREFLIGHT_BUDGET is not set"));
    }
}
