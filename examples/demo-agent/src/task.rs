//! What the agent is asked to do: `/workspace/TASK.md`, plus an optional JSON prompt on stdin.
//!
//! apf either pipes `{"type":"prompt","message":"..."}` and closes stdin, or gives `/dev/null`.
//! Stdin is read on its own thread and waited for only briefly, so an agent started with a
//! terminal or an open pipe still gets on with the task file.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::out::Out;
use crate::workspace::read_capped;

/// The task used when there is neither a task file nor a prompt.
pub const BUILT_IN_TASK: &str = "Write a four-line poem about spending a small budget wisely \
    to poem.md, check your budget once, then reply with a one-sentence summary.";

/// The task text, combining the file and the prompt when both exist.
pub fn load(task_path: &Path, prompt: Option<String>, out: Out) -> String {
    let file = match read_capped(task_path) {
        Ok(text) if !text.trim().is_empty() => Some(text),
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            out.log(&format!("could not read {}: {e}", task_path.display()));
            None
        }
    };

    match (file, prompt) {
        (Some(file), Some(prompt)) => format!("{}\n\n{prompt}", file.trim_end()),
        (Some(file), None) => file,
        (None, Some(prompt)) => prompt,
        (None, None) => {
            out.log(&format!(
                "no task in {} nor on stdin; using the built-in task",
                task_path.display()
            ));
            BUILT_IN_TASK.to_string()
        }
    }
}

/// The first prompt `input` carries within `timeout`, one object a line or one pretty-printed.
pub fn read_prompt<R: Read + Send + 'static>(input: R, timeout: Duration) -> Option<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(input.take(1024 * 1024));
        let mut seen = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            seen.push_str(&line);
            if let Some(message) = prompt_message(&line).or_else(|| prompt_message(&seen)) {
                let _ = tx.send(Some(message));
                return;
            }
        }
        let _ = tx.send(None);
    });
    rx.recv_timeout(timeout).ok().flatten()
}

fn prompt_message(text: &str) -> Option<String> {
    let value: Value = serde_json::from_str(text.trim()).ok()?;
    if value["type"] != "prompt" {
        return None;
    }
    let message = value["message"].as_str()?;
    (!message.trim().is_empty()).then(|| message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn prompt(input: &str) -> Option<String> {
        read_prompt(Cursor::new(input.to_string().into_bytes()), Duration::from_secs(5))
    }

    #[test]
    fn reads_a_prompt_line() {
        assert_eq!(prompt("{\"type\":\"prompt\",\"message\":\"go\"}\n").as_deref(), Some("go"));
        assert_eq!(
            prompt("{\"type\":\"other\"}\n{\"type\":\"prompt\",\"message\":\"second\"}").as_deref(),
            Some("second")
        );
    }

    #[test]
    fn reads_a_pretty_printed_prompt() {
        let pretty = "{\n  \"type\": \"prompt\",\n  \"message\": \"multi\\nline\"\n}\n";
        assert_eq!(prompt(pretty).as_deref(), Some("multi\nline"));
    }

    #[test]
    fn ignores_empty_and_foreign_input() {
        assert_eq!(prompt(""), None);
        assert_eq!(prompt("hello\n"), None);
        assert_eq!(prompt("{\"type\":\"prompt\",\"message\":\"  \"}"), None);
        assert_eq!(prompt("{\"type\":\"prompt\"}"), None);
    }

    #[test]
    fn does_not_wait_for_an_open_pipe() {
        struct Never;
        impl Read for Never {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                thread::sleep(Duration::from_secs(3600));
                Ok(0)
            }
        }
        let started = std::time::Instant::now();
        assert_eq!(read_prompt(Never, Duration::from_millis(50)), None);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn combines_file_and_fallback() {
        let dir = std::env::temp_dir().join(format!("apf-demo-task-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("TASK.md");
        std::fs::write(&path, "Do the thing.\n").unwrap();
        let quiet = Out { quiet: true };
        assert_eq!(load(&path, None, quiet), "Do the thing.\n");
        assert_eq!(load(&path, Some("And more.".into()), quiet), "Do the thing.\n\nAnd more.");
        assert_eq!(load(&dir.join("absent.md"), Some("Only this.".into()), quiet), "Only this.");
        assert_eq!(load(&dir.join("absent.md"), None, quiet), BUILT_IN_TASK);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
