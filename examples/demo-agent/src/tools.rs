//! The tools the model may call, and running them for real against the workspace.
//!
//! `write_file` writes under the output folder only, `read_budget` returns apf's budget file and
//! `note` logs a line. Each call's result goes back to the model as text, refusals included, so a
//! bad call costs one turn rather than ending the run.

use serde_json::{Value, json};

use crate::chat::ToolCall;
use crate::out::{Out, untrusted};
use crate::workspace::Workspace;

const NOTE_MAX: usize = 500;

/// The `tools` array of the request.
pub fn definitions() -> Value {
    json!([
        {"type": "function", "function": {
            "name": "write_file",
            "description": "Write a text file under /workspace/output (a relative path).",
            "parameters": {"type": "object", "properties": {
                "path": {"type": "string", "description": "relative path, e.g. notes/plan.md"},
                "content": {"type": "string"}
            }, "required": ["path", "content"]}
        }},
        {"type": "function", "function": {
            "name": "read_budget",
            "description": "Read the budget apf reports: money left, and recent costs.",
            "parameters": {"type": "object", "properties": {}}
        }},
        {"type": "function", "function": {
            "name": "note",
            "description": "Record a one-line progress note in the run's log.",
            "parameters": {"type": "object", "properties": {
                "text": {"type": "string"}
            }, "required": ["text"]}
        }}
    ])
}

pub struct Toolbox<'a> {
    pub workspace: &'a Workspace,
    pub out: Out,
    /// Files written so far, relative to the output folder, for snapshots and the result.
    pub written: Vec<String>,
}

impl Toolbox<'_> {
    /// Run one call and return the text the model gets back.
    pub fn run(&mut self, call: &ToolCall) -> String {
        let args = match &call.arguments {
            Ok(args) => args,
            Err(why) => return format!("error: the arguments are not valid JSON ({why})"),
        };
        match call.name.as_str() {
            "write_file" => self.write_file(args),
            "read_budget" => self.workspace.budget().unwrap_or_else(|| {
                "No budget file yet: apf writes /workspace/output/budget.txt.".to_string()
            }),
            "note" => {
                let text = args["text"].as_str().unwrap_or("");
                self.out.log(&format!("note: {}", untrusted(text, "", NOTE_MAX)));
                "noted".to_string()
            }
            other => format!(
                "error: no tool named `{}`; use write_file, read_budget or note",
                untrusted(other, "", 60)
            ),
        }
    }

    fn write_file(&mut self, args: &Value) -> String {
        let (Some(path), Some(content)) = (args["path"].as_str(), args["content"].as_str()) else {
            return "error: write_file needs string arguments `path` and `content`".to_string();
        };
        let shown = untrusted(path, "", 120);
        match self.workspace.write_file(path, content) {
            Ok(written) => {
                let relative = written
                    .strip_prefix(self.workspace.output())
                    .map_or_else(|_| shown.clone(), |p| p.display().to_string());
                self.out.log(&format!("write_file: {relative} ({} bytes)", content.len()));
                if !self.written.contains(&relative) {
                    self.written.push(relative.clone());
                }
                format!("wrote {} bytes to /workspace/output/{relative}", content.len())
            }
            Err(why) => {
                self.out.log(&format!("write_file {shown}: {why}"));
                format!("error: {why}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn call(name: &str, arguments: Result<Value, String>) -> ToolCall {
        ToolCall { id: "c".into(), name: name.into(), arguments, raw: json!({}) }
    }

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("apf-demo-tools-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn tools_run_for_real() {
        let dir = scratch("run");
        let ws = Workspace::new(dir.clone());
        let mut tools = Toolbox { workspace: &ws, out: Out { quiet: true }, written: Vec::new() };

        let wrote = tools.run(&call("write_file", Ok(json!({"path": "a/b.md", "content": "hey"}))));
        assert_eq!(wrote, "wrote 3 bytes to /workspace/output/a/b.md");
        assert_eq!(std::fs::read_to_string(dir.join("a/b.md")).unwrap(), "hey");
        assert_eq!(tools.written, vec!["a/b.md".to_string()]);

        let refused = tools.run(&call("write_file", Ok(json!({"path": "../x", "content": "no"}))));
        assert!(refused.starts_with("error: refused"), "{refused}");
        assert!(!dir.parent().unwrap().join("x").exists());

        assert!(tools.run(&call("read_budget", Ok(json!({})))).starts_with("No budget file"));
        std::fs::write(dir.join("budget.txt"), "Budget: $0.10 remaining of $0.15\n").unwrap();
        assert_eq!(
            tools.run(&call("read_budget", Ok(json!({})))),
            "Budget: $0.10 remaining of $0.15\n"
        );

        assert_eq!(tools.run(&call("note", Ok(json!({"text": "half way"})))), "noted");
        assert!(tools.run(&call("rm_rf", Ok(json!({})))).starts_with("error: no tool"));
        assert!(tools.run(&call("write_file", Ok(json!({"path": 1})))).starts_with("error:"));
        assert!(tools.run(&call("note", Err("bad JSON".into()))).contains("not valid JSON"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn definitions_name_the_three_tools() {
        let defs = definitions();
        let names: Vec<&str> = defs
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["function"]["name"].as_str())
            .collect();
        assert_eq!(names, ["write_file", "read_budget", "note"]);
    }
}
