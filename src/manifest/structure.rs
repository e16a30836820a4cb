//! Structural problems, all at once. The manifest, read as TOML, is turned into JSON and
//! validated against the very schema editors use ([`super::schema`]), so apf and the editor
//! refuse the same files (HAZARDS H16). Every error the validator reports is turned into a
//! located [`Problem`] in apf's words: an unknown key points at the key and suggests the
//! nearest known one, a value of the wrong type or shape points at the value, and for a choice
//! of shapes (an eject rule, a mount, a duration) the shape the user meant is picked so its
//! own errors are shown rather than "matches none of".

use std::collections::HashSet;
use std::ops::Range;
use std::sync::LazyLock;

use jsonschema::ValidationError;
use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::LocationSegment;
use serde_json::Value;

use super::diag::{Locator, Problem, Seg, did_you_mean};
use super::raw;

static SCHEMA: LazyLock<Value> = LazyLock::new(super::schema);

static VALIDATOR: LazyLock<Option<jsonschema::Validator>> =
    LazyLock::new(|| jsonschema::draft7::new(&SCHEMA).ok());

/// Marks TOML values JSON has no form for, so the schema refuses them where a string or a
/// number is expected and messages can name them.
const DATETIME: &str = "$toml-datetime";
const ODD_FLOAT: &str = "$toml-float";

/// The manifest's values as JSON, the way the schema sees them.
pub fn to_json(table: &toml::Table) -> Value {
    Value::Object(table.iter().map(|(k, v)| (k.clone(), value_to_json(v))).collect())
}

fn value_to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or_else(|| serde_json::json!({ ODD_FLOAT: f.to_string() })),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => serde_json::json!({ DATETIME: d.to_string() }),
        toml::Value::Array(items) => Value::Array(items.iter().map(value_to_json).collect()),
        toml::Value::Table(t) => to_json(t),
    }
}

/// One step into the instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Step {
    Key(String),
    Index(usize),
}

type Path = Vec<Step>;

/// Every structural problem of `instance`, located in the file `loc` was built from.
pub fn check(instance: &Value, loc: &Locator) -> Vec<Problem> {
    let Some(validator) = VALIDATOR.as_ref() else {
        return Vec::new();
    };
    let errors: Vec<ValidationError> = validator.iter_errors(instance).collect();
    let refs: Vec<&ValidationError> = errors.iter().collect();
    let mut cx = Explainer { instance, loc, out: Vec::new() };
    cx.all(&refs);
    let mut seen = HashSet::new();
    cx.out.retain(|p| seen.insert((p.span.clone(), p.message.clone())));
    cx.out
}

struct Explainer<'a> {
    instance: &'a Value,
    loc: &'a Locator,
    out: Vec<Problem>,
}

fn path_of(e: &ValidationError) -> Path {
    e.instance_path()
        .segments()
        .map(|s| match s {
            LocationSegment::Property(p) => Step::Key(p.to_string()),
            LocationSegment::Index(i) => Step::Index(i),
        })
        .collect()
}

/// `budget.per_model_usd`, `models[1].alias`; the top level is "the manifest".
fn dotted(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    if out.is_empty() { "the manifest".into() } else { format!("`{out}`") }
}

fn segs(path: &[Step]) -> Vec<Seg<'_>> {
    path.iter()
        .map(|s| match s {
            Step::Key(k) => Seg::Key(k.as_str()),
            Step::Index(i) => Seg::Index(*i),
        })
        .collect()
}

fn child(path: &[Step], key: &str) -> Path {
    let mut p = path.to_vec();
    p.push(Step::Key(key.to_string()));
    p
}

fn last_key(path: &[Step]) -> Option<&str> {
    path.iter().rev().find_map(|s| match s {
        Step::Key(k) => Some(k.as_str()),
        Step::Index(_) => None,
    })
}

impl Explainer<'_> {
    fn value_span(&self, path: &[Step]) -> Range<usize> {
        self.loc.value(&segs(path))
    }

    fn key_span(&self, path: &[Step]) -> Range<usize> {
        self.loc.key(&segs(path))
    }

    fn at(&self, path: &[Step]) -> Option<&Value> {
        let mut v = self.instance;
        for step in path {
            v = match step {
                Step::Key(k) => v.get(k)?,
                Step::Index(i) => v.get(*i)?,
            };
        }
        Some(v)
    }

    fn push(&mut self, span: Range<usize>, message: String, label: &str, help: Option<String>) {
        let mut p = Problem::new(message, span).label(label);
        if let Some(h) = help {
            p = p.help(h);
        }
        self.out.push(p);
    }

    /// Explain a set of sibling errors, letting an unknown key that is a near miss of a
    /// missing one stand for both.
    fn all(&mut self, errors: &[&ValidationError]) {
        let mut missing: HashSet<(Path, String)> = HashSet::new();
        for e in errors {
            if let ValidationErrorKind::Required { property } = e.kind()
                && let Some(p) = property.as_str()
            {
                missing.insert((path_of(e), p.to_string()));
            }
        }
        // A value of the wrong type also fails its enum, pattern and range: say it once.
        let mistyped: HashSet<Path> = errors
            .iter()
            .filter(|e| matches!(e.kind(), ValidationErrorKind::Type { .. }))
            .map(|e| path_of(e))
            .collect();
        let mut covered: HashSet<(Path, String)> = HashSet::new();
        for e in errors {
            if let ValidationErrorKind::AdditionalProperties { unexpected } = e.kind() {
                let path = path_of(e);
                let wanted: Vec<&str> =
                    missing.iter().filter(|(p, _)| *p == path).map(|(_, k)| k.as_str()).collect();
                for key in unexpected {
                    if let Some(best) = did_you_mean(key, wanted.iter().copied()) {
                        covered.insert((path.clone(), best.to_string()));
                    }
                }
            }
        }
        for e in errors {
            if let ValidationErrorKind::Required { property } = e.kind()
                && property.as_str().is_some_and(|p| covered.contains(&(path_of(e), p.into())))
            {
                continue;
            }
            let value_check = !matches!(
                e.kind(),
                ValidationErrorKind::Type { .. }
                    | ValidationErrorKind::Required { .. }
                    | ValidationErrorKind::AdditionalProperties { .. }
            );
            if value_check && mistyped.contains(&path_of(e)) {
                continue;
            }
            self.one(e);
        }
    }

    fn one(&mut self, e: &ValidationError) {
        let path = path_of(e);
        match e.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                for key in unexpected {
                    self.unknown_key(&path, key);
                }
            }
            ValidationErrorKind::Required { property } => {
                let property = property.as_str().unwrap_or_default().to_string();
                self.missing(&path, &property);
            }
            ValidationErrorKind::Enum { options } => self.not_one_of(&path, e.instance(), options),
            ValidationErrorKind::Constant { expected_value } => {
                let span = self.value_span(&path);
                let msg = format!("{} must be {expected_value}", dotted(&path));
                self.push(span, msg, "here", None);
            }
            ValidationErrorKind::Type { kind } => self.wrong_type(&path, e.instance(), kind),
            ValidationErrorKind::Minimum { limit } => {
                self.bound(&path, e.instance(), "at least", limit)
            }
            ValidationErrorKind::ExclusiveMinimum { limit } => {
                self.bound(&path, e.instance(), "above", limit)
            }
            ValidationErrorKind::Maximum { limit } => {
                self.bound(&path, e.instance(), "at most", limit)
            }
            ValidationErrorKind::ExclusiveMaximum { limit } => {
                self.bound(&path, e.instance(), "below", limit)
            }
            ValidationErrorKind::MinLength { limit } => {
                let span = self.value_span(&path);
                let msg = if *limit == 1 {
                    format!("{} cannot be empty", dotted(&path))
                } else {
                    format!("{} must be at least {limit} characters long", dotted(&path))
                };
                self.push(span, msg, "here", None);
            }
            ValidationErrorKind::MaxLength { limit } => {
                let span = self.value_span(&path);
                let msg = format!("{} is longer than {limit} characters", dotted(&path));
                self.push(span, msg, "too long", None);
            }
            ValidationErrorKind::MinItems { limit } => {
                let span = self.value_span(&path);
                let what = match (last_key(&path) == Some("of"), *limit == 1) {
                    (true, true) => "rule",
                    (true, false) => "rules",
                    (false, true) => "entry",
                    (false, false) => "entries",
                };
                let msg = format!("{} needs at least {limit} {what}", dotted(&path));
                self.push(span, msg, "here", None);
            }
            ValidationErrorKind::Pattern { pattern } => self.pattern(&path, e.instance(), pattern),
            ValidationErrorKind::Not { schema } => self.forbidden(&path, e.instance(), schema),
            ValidationErrorKind::PropertyNames { error } => {
                let name = error.instance().as_str().unwrap_or_default().to_string();
                let span = self.key_span(&child(&path, &name));
                let msg = format!("{name:?} is not an environment variable name");
                let help = "use letters, digits and _, not starting with a digit".to_string();
                self.push(span, msg, "this name", Some(help));
            }
            ValidationErrorKind::OneOfNotValid { context }
            | ValidationErrorKind::AnyOf { context } => self.choice(&path, context),
            _ => {
                let span = self.value_span(&path);
                self.push(span, format!("{}: {e}", dotted(&path)), "here", None);
            }
        }
    }

    fn unknown_key(&mut self, path: &[Step], key: &str) {
        let span = self.key_span(&child(path, key));
        let known = allowed_keys(self.instance, path);
        let inside_all = path.iter().any(|s| *s == Step::Key("of".into()));
        let help = match did_you_mean(key, known.iter().map(String::as_str)) {
            _ if key == "warn_only" && inside_all => {
                Some("`warn_only` goes on the `all` rule itself, not on the rules inside it".into())
            }
            Some(best) => Some(format!("did you mean `{best}`?")),
            None if !known.is_empty() => Some(format!("known keys here: {}", known.join(", "))),
            None => None,
        };
        let place = if path.is_empty() {
            "at the top level".into()
        } else {
            format!("in {}", dotted(path))
        };
        self.push(span, format!("unknown key `{key}` {place}"), "unknown key", help);
    }

    fn missing(&mut self, path: &[Step], property: &str) {
        let span = if path.is_empty() { 0..0 } else { self.key_span(path) };
        let msg = format!("{} is missing `{property}`", dotted(path));
        let help = description_of(self.instance, &child(path, property))
            .map(|d| format!("`{property}`: {}", first_sentence(&d)));
        let label = if path.is_empty() { "in this file" } else { "in this table" };
        self.push(span, msg, label, help);
    }

    fn not_one_of(&mut self, path: &[Step], value: &Value, options: &Value) {
        let span = self.value_span(path);
        if path == [Step::Key("version".into())] {
            let msg = format!("manifest version {value} is not supported");
            let help = "apf reads version 1: write `version = 1`".to_string();
            self.push(span, msg, "here", Some(help));
            return;
        }
        let names: Vec<String> = options
            .as_array()
            .map(|xs| xs.iter().map(|x| x.as_str().map_or(x.to_string(), str::to_string)).collect())
            .unwrap_or_default();
        let word = value.as_str().map_or_else(|| value.to_string(), str::to_string);
        let msg = if path.iter().any(|s| *s == Step::Key("checks".into())) {
            format!("unknown check {value}")
        } else {
            format!("unknown value {value} for {}", dotted(path))
        };
        let help = match did_you_mean(&word, names.iter().map(String::as_str)) {
            Some(best) => format!("did you mean `{best}`?"),
            None => format!("expected one of: {}", names.join(", ")),
        };
        self.push(span, msg, "unknown value", Some(help));
    }

    fn wrong_type(&mut self, path: &[Step], value: &Value, kind: &TypeKind) {
        let expected: Vec<&'static str> = match kind {
            TypeKind::Single(t) => vec![type_word(t.as_str())],
            TypeKind::Multiple(set) => set.iter().map(|t| type_word(t.as_str())).collect(),
        };
        self.type_problem(path, value, &expected);
    }

    fn type_problem(&mut self, path: &[Step], value: &Value, expected: &[&'static str]) {
        let span = self.value_span(path);
        let mut expected = expected.to_vec();
        expected.dedup();
        let msg =
            format!("{} must be {}, not {}", dotted(path), expected.join(" or "), describe(value));
        let help = match value {
            Value::String(s)
                if expected.contains(&"a number") && s.trim().parse::<f64>().is_ok() =>
            {
                Some(format!("write {} without quotes", s.trim()))
            }
            _ => None,
        };
        self.push(span, msg, "wrong type", help);
    }

    fn bound(&mut self, path: &[Step], value: &Value, relation: &str, limit: &Value) {
        let span = self.value_span(path);
        let msg = format!("{} must be {relation} {limit}, not {value}", dotted(path));
        let help = match last_key(path) {
            Some("per_model_usd" | "budget_usd") => {
                Some("a budget is a positive number of dollars".into())
            }
            Some("kill_at" | "spent") => Some("a fraction of the budget: 0.25 is a quarter".into()),
            _ => None,
        };
        self.push(span, msg, "out of range", help);
    }

    fn pattern(&mut self, path: &[Step], value: &Value, pattern: &str) {
        let span = self.value_span(path);
        let text = value.as_str().unwrap_or_default();
        let (msg, help) = pattern_message(path, text, pattern);
        self.push(span, msg, "here", help);
    }

    fn forbidden(&mut self, path: &[Step], value: &Value, schema: &Value) {
        let name = path
            .iter()
            .skip_while(|s| **s != Step::Key("env".into()))
            .nth(1)
            .and_then(|s| match s {
                Step::Key(k) => Some(k.clone()),
                Step::Index(_) => None,
            })
            .unwrap_or_else(|| "this variable".into());
        let why = if schema.get("pattern").is_some() {
            "an OpenRouter key written in the manifest".to_string()
        } else {
            format!("the host's OpenRouter key in ${}", value.as_str().unwrap_or_default())
        };
        let env_path: Vec<Step> = match path.iter().position(|s| *s == Step::Key("env".into())) {
            Some(i) => path[..(i + 2).min(path.len())].to_vec(),
            None => path.to_vec(),
        };
        let span = self.value_span(&env_path);
        let help =
            "an agent must only ever hold the capped key apf mints for its model".to_string();
        self.push(span, format!("{name} would pass {why} into the container"), "here", Some(help));
    }

    /// A value that fits none of several shapes: find the one meant, and explain its errors.
    fn choice(&mut self, path: &[Step], context: &[Vec<ValidationError<'static>>]) {
        let here = self.at(path).cloned().unwrap_or(Value::Null);
        let rule_path = child(path, "rule");
        let tagged = context.iter().any(|branch| {
            branch.iter().any(|e| {
                path_of(e) == rule_path && matches!(e.kind(), ValidationErrorKind::Constant { .. })
            })
        });
        let untagged_rule = here.is_object()
            && here.get("rule").is_none()
            && !context.is_empty()
            && context.iter().all(|branch| {
                branch.iter().any(|e| {
                    path_of(e) == path
                        && matches!(e.kind(), ValidationErrorKind::Required { property } if property == "rule")
                })
            });
        if tagged || untagged_rule || here.get("rule").is_some() {
            self.tagged(path, &here, context);
            return;
        }
        if let Some(obj) = here.as_object()
            && last_key(path) == Some("custom")
        {
            let msg = match (obj.contains_key("run"), obj.contains_key("expr")) {
                (true, true) => Some("a custom check takes `run` or `expr`, not both"),
                (false, false) => {
                    Some("a custom check needs `run` (a command) or `expr` (a condition)")
                }
                _ => None,
            };
            if let Some(msg) = msg {
                let span = self.value_span(path);
                self.push(span, msg.into(), "this check", None);
                return;
            }
        }
        let fitting: Vec<&Vec<ValidationError>> = context
            .iter()
            .filter(|branch| {
                !branch.iter().any(|e| {
                    path_of(e) == path && matches!(e.kind(), ValidationErrorKind::Type { .. })
                })
            })
            .collect();
        match fitting.iter().min_by_key(|b| b.len()) {
            Some(best) => {
                let refs: Vec<&ValidationError> = best.iter().collect();
                self.all(&refs);
            }
            None => {
                let mut expected = Vec::new();
                for e in context.iter().flatten() {
                    if let ValidationErrorKind::Type { kind } = e.kind()
                        && path_of(e) == path
                    {
                        match kind {
                            TypeKind::Single(t) => expected.push(type_word(t.as_str())),
                            TypeKind::Multiple(set) => {
                                expected.extend(set.iter().map(|t| type_word(t.as_str())))
                            }
                        }
                    }
                }
                self.type_problem(path, &here, &expected);
            }
        }
    }

    /// An eject rule (or a rule inside `all`): pick the branch whose `rule` matches.
    fn tagged(&mut self, path: &[Step], here: &Value, context: &[Vec<ValidationError<'static>>]) {
        let rule_path = child(path, "rule");
        let names = rule_names(last_key(path) == Some("of"));
        let Some(rule) = here.get("rule") else {
            let span = self.value_span(path);
            let msg = format!("{} needs a `rule`", dotted(path));
            let help = format!("one of: {}", names.join(", "));
            self.push(span, msg, "this rule", Some(help));
            return;
        };
        let matching = context.iter().find(|branch| {
            !branch.iter().any(|e| {
                path_of(e) == rule_path
                    && matches!(
                        e.kind(),
                        ValidationErrorKind::Constant { .. } | ValidationErrorKind::Type { .. }
                    )
            })
        });
        match matching {
            Some(branch) => {
                let refs: Vec<&ValidationError> = branch.iter().collect();
                self.all(&refs);
            }
            None => {
                let span = self.value_span(&rule_path);
                let word = rule.as_str().map_or_else(|| rule.to_string(), str::to_string);
                let help = match did_you_mean(&word, names.iter().map(String::as_str)) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!("rules are: {}", names.join(", ")),
                };
                let inner = if last_key(path) == Some("of") { " inside `all`" } else { "" };
                self.push(
                    span,
                    format!("unknown eject rule {rule}{inner}"),
                    "unknown rule",
                    Some(help),
                );
            }
        }
    }
}

fn first_sentence(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.find(". ") {
        Some(i) => flat[..=i].to_string(),
        None => flat,
    }
}

fn type_word(t: &str) -> &'static str {
    match t {
        "string" => "a string",
        "number" => "a number",
        "integer" => "a whole number",
        "boolean" => "true or false",
        "array" => "an array",
        "object" => "a table",
        "null" => "nothing",
        _ => "a value",
    }
}

/// What a value is, in TOML's words.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing".into(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) if n.is_f64() => format!("the number {n}"),
        Value::Number(n) => format!("the whole number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(o) if o.contains_key(DATETIME) => "a date-time".into(),
        Value::Object(o) if o.contains_key(ODD_FLOAT) => {
            "a float that is not a finite number".into()
        }
        Value::Object(_) => "a table".into(),
    }
}

/// A pattern failure in words: which constraint, and how to meet it.
fn pattern_message(path: &[Step], text: &str, pattern: &str) -> (String, Option<String>) {
    let field = dotted(path);
    if pattern == crate::duration::PATTERN {
        let why = crate::duration::Span::parse(text).err().unwrap_or_default();
        return (format!("{field}: {why}"), None);
    }
    if pattern == raw::SHORT_MOUNT {
        return short_mount_message(text);
    }
    if pattern == raw::ENV_NAME {
        return (
            format!("{field}: {text:?} is not an environment variable name"),
            Some("use letters, digits and _, not starting with a digit".into()),
        );
    }
    match pattern {
        r"^\S+$" => (format!("{field} cannot contain spaces ({text:?})"), None),
        r"^/" => (
            format!("mount target {text:?} must be an absolute path"),
            Some(format!("write \"/{}\"", text.trim_start_matches("./"))),
        ),
        r"^[0-9]+[bkmgBKMG]?$" => (
            format!("{field}: {text:?} is not a memory size"),
            Some("write a number with an optional unit: \"512m\", \"2g\"".into()),
        ),
        r"^https?://\S+$" => {
            (format!("{field} must be an http:// or https:// URL, not {text:?}"), None)
        }
        r"^[a-z0-9][a-z0-9_-]*$" => (
            format!("alias {text:?} must be lowercase letters, digits, - or _"),
            Some("start with a letter or digit, e.g. \"llama-70b\"".into()),
        ),
        r"^[A-Za-z0-9][A-Za-z0-9_-]*$" => (
            format!("name {text:?} may hold only letters, digits, - and _"),
            Some("start with a letter or digit, e.g. \"kurve-2\"".into()),
        ),
        _ => (format!("{field}: {text:?} does not match {pattern}"), None),
    }
}

fn short_mount_message(text: &str) -> (String, Option<String>) {
    let form = "write \"./source:/target\", optionally with \":ro\", \":rw\", \":delegated\", \
                \":cached\" or \":consistent\"";
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, options) = match parts.as_slice() {
        [s, t] => (*s, *t, None),
        [s, t, o] => (*s, *t, Some(*o)),
        _ => {
            return (
                format!("{text:?} is not a mount of the form source:target[:options]"),
                Some(form.into()),
            );
        }
    };
    if !source.is_empty() && !source.starts_with(['.', '/', '~']) {
        return (
            format!(
                "mount source {source:?} is a bare name, which docker would take as a named volume"
            ),
            Some(format!("write \"./{source}\" for a folder beside the manifest")),
        );
    }
    if !target.starts_with('/') {
        let help = format!("write \"{source}:/{}\"", target.trim_start_matches("./"));
        return (format!("mount target {target:?} must be an absolute path"), Some(help));
    }
    if let Some(opts) = options {
        let known = ["ro", "rw", "delegated", "cached", "consistent"];
        if let Some(bad) = opts.split(',').find(|o| !known.contains(o)) {
            let help = did_you_mean(bad, known)
                .map(|k| format!("did you mean `{k}`?"))
                .unwrap_or_else(|| format!("options are {}", known.join(", ")));
            return (format!("unknown mount option {bad:?}"), Some(help));
        }
    }
    (format!("{text:?} is not a mount of the form source:target[:options]"), Some(form.into()))
}

/// The names of the eject rules, from the schema, so messages never drift from it.
fn rule_names(inside_all: bool) -> Vec<String> {
    let def = if inside_all { "Trigger" } else { "EjectRule" };
    SCHEMA["definitions"][def]["oneOf"]
        .as_array()
        .map(|branches| {
            branches
                .iter()
                .filter_map(|b| b["properties"]["rule"]["const"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The schemas that apply at `path`, following `$ref`s, `allOf`s and the branches of
/// `anyOf`/`oneOf` that fit the value found there.
fn schemas_at<'s>(instance: &Value, path: &[Step]) -> Vec<&'s Value> {
    let root: &'s Value = &SCHEMA;
    let mut value = Some(instance);
    let mut current = expand(root, value);
    for step in path {
        value = value.and_then(|v| match step {
            Step::Key(k) => v.get(k),
            Step::Index(i) => v.get(*i),
        });
        let mut next = Vec::new();
        for s in current {
            let sub = match step {
                Step::Key(k) => s
                    .get("properties")
                    .and_then(|p| p.get(k))
                    .or_else(|| s.get("additionalProperties").filter(|a| a.is_object())),
                Step::Index(_) => s.get("items"),
            };
            if let Some(sub) = sub {
                next.extend(expand(sub, value));
            }
        }
        current = next;
    }
    current
}

fn expand<'s>(schema: &'s Value, value: Option<&Value>) -> Vec<&'s Value> {
    let mut out = Vec::new();
    expand_into(schema, value, &mut out, 0);
    out
}

fn expand_into<'s>(schema: &'s Value, value: Option<&Value>, out: &mut Vec<&'s Value>, depth: u8) {
    if depth > 16 {
        return;
    }
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/definitions/");
        if let Some(target) = SCHEMA.get("definitions").and_then(|d| d.get(name)) {
            expand_into(target, value, out, depth + 1);
        }
        return;
    }
    out.push(schema);
    for key in ["allOf", "anyOf", "oneOf"] {
        let Some(branches) = schema.get(key).and_then(Value::as_array) else { continue };
        for b in branches {
            if key == "allOf" || fits(b, value) {
                expand_into(b, value, out, depth + 1);
            }
        }
    }
}

/// Whether a branch could be the one meant for `value`: its `rule` matches, or its type does.
fn fits(branch: &Value, value: Option<&Value>) -> bool {
    let Some(value) = value else { return true };
    let resolved = match branch.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            SCHEMA["definitions"].get(r.trim_start_matches("#/definitions/")).unwrap_or(branch)
        }
        None => branch,
    };
    if let (Some(want), Some(rule)) = (
        resolved["properties"]["rule"]["const"].as_str(),
        value.get("rule").and_then(Value::as_str),
    ) {
        return want == rule;
    }
    match resolved.get("type").and_then(Value::as_str) {
        Some("object") => value.is_object(),
        Some("string") => value.is_string(),
        Some("array") => value.is_array(),
        Some("number") => value.is_number(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    }
}

/// The keys a table at `path` takes.
fn allowed_keys(instance: &Value, path: &[Step]) -> Vec<String> {
    let mut keys: Vec<String> = schemas_at(instance, path)
        .iter()
        .filter_map(|s| s.get("properties").and_then(Value::as_object))
        .flat_map(|p| p.keys().cloned())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn description_of(instance: &Value, path: &[Step]) -> Option<String> {
    schemas_at(instance, path)
        .iter()
        .find_map(|s| s.get("description").and_then(Value::as_str))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(src: &str) -> Vec<Problem> {
        let table: toml::Table = toml::from_str(src).unwrap();
        check(&to_json(&table), &Locator::new(src))
    }

    const BASE: &str = "version = 1\nname = \"x\"\n[budget]\nper_model_usd = 1\n[container]\nimage = \"a\"\n[[models]]\nid = \"a/b\"\n";

    #[test]
    fn the_schema_compiles_as_draft_07() {
        assert!(VALIDATOR.is_some(), "without a validator, structural checks would be skipped");
    }

    #[test]
    fn a_valid_manifest_has_no_structural_problems() {
        assert_eq!(problems(BASE), vec![]);
    }

    #[test]
    fn unknown_keys_point_at_the_key_with_a_suggestion() {
        let src = BASE.replace("per_model_usd = 1", "per_model_usd = 1\nmdoe = \"simple\"");
        let p = problems(&src);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(&src[p[0].span.clone()], "mdoe");
        assert_eq!(p[0].help.as_deref(), Some("did you mean `mode`?"));
    }

    #[test]
    fn every_error_is_reported_not_just_the_first() {
        let src = BASE.replace("version = 1", "version = 2").replace(
            "image = \"a\"",
            "image = \"a\"\ntimeout = \"5 parsecs\"\nnetwork = \"brige\"",
        );
        let p = problems(&src);
        let messages: Vec<&str> = p.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(p.len(), 3, "{messages:?}");
        assert!(messages.iter().any(|m| m.contains("version 2")));
        assert!(messages.iter().any(|m| m.contains("unknown unit \"parsecs\"")));
        assert!(p.iter().any(|p| p.help.as_deref() == Some("did you mean `bridge`?")));
    }

    #[test]
    fn eject_rules_are_explained_by_the_rule_they_name() {
        let src = format!(
            "{BASE}[[eject]]\nrule = \"idel\"\nafter = \"3m\"\n[[eject]]\nrule = \"idle\"\naftr = \"3m\"\n"
        );
        let p = problems(&src);
        assert_eq!(p[0].message, "unknown eject rule \"idel\"");
        assert_eq!(p[0].help.as_deref(), Some("did you mean `idle`?"));
        assert_eq!(p[1].message, "unknown key `aftr` in `eject[1]`");
        assert_eq!(p.len(), 2, "the missing `after` is covered by the near miss: {p:?}");
    }
}
