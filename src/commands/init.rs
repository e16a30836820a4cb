//! `apf init`: a commented starter manifest that validates, with the schema beside it so an
//! editor completes and checks it with no network.

use anyhow::{Context, Result, bail};

use super::exit;
use crate::cli::InitArgs;
use crate::printer;

pub const STARTER: &str = include_str!("starter.toml");

pub fn init(a: &InitArgs) -> Result<i32> {
    if a.file.exists() && !a.force {
        bail!("{} already exists; pass --force to overwrite it", a.file.display());
    }
    let dir =
        a.file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    let schema = dir.join("experiment.schema.json");
    std::fs::write(&schema, super::schema_text() + "\n")
        .with_context(|| format!("could not write {}", schema.display()))?;
    let task = dir.join("TASK.md");
    if !task.exists() {
        std::fs::write(&task, "Write a haiku about budgets to /workspace/output/haiku.md.\n")
            .with_context(|| format!("could not write {}", task.display()))?;
    }
    std::fs::write(&a.file, STARTER)
        .with_context(|| format!("could not write {}", a.file.display()))?;
    printer::info(format!(
        "wrote {}, {} and {}\nnext: apf validate {0}; apf plan --sim {0}",
        a.file.display(),
        schema.display(),
        task.display()
    ));
    Ok(exit::OK)
}
