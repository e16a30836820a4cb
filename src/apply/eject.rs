//! Deciding, from a model's counters, whether a rule ejects it. Pure: the supervisor gathers
//! what it knows of a model into a [`View`] and acts on the [`Verdict`]s, so each rule is tested
//! without containers or clocks.

use std::time::Duration;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::expr::Counters;
use crate::manifest::resolve::{AllRule, EjectKind, EjectRule};
use crate::money::Usd;
use crate::state::Counts;

/// What the supervisor knows of one running model.
#[derive(Debug, Clone)]
pub struct View {
    pub budget: Usd,
    pub spent: Usd,
    pub counts: Counts,
    pub elapsed: Duration,
    /// Time since the last event or the last change in spend (HAZARDS H8: idle means both).
    pub idle: Duration,
    /// Spend at the last progress event (or at start).
    pub spent_at_progress: Usd,
    /// Fraction of the budget at which the budget rule fires.
    pub kill_at: Decimal,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Index of the rule in the experiment's list.
    pub rule: usize,
    pub reason: String,
    pub warn_only: bool,
    /// Budget kills are immediate; others get the grace period.
    pub immediate: bool,
}

pub fn evaluate(rules: &[EjectRule], v: &View) -> Vec<Verdict> {
    evaluate_all(rules, &[], v)
}

/// Every rule that fires, including `all` rules (which fire when each of their members does).
/// An `all` rule's index comes after the plain rules': `rules.len() + i`.
pub fn evaluate_all(rules: &[EjectRule], all: &[AllRule], v: &View) -> Vec<Verdict> {
    let plain = rules.iter().enumerate().filter_map(|(i, r)| {
        check(&r.kind, v).map(|(reason, immediate)| Verdict {
            rule: i,
            reason,
            warn_only: r.warn_only,
            immediate,
        })
    });
    let combined = all.iter().enumerate().filter_map(|(i, a)| {
        let reasons: Option<Vec<String>> = a.of.iter().map(|k| check(k, v).map(|r| r.0)).collect();
        reasons.map(|rs| Verdict {
            rule: rules.len() + i,
            reason: a.reason.clone().unwrap_or_else(|| rs.join(" and ")),
            warn_only: a.warn_only,
            immediate: false,
        })
    });
    plain.chain(combined).collect()
}

fn check(kind: &EjectKind, v: &View) -> Option<(String, bool)> {
    match kind {
        EjectKind::BudgetExceeded => {
            let cap = v.budget * v.kill_at;
            (v.spent >= cap)
                .then(|| (format!("budget exceeded: spent {} of {}", v.spent, v.budget), true))
        }
        EjectKind::Idle { after } => (v.idle >= *after).then(|| {
            (
                format!(
                    "idle: no events and no spend for {}",
                    crate::duration::Span(v.idle_secs())
                ),
                false,
            )
        }),
        EjectKind::WallClock { after } => (v.elapsed >= *after)
            .then(|| (format!("wall clock: ran {}", crate::duration::Span(*after)), false)),
        EjectKind::BudgetFraction { spent, unless } => {
            if v.spent < v.budget * *spent {
                return None;
            }
            if let Some(cond) = unless {
                match cond.holds(&counters(v)) {
                    Ok(true) => return None,
                    Ok(false) => {}
                    Err(e) => tracing::warn!("eject rule condition: {e}"),
                }
            }
            let pct = (*spent * Decimal::from(100)).normalize();
            let why =
                unless.as_ref().map(|c| format!(" and not ({})", c.source())).unwrap_or_default();
            Some((format!("spent {pct}% of the budget{why}"), false))
        }
        EjectKind::NoProgress { spent } => {
            let since = v.spent - v.spent_at_progress;
            (since >= v.budget * *spent && since > Usd::ZERO).then(|| {
                (format!("no progress: spent {since} since the last progress event"), false)
            })
        }
        EjectKind::Expr { when, reason } => match when.holds(&counters(v)) {
            Ok(true) => Some((reason.clone(), false)),
            Ok(false) => None,
            Err(e) => {
                tracing::warn!("eject rule condition: {e}");
                None
            }
        },
    }
}

impl View {
    fn idle_secs(&self) -> Duration {
        Duration::from_secs(self.idle.as_secs())
    }
}

/// The values CEL conditions see. Floats only here, at the edge of the expression language;
/// money arithmetic stays exact elsewhere.
pub fn counters(v: &View) -> Counters {
    Counters {
        events: v.counts.events,
        tool_calls: v.counts.tool_calls,
        snapshots: v.counts.snapshots,
        progress: v.counts.progress,
        errors: v.counts.errors,
        spent_usd: v.spent.0.to_f64().unwrap_or(0.0),
        budget_usd: v.budget.0.to_f64().unwrap_or(0.0),
        elapsed_s: v.elapsed.as_secs_f64(),
        idle_s: v.idle.as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::Condition;

    fn usd(s: &str) -> Usd {
        s.parse().unwrap()
    }

    fn view() -> View {
        View {
            budget: usd("1"),
            spent: usd("0"),
            counts: Counts::default(),
            elapsed: Duration::from_secs(10),
            idle: Duration::from_secs(0),
            spent_at_progress: usd("0"),
            kill_at: Decimal::ONE,
        }
    }

    fn rule(kind: EjectKind) -> Vec<EjectRule> {
        vec![EjectRule { kind, warn_only: false }]
    }

    #[test]
    fn budget_rule_fires_at_the_first_reading_at_or_over_the_cap() {
        let rules = rule(EjectKind::BudgetExceeded);
        let mut v = view();
        v.spent = usd("0.99");
        assert!(evaluate(&rules, &v).is_empty());
        v.spent = usd("1.00");
        let verdicts = evaluate(&rules, &v);
        assert_eq!(verdicts.len(), 1);
        assert!(verdicts[0].immediate);
        v.kill_at = Decimal::new(9, 1);
        v.spent = usd("0.90");
        assert_eq!(evaluate(&rules, &v).len(), 1, "kill_at lowers the threshold");
    }

    #[test]
    fn idle_needs_no_events_and_no_spend_change() {
        let rules = rule(EjectKind::Idle { after: Duration::from_secs(60) });
        let mut v = view();
        v.idle = Duration::from_secs(59);
        assert!(evaluate(&rules, &v).is_empty());
        v.idle = Duration::from_secs(60);
        assert!(!evaluate(&rules, &v)[0].immediate);
    }

    #[test]
    fn budget_fraction_is_spared_by_its_progress_condition() {
        let unless = Some(Condition::compile("tool_calls > 0").unwrap());
        let rules = rule(EjectKind::BudgetFraction { spent: Decimal::new(25, 2), unless });
        let mut v = view();
        v.spent = usd("0.30");
        assert_eq!(evaluate(&rules, &v).len(), 1);
        v.counts.tool_calls = 1;
        assert!(evaluate(&rules, &v).is_empty());
    }

    #[test]
    fn no_progress_counts_spend_since_the_last_progress_event() {
        let rules = rule(EjectKind::NoProgress { spent: Decimal::new(2, 1) });
        let mut v = view();
        v.spent = usd("0.50");
        v.spent_at_progress = usd("0.35");
        assert!(evaluate(&rules, &v).is_empty());
        v.spent_at_progress = usd("0.30");
        assert_eq!(evaluate(&rules, &v).len(), 1);
    }

    #[test]
    fn expression_rules_give_their_reason() {
        let when = Condition::compile("errors > 3 && tool_calls == 0").unwrap();
        let rules = rule(EjectKind::Expr { when, reason: "broken sandbox".into() });
        let mut v = view();
        v.counts.errors = 4;
        assert_eq!(evaluate(&rules, &v)[0].reason, "broken sandbox");
    }

    #[test]
    fn an_all_rule_fires_only_when_every_member_does() {
        let all = vec![AllRule {
            position: 0,
            of: vec![
                EjectKind::Idle { after: Duration::from_secs(60) },
                EjectKind::WallClock { after: Duration::from_secs(5) },
            ],
            reason: None,
            warn_only: false,
        }];
        let mut v = view();
        assert!(evaluate_all(&[], &all, &v).is_empty(), "wall clock alone is not enough");
        v.idle = Duration::from_secs(61);
        let verdicts = evaluate_all(&[], &all, &v);
        assert_eq!(verdicts.len(), 1);
        assert!(verdicts[0].reason.contains(" and "), "{}", verdicts[0].reason);
    }

    #[test]
    fn wall_clock_fires_after_its_time() {
        let rules = rule(EjectKind::WallClock { after: Duration::from_secs(5) });
        assert_eq!(evaluate(&rules, &view()).len(), 1);
    }
}
