//! `apf validate`: every problem of a manifest at once, for people or (with `--json`) for
//! editors and CI.

use std::path::Path;

use anyhow::Result;

use super::exit;
use crate::cli;
use crate::manifest::{self, LoadError};
use crate::printer;

pub fn validate(a: &cli::ValidateArgs) -> Result<i32> {
    match manifest::load(&a.file) {
        Ok(exp) => {
            if a.json {
                let v = serde_json::json!({
                    "format_version": 1, "file": a.file.display().to_string(), "valid": true, "problems": []
                });
                printer::data(v.to_string());
            } else {
                printer::info(format!(
                    "{} is valid: {} models",
                    a.file.display(),
                    exp.models.len()
                ));
            }
            Ok(exit::OK)
        }
        Err(LoadError::Invalid(e)) => {
            if a.json {
                printer::data(e.to_json().to_string());
            } else {
                show_manifest_error(&e);
            }
            Ok(exit::ERROR)
        }
        Err(e @ LoadError::Read { .. }) => Err(e.into()),
    }
}

/// Every problem, each with its snippet and labelled span.
pub fn show_manifest_error(e: &manifest::ManifestError) {
    let handler = miette::GraphicalReportHandler::new_themed(if printer::get().color {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    });
    for (report, short) in e.reports().iter().zip(e.short_lines()) {
        let mut text = String::new();
        let _ = handler.render_report(&mut text, report.as_ref());
        printer::error(short);
        printer::info(text.trim_end_matches('\n'));
    }
    printer::error(e.to_string());
}

/// Load a manifest, showing its problems when it has any.
pub fn load(path: &Path) -> Result<Option<manifest::Experiment>> {
    match manifest::load(path) {
        Ok(exp) => Ok(Some(exp)),
        Err(LoadError::Invalid(e)) => {
            show_manifest_error(&e);
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}
