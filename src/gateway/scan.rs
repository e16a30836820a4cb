//! Reading what comes back from upstream without holding it up: a line splitter for server-sent
//! events that hands on every complete line at once, a scanner that picks the generation id and
//! the final usage chunk out of the lines as they pass, the same for a whole JSON body (and for
//! the half of one a dropped connection leaves), and a scrubber that would mask the real key if
//! upstream ever echoed it.

use axum::body::Bytes;
use serde_json::Value;

use crate::openrouter::wire;

use super::ledger::Usage;

/// Splits a byte stream into runs of complete lines. A chunk that ends a line goes out whole
/// and uncopied; only a trailing partial line waits for the next chunk.
#[derive(Debug, Default)]
pub(crate) struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// The complete lines now available, if any.
    pub fn push(&mut self, chunk: Bytes) -> Option<Bytes> {
        let Some(last_newline) = chunk.iter().rposition(|&b| b == b'\n') else {
            self.partial.extend_from_slice(&chunk);
            return None;
        };
        if self.partial.is_empty() && last_newline + 1 == chunk.len() {
            return Some(chunk);
        }
        let mut ready = std::mem::take(&mut self.partial);
        ready.extend_from_slice(&chunk[..=last_newline]);
        self.partial.extend_from_slice(&chunk[last_newline + 1..]);
        Some(Bytes::from(ready))
    }

    /// Whatever is left when the stream ends.
    pub fn finish(&mut self) -> Option<Bytes> {
        (!self.partial.is_empty()).then(|| Bytes::from(std::mem::take(&mut self.partial)))
    }
}

/// What the passing response has shown so far.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seen {
    pub id: Option<String>,
    pub model: Option<String>,
    pub usage: Option<wire::Usage>,
    pub done: bool,
}

impl Seen {
    /// Look at a run of complete SSE lines.
    pub fn sse(&mut self, lines: &[u8]) {
        for line in lines.split(|&b| b == b'\n') {
            let Some(data) = line.strip_prefix(b"data:") else { continue };
            let data = data.trim_ascii();
            if data == b"[DONE]" {
                self.done = true;
                continue;
            }
            // Parsing every delta would cost time on the hot path; only the first chunk (for
            // the id) and the usage chunk need it.
            if self.id.is_some() && !contains(data, b"\"usage\"") {
                continue;
            }
            if let Ok(v) = serde_json::from_slice::<Value>(data) {
                self.object(&v);
            }
        }
    }

    /// Look at a whole (or cut) JSON response body.
    pub fn body(&mut self, body: &[u8]) {
        match serde_json::from_slice::<Value>(body) {
            Ok(v) => self.object(&v),
            Err(_) => self.id = self.id.take().or_else(|| leading_id(body)),
        }
    }

    fn object(&mut self, v: &Value) {
        if self.id.is_none() {
            self.id = v.get("id").and_then(Value::as_str).map(str::to_string);
        }
        if self.model.is_none() {
            self.model = v.get("model").and_then(Value::as_str).map(str::to_string);
        }
        if let Some(u) = v.get("usage").filter(|u| !u.is_null())
            && let Ok(usage) = serde_json::from_value::<wire::Usage>(u.clone())
        {
            self.usage = Some(usage);
        }
    }
}

/// The token counts of a usage object.
pub(crate) fn counts(u: &wire::Usage) -> Usage {
    let details = u.prompt_tokens_details.as_ref();
    Usage {
        prompt: u.prompt_tokens,
        completion: u.completion_tokens,
        cached: details.and_then(|d| d.cached_tokens).unwrap_or(0),
        cache_write: details.and_then(|d| d.cache_write_tokens).unwrap_or(0),
    }
}

/// The `"id"` of a JSON body cut short, when it came first (as OpenRouter sends it).
fn leading_id(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok().or_else(|| {
        let valid = std::str::from_utf8(body).err()?.valid_up_to();
        std::str::from_utf8(&body[..valid]).ok()
    })?;
    let start = text.find("\"id\"")? + 4;
    let rest = text[start..].trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    let end = rest.find('"')?;
    let id = &rest[..end];
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .then(|| id.to_string())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    (0..=haystack.len() - needle.len())
        .find(|&i| haystack[i] == first && &haystack[i..i + needle.len()] == needle)
}

/// `bytes` with every occurrence of `secret` masked. Upstream has no reason to echo the key;
/// this makes sure a client of the gateway could not see it if it did.
pub(crate) fn scrub(bytes: Bytes, secret: &str) -> Bytes {
    let needle = secret.as_bytes();
    let Some(mut at) = find(&bytes, needle) else { return bytes };
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest: &[u8] = &bytes;
    loop {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(b"***");
        rest = &rest[at + needle.len()..];
        match find(rest, needle) {
            Some(next) => at = next,
            None => break,
        }
    }
    out.extend_from_slice(rest);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_lines_pass_at_once_and_partial_ones_wait() {
        let mut lines = Lines::default();
        let whole = Bytes::from_static(b": OPENROUTER PROCESSING\n\n");
        assert_eq!(lines.push(whole.clone()), Some(whole));
        assert_eq!(lines.push(Bytes::from_static(b"data: {\"a\"")), None);
        assert_eq!(
            lines.push(Bytes::from_static(b":1}\n\ndata: [DO")),
            Some(Bytes::from_static(b"data: {\"a\":1}\n\n"))
        );
        assert_eq!(lines.finish(), Some(Bytes::from_static(b"data: [DO")));
        assert_eq!(lines.finish(), None);
    }

    #[test]
    fn the_scanner_finds_the_id_and_the_final_usage() {
        let mut seen = Seen::default();
        seen.sse(b": OPENROUTER PROCESSING\n\ndata: {\"id\":\"gen-1\",\"model\":\"a/b\",\"choices\":[]}\n\n");
        seen.sse(b"data: {\"id\":\"gen-1\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n");
        assert!(seen.usage.is_none());
        seen.sse(
            b"data: {\"id\":\"gen-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\
              \"completion_tokens\":4,\"total_tokens\":13,\"cost\":0.00012,\
              \"prompt_tokens_details\":{\"cached_tokens\":3}}}\n\ndata: [DONE]\n\n",
        );
        assert_eq!((seen.id.as_deref(), seen.model.as_deref()), (Some("gen-1"), Some("a/b")));
        let usage = seen.usage.expect("usage");
        assert_eq!(usage.cost, "0.00012".parse().ok());
        assert_eq!(counts(&usage), Usage { prompt: 9, completion: 4, cached: 3, cache_write: 0 });
        assert!(seen.done);
    }

    #[test]
    fn a_cut_body_still_gives_its_id() {
        let mut seen = Seen::default();
        seen.body(b"{\"id\": \"gen-17-abc\", \"object\": \"chat.compl");
        assert_eq!(seen.id.as_deref(), Some("gen-17-abc"));
        assert!(seen.usage.is_none());
    }

    #[test]
    fn scrub_masks_every_copy_of_the_secret() {
        let text = Bytes::from_static(b"a sk-or-v1-xyz b sk-or-v1-xyz");
        assert_eq!(scrub(text, "sk-or-v1-xyz"), Bytes::from_static(b"a *** b ***"));
        let clean = Bytes::from_static(b"nothing");
        assert_eq!(scrub(clean.clone(), "sk-or-v1-xyz"), clean);
    }
}
