//! Everything the agent prints: one line at a time on stdout, events as one-line JSON objects
//! with a `type`, logs as plain text.
//!
//! apf tells the two apart by whether a line is a JSON object, so a log line must never start
//! with `{` or span lines, whatever text the model or a server put in it. Lines are flushed as
//! they are written so apf sees each one while the agent runs, and a closed stdout is ignored:
//! the agent's files are its real output.

use std::io::Write;

use serde_json::Value;

/// Where lines go. `quiet` is for `silent-spend`, which must print nothing at all.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub quiet: bool,
}

impl Out {
    pub fn event(&self, event: &Value) {
        self.line(&event.to_string());
    }

    pub fn log(&self, text: &str) {
        self.line(&log_line(text));
    }

    fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{text}").and_then(|()| stdout.flush());
    }
}

/// `text` made safe as one log line: control characters become spaces, and a leading `{` or `[`
/// is quoted so the line cannot pass for an event.
pub fn log_line(text: &str) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.trim_start().starts_with(['{', '[']) { format!("> {flat}") } else { flat }
}

/// Text from outside (a server's error message, a model's note) cut to `max` characters and
/// with `secret` removed, for use inside an event or a log line.
pub fn untrusted(text: &str, secret: &str, max: usize) -> String {
    let cleaned = if secret.is_empty() { text.to_string() } else { text.replace(secret, "[key]") };
    let mut short: String = cleaned.chars().take(max).collect();
    if cleaned.chars().count() > max {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_cannot_pass_for_events() {
        assert_eq!(log_line("turn 3: calling model"), "turn 3: calling model");
        assert_eq!(log_line("a\nb\r\tc"), "a b  c");
        assert_eq!(log_line("{\"type\":\"done\"}"), "> {\"type\":\"done\"}");
        assert_eq!(log_line("\n [1]"), ">   [1]");
    }

    #[test]
    fn untrusted_text_is_cut_and_scrubbed() {
        assert_eq!(
            untrusted("bad key sk-or-v1-abc here", "sk-or-v1-abc", 100),
            "bad key [key] here"
        );
        assert_eq!(untrusted("abcdef", "", 3), "abc…");
        assert_eq!(untrusted("abc", "", 3), "abc");
    }
}
