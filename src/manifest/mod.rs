//! The experiment manifest: parsing (`raw`), resolution and cross-field checks (`resolve`),
//! located diagnostics (`diag`), and the JSON Schema generated from the parsing types.

pub mod diag;
pub mod raw;
pub mod resolve;

use std::path::{Path, PathBuf};

pub use diag::{ManifestError, Problem};
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
    let manifest: raw::Manifest =
        toml::from_str(source).map_err(|e| fail(vec![toml_problem(&e, source)]))?;
    let locator = Locator::new(source);
    resolve::resolve(resolve::Input { manifest, path, source, locator: &locator }).map_err(fail)
}

/// Turn a TOML or serde error into a located problem, with a suggestion for misspelt keys and
/// variants.
fn toml_problem(e: &toml::de::Error, source: &str) -> Problem {
    let span = e.span().unwrap_or(0..0);
    let message = e.message().trim().to_string();
    let mut problem =
        Problem::new(first_sentence(&message), span.clone()).label(label_for(&message));
    if let Some(help) = suggestion(&message, &source[span.clone()]) {
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

/// The JSON Schema of the manifest, generated from [`raw::Manifest`].
pub fn schema() -> serde_json::Value {
    let mut settings = schemars::generate::SchemaSettings::draft07();
    settings.transforms.push(Box::new(drop_null_types));
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
