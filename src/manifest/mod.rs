//! The experiment manifest: parsing (`raw`), structural checks against the JSON Schema
//! (`structure`), resolution and semantic checks (`resolve`), located diagnostics (`diag`), the
//! schema itself, and the manifest-less experiment preflight builds from `PREFLIGHT_*`
//! variables (`preflight_env`).
//!
//! Loading reports every problem at once: a TOML syntax error stops there (nothing after it
//! can be trusted), but past that the schema's errors and the semantic checks of every part
//! that did parse are collected together, each pointing at its line.

pub mod diag;
mod preflight_env;
pub mod raw;
pub mod resolve;
mod structure;

use std::path::{Path, PathBuf};

pub use diag::{ManifestError, Problem};
pub use preflight_env::{from_preflight_env, from_preflight_vars};
pub use resolve::{Experiment, ModelSettings};

use diag::{Locator, did_you_mean};

/// Why a manifest could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("could not read the manifest {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] ManifestError),
}

/// Read, parse and resolve the manifest at `path`.
pub fn load(path: &Path) -> Result<Experiment, LoadError> {
    let source = std::fs::read_to_string(path)
        .map_err(|source| LoadError::Read { path: path.to_path_buf(), source })?;
    load_str(path, &source).map_err(LoadError::Invalid)
}

/// Parse and resolve manifest text, as if read from `path`.
pub fn load_str(path: &Path, source: &str) -> Result<Experiment, ManifestError> {
    let fail =
        |problems| ManifestError { path: path.to_path_buf(), source: source.to_string(), problems };
    let table: toml::Table = match toml::from_str(source) {
        Ok(t) => t,
        Err(e) => return Err(fail(vec![toml_problem(&e, source)])),
    };
    let locator = Locator::new(source);
    let mut problems = structure::check(&structure::to_json(&table), &locator);

    let sections = resolve::Sections::salvage(&table);
    let input = resolve::Input { sections, path, source, locator: &locator };
    let (experiment, semantic) = resolve::resolve(input);
    merge(&mut problems, semantic);

    if problems.is_empty() {
        if let Some(exp) = experiment {
            return Ok(exp);
        }
        // The schema passed what serde refused; serde's own error still says where.
        problems.push(match toml::from_str::<raw::Manifest>(source) {
            Err(e) => toml_problem(&e, source),
            Ok(_) => Problem::new("the manifest could not be resolved", 0..0).label("here"),
        });
    }
    problems.sort_by_key(|p| (p.span.start, p.span.end));
    Err(fail(problems))
}

/// Add the semantic problems. Where one points at exactly what a structural problem points at,
/// it is the more specific of the two and replaces it.
fn merge(problems: &mut Vec<Problem>, semantic: Vec<Problem>) {
    for p in semantic {
        problems.retain(|s| s.span != p.span);
        if !problems.contains(&p) {
            problems.push(p);
        }
    }
}

/// Turn a TOML or serde error into a located problem, with a suggestion for misspelt keys and
/// variants.
fn toml_problem(e: &toml::de::Error, source: &str) -> Problem {
    let span = e.span().unwrap_or(0..0);
    let message = e.message().trim().to_string();
    let mut problem =
        Problem::new(first_sentence(&message), span.clone()).label(label_for(&message));
    let named = message.starts_with("unknown field") || message.starts_with("unknown variant");
    let help = if named {
        suggestion(&message, source.get(span).unwrap_or_default())
    } else if message.starts_with("duplicate key") {
        Some("a key, or a [table] header, may appear only once".into())
    } else {
        None
    };
    if let Some(help) = help {
        problem = problem.help(help);
    }
    problem
}

fn first_sentence(message: &str) -> String {
    message.lines().next().unwrap_or(message).to_string()
}

fn label_for(message: &str) -> &'static str {
    if message.starts_with("unknown field") {
        "unknown key"
    } else if message.starts_with("missing field") {
        "in this table"
    } else if message.starts_with("unknown variant") {
        "unknown value"
    } else {
        "here"
    }
}

/// serde says "unknown field `x`, expected one of `a`, `b`": offer the nearest.
fn suggestion(message: &str, spanned: &str) -> Option<String> {
    let expected =
        message.split("expected one of ").nth(1).or_else(|| message.split("expected ").nth(1))?;
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let word = message.split('`').nth(1).unwrap_or(spanned.trim_matches('"'));
    match did_you_mean(word, candidates.iter().copied()) {
        Some(best) => Some(format!("did you mean `{best}`?")),
        None if !candidates.is_empty() => {
            Some(format!("expected one of {}", candidates.join(", ")))
        }
        None => None,
    }
}

/// The JSON Schema of the manifest (draft-07), generated from [`raw::Manifest`].
pub fn schema() -> serde_json::Value {
    let mut settings = schemars::generate::SchemaSettings::draft07();
    settings.transforms.push(Box::new(drop_null_types));
    settings.transforms.push(Box::new(enums_from_consts));
    let generator = settings.into_generator();
    let schema = generator.into_root_schema_for::<raw::Manifest>();
    schema.to_value()
}

/// Optional fields are optional by being absent: TOML has no null, so the schema must not
/// offer one to editors.
fn drop_null_types(schema: &mut schemars::Schema) {
    if let Some(obj) = schema.as_object_mut() {
        if let Some(serde_json::Value::Array(types)) = obj.get_mut("type") {
            types.retain(|t| t != "null");
            if types.len() == 1 {
                let only = types[0].clone();
                obj.insert("type".into(), only);
            }
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(serde_json::Value::Array(alts)) = obj.get_mut(key) {
                alts.retain(|a| a.get("type").and_then(|t| t.as_str()) != Some("null"));
            }
        }
    }
    schemars::transform::transform_subschemas(&mut drop_null_types, schema);
}

/// A closed set of strings becomes a plain `enum`, which every editor completes, with each
/// value's documentation kept where taplo shows it on hover (`x-taplo.docs.enumValues`).
fn enums_from_consts(schema: &mut schemars::Schema) {
    if let Some(obj) = schema.as_object_mut()
        && let Some(serde_json::Value::Array(alts)) = obj.get("oneOf")
        && !alts.is_empty()
        && alts.iter().all(|a| a.get("const").is_some_and(serde_json::Value::is_string))
    {
        let values: Vec<serde_json::Value> = alts.iter().map(|a| a["const"].clone()).collect();
        let docs: Vec<serde_json::Value> = alts
            .iter()
            .map(|a| a.get("description").cloned().unwrap_or(serde_json::Value::Null))
            .collect();
        obj.remove("oneOf");
        obj.insert("type".into(), "string".into());
        obj.insert("enum".into(), values.into());
        obj.insert("x-taplo".into(), serde_json::json!({ "docs": { "enumValues": docs } }));
    }
    schemars::transform::transform_subschemas(&mut enums_from_consts, schema);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every property of every object in the schema, with its path.
    fn properties(v: &serde_json::Value, at: &str, out: &mut Vec<(String, serde_json::Value)>) {
        match v {
            serde_json::Value::Object(o) => {
                if let Some(serde_json::Value::Object(props)) = o.get("properties") {
                    for (k, p) in props {
                        out.push((format!("{at}.{k}"), p.clone()));
                    }
                }
                for (k, child) in o {
                    properties(child, &format!("{at}/{k}"), out);
                }
            }
            serde_json::Value::Array(xs) => {
                for (i, x) in xs.iter().enumerate() {
                    properties(x, &format!("{at}[{i}]"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn every_field_of_the_schema_is_described() {
        let schema = schema();
        let mut props = Vec::new();
        properties(&schema, "", &mut props);
        assert!(props.len() > 60, "{}", props.len());
        for (path, p) in props {
            // The tag of an eject rule is described by the rule's own description.
            if path.ends_with(".rule") {
                continue;
            }
            assert!(p.get("description").is_some(), "{path} has no description: {p}");
        }
    }

    #[test]
    fn the_schema_offers_no_null_and_uses_enums_for_closed_sets() {
        let text = schema().to_string();
        assert!(!text.contains("\"null\""), "a null type is offered");
        let schema = schema();
        let mode = &schema["definitions"]["BudgetMode"];
        assert_eq!(mode["enum"], serde_json::json!(["simple", "detailed"]));
        assert_eq!(mode["x-taplo"]["docs"]["enumValues"].as_array().map(Vec::len), Some(2));
        assert!(schema["definitions"]["CheckName"]["enum"].as_array().is_some());
        assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    }
}
