//! The text of `/workspace/output/budget.txt`, the agent's view of its own balance. The simple
//! form is one line; the detailed form adds what recent actions cost and how many remain at
//! that rate.

use rust_decimal::Decimal;

use crate::manifest::resolve::BudgetMode;
use crate::money::Usd;

/// One action (a tool call) and what was spent by the time the next one began.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub name: String,
    pub cost: Usd,
}

/// How many recent actions the detailed form lists.
pub const RECENT: usize = 5;

pub fn render(
    mode: BudgetMode,
    budget: Usd,
    spent: Usd,
    actions: &[Action],
    total_actions: u64,
) -> String {
    let remaining = (budget - spent).max(Usd::ZERO);
    let pct_left = remaining
        .fraction_of(budget)
        .map(|f| (f * Decimal::from(100)).round())
        .unwrap_or(Decimal::ZERO);
    let mut text = format!("Budget: {remaining} remaining of {budget} ({pct_left}% left)\n");
    if mode == BudgetMode::Simple {
        return text;
    }
    text.push_str(&format!("Spent: {spent} over {total_actions} actions\n"));
    if total_actions > 0 {
        let avg = Usd(spent.0 / Decimal::from(total_actions));
        text.push_str(&format!("Average per action: {avg}\n"));
        if !avg.0.is_zero() {
            let left = (remaining.0 / avg.0).floor();
            text.push_str(&format!("Estimated actions remaining: {left}\n"));
        }
    }
    if !actions.is_empty() {
        text.push_str("Recent actions:\n");
        let start = actions.len().saturating_sub(RECENT);
        for a in &actions[start..] {
            text.push_str(&format!("  {:<24} {}\n", a.name, a.cost));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(s: &str) -> Usd {
        s.parse().unwrap()
    }

    #[test]
    fn simple_budget_is_one_line() {
        let t = render(BudgetMode::Simple, usd("0.15"), usd("0.064"), &[], 0);
        assert_eq!(t, "Budget: $0.086 remaining of $0.15 (57% left)\n");
    }

    #[test]
    fn detailed_budget_lists_recent_actions_and_estimates() {
        let actions: Vec<Action> =
            (0..7).map(|i| Action { name: format!("tool{i}"), cost: usd("0.01") }).collect();
        let t = render(BudgetMode::Detailed, usd("0.15"), usd("0.07"), &actions, 7);
        assert!(t.starts_with("Budget: $0.08 remaining of $0.15 (53% left)\n"), "{t}");
        assert!(t.contains("Spent: $0.07 over 7 actions\n"), "{t}");
        assert!(t.contains("Average per action: $0.01\n"), "{t}");
        assert!(t.contains("Estimated actions remaining: 8\n"), "{t}");
        assert_eq!(t.matches("  tool").count(), RECENT);
        assert!(!t.contains("tool1 ") && t.contains("tool6"), "{t}");
    }

    #[test]
    fn an_overspent_budget_shows_nothing_left() {
        let t = render(BudgetMode::Simple, usd("5"), usd("5.17"), &[], 0);
        assert_eq!(t, "Budget: $0.00 remaining of $5.00 (0% left)\n");
    }
}
