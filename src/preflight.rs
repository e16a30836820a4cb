//! Preflight checks: everything that can fail before money is spent fails here. Checks run
//! concurrently and share what they fetch (one catalog, one balance), so a plan for fifty
//! models takes about as long as its slowest request chain.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::docker::Docker;
use crate::manifest::Experiment;
use crate::manifest::resolve::CheckName;
use crate::money::{Price, Usd};
use crate::openrouter::{ApiError, Client, ErrorClass, wire};
use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    Passed,
    Warned,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub mark: Mark,
    pub detail: String,
}

impl Check {
    fn new(name: &str, mark: Mark, detail: impl Into<String>) -> Check {
        Check { name: name.to_string(), mark, detail: detail.into() }
    }
}

/// The prices of a listed model, judged.
#[derive(Debug, Clone, Serialize)]
pub struct Priced {
    pub id: String,
    pub prompt: Price,
    pub completion: Price,
    pub supported_parameters: Vec<String>,
}

/// What the checks fetched, for the plan to use.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Facts {
    pub balance: Option<Usd>,
    pub models: BTreeMap<String, Priced>,
    pub image_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
    pub facts: Facts,
}

impl Report {
    pub fn failed(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| c.mark == Mark::Failed).collect()
    }
}

pub struct Inputs<'a> {
    pub exp: &'a Experiment,
    pub client: &'a Client,
    pub management_key: Option<&'a Secret>,
    pub management_key_env: &'a str,
    pub docker: &'a Docker,
}

pub async fn run(i: Inputs<'_>) -> Report {
    let wants = |c| i.exp.preflight.checks.contains(&c);
    let (catalog, balance, image, smoke) = tokio::join!(
        i.client.models(None),
        balance(&i),
        async {
            if wants(CheckName::DockerImage) {
                Some(i.docker.image(&i.exp.container.image).await)
            } else {
                None
            }
        },
        async { if wants(CheckName::KeySmoke) { Some(key_smoke(&i).await) } else { None } },
    );
    let mut checks = Vec::new();
    let mut facts = Facts::default();

    match balance {
        Ok(b) => {
            facts.balance = Some(b);
            if wants(CheckName::Balance) {
                let min = i.exp.preflight.min_balance;
                let mark = if b > min { Mark::Passed } else { Mark::Failed };
                checks.push(Check::new("balance", mark, format!("{b} available (minimum {min})")));
            }
        }
        Err(detail) => {
            if wants(CheckName::Balance) || wants(CheckName::Math) {
                checks.push(Check::new("balance", Mark::Failed, detail));
            }
        }
    }
    if wants(CheckName::Math)
        && let Some(b) = facts.balance
    {
        let total: Usd = i.exp.models.iter().map(|m| m.budget).sum();
        let margin = b - total;
        let mark = if margin >= Usd::ZERO { Mark::Passed } else { Mark::Failed };
        let detail = if margin >= Usd::ZERO {
            format!("budgets {total} fit in {b} with {margin} to spare")
        } else {
            format!("budgets {total} exceed the balance {b} by {}", Usd::ZERO - margin)
        };
        checks.push(Check::new("math", mark, detail));
    }

    match catalog {
        Ok(list) => {
            let (priced, mut model_checks) = judge_models(i.exp, &list);
            facts.models = priced;
            if wants(CheckName::Models) {
                checks.append(&mut model_checks);
            }
            if wants(CheckName::ToolSupport) {
                checks.extend(tool_support(i.exp, &facts.models));
            }
        }
        Err(e) => {
            checks.push(Check::new("models", Mark::Failed, format!("could not list models: {e}")))
        }
    }

    match image {
        Some(Ok(Some(info))) => {
            facts.image_id = Some(info.id.clone());
            let short: String = info.id.trim_start_matches("sha256:").chars().take(12).collect();
            checks.push(Check::new(
                "docker_image",
                Mark::Passed,
                format!("{} is {short}", i.exp.container.image),
            ));
        }
        Some(Ok(None)) => checks.push(Check::new(
            "docker_image",
            Mark::Failed,
            format!("{} is not present locally (apf never pulls)", i.exp.container.image),
        )),
        Some(Err(e)) => checks.push(Check::new("docker_image", Mark::Failed, e.to_string())),
        None => {}
    }
    if let Some(c) = smoke {
        checks.push(c);
    }
    checks.extend(custom_checks(i.exp).await);
    Report { checks, facts }
}

/// The account's balance, refusing a key that is not a management key (HAZARDS H1).
async fn balance(i: &Inputs<'_>) -> Result<Usd, String> {
    let var = i.management_key_env;
    let Some(key) = i.management_key else {
        return Err(format!("${var} is not set; it must hold an OpenRouter management key"));
    };
    let info = i.client.key_info(key).await.map_err(|e| describe_key_error(var, &e))?;
    if !info.is_management_key {
        return Err(format!(
            "${var} holds an inference key, not a management key; apf needs a management key to \
             read the balance and mint capped keys"
        ));
    }
    let credits = i.client.credits(key).await.map_err(|e| describe_key_error(var, &e))?;
    Ok(credits.total_credits - credits.total_usage)
}

fn describe_key_error(var: &str, e: &ApiError) -> String {
    match e.class {
        ErrorClass::Unauthorized => {
            format!("${var} was refused (401): the key is invalid, disabled or expired")
        }
        ErrorClass::Forbidden => format!("${var} is not a management key ({})", e.detail),
        _ => e.to_string(),
    }
}

fn judge_models(exp: &Experiment, list: &[wire::Model]) -> (BTreeMap<String, Priced>, Vec<Check>) {
    let by_id: BTreeMap<&str, &wire::Model> = list.iter().map(|m| (m.id.as_str(), m)).collect();
    let mut priced = BTreeMap::new();
    let mut checks = Vec::new();
    let wanted: Vec<&str> = exp
        .models
        .iter()
        .flat_map(|m| {
            std::iter::once(m.id.as_str()).chain(m.extra_models.iter().map(String::as_str))
        })
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    for id in wanted {
        if !seen.insert(id) {
            continue;
        }
        let Some(model) = by_id.get(id) else {
            let near = closest(id, by_id.keys().copied());
            let hint = if near.is_empty() {
                String::new()
            } else {
                format!("; closest: {}", near.join(", "))
            };
            checks.push(Check::new("models", Mark::Failed, format!("{id} is not listed{hint}")));
            continue;
        };
        let prompt = Price::parse(&model.pricing.prompt);
        let completion = Price::parse(&model.pricing.completion);
        match (prompt, completion) {
            (Ok(p), Ok(c)) => {
                let mark = if p == Price::Variable || c == Price::Variable {
                    Mark::Warned
                } else {
                    Mark::Passed
                };
                checks.push(Check::new(
                    "models",
                    mark,
                    format!("{id}: prompt {p}, completion {c}"),
                ));
                priced.insert(
                    id.to_string(),
                    Priced {
                        id: id.to_string(),
                        prompt: p,
                        completion: c,
                        supported_parameters: model.supported_parameters.clone(),
                    },
                );
            }
            (Err(e), _) => {
                checks.push(Check::new("models", Mark::Failed, format!("{id}: pricing.prompt {e}")))
            }
            (_, Err(e)) => checks.push(Check::new(
                "models",
                Mark::Failed,
                format!("{id}: pricing.completion {e}"),
            )),
        }
    }
    (priced, checks)
}

/// Up to three listed ids nearest to `id`. apf names them; it never substitutes one.
pub fn closest<'a>(id: &str, ids: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut scored: Vec<(f64, &str)> = ids.map(|c| (strsim::jaro_winkler(id, c), c)).collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.into_iter().filter(|(s, _)| *s > 0.7).take(3).map(|(_, c)| c.to_string()).collect()
}

fn tool_support(exp: &Experiment, priced: &BTreeMap<String, Priced>) -> Vec<Check> {
    let mut checks = Vec::new();
    for m in &exp.models {
        let Some(p) = priced.get(&m.id) else { continue };
        let mut required: Vec<&String> = exp.preflight.common_required_params.iter().collect();
        if let Some(extra) = exp.preflight.required_params.get(&m.id) {
            required.extend(extra);
        }
        if required.is_empty() {
            continue;
        }
        let missing: Vec<&str> = required
            .iter()
            .filter(|r| !p.supported_parameters.contains(r))
            .map(|r| r.as_str())
            .collect();
        let (mark, detail) = if missing.is_empty() {
            (Mark::Passed, format!("{} supports {}", m.id, join(&required)))
        } else {
            (Mark::Failed, format!("{} does not support {}", m.id, missing.join(", ")))
        };
        checks.push(Check::new("tool_support", mark, detail));
    }
    checks
}

fn join(xs: &[&String]) -> String {
    xs.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

/// Mint a key capped at $0.01, read its cap back, make one real call with it, and delete it.
async fn key_smoke(i: &Inputs<'_>) -> Check {
    let Some(mgmt) = i.management_key else {
        return Check::new(
            "key_smoke",
            Mark::Failed,
            format!("${} is not set", i.management_key_env),
        );
    };
    let cap: Usd = Usd(rust_decimal::Decimal::new(1, 2));
    let name = format!("apf/{}/preflight/key-smoke-{:04x}", i.exp.name, rand::random::<u16>());
    let body = wire::CreateKey {
        name,
        limit: Some(cap),
        limit_reset: None,
        include_byok_in_limit: Some(true),
        expires_at: Some(
            (chrono::Utc::now() + chrono::Duration::minutes(10))
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string(),
        ),
    };
    let (key, secret) = match i.client.create_key(mgmt, &body).await {
        Ok(k) => k,
        Err(e) => {
            return Check::new("key_smoke", Mark::Failed, format!("could not create a key: {e}"));
        }
    };
    let outcome = smoke_calls(i, &secret, cap).await;
    let deleted = i.client.delete_key(mgmt, &key.hash).await;
    match (outcome, deleted) {
        (Ok(detail), Ok(())) => Check::new("key_smoke", Mark::Passed, detail),
        (Err(detail), _) => Check::new("key_smoke", Mark::Failed, detail),
        (Ok(_), Err(e)) => Check::new(
            "key_smoke",
            Mark::Failed,
            format!("the smoke key could not be deleted: {e}"),
        ),
    }
}

async fn smoke_calls(i: &Inputs<'_>, key: &Secret, cap: Usd) -> Result<String, String> {
    let info =
        i.client.key_info(key).await.map_err(|e| format!("the new key could not be read: {e}"))?;
    if info.limit != Some(cap) {
        return Err(format!(
            "the new key reads back with limit {:?}, not {cap}",
            info.limit.map(|l| l.to_string())
        ));
    }
    let model = i.exp.models.first().map(|m| m.id.clone()).unwrap_or_default();
    let body = wire::ChatRequest {
        model: Some(model.clone()),
        messages: vec![serde_json::json!({"role": "user", "content": "Reply with OK."})],
        max_tokens: Some(16),
        ..Default::default()
    };
    let resp =
        i.client.chat(key, &body).await.map_err(|e| format!("one call to {model} failed: {e}"))?;
    let cost = resp.usage.and_then(|u| u.cost).unwrap_or(Usd::ZERO);
    Ok(format!(
        "a key capped at {cap} read back, answered one call to {model} ({cost}), and was deleted"
    ))
}

async fn custom_checks(exp: &Experiment) -> Vec<Check> {
    let mut out = Vec::new();
    for c in &exp.preflight.custom {
        let Some((program, args)) = c.run.split_first() else { continue };
        let status = tokio::process::Command::new(program)
            .args(args)
            .current_dir(&exp.manifest_dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await;
        let check = match status {
            Ok(s) if s.success() => Check::new("custom", Mark::Passed, c.name.clone()),
            Ok(s) => Check::new(
                "custom",
                Mark::Failed,
                format!("{}: `{}` exited with {s}", c.name, c.run.join(" ")),
            ),
            Err(e) => Check::new(
                "custom",
                Mark::Failed,
                format!("{}: could not run `{program}`: {e}", c.name),
            ),
        };
        out.push(check);
    }
    out
}
