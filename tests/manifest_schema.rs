//! The schema and the parser agree (HAZARDS H16), judged by an independent validator: the
//! committed `schemas/experiment.schema.json`, read by the `jsonschema` crate directly, against
//! each file converted from TOML here. Every valid fixture and every example passes both apf
//! and the schema; every `invalid/` fixture fails both; every `semantic/` fixture passes the
//! schema (it cannot know about files on disk, duplicates or expressions) and fails apf, which
//! keeps that folder honest. Examples carry a `#:schema` line that leads to the schema (H14).

use std::path::{Path, PathBuf};

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    files
}

fn fixtures(folder: &str) -> Vec<PathBuf> {
    files(&root().join("tests/fixtures/manifests").join(folder))
}

fn examples() -> Vec<PathBuf> {
    files(&root().join("examples/experiments"))
}

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join("schemas/experiment.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    assert!(jsonschema::draft7::meta::is_valid(&schema), "the schema is not valid draft-07");
    jsonschema::draft7::new(&schema).unwrap()
}

/// TOML to JSON the plain way, as taplo does; dates become strings.
fn to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(xs) => Value::Array(xs.iter().map(to_json).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}

fn schema_errors(v: &jsonschema::Validator, file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let table: toml::Value = toml::from_str(&text).unwrap();
    let json = to_json(&table);
    v.iter_errors(&json).map(|e| format!("{}: {e}", e.instance_path())).collect()
}

#[test]
fn valid_fixtures_and_examples_pass_both_the_schema_and_apf() {
    let v = validator();
    for file in fixtures("valid").into_iter().chain(examples()) {
        let errors = schema_errors(&v, &file);
        assert!(errors.is_empty(), "the schema refuses {}: {errors:?}", file.display());
        if let Err(e) = apf::manifest::load(&file) {
            panic!("apf refuses {}: {e:?}", file.display());
        }
    }
}

#[test]
fn invalid_fixtures_fail_both_the_schema_and_apf() {
    let v = validator();
    for file in fixtures("invalid") {
        let errors = schema_errors(&v, &file);
        assert!(
            !errors.is_empty(),
            "the schema accepts {}; if only apf can judge it, move it to semantic/",
            file.display()
        );
        assert!(apf::manifest::load(&file).is_err(), "apf accepts {}", file.display());
    }
}

#[test]
fn semantic_fixtures_pass_the_schema_and_fail_apf() {
    let v = validator();
    for file in fixtures("semantic") {
        let errors = schema_errors(&v, &file);
        assert!(
            errors.is_empty(),
            "the schema now judges {} ({errors:?}); move it to invalid/",
            file.display()
        );
        assert!(apf::manifest::load(&file).is_err(), "apf accepts {}", file.display());
    }
}

#[test]
fn syntax_fixtures_are_not_toml() {
    for file in fixtures("syntax") {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(toml::from_str::<toml::Table>(&text).is_err(), "{} parses", file.display());
        assert!(apf::manifest::load(&file).is_err(), "apf accepts {}", file.display());
    }
}

/// HAZARDS H14: every example names the schema on its first line, and the path resolves.
#[test]
fn examples_start_with_a_schema_directive_that_finds_the_schema() {
    let committed = std::fs::read_to_string(root().join("schemas/experiment.schema.json")).unwrap();
    for file in examples() {
        let text = std::fs::read_to_string(&file).unwrap();
        let first = text.lines().next().unwrap_or_default();
        let target = first
            .strip_prefix("#:schema ")
            .unwrap_or_else(|| panic!("{} does not start with #:schema", file.display()));
        let path = file.parent().unwrap().join(target.trim());
        let found = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {} ({e})", file.display(), path.display()));
        assert_eq!(found, committed, "{} points at another schema", file.display());
    }
}

/// `apf init` writes a starter that validates, with the schema beside it.
#[test]
fn the_starter_manifest_names_the_schema_and_passes_it() {
    let starter = std::fs::read_to_string(root().join("src/commands/starter.toml")).unwrap();
    assert!(starter.starts_with("#:schema ./experiment.schema.json\n"));
    let table: toml::Value = toml::from_str(&starter).unwrap();
    let v = validator();
    let json = to_json(&table);
    let errors: Vec<String> = v.iter_errors(&json).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
}

/// Editors show defaults and examples; the closed sets are enums.
#[test]
fn the_schema_documents_defaults_examples_and_closed_sets() {
    let text = std::fs::read_to_string(root().join("schemas/experiment.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    let defs = &schema["definitions"];
    assert_eq!(defs["Budget"]["properties"]["inject_every"]["default"], "30s");
    assert_eq!(defs["Container"]["properties"]["timeout"]["default"], "30m");
    assert!(defs["Model"]["properties"]["id"]["examples"].is_array());
    for closed in ["BudgetMode", "CheckName", "Network"] {
        assert!(defs[closed]["enum"].is_array(), "{closed} is not an enum");
    }
    assert!(!text.contains("\"null\""), "the schema offers null");
}

/// taplo, the validator editors run, where it is installed (CI installs it): it agrees with
/// the fixtures, and it finds the schema from an example's `#:schema` line on its own.
#[test]
// Saying that the check was skipped is the point of the print.
#[allow(clippy::print_stderr)]
fn taplo_agrees_where_it_is_installed() {
    let Some(taplo) = find_taplo() else {
        eprintln!("taplo is not installed; skipping (CI runs it)");
        return;
    };
    let schema = format!("file://{}", root().join("schemas/experiment.schema.json").display());
    let check = |file: &Path, with_schema: bool| {
        let mut cmd = std::process::Command::new(&taplo);
        cmd.arg("check").env("RUST_LOG", "error");
        if with_schema {
            cmd.args(["--schema", &schema]);
        }
        cmd.arg(file).output().unwrap().status.success()
    };
    for file in fixtures("valid").into_iter().chain(fixtures("semantic")) {
        assert!(check(&file, true), "taplo refuses {}", file.display());
    }
    for file in fixtures("invalid") {
        assert!(!check(&file, true), "taplo accepts {}", file.display());
    }
    for file in examples() {
        assert!(check(&file, false), "taplo refuses {} by its directive", file.display());
    }

    // The directive alone leads taplo to the schema: a broken copy beside it fails.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(root().join("schemas/experiment.schema.json"), dir.path().join("s.json"))
        .unwrap();
    let text = std::fs::read_to_string(&examples()[0]).unwrap();
    let body = text.split_once('\n').map_or("", |(_, rest)| rest);
    let broken = format!("#:schema ./s.json\n{}", body.replacen("version = 1", "version = 2", 1));
    std::fs::write(dir.path().join("broken.toml"), broken).unwrap();
    assert!(!check(&dir.path().join("broken.toml"), false), "taplo ignored the directive");
}

fn find_taplo() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join("taplo")).find(|p| p.is_file())
}
