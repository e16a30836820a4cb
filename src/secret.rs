//! Secrets in a type that cannot be printed by accident. `Display` and `Debug` mask the value;
//! the one way to read it is [`Secret::expose`], which is greppable.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A short, safe hint of which key this is: `sk-or-v1-0e6…` never shows more than the
    /// prefix and three characters.
    pub fn hint(&self) -> String {
        let prefix_len = self.0.find("-v1-").map(|p| p + 4).unwrap_or(0);
        let visible: String = self.0.chars().take(prefix_len + 3).collect();
        format!("{visible}…")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Replace anything that looks like an OpenRouter key in `text`, for output that may quote
/// what a container or a server printed.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("sk-or-") {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(tail.len());
        out.push_str("sk-or-***");
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("sk-or-v1-abcdef0123456789");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
        assert_eq!(s.hint(), "sk-or-v1-abc…");
    }

    #[test]
    fn redact_masks_every_key_in_text() {
        let text = "key=sk-or-v1-abc123 and \"sk-or-v1-zzz\".";
        assert_eq!(redact(text), "key=sk-or-*** and \"sk-or-***\".");
        assert_eq!(redact("nothing here"), "nothing here");
    }
}
