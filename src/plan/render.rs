//! The plan as text for a person, the way `terraform plan` shows one: the checks, each model's
//! line with the key and container it creates, what every container gets, the eject rules, the
//! leftovers of earlier runs, and a footer with the totals. Without `--detail` the passed items
//! of a check and the per-model settings are left out; nothing that failed ever is.

use std::fmt::Write as _;

use super::{Plan, PlanPrice, PlannedModel, overshoot};
use crate::preflight::{Check, Mark};
use crate::printer::{self, sanitize};

/// Leftovers listed without `--detail`; the rest are counted.
const LEFTOVERS_SHOWN: usize = 10;

pub fn render(plan: &Plan, detail: bool) -> String {
    let mut out = String::new();
    let against = if plan.endpoint.simulator {
        format!("the built-in simulator ({})", plan.endpoint.base_url)
    } else {
        plan.endpoint.base_url.clone()
    };
    let _ =
        writeln!(out, "{} {} against {against}\n", printer::bold("Preflight for"), plan.experiment);
    for c in &plan.checks {
        check_lines(&mut out, c, detail);
    }
    if plan.failed() {
        failures(&mut out, &plan.checks);
        return out;
    }
    if !plan.applicable {
        field_only(&mut out, plan);
        return out;
    }
    models(&mut out, plan, detail);
    container(&mut out, plan, detail);
    let _ = writeln!(out, "\n{}", printer::bold("Eject rules:"));
    for e in &plan.eject {
        let _ = writeln!(out, "  - {}", sanitize(e));
    }
    leftovers(&mut out, plan, detail);
    footer(&mut out, plan);
    out
}

fn mark(m: Mark) -> String {
    match m {
        Mark::Passed => printer::green("  ok  "),
        Mark::Warned => printer::yellow(" warn "),
        Mark::Failed => printer::red(" FAIL "),
    }
}

fn check_lines(out: &mut String, c: &Check, detail: bool) {
    let _ = writeln!(out, "{} {:<13} {}", mark(c.mark), c.name, sanitize(&c.detail));
    let only_item_is_summary = c.items.len() == 1 && c.items[0].detail == c.detail;
    if only_item_is_summary && !detail {
        return;
    }
    for item in &c.items {
        if detail || item.mark != Mark::Passed {
            let _ = writeln!(
                out,
                "       {:<13}   {} {}",
                "",
                mark(item.mark).trim(),
                sanitize(&item.detail)
            );
        }
    }
}

/// Every failure again at the end, one a line, so the reason a run stops is the last thing
/// shown.
fn failures(out: &mut String, checks: &[Check]) {
    let mut lines = Vec::new();
    for c in checks.iter().filter(|c| c.mark == Mark::Failed) {
        let failed: Vec<_> = c.items.iter().filter(|i| i.mark == Mark::Failed).collect();
        if failed.is_empty() {
            lines.push(format!("{}: {}", c.name, c.detail));
        } else {
            lines.extend(failed.iter().map(|i| format!("{}: {}", c.name, i.detail)));
        }
    }
    let _ = writeln!(
        out,
        "\n{} {} failed; nothing was created and nothing will be:",
        printer::red("Preflight"),
        if lines.len() == 1 { "check".to_string() } else { format!("{} checks", lines.len()) },
    );
    for l in lines {
        let _ = writeln!(out, "  - {}", sanitize(&l));
    }
}

/// "$3.00 / $15.00 per 1M", "free", "variable price", or what is known of a mix.
pub fn price_pair(prompt: Option<&PlanPrice>, completion: Option<&PlanPrice>) -> String {
    let (Some(p), Some(c)) = (prompt, completion) else { return "price unknown".into() };
    match (p.usd_per_million, c.usd_per_million) {
        (Some(pm), Some(cm)) if pm.0.is_zero() && cm.0.is_zero() => "free".into(),
        (Some(pm), Some(cm)) => format!("{pm} / {cm} per 1M"),
        (None, None) => "variable price".into(),
        _ => format!("prompt {}, completion {}", p.shown, c.shown),
    }
}

fn models(out: &mut String, plan: &Plan, detail: bool) {
    let n = plan.models.len();
    if n == 0 {
        let _ = writeln!(out, "\nNo models: apply would create nothing.");
        return;
    }
    let _ = writeln!(
        out,
        "\n{}",
        printer::bold(&format!("apf will create {n} key(s) and {n} container(s):"))
    );
    let alias_w = plan.models.iter().map(|m| m.alias.len()).max().unwrap_or(0);
    let model_w = plan.models.iter().map(|m| m.model.len()).max().unwrap_or(0);
    let prices: Vec<String> = plan
        .models
        .iter()
        .map(|m| price_pair(m.prompt_price.as_ref(), m.completion_price.as_ref()))
        .collect();
    let price_w = prices.iter().map(String::len).max().unwrap_or(0);
    let budget_w = plan.models.iter().map(|m| m.budget.to_string().len()).max().unwrap_or(0);
    for (m, price) in plan.models.iter().zip(&prices) {
        let _ = writeln!(
            out,
            "\n  {} {:<alias_w$}  {:<model_w$}  {:>budget_w$}  {:<price_w$}  {}",
            printer::green("+"),
            m.alias,
            m.model,
            m.budget.to_string(),
            price,
            m.image,
        );
        let _ = writeln!(out, "      + key        {} (cap {})", m.key.name, m.key.limit);
        let _ = writeln!(out, "      + container  {}", m.container.name);
        if detail {
            model_detail(out, m);
        }
    }
}

/// A field from `PREFLIGHT_MODELS`: what was checked, and what it would cost, but no actions.
fn field_only(out: &mut String, plan: &Plan) {
    let _ = writeln!(out, "\n{}", printer::bold("The field (from PREFLIGHT_MODELS):"));
    let alias_w = plan.models.iter().map(|m| m.alias.len()).max().unwrap_or(0);
    let model_w = plan.models.iter().map(|m| m.model.len()).max().unwrap_or(0);
    for m in &plan.models {
        let price = price_pair(m.prompt_price.as_ref(), m.completion_price.as_ref());
        let _ =
            writeln!(out, "  {:<alias_w$}  {:<model_w$}  {}  {price}", m.alias, m.model, m.budget);
    }
    let s = &plan.summary;
    let balance = s.balance.map_or("a balance that could not be read".into(), |b| b.to_string());
    let _ = writeln!(
        out,
        "\nChecked {} model(s): budgets {} against {balance}. There is no manifest, so nothing \
         to apply.",
        s.models, s.total_budget
    );
}

fn model_detail(out: &mut String, m: &PlannedModel) {
    if !m.extra_models.is_empty() {
        let _ = writeln!(out, "        the key may also use {}", m.extra_models.join(", "));
    }
    let _ = writeln!(out, "        key expires {}", m.key.expires);
    let labels: Vec<String> = m.container.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(out, "        labels {}", labels.join(", "));
    for e in &m.env {
        let _ = writeln!(out, "        env {}={}", e.name, sanitize(&e.value));
    }
    let _ = writeln!(out, "        {}", overshoot::explain(&m.overshoot, m.budget));
    let _ = writeln!(out, "        ({})", m.overshoot.max_tokens_from);
}

fn container(out: &mut String, plan: &Plan, detail: bool) {
    let c = &plan.container;
    let _ = writeln!(out, "\n{}", printer::bold("Every container gets:"));
    for m in &c.mounts {
        let mode = if m.read_only { "read-only" } else { "read-write" };
        let _ = writeln!(out, "  mount  {} -> {} ({mode})", sanitize(&m.source), m.target);
    }
    let id = c.image_id.as_deref().map(|id| {
        let short: String = id.trim_start_matches("sha256:").chars().take(12).collect();
        format!(" ({short})")
    });
    let _ = writeln!(
        out,
        "  image {}{}, timeout {}, network {}",
        c.image,
        id.unwrap_or_default(),
        c.timeout,
        c.network
    );
    if !detail {
        return;
    }
    for e in &c.env {
        let _ = writeln!(out, "  env    {}={}", e.name, sanitize(&e.value));
    }
    let _ = writeln!(out, "  stop grace {}; at most {} at once", c.stop_grace, c.max_parallel);
    let optional = [
        ("memory", c.memory.clone()),
        ("user", c.user.clone()),
        ("stdin", c.stdin.as_ref().map(|p| p.display().to_string())),
        ("entrypoint", c.entrypoint.as_ref().map(|v| v.join(" "))),
        ("args", c.args.as_ref().map(|v| v.join(" "))),
    ];
    for (name, value) in optional {
        if let Some(v) = value {
            let _ = writeln!(out, "  {name} {}", sanitize(&v));
        }
    }
}

fn leftovers(out: &mut String, plan: &Plan, detail: bool) {
    let l = &plan.leftovers;
    if l.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n{} (apply leaves them; `apf destroy --experiment {}` removes them):",
        printer::bold("Left by earlier runs"),
        plan.experiment
    );
    let mut lines: Vec<String> =
        l.containers.iter().map(|c| format!("container {} ({})", c.name, c.state)).collect();
    lines.extend(l.keys.iter().map(|k| {
        let disabled = if k.disabled { ", disabled" } else { "" };
        format!("key       {} (spent {}{disabled})", k.name, k.usage)
    }));
    let total = lines.len();
    let shown = if detail { total } else { total.min(LEFTOVERS_SHOWN) };
    for line in &lines[..shown] {
        let _ = writeln!(out, "  {} {}", printer::red("-"), sanitize(line));
    }
    if shown < total {
        let _ = writeln!(out, "  … and {} more (--detail lists them)", total - shown);
    }
}

fn footer(out: &mut String, plan: &Plan) {
    let s = &plan.summary;
    let leftovers = if s.leftovers_to_remove > 0 {
        format!("; {} leftover(s) for `apf destroy`", s.leftovers_to_remove)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "\n{} {} model(s): {} key(s) and {} container(s) to create{leftovers}.",
        printer::bold("Plan:"),
        s.models,
        s.keys_to_create,
        s.containers_to_create,
    );
    let balance = match (s.balance, s.margin) {
        (Some(b), Some(m)) => format!("of {b} available ({m} to spare)"),
        _ => "against a balance that could not be read".to_string(),
    };
    let _ = writeln!(
        out,
        "Budget: {} {balance}; at most {} container(s) at once.",
        s.total_budget, s.max_parallel
    );
    let unknown = if s.overshoot_unknown.is_empty() {
        String::new()
    } else {
        format!("; unknown for {}", s.overshoot_unknown.join(", "))
    };
    let known = s
        .worst_case_overshoot
        .map_or("unknown".to_string(), |u| format!("up to {u} past the budgets"));
    let _ = writeln!(
        out,
        "Worst-case overshoot: {known}{unknown}, if each agent has one request in flight when \
         its cap is reached (a request's prompt filling the context plus max_tokens, never more \
         than its cap; --detail shows each)."
    );
    let _ = writeln!(
        out,
        "Note: OpenRouter enforces a key's cap per request, so requests already in flight can \
         pass it; apf kills an agent at the first reading at or over its cap and reports any \
         overshoot."
    );
}
