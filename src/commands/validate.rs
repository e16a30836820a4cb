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
                    "format_version": 1,
                    "file": a.file.display().to_string(),
                    "valid": true,
                    "problems": [],
                });
                printer::data(v.to_string());
            } else {
                let n = exp.models.len();
                let plural = if n == 1 { "" } else { "s" };
                printer::info(format!("{} is valid: {n} model{plural}", a.file.display()));
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
        Err(e @ LoadError::Read { .. }) if a.json => {
            // Editors parse stdout: an unreadable file is a problem in the same shape.
            let v = serde_json::json!({
                "format_version": 1,
                "file": a.file.display().to_string(),
                "valid": false,
                "problems": [{
                    "severity": "error",
                    "message": format!("{e}: {}", std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default()),
                    "label": "",
                    "help": null,
                    "range": {
                        "start": { "line": 1, "column": 1 },
                        "end": { "line": 1, "column": 1 },
                        "offset": 0,
                        "length": 0,
                    },
                }],
            });
            printer::data(v.to_string());
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
