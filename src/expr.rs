//! Conditions written in CEL, the expression language policy engines use. A condition is
//! compiled and checked when the manifest is validated, so a typo fails before any money is
//! spent, and evaluated against a model's counters while it runs.

use std::fmt;
use std::sync::Arc;

use cel::{Context, Program, Value};

/// The variables a condition may use, with what they hold. They are the model's counters at
/// the moment the rule is evaluated.
pub const VARIABLES: &[(&str, &str)] = &[
    ("events", "events the agent printed"),
    ("tool_calls", "events counted as tool calls"),
    ("snapshots", "events counted as snapshots"),
    ("progress", "events counted as progress"),
    ("errors", "events counted as errors"),
    ("spent_usd", "spend so far, in dollars"),
    ("budget_usd", "the model's budget, in dollars"),
    ("spent_fraction", "spend divided by budget"),
    ("elapsed_s", "seconds since the container started"),
    ("idle_s", "seconds since the last event or change in spend"),
];

/// A compiled condition.
#[derive(Clone)]
pub struct Condition {
    source: String,
    program: Arc<Program>,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Condition({:?})", self.source)
    }
}

/// Why a condition was refused: its message, and the byte offset in the expression it points at.
#[derive(Debug, Clone, PartialEq)]
pub struct ExprError {
    pub message: String,
    pub offset: usize,
}

/// The values a condition is evaluated against.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub events: u64,
    pub tool_calls: u64,
    pub snapshots: u64,
    pub progress: u64,
    pub errors: u64,
    pub spent_usd: f64,
    pub budget_usd: f64,
    pub elapsed_s: f64,
    pub idle_s: f64,
}

impl Condition {
    /// Compile `source`, refusing syntax errors and variables apf does not provide.
    pub fn compile(source: &str) -> Result<Condition, ExprError> {
        let program = Program::compile(source).map_err(|errors| {
            let first = errors.errors.first();
            ExprError {
                message: first.map_or_else(|| errors.to_string(), |e| e.msg.clone()),
                offset: first.map_or(0, |e| offset_of(source, e.pos.0, e.pos.1)),
            }
        })?;
        for name in program.references().variables() {
            if !VARIABLES.iter().any(|(v, _)| *v == name) {
                let known: Vec<&str> = VARIABLES.iter().map(|(v, _)| *v).collect();
                return Err(ExprError {
                    message: format!(
                        "unknown variable `{name}`; conditions may use {}",
                        known.join(", ")
                    ),
                    offset: source.find(name).unwrap_or(0),
                });
            }
        }
        Ok(Condition { source: source.to_string(), program: Arc::new(program) })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluate against `counters`. A condition that does not yield a boolean is an error,
    /// reported rather than treated as false.
    pub fn holds(&self, c: &Counters) -> Result<bool, String> {
        let mut ctx = Context::default();
        let ints = [
            ("events", c.events),
            ("tool_calls", c.tool_calls),
            ("snapshots", c.snapshots),
            ("progress", c.progress),
            ("errors", c.errors),
        ];
        for (name, v) in ints {
            ctx.add_variable_from_value(name, Value::Int(i64::try_from(v).unwrap_or(i64::MAX)));
        }
        let fraction = if c.budget_usd > 0.0 { c.spent_usd / c.budget_usd } else { 0.0 };
        let floats = [
            ("spent_usd", c.spent_usd),
            ("budget_usd", c.budget_usd),
            ("spent_fraction", fraction),
            ("elapsed_s", c.elapsed_s),
            ("idle_s", c.idle_s),
        ];
        for (name, v) in floats {
            ctx.add_variable_from_value(name, Value::Float(v));
        }
        match self.program.execute(&ctx) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("`{}` gave {other:?}, not true or false", self.source)),
            Err(e) => Err(format!("`{}` failed: {e}", self.source)),
        }
    }
}

/// Byte offset of a 1-based line and column (as the CEL parser reports them) in `source`.
fn offset_of(source: &str, line: isize, col: isize) -> usize {
    let line = usize::try_from(line.max(1)).unwrap_or(1);
    let col = usize::try_from(col.max(0)).unwrap_or(0);
    let start: usize = source.split_inclusive('\n').take(line - 1).map(str::len).sum();
    (start + col).min(source.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_evaluate_over_counters() {
        let c = Condition::compile("tool_calls > 0 && spent_fraction < 0.5").unwrap();
        let mut counters = Counters { budget_usd: 1.0, spent_usd: 0.25, ..Default::default() };
        assert!(!c.holds(&counters).unwrap());
        counters.tool_calls = 3;
        assert!(c.holds(&counters).unwrap());
    }

    #[test]
    fn syntax_errors_and_unknown_variables_are_refused() {
        assert!(Condition::compile("tool_calls >").is_err());
        let err = Condition::compile("toolcalls > 0").unwrap_err();
        assert!(err.message.contains("unknown variable `toolcalls`"), "{}", err.message);
    }

    #[test]
    fn non_boolean_results_are_errors_not_false() {
        let c = Condition::compile("tool_calls + 1").unwrap();
        assert!(c.holds(&Counters::default()).is_err());
    }
}
