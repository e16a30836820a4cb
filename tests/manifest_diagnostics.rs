//! Every invalid manifest under `tests/fixtures/manifests/` has its diagnostics pinned as a
//! snapshot: each problem's `file:line:col: message`, its label and help, and the snippet with
//! the span drawn, as `apf validate` shows them. `invalid/` holds files the schema can judge,
//! `semantic/` files only apf's own checks can (missing files, duplicates, expressions), and
//! `syntax/` files that are not TOML at all.

use std::path::{Path, PathBuf};

use apf::manifest::{self, ManifestError};

const FOLDERS: &[&str] = &["invalid", "semantic", "syntax"];

fn fixtures(folder: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/manifests").join(folder);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// The fixture as `apf validate` would report it, read through a path relative to the crate
/// so the snapshot does not depend on where the repository lives.
fn load(file: &Path) -> Result<apf::manifest::Experiment, ManifestError> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let relative = file.strip_prefix(root).unwrap();
    let source = std::fs::read_to_string(file).unwrap();
    manifest::load_str(&root.join(relative), &source).map_err(|mut e| {
        e.path = relative.to_path_buf();
        e
    })
}

fn render(e: &ManifestError) -> String {
    let handler =
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .with_width(100);
    let mut out = String::new();
    for ((problem, short), report) in e.problems.iter().zip(e.short_lines()).zip(e.reports()) {
        out.push_str(&short);
        out.push('\n');
        out.push_str(&format!("  label: {}\n", problem.label));
        if let Some(help) = &problem.help {
            out.push_str(&format!("  help: {help}\n"));
        }
        let mut drawn = String::new();
        handler.render_report(&mut drawn, report.as_ref()).unwrap();
        out.push_str(&drawn);
        out.push('\n');
    }
    out.push_str(&e.to_string());
    out.push('\n');
    out
}

fn escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$#&-~".contains(c);
            special.then_some('\\').into_iter().chain(std::iter::once(c))
        })
        .collect()
}

#[test]
fn every_invalid_fixture_has_its_diagnostics_pinned() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("fixtures/manifests/snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.add_filter(&escape(env!("CARGO_MANIFEST_DIR")), "[REPO]");
    let _guard = settings.bind_to_scope();

    let mut failed = Vec::new();
    let mut count = 0;
    for folder in FOLDERS {
        for file in fixtures(folder) {
            let stem = file.file_stem().unwrap().to_string_lossy().to_string();
            let name = format!("{folder}__{stem}");
            let rendered = match load(&file) {
                Ok(_) => format!("{name} unexpectedly loaded\n"),
                Err(e) => render(&e),
            };
            count += 1;
            let outcome =
                std::panic::catch_unwind(|| insta::assert_snapshot!(name.clone(), rendered));
            if outcome.is_err() {
                failed.push(name);
            }
        }
    }
    assert!(count >= 40, "only {count} invalid fixtures");
    assert!(failed.is_empty(), "snapshots differ for: {failed:?}");
}

#[test]
fn every_invalid_fixture_fails_with_a_located_problem() {
    for folder in FOLDERS {
        for file in fixtures(folder) {
            let e = load(&file).err().unwrap_or_else(|| panic!("{} loaded", file.display()));
            assert!(!e.problems.is_empty(), "{}", file.display());
            let source = std::fs::read_to_string(&file).unwrap();
            for p in &e.problems {
                assert!(p.span.end <= source.len(), "{}: span past the end", file.display());
                assert!(!p.label.is_empty(), "{}: {} has no label", file.display(), p.message);
            }
        }
    }
}

/// HAZARDS H17: an integer where a float is meant loads like the float.
#[test]
fn integers_load_where_floats_are_meant() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exp =
        manifest::load(&root.join("tests/fixtures/manifests/valid/integer_budget.toml")).unwrap();
    assert_eq!(exp.models[0].budget.to_string(), "$2.00");
    assert_eq!(exp.budget.kill_at, rust_decimal::Decimal::ONE);
    assert_eq!(exp.container.timeout, std::time::Duration::from_secs(90));
}
