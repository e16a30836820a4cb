//! Conditions written in CEL, the expression language policy engines use. A condition is
//! compiled and type-checked when the manifest is validated, so a typo or a sum of an int and a
//! double fails before any money is spent; it is evaluated later against what apf knows at that
//! moment.
//!
//! Three vocabularies exist, one per place a manifest takes a condition: a model's counters
//! ([`COUNTERS`], for eject rules), one event the agent printed ([`EVENT`], for the event
//! mapping), and the data preflight fetched ([`PREFLIGHT`], for custom checks). Each names its
//! variables and their types, so the checker can refuse unknown names and fields, operators
//! applied to the wrong types, and conditions that cannot give true or false. The `cel` crate
//! parses and runs the expressions; the static check here is apf's, since the crate has none.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock};

use cel::common::ast::{ComprehensionExpr, Expr, IdedExpr, LiteralValue, SelectExpr};
use cel::{Context, Env, Program, Value};
use serde_json::Map;

/// The type of a value a condition sees, as far as the checker can know it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ty {
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Null,
    /// Known only when the condition runs.
    Dyn,
    List(&'static Ty),
    /// A map with any keys, such as an event's JSON object.
    Map,
    /// A map with exactly these fields.
    Record(&'static [Field]),
}

/// A field of a [`Ty::Record`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Field {
    pub name: &'static str,
    pub ty: Ty,
    pub doc: &'static str,
}

/// A variable a condition may use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Variable {
    pub name: &'static str,
    pub ty: Ty,
    pub doc: &'static str,
}

/// The variables of one kind of condition.
#[derive(Debug, PartialEq)]
pub struct Vocabulary {
    /// Where these conditions are written, for messages.
    pub used_for: &'static str,
    pub variables: &'static [Variable],
}

impl Vocabulary {
    /// `name (type)` for each variable, for help texts.
    pub fn summary(&self) -> String {
        self.variables
            .iter()
            .map(|v| format!("{} ({})", v.name, v.ty.name()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn get(&self, name: &str) -> Option<&Variable> {
        self.variables.iter().find(|v| v.name == name)
    }
}

const fn var(name: &'static str, ty: Ty, doc: &'static str) -> Variable {
    Variable { name, ty, doc }
}

/// A model's counters while it runs: eject rules' `when` and `unless`.
pub static COUNTERS: Vocabulary = Vocabulary {
    used_for: "eject conditions",
    variables: &[
        var("events", Ty::Int, "events the agent printed"),
        var("tool_calls", Ty::Int, "events counted as tool calls"),
        var("snapshots", Ty::Int, "events counted as snapshots"),
        var("progress", Ty::Int, "events counted as progress"),
        var("errors", Ty::Int, "events counted as errors"),
        var("spent_usd", Ty::Double, "spend so far, in dollars"),
        var("budget_usd", Ty::Double, "the model's budget, in dollars"),
        var("spent_fraction", Ty::Double, "spend divided by budget"),
        var("elapsed_s", Ty::Double, "seconds since the container started"),
        var("idle_s", Ty::Double, "seconds since the last event or change in spend"),
    ],
};

/// One event, the JSON object the agent printed: `[events]` expressions.
pub static EVENT: Vocabulary = Vocabulary {
    used_for: "event expressions",
    variables: &[var(
        "event",
        Ty::Map,
        "the event's JSON object, e.g. event.type, event.toolName, has(event.args)",
    )],
};

static STRING: Ty = Ty::String;
static DYN: Ty = Ty::Dyn;

/// What preflight knows of each model, for custom-check expressions.
pub static MODEL_FIELDS: &[Field] = &[
    Field { name: "id", ty: Ty::String, doc: "the OpenRouter model id" },
    Field { name: "alias", ty: Ty::String, doc: "the model's alias in this experiment" },
    Field { name: "budget_usd", ty: Ty::Double, doc: "the model's budget, in dollars" },
    Field {
        name: "prompt_usd_per_mtok",
        ty: Ty::Double,
        doc: "price of a million prompt tokens; absent when the price is variable or unknown",
    },
    Field {
        name: "completion_usd_per_mtok",
        ty: Ty::Double,
        doc: "price of a million completion tokens; absent when variable or unknown",
    },
    Field {
        name: "context_length",
        ty: Ty::Int,
        doc: "context window in tokens; absent when the catalog gives none",
    },
    Field {
        name: "supported_parameters",
        ty: Ty::List(&STRING),
        doc: "request parameters the model supports, e.g. \"tools\"",
    },
];

static MODEL: Ty = Ty::Record(MODEL_FIELDS);

/// The data preflight fetched: custom checks' `expr`.
pub static PREFLIGHT: Vocabulary = Vocabulary {
    used_for: "custom check expressions",
    variables: &[
        var("balance_usd", Ty::Double, "the account balance (credits minus usage), in dollars"),
        var("total_budget_usd", Ty::Double, "the sum of every model's budget, in dollars"),
        var("model_count", Ty::Int, "how many models the experiment runs"),
        var("models", Ty::List(&MODEL), "each model, as catalogued (see its fields)"),
    ],
};

/// The variables eject conditions may use, with what they hold.
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

/// Conditions are short policies; a longer text is a mistake, and bounds the parser's work.
const MAX_SOURCE: usize = 4096;

/// The standard library, built once: building it registers every overload, which is too slow
/// to repeat for each event line.
static STDLIB: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// A compiled and checked condition.
#[derive(Clone)]
pub struct Condition {
    source: String,
    program: Arc<Program>,
    vocabulary: &'static Vocabulary,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Condition({:?})", self.source)
    }
}

impl PartialEq for Condition {
    fn eq(&self, other: &Condition) -> bool {
        self.source == other.source && std::ptr::eq(self.vocabulary, other.vocabulary)
    }
}

impl serde::Serialize for Condition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

/// Why a condition was refused: its message, and the bytes of the expression it points at.
#[derive(Debug, Clone, PartialEq)]
pub struct ExprError {
    pub message: String,
    /// Byte offset in the expression.
    pub offset: usize,
    /// Bytes the problem covers, at least 1 unless the expression is empty.
    pub len: usize,
}

/// The values an eject condition is evaluated against.
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

/// What preflight fetched, for custom-check expressions ([`PREFLIGHT`]).
#[derive(Debug, Clone, Default)]
pub struct CheckFacts {
    pub balance_usd: f64,
    pub total_budget_usd: f64,
    pub models: Vec<ModelFacts>,
}

/// One model as preflight saw it; `None` fields are absent in the expression (`has()` tests
/// them).
#[derive(Debug, Clone, Default)]
pub struct ModelFacts {
    pub id: String,
    pub alias: String,
    pub budget_usd: f64,
    pub prompt_usd_per_mtok: Option<f64>,
    pub completion_usd_per_mtok: Option<f64>,
    pub context_length: Option<u64>,
    pub supported_parameters: Vec<String>,
}

impl Condition {
    /// Compile an eject condition over a model's counters ([`COUNTERS`]).
    pub fn compile(source: &str) -> Result<Condition, ExprError> {
        Condition::compile_in(source, &COUNTERS)
    }

    /// Compile `source` and check it against `vocabulary`: syntax, unknown variables and
    /// fields, operators on the wrong types, and a result that cannot be true or false.
    pub fn compile_in(
        source: &str,
        vocabulary: &'static Vocabulary,
    ) -> Result<Condition, ExprError> {
        if source.trim().is_empty() {
            return Err(ExprError { message: "the condition is empty".into(), offset: 0, len: 0 });
        }
        if source.len() > MAX_SOURCE {
            let message = format!("a condition may be at most {MAX_SOURCE} bytes long");
            return Err(ExprError { message, offset: floor_boundary(source, MAX_SOURCE), len: 1 });
        }
        let program = Program::compile(source).map_err(|errors| {
            let first = errors.errors.first();
            let message = first.map_or_else(|| errors.to_string(), |e| e.msg.clone());
            let offset = first.map_or(0, |e| offset_of(source, e.pos.0, e.pos.1));
            ExprError { message: syntax_message(&message, &source[offset..]), offset, len: 1 }
        })?;
        let mut checker = Checker { source, program: &program, vocabulary, locals: Vec::new() };
        let root = program.expression();
        let ty = checker.ty(root)?;
        if !ty.may_be_bool() {
            let (offset, len) = checker.span(root);
            return Err(ExprError {
                message: format!("this gives {}, but a condition must give true or false", ty.a()),
                offset,
                len,
            });
        }
        Ok(Condition { source: source.to_string(), program: Arc::new(program), vocabulary })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluate an eject condition against `counters`. A condition that does not yield a
    /// boolean is an error, reported rather than treated as false.
    pub fn holds(&self, c: &Counters) -> Result<bool, String> {
        let mut ctx = Context::with_env(STDLIB.clone());
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
        self.run(&ctx)
    }

    /// Evaluate an event expression against one event's JSON object.
    pub fn holds_for_event(&self, event: &Map<String, serde_json::Value>) -> Result<bool, String> {
        let mut ctx = Context::with_env(STDLIB.clone());
        ctx.add_variable_from_value("event", object_to_cel(event));
        self.run(&ctx)
    }

    /// Evaluate a custom-check expression against what preflight fetched.
    pub fn holds_for_check(&self, facts: &CheckFacts) -> Result<bool, String> {
        let mut ctx = Context::with_env(STDLIB.clone());
        ctx.add_variable_from_value("balance_usd", Value::Float(facts.balance_usd));
        ctx.add_variable_from_value("total_budget_usd", Value::Float(facts.total_budget_usd));
        let count = i64::try_from(facts.models.len()).unwrap_or(i64::MAX);
        ctx.add_variable_from_value("model_count", Value::Int(count));
        let models: Vec<Value> = facts.models.iter().map(model_to_cel).collect();
        ctx.add_variable_from_value("models", Value::List(Arc::new(models)));
        self.run(&ctx)
    }

    fn run(&self, ctx: &Context) -> Result<bool, String> {
        match self.program.execute(ctx) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("`{}` gave {other:?}, not true or false", self.source)),
            Err(e) => Err(format!("`{}` failed: {e}", self.source)),
        }
    }
}

fn model_to_cel(m: &ModelFacts) -> Value {
    let mut map: HashMap<String, Value> = HashMap::new();
    map.insert("id".into(), Value::String(Arc::new(m.id.clone())));
    map.insert("alias".into(), Value::String(Arc::new(m.alias.clone())));
    map.insert("budget_usd".into(), Value::Float(m.budget_usd));
    if let Some(p) = m.prompt_usd_per_mtok {
        map.insert("prompt_usd_per_mtok".into(), Value::Float(p));
    }
    if let Some(p) = m.completion_usd_per_mtok {
        map.insert("completion_usd_per_mtok".into(), Value::Float(p));
    }
    if let Some(n) = m.context_length {
        map.insert("context_length".into(), Value::Int(i64::try_from(n).unwrap_or(i64::MAX)));
    }
    let params =
        m.supported_parameters.iter().map(|p| Value::String(Arc::new(p.clone()))).collect();
    map.insert("supported_parameters".into(), Value::List(Arc::new(params)));
    Value::from(map)
}

fn object_to_cel(object: &Map<String, serde_json::Value>) -> Value {
    let map: HashMap<String, Value> =
        object.iter().map(|(k, v)| (k.clone(), json_to_cel(v))).collect();
    Value::from(map)
}

/// JSON to CEL. Whole numbers become `int` whenever they fit, so `event.status == 402` compares
/// like with like.
fn json_to_cel(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(items) => {
            Value::List(Arc::new(items.iter().map(json_to_cel).collect()))
        }
        serde_json::Value::Object(o) => object_to_cel(o),
    }
}

/// The parser's wording, minus its ANTLR jargon; `rest` is the expression from the error on.
fn syntax_message(msg: &str, rest: &str) -> String {
    let msg = msg.trim();
    let msg = msg.strip_prefix("Syntax error: ").unwrap_or(msg);
    if rest.starts_with('=') && !rest.starts_with("==") {
        return "syntax error: `=` is not an operator; compare with `==`".into();
    }
    if msg.contains("'<EOF>'") {
        return "syntax error: the condition ends where more was expected".into();
    }
    let msg = match msg.find(" expecting ") {
        Some(i) if msg.len() > 60 => &msg[..i],
        _ => msg,
    };
    format!("syntax error: {msg}")
}

/// Byte offset of a 1-based line and column (as the CEL parser reports them, the column in
/// bytes) in `source`.
fn offset_of(source: &str, line: isize, col: isize) -> usize {
    let line = usize::try_from(line.max(1)).unwrap_or(1);
    let col = usize::try_from(col.max(1)).unwrap_or(1) - 1;
    let start: usize = source.split_inclusive('\n').take(line - 1).map(str::len).sum();
    floor_boundary(source, (start + col).min(source.len()))
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i.min(s.len())
}

impl Ty {
    /// The type's name as CEL spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Ty::Bool => "bool",
            Ty::Int => "int",
            Ty::Uint => "uint",
            Ty::Double => "double",
            Ty::String => "string",
            Ty::Bytes => "bytes",
            Ty::Null => "null",
            Ty::Dyn => "dyn",
            Ty::List(_) => "list",
            Ty::Map | Ty::Record(_) => "map",
        }
    }

    /// The type with an article, for sentences.
    fn a(&self) -> String {
        match self {
            Ty::Bool => "true or false".into(),
            Ty::Int => "an int".into(),
            Ty::Uint => "a uint".into(),
            Ty::Double => "a double".into(),
            Ty::String => "a string".into(),
            Ty::Bytes => "bytes".into(),
            Ty::Null => "null".into(),
            Ty::Dyn => "a value".into(),
            Ty::List(_) => "a list".into(),
            Ty::Map | Ty::Record(_) => "a map".into(),
        }
    }

    fn may_be_bool(&self) -> bool {
        matches!(self, Ty::Bool | Ty::Dyn)
    }

    fn is_number(&self) -> bool {
        matches!(self, Ty::Int | Ty::Uint | Ty::Double)
    }

    fn known(&self) -> bool {
        !matches!(self, Ty::Dyn)
    }

    /// Same kind of value, ignoring element types.
    fn same_kind(&self, other: &Ty) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
            || matches!((self, other), (Ty::Map | Ty::Record(_), Ty::Map | Ty::Record(_)))
    }
}

/// A `'static` reference to a scalar type, for list element types.
fn leak_free(t: Ty) -> &'static Ty {
    static BOOL: Ty = Ty::Bool;
    static INT: Ty = Ty::Int;
    static UINT: Ty = Ty::Uint;
    static DOUBLE: Ty = Ty::Double;
    static MAP: Ty = Ty::Map;
    match t {
        Ty::Bool => &BOOL,
        Ty::Int => &INT,
        Ty::Uint => &UINT,
        Ty::Double => &DOUBLE,
        Ty::String => &STRING,
        Ty::Map => &MAP,
        _ => &DYN,
    }
}

/// Functions of the standard library apf's build of CEL provides, with their result type.
fn function_result(name: &str) -> Option<Ty> {
    Some(match name {
        "size" => Ty::Int,
        "contains" | "startsWith" | "endsWith" | "matches" => Ty::Bool,
        "int" => Ty::Int,
        "uint" => Ty::Uint,
        "double" => Ty::Double,
        "string" => Ty::String,
        "bool" => Ty::Bool,
        "dyn" | "type" | "duration" | "timestamp" => Ty::Dyn,
        n if n.starts_with("get") => Ty::Int,
        "hasValue" => Ty::Bool,
        "orValue" | "value" | "or" => Ty::Dyn,
        _ => return None,
    })
}

const FUNCTIONS: &[&str] = &[
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "int",
    "uint",
    "double",
    "string",
    "bool",
    "dyn",
    "type",
    "duration",
    "timestamp",
];

/// The static checker: infers each node's type, refusing what would fail at run time for
/// every input.
struct Checker<'a> {
    source: &'a str,
    program: &'a Program,
    vocabulary: &'static Vocabulary,
    /// Comprehension variables in scope, innermost last.
    locals: Vec<(String, Ty)>,
}

type Checked = Result<Ty, ExprError>;

impl Checker<'_> {
    /// Byte offset and length of a node in the expression.
    fn span(&self, e: &IdedExpr) -> (usize, usize) {
        let Some((start, stop)) = self.program.source_info().offset_for(e.id) else {
            return (0, self.source.len());
        };
        // The parser counts bytes; `stop` is the last byte of the node's token, inclusive.
        let byte = |at: u32| floor_boundary(self.source, (at as usize).min(self.source.len()));
        let from = byte(start);
        let to = byte(stop.max(start).saturating_add(1));
        let to = if to <= from { ceil_boundary(self.source, from + 1) } else { to };
        (from, to.saturating_sub(from).max(1))
    }

    fn error(&self, e: &IdedExpr, message: String) -> ExprError {
        let (offset, len) = self.span(e);
        ExprError { message, offset, len }
    }

    fn ty(&mut self, e: &IdedExpr) -> Checked {
        match &e.expr {
            Expr::Unspecified => Ok(Ty::Dyn),
            Expr::Literal(l) => Ok(literal(l)),
            Expr::Ident(name) => self.ident(e, name),
            Expr::Select(s) => self.select(e, s),
            Expr::Call(c) => self.call(e, &c.func_name, c.target.as_deref(), &c.args),
            Expr::List(l) => {
                let mut elem: Option<Ty> = None;
                for item in &l.elements {
                    let t = self.ty(item)?;
                    elem = match elem {
                        None => Some(t),
                        Some(prev) if prev == t => Some(prev),
                        Some(_) => Some(Ty::Dyn),
                    };
                }
                Ok(Ty::List(leak_free(elem.unwrap_or(Ty::Dyn))))
            }
            Expr::Map(m) => {
                for entry in &m.entries {
                    if let cel::common::ast::EntryExpr::MapEntry(me) = &entry.expr {
                        self.ty(&me.key)?;
                        self.ty(&me.value)?;
                    }
                }
                Ok(Ty::Map)
            }
            Expr::Struct(_) => Ok(Ty::Dyn),
            Expr::Comprehension(c) => self.comprehension(c),
        }
    }

    fn ident(&self, e: &IdedExpr, name: &str) -> Checked {
        if let Some((_, t)) = self.locals.iter().rev().find(|(n, _)| n == name) {
            return Ok(*t);
        }
        if let Some(v) = self.vocabulary.get(name) {
            return Ok(v.ty);
        }
        let names = self.vocabulary.variables.iter().map(|v| v.name);
        let message = match crate::manifest::diag::did_you_mean(name, names) {
            Some(best) => format!("unknown variable `{name}`; did you mean `{best}`?"),
            None => format!(
                "unknown variable `{name}`; {} may use {}",
                self.vocabulary.used_for,
                self.vocabulary.variables.iter().map(|v| v.name).collect::<Vec<_>>().join(", ")
            ),
        };
        Err(self.error(e, message))
    }

    fn select(&mut self, e: &IdedExpr, s: &SelectExpr) -> Checked {
        let operand = self.ty(&s.operand)?;
        let field_type = match operand {
            Ty::Record(fields) => match fields.iter().find(|f| f.name == s.field) {
                Some(f) => f.ty,
                None => {
                    let names = fields.iter().map(|f| f.name);
                    let message = match crate::manifest::diag::did_you_mean(&s.field, names) {
                        Some(b) => format!("no field `{}`; did you mean `{b}`?", s.field),
                        None => format!(
                            "no field `{}`; the fields are {}",
                            s.field,
                            fields.iter().map(|f| f.name).collect::<Vec<_>>().join(", ")
                        ),
                    };
                    return Err(self.error(e, message));
                }
            },
            Ty::Map | Ty::Dyn => Ty::Dyn,
            other => {
                return Err(self
                    .error(e, format!("`.{}` reads a field, but this is {}", s.field, other.a())));
            }
        };
        Ok(if s.test { Ty::Bool } else { field_type })
    }

    fn comprehension(&mut self, c: &ComprehensionExpr) -> Checked {
        let range = self.ty(&c.iter_range)?;
        let (first, second) = match range {
            Ty::List(elem) => (Ty::Int, *elem),
            Ty::Map | Ty::Record(_) => (Ty::String, Ty::Dyn),
            Ty::Dyn => (Ty::Dyn, Ty::Dyn),
            other => {
                return Err(self.error(
                    &c.iter_range,
                    format!("this is {}, which cannot be iterated", other.a()),
                ));
            }
        };
        let accu = self.ty(&c.accu_init)?;
        let depth = self.locals.len();
        match &c.iter_var2 {
            Some(v2) => {
                self.locals.push((c.iter_var.clone(), first));
                self.locals.push((v2.clone(), second));
            }
            None => {
                let only = if matches!(range, Ty::List(_)) { second } else { first };
                self.locals.push((c.iter_var.clone(), only));
            }
        }
        self.locals.push((c.accu_var.clone(), accu));
        let result = (|| {
            self.ty(&c.loop_cond)?;
            let step = self.ty(&c.loop_step)?;
            if let Some(last) = self.locals.last_mut() {
                last.1 = if step == accu { accu } else { Ty::Dyn };
            }
            self.ty(&c.result)
        })();
        self.locals.truncate(depth);
        result
    }

    fn call(
        &mut self,
        e: &IdedExpr,
        name: &str,
        target: Option<&IdedExpr>,
        args: &[IdedExpr],
    ) -> Checked {
        // `optional.of(x)` and friends: a namespace, not a variable.
        let target = match target {
            Some(t) if matches!(&t.expr, Expr::Ident(n) if n == "optional") => None,
            other => other,
        };
        let target_ty = target.map(|t| self.ty(t)).transpose()?;
        let mut arg_tys = Vec::with_capacity(args.len());
        for a in args {
            arg_tys.push(self.ty(a)?);
        }
        let arg = |i: usize| arg_tys.get(i).copied().unwrap_or(Ty::Dyn);
        match name {
            "_&&_" | "_||_" | "!_" => {
                let word = match name {
                    "_&&_" => "`&&`",
                    "_||_" => "`||`",
                    _ => "`!`",
                };
                for (a, t) in args.iter().zip(&arg_tys) {
                    if !t.may_be_bool() {
                        return Err(self.error(
                            a,
                            format!("{word} needs true or false, but this is {}", t.a()),
                        ));
                    }
                }
                Ok(Ty::Bool)
            }
            "_==_" | "_!=_" | "@in" | "@not_strictly_false" => Ok(Ty::Bool),
            "_<_" | "_<=_" | "_>_" | "_>=_" => {
                let (l, r) = (arg(0), arg(1));
                let comparable = !l.known()
                    || !r.known()
                    || (l.is_number() && r.is_number())
                    || (l == r && matches!(l, Ty::String | Ty::Bool | Ty::Bytes));
                if comparable {
                    Ok(Ty::Bool)
                } else {
                    Err(self.error(e, format!("{} cannot be compared with {}", l.a(), r.a())))
                }
            }
            "_+_" | "_-_" | "_*_" | "_/_" | "_%_" => self.arithmetic(e, name, arg(0), arg(1)),
            "-_" => match arg(0) {
                t @ (Ty::Int | Ty::Double | Ty::Dyn) => Ok(t),
                t => Err(self.error(e, format!("`-` needs a number, but this is {}", t.a()))),
            },
            "_?_:_" => {
                if let (Some(c), t) = (args.first(), arg(0))
                    && !t.may_be_bool()
                {
                    return Err(self.error(
                        c,
                        format!("`? :` needs true or false before `?`, but this is {}", t.a()),
                    ));
                }
                Ok(if arg(1) == arg(2) { arg(1) } else { Ty::Dyn })
            }
            "_[_]" | "_[?_]" => self.index(e, arg(0), args.get(1), arg(1)),
            _ => self.function(e, name, target_ty, &arg_tys),
        }
    }

    fn arithmetic(&self, e: &IdedExpr, op: &str, l: Ty, r: Ty) -> Checked {
        let symbol = &op[1..op.len() - 1];
        if !l.known() || !r.known() {
            return Ok(if l.known() { l } else { r });
        }
        if l.is_number() && r.is_number() && l != r {
            return Err(self.error(
                e,
                format!(
                    "`{symbol}` mixes {} and {}: CEL does not convert between them; write a \
                     literal like 2.0 instead of 2, or convert with double(...)",
                    l.a(),
                    r.a()
                ),
            ));
        }
        let ok = match op {
            "_+_" => {
                l.is_number()
                    || matches!(l, Ty::String | Ty::Bytes | Ty::List(_)) && l.same_kind(&r)
            }
            "_%_" => matches!(l, Ty::Int | Ty::Uint),
            _ => l.is_number(),
        };
        if ok && l.same_kind(&r) {
            Ok(if matches!(l, Ty::List(_)) && l != r { Ty::List(&DYN) } else { l })
        } else {
            Err(self.error(e, format!("`{symbol}` cannot combine {} and {}", l.a(), r.a())))
        }
    }

    fn index(&self, e: &IdedExpr, container: Ty, key: Option<&IdedExpr>, key_ty: Ty) -> Checked {
        match container {
            Ty::List(elem) => {
                if key_ty.known() && !matches!(key_ty, Ty::Int | Ty::Uint) {
                    return Err(self
                        .error(e, format!("a list is indexed by an int, not by {}", key_ty.a())));
                }
                Ok(*elem)
            }
            Ty::Record(fields) => {
                let literal = key.and_then(|k| match &k.expr {
                    Expr::Literal(LiteralValue::String(s)) => Some(s.inner().to_string()),
                    _ => None,
                });
                match literal {
                    Some(name) => fields
                        .iter()
                        .find(|f| f.name == name)
                        .map(|f| f.ty)
                        .ok_or_else(|| self.error(e, format!("no field {name:?} in this map"))),
                    None => Ok(Ty::Dyn),
                }
            }
            Ty::Map | Ty::Dyn => Ok(Ty::Dyn),
            other => Err(self.error(e, format!("`[...]` cannot index {}", other.a()))),
        }
    }

    fn function(&self, e: &IdedExpr, name: &str, target: Option<Ty>, args: &[Ty]) -> Checked {
        let Some(result) = function_result(name) else {
            let hint = crate::manifest::diag::did_you_mean(name, FUNCTIONS.iter().copied())
                .map(|b| format!("; did you mean `{b}`?"))
                .unwrap_or_default();
            return Err(self.error(e, format!("unknown function `{name}`{hint}")));
        };
        let subject = target.or_else(|| args.first().copied()).unwrap_or(Ty::Dyn);
        let fits = match name {
            "size" => matches!(
                subject,
                Ty::String | Ty::Bytes | Ty::List(_) | Ty::Map | Ty::Record(_) | Ty::Dyn
            ),
            "contains" | "startsWith" | "endsWith" | "matches" => {
                matches!(subject, Ty::String | Ty::Dyn)
            }
            _ => true,
        };
        if fits {
            Ok(result)
        } else {
            Err(self.error(e, format!("`{name}` does not apply to {}", subject.a())))
        }
    }
}

fn literal(l: &LiteralValue) -> Ty {
    match l {
        LiteralValue::Boolean(_) => Ty::Bool,
        LiteralValue::Bytes(_) => Ty::Bytes,
        LiteralValue::Double(_) => Ty::Double,
        LiteralValue::Int(_) => Ty::Int,
        LiteralValue::Null => Ty::Null,
        LiteralValue::String(_) => Ty::String,
        LiteralValue::UInt(_) => Ty::Uint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(source: &str, vocabulary: &'static Vocabulary) -> ExprError {
        match Condition::compile_in(source, vocabulary) {
            Ok(_) => panic!("{source:?} was accepted"),
            Err(e) => e,
        }
    }

    fn pointed(source: &str, e: &ExprError) -> String {
        source[e.offset..(e.offset + e.len).min(source.len())].to_string()
    }

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
        assert!(err.message.contains("did you mean `tool_calls`?"), "{}", err.message);
        assert_eq!(pointed("toolcalls > 0", &err), "toolcalls");
    }

    #[test]
    fn offsets_are_bytes_even_after_wide_characters() {
        let source = "'héllo' == 'x' && nope";
        let err = Condition::compile(source).unwrap_err();
        assert_eq!(pointed(source, &err), "nope");
        let source = "'é' == 'é' &&";
        let err = Condition::compile(source).unwrap_err();
        assert!(err.offset <= source.len() && source.is_char_boundary(err.offset));
    }

    #[test]
    fn results_that_cannot_be_boolean_are_refused_at_compile_time() {
        let err = refused("tool_calls + 1", &COUNTERS);
        assert!(err.message.contains("gives an int"), "{}", err.message);
        let err = refused("'done'", &EVENT);
        assert!(err.message.contains("gives a string"), "{}", err.message);
        assert!(Condition::compile_in("event.done", &EVENT).is_ok(), "a field may be a bool");
    }

    #[test]
    fn mixing_ints_and_doubles_in_arithmetic_is_refused_with_a_fix() {
        let err = refused("spent_usd * 2 > budget_usd", &COUNTERS);
        assert!(err.message.contains("mixes a double and an int"), "{}", err.message);
        assert!(err.message.contains("2.0"), "{}", err.message);
        // Comparisons across number kinds are fine in CEL, and at run time here.
        let c = Condition::compile("spent_usd > 0 && tool_calls >= 1.0").unwrap();
        let counters = Counters { spent_usd: 0.1, tool_calls: 1, ..Default::default() };
        assert!(c.holds(&counters).unwrap());
    }

    #[test]
    fn wrong_operand_types_are_refused() {
        assert!(refused("tool_calls > 'a'", &COUNTERS).message.contains("cannot be compared"));
        assert!(refused("tool_calls && true", &COUNTERS).message.contains("`&&` needs"));
        assert!(refused("size(3) > 0", &COUNTERS).message.contains("does not apply"));
        assert!(refused("lenght(event) > 0", &EVENT).message.contains("unknown function"));
    }

    #[test]
    fn event_expressions_read_nested_json() {
        let c = Condition::compile_in(
            "event.type == 'message' && has(event.tool) && event.tool.name.startsWith('bash')",
            &EVENT,
        )
        .unwrap();
        let hit: Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"type":"message","tool":{"name":"bash -c"}}"#).unwrap();
        let miss: Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"type":"message"}"#).unwrap();
        assert!(c.holds_for_event(&hit).unwrap());
        assert!(!c.holds_for_event(&miss).unwrap());
        let status = Condition::compile_in("event.status == 402", &EVENT).unwrap();
        let e: Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"type":"error","status":402}"#).unwrap();
        assert!(status.holds_for_event(&e).unwrap());
    }

    #[test]
    fn check_expressions_see_balance_and_models() {
        let c = Condition::compile_in(
            "balance_usd >= total_budget_usd * 1.5 && models.all(m, 'tools' in m.supported_parameters)",
            &PREFLIGHT,
        )
        .unwrap();
        let mut facts = CheckFacts {
            balance_usd: 10.0,
            total_budget_usd: 2.0,
            models: vec![ModelFacts {
                id: "a/b".into(),
                supported_parameters: vec!["tools".into()],
                ..Default::default()
            }],
        };
        assert!(c.holds_for_check(&facts).unwrap());
        facts.models[0].supported_parameters.clear();
        assert!(!c.holds_for_check(&facts).unwrap());
        let err = refused("models.all(m, m.contxt_length > 1000)", &PREFLIGHT);
        assert!(err.message.contains("did you mean `context_length`?"), "{}", err.message);
        let absent = Condition::compile_in(
            "models.all(m, !has(m.context_length) || m.context_length >= 8000)",
            &PREFLIGHT,
        )
        .unwrap();
        assert!(absent.holds_for_check(&facts).unwrap());
    }

    #[test]
    fn non_boolean_results_at_run_time_are_errors_not_false() {
        let c = Condition::compile_in("event.count", &EVENT).unwrap();
        let e: Map<String, serde_json::Value> = serde_json::from_str(r#"{"count":1}"#).unwrap();
        assert!(c.holds_for_event(&e).is_err());
    }
}
