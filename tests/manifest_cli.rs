//! `apf validate` and `apf init` as a user meets them: exit codes, the `--json` shape, mounts
//! resolved against the manifest's folder even from elsewhere and through a space in the path
//! (HAZARDS H9, H10) with nothing created on the host, and a host OpenRouter key refused
//! without being echoed (H6, H13).

use std::path::Path;
use std::process::{Command, Output};

fn apf(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_apf"))
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .env_remove("OPENROUTER_API_KEY")
        .env_remove("OR_ADMIN_KEY")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

const BASE: &str = r#"#:schema ./experiment.schema.json
version = 1
name = "cli"

[budget]
per_model_usd = 0.25

[container]
image = "agent:latest"

[[models]]
id = "openai/gpt-4o-mini"
alias = "mini"
"#;

fn folder_with_space() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("apf manifest ").tempdir().unwrap()
}

#[test]
fn valid_is_exit_0_and_invalid_is_exit_1() {
    let dir = folder_with_space();
    std::fs::write(dir.path().join("ok.toml"), BASE).unwrap();
    std::fs::write(dir.path().join("bad.toml"), BASE.replace("per_model_usd", "per_model_ud"))
        .unwrap();
    let ok = apf(&["validate", "ok.toml"], dir.path());
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    assert!(text(&ok).contains("ok.toml is valid: 1 model"), "{}", text(&ok));
    let bad = apf(&["validate", "bad.toml"], dir.path());
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    let out = text(&bad);
    assert!(out.contains("bad.toml:6:1: unknown key `per_model_ud` in `budget`"), "{out}");
    assert!(out.contains("did you mean `per_model_usd`?"), "{out}");
    assert!(out.contains("6 │ per_model_ud = 0.25"), "the snippet is shown: {out}");
}

#[test]
fn json_output_is_versioned_with_ranges() {
    let dir = folder_with_space();
    let bad = BASE
        .replace("[budget]", "[budget]\nmode = \"detaild\"")
        .replace("version = 1", "version = 2");
    std::fs::write(dir.path().join("bad.toml"), bad).unwrap();
    let out = apf(&["validate", "--json", "bad.toml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["valid"], false);
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{v}");
    assert_eq!(problems[0]["range"]["start"], serde_json::json!({ "line": 2, "column": 11 }));
    assert_eq!(problems[0]["range"]["end"], serde_json::json!({ "line": 2, "column": 12 }));
    assert_eq!(problems[1]["help"], "did you mean `detailed`?");
    assert_eq!(problems[1]["severity"], "error");
    for p in problems {
        assert!(p["range"]["offset"].is_u64() && p["range"]["length"].is_u64(), "{p}");
    }

    std::fs::write(dir.path().join("ok.toml"), BASE).unwrap();
    let ok = apf(&["validate", "--json", "ok.toml"], dir.path());
    assert_eq!(ok.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "format_version": 1, "file": "ok.toml", "valid": true, "problems": []
        })
    );

    let missing = apf(&["validate", "--json", "nope.toml"], dir.path());
    assert_eq!(missing.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&missing.stdout).unwrap();
    assert_eq!(v["valid"], false);
}

/// H9 and H10: the manifest lives in a folder with a space and is validated from elsewhere.
/// A relative source resolves against the manifest's folder; a missing one is reported with
/// its absolute path, and is not created.
#[test]
fn mount_sources_resolve_against_the_manifest_and_are_never_created() {
    let dir = folder_with_space();
    let project = dir.path().join("my project");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(project.join("TASK.md"), "task\n").unwrap();
    let manifest = BASE.replace(
        "image = \"agent:latest\"",
        "image = \"agent:latest\"\nmounts = [\n  { source = \"TASK.md\", target = \"/workspace/TASK.md\" },\n  \"./cache dir:/workspace/cache\",\n]",
    );
    std::fs::write(project.join("experiment.toml"), &manifest).unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();

    let out = apf(&["validate", "../my project/experiment.toml"], &elsewhere);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let missing = project.join("cache dir");
    let shown = format!("mount source {} does not exist", missing.display());
    assert!(text(&out).contains(&shown), "{}", text(&out));
    assert!(!text(&out).contains("TASK.md does not exist"), "TASK.md was found: {}", text(&out));
    assert!(!missing.exists(), "validate created the missing source");
    let created: Vec<_> = std::fs::read_dir(&elsewhere).unwrap().collect();
    assert!(created.is_empty(), "validate wrote into the working folder");

    std::fs::create_dir(&missing).unwrap();
    let out = apf(&["validate", "../my project/experiment.toml"], &elsewhere);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// H6 and H13: a host variable that holds an OpenRouter key cannot be passed to an agent, and
/// the key itself never shows in the error.
#[test]
fn a_host_openrouter_key_is_refused_without_being_shown() {
    let dir = folder_with_space();
    let manifest = BASE.replace(
        "image = \"agent:latest\"",
        "image = \"agent:latest\"\nenv = { TOKEN = { from_env = \"LAB_TOKEN\" } }",
    );
    std::fs::write(dir.path().join("experiment.toml"), manifest).unwrap();
    let secret = "sk-or-v1-0000000000000000000000000000000000000000";
    let out = Command::new(env!("CARGO_BIN_EXE_apf"))
        .args(["validate", "experiment.toml"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .env("LAB_TOKEN", secret)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains("TOKEN would pass the host's OpenRouter key in $LAB_TOKEN"), "{shown}");
    assert!(!shown.contains(secret), "the key was echoed: {shown}");

    let out = apf(&["validate", "experiment.toml"], dir.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "without a key in it the variable may pass: {}",
        text(&out)
    );
}

#[test]
fn init_writes_a_starter_that_validates_with_its_schema_beside_it() {
    let dir = folder_with_space();
    let out = apf(&["init", "lab/experiment.toml"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let lab = dir.path().join("lab");
    let starter = std::fs::read_to_string(lab.join("experiment.toml")).unwrap();
    assert!(starter.starts_with("#:schema ./experiment.schema.json\n"));
    let schema = std::fs::read_to_string(lab.join("experiment.schema.json")).unwrap();
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/experiment.schema.json"),
    )
    .unwrap();
    assert!(schema == committed, "init writes the committed schema");
    let out = apf(&["validate", "lab/experiment.toml"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let again = apf(&["init", "lab/experiment.toml"], dir.path());
    assert_eq!(again.status.code(), Some(1), "init does not overwrite without --force");
}
