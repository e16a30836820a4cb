//! The plan: what `apply` would do, as a value. `plan` renders it as text or JSON; `apply`
//! shows it before asking for confirmation and then carries it out.

use serde::Serialize;

use crate::manifest::Experiment;
use crate::money::{Price, Usd};
use crate::preflight::{Check, Mark, Report};
use crate::printer;

pub const PLAN_FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub format_version: u32,
    pub experiment: String,
    pub manifest: String,
    pub manifest_hash: String,
    pub base_url: String,
    pub checks: Vec<Check>,
    pub models: Vec<PlannedModel>,
    pub eject: Vec<String>,
    pub total_budget: Usd,
    pub balance: Option<Usd>,
    pub max_parallel: usize,
    pub image: String,
    pub image_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedModel {
    pub alias: String,
    pub model: String,
    pub budget: Usd,
    pub prompt_price: Option<Price>,
    pub completion_price: Option<Price>,
    pub key_name: String,
    pub container_name: String,
}

impl Plan {
    pub fn new(exp: &Experiment, base_url: &str, report: &Report) -> Plan {
        let models = exp
            .models
            .iter()
            .map(|m| {
                let priced = report.facts.models.get(&m.id);
                PlannedModel {
                    alias: m.alias.clone(),
                    model: m.id.clone(),
                    budget: m.budget,
                    prompt_price: priced.map(|p| p.prompt),
                    completion_price: priced.map(|p| p.completion),
                    key_name: format!("apf/{}/<run>/{}", exp.name, m.alias),
                    container_name: format!("apf-{}-<run>-{}", exp.name, m.alias),
                }
            })
            .collect();
        Plan {
            format_version: PLAN_FORMAT,
            experiment: exp.name.clone(),
            manifest: exp.manifest_path.display().to_string(),
            manifest_hash: exp.manifest_hash.clone(),
            base_url: base_url.to_string(),
            checks: report.checks.clone(),
            models,
            eject: exp.eject.iter().map(|r| r.describe()).collect(),
            total_budget: exp.models.iter().map(|m| m.budget).sum(),
            balance: report.facts.balance,
            max_parallel: exp.container.max_parallel.min(exp.models.len()),
            image: exp.container.image.clone(),
            image_id: report.facts.image_id.clone(),
        }
    }

    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.mark == Mark::Failed)
    }

    /// The plan for a person, terraform-style.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("{} {}\n\n", printer::bold("Preflight for"), self.experiment));
        for c in &self.checks {
            let mark = match c.mark {
                Mark::Passed => printer::green("  ok  "),
                Mark::Warned => printer::yellow(" warn "),
                Mark::Failed => printer::red(" FAIL "),
            };
            out.push_str(&format!("{mark} {:<13} {}\n", c.name, printer::sanitize(&c.detail)));
        }
        if self.failed() {
            let n = self.checks.iter().filter(|c| c.mark == Mark::Failed).count();
            out.push_str(&format!("\n{n} check(s) failed; nothing will be created.\n"));
            return out;
        }
        out.push_str(&format!("\n{}\n", printer::bold("apf will create:")));
        for m in &self.models {
            let price = match (m.prompt_price, m.completion_price) {
                (Some(p), Some(c)) => format!("prompt {p}, completion {c}"),
                _ => "price unknown".to_string(),
            };
            out.push_str(&format!(
                "  {} key        {:<40} cap {}\n",
                printer::green("+"),
                m.key_name,
                m.budget
            ));
            out.push_str(&format!(
                "  {} container  {:<40} {} ({})\n",
                printer::green("+"),
                m.container_name,
                m.model,
                price
            ));
        }
        out.push_str(&format!("\n{}\n", printer::bold("Eject rules:")));
        for e in &self.eject {
            out.push_str(&format!("  - {e}\n"));
        }
        let balance = self.balance.map_or("unknown".to_string(), |b| b.to_string());
        out.push_str(&format!(
            "\nPlan: {n} keys and {n} containers to create; total budget {} of {balance} available; \
             at most {} at once; image {}.\n",
            self.total_budget,
            self.max_parallel,
            self.image,
            n = self.models.len(),
        ));
        out.push_str(
            "Note: OpenRouter enforces a key's cap per request, so requests already in flight can \
             pass it; apf kills an agent at the first reading at or over its cap and reports any \
             overshoot.\n",
        );
        out
    }
}
