//! One chat completion against `{base}/chat/completions`, with OpenRouter's error semantics.
//!
//! A spent key cap (403 "Key limit exceeded") and an account that cannot pay (402) end the agent
//! with exit 3, since no retry can help; 401 ends it with exit 6. Rate limits, 5xx, 408, lost
//! connections and 200 answers whose `finish_reason` is `error` are retried with backoff,
//! honouring `Retry-After`, five tries in all, then exit 5. The key goes only into the
//! `Authorization` header and is scrubbed from any text a server sends back.

use std::collections::BTreeMap;
use std::thread;
use std::time::Duration;

use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::decimal::Decimal;
use crate::exit::{Failure, code};
use crate::http::{Client, Response};
use crate::out::{Out, untrusted};

pub const MAX_TRIES: u32 = 5;
const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);
const MESSAGE_MAX: usize = 300;

pub struct Chat {
    pub client: Client,
    pub key: String,
    pub model: String,
    pub max_tokens: u32,
    pub tools: Value,
    pub out: Out,
    /// The first retry waits this long, each later one twice as long.
    pub backoff: Duration,
}

#[derive(Debug, Clone)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The parsed arguments, or why they could not be parsed.
    pub arguments: Result<Value, String>,
    /// The call as received (with `id` filled in), to echo back in the history.
    pub raw: Value,
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub finish_reason: Option<String>,
    pub content: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    /// `usage.cost`, exactly as sent; `Err` holds the text that could not be read.
    pub cost: Result<Option<Decimal>, String>,
}

impl Reply {
    /// The assistant turn to append to the history before the tool results.
    pub fn assistant_message(&self) -> Value {
        let calls: Vec<&Value> = self.tool_calls.iter().map(|c| &c.raw).collect();
        json!({"role": "assistant", "content": self.content, "tool_calls": calls})
    }
}

/// What one HTTP answer means.
#[derive(Debug)]
enum Verdict {
    Reply(Reply),
    Retry { status: Option<u16>, message: String, wait: Option<Duration> },
    Fail(Failure),
}

impl Chat {
    /// Ask the model once, retrying transient failures. `turn` labels the log lines.
    pub fn complete(&self, messages: &[Value], turn: u32) -> Result<Reply, Failure> {
        let body = json!({
            "model": self.model,
            "messages": messages,
            "tools": self.tools,
            "tool_choice": "auto",
            "max_tokens": self.max_tokens,
        })
        .to_string();

        let mut last = (None, String::new());
        for attempt in 1..=MAX_TRIES {
            let verdict =
                match self.client.post_json("chat/completions", &self.key, body.as_bytes()) {
                    Ok(resp) => judge(&resp, &self.key),
                    Err(err) => {
                        Verdict::Retry { status: None, message: err.to_string(), wait: None }
                    }
                };
            let (status, message, wait) = match verdict {
                Verdict::Reply(reply) => return Ok(reply),
                Verdict::Fail(failure) => return Err(failure),
                Verdict::Retry { status, message, wait } => (status, message, wait),
            };

            if attempt < MAX_TRIES {
                let wait = wait.unwrap_or(self.backoff * 2u32.pow(attempt - 1));
                let cause = status.map_or_else(|| message.clone(), |s| format!("HTTP {s}"));
                self.out.log(&format!(
                    "turn {turn}: {cause}; retrying in {} ms (try {} of {MAX_TRIES})",
                    wait.as_millis(),
                    attempt + 1
                ));
                thread::sleep(wait);
            }
            last = (status, message);
        }

        let (status, message) = last;
        let kind = if status.is_some() { "unavailable" } else { "connection_failed" };
        let message = format!("gave up after {MAX_TRIES} tries: {message}");
        Err(Failure::new(code::UNAVAILABLE, kind, status, message))
    }
}

fn judge(resp: &Response, key: &str) -> Verdict {
    let status = resp.status;
    let message = || error_message(&resp.body, key);

    match status {
        200..=299 => match parse_reply(&resp.body, key) {
            Ok(Ok(reply)) => Verdict::Reply(reply),
            Ok(Err(provider_error)) => {
                Verdict::Retry { status: Some(status), message: provider_error, wait: None }
            }
            Err(why) => {
                Verdict::Fail(Failure::new(code::REJECTED, "bad_response", Some(status), why))
            }
        },
        401 => {
            Verdict::Fail(Failure::new(code::UNAUTHORIZED, "unauthorized", Some(401), message()))
        }
        402 => Verdict::Fail(Failure::new(code::REFUSED, "payment_required", Some(402), message())),
        403 => {
            let message = message();
            if message.starts_with("Key limit exceeded") {
                Verdict::Fail(Failure::new(code::REFUSED, "key_limit", Some(403), message))
            } else {
                Verdict::Fail(Failure::new(code::REJECTED, "forbidden", Some(403), message))
            }
        }
        408 | 429 | 500..=599 => {
            let wait = resp.header("retry-after").and_then(retry_after);
            Verdict::Retry { status: Some(status), message: message(), wait }
        }
        _ => Verdict::Fail(Failure::new(code::REJECTED, "rejected", Some(status), message())),
    }
}

/// `Retry-After` in seconds (the HTTP-date form is ignored, and backoff used instead).
fn retry_after(value: &str) -> Option<Duration> {
    let secs: u64 = value.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(RETRY_AFTER_CAP))
}

/// `error.message` from OpenRouter's envelope, or the start of the body; never the key.
fn error_message(body: &[u8], key: &str) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let text = match parsed.as_ref().and_then(|v| v["error"]["message"].as_str()) {
        Some(message) => message.to_string(),
        None => String::from_utf8_lossy(body).trim().to_string(),
    };
    let text = if text.is_empty() { "(no message)".to_string() } else { text };
    untrusted(&text, key, MESSAGE_MAX)
}

/// A 200 body as a reply, `Ok(Err(_))` for a provider error reported inside a 200, or `Err`
/// when the body is not a chat completion at all.
fn parse_reply(body: &[u8], key: &str) -> Result<Result<Reply, String>, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let choice = value["choices"]
        .as_array()
        .and_then(|choices| choices.first())
        .ok_or_else(|| "the answer has no choices".to_string())?;

    let finish_reason = choice["finish_reason"].as_str().map(str::to_string);
    if finish_reason.as_deref() == Some("error") {
        let message = choice["error"]["message"].as_str().unwrap_or("provider error");
        return Ok(Err(format!("provider error: {}", untrusted(message, key, MESSAGE_MAX))));
    }

    let message = &choice["message"];
    let tool_calls = match message["tool_calls"].as_array() {
        Some(calls) => calls.iter().enumerate().map(|(i, c)| tool_call(c, i)).collect(),
        None => Vec::new(),
    };
    Ok(Ok(Reply {
        finish_reason,
        content: content_text(&message["content"]),
        tool_calls,
        cost: raw_cost(body),
    }))
}

fn tool_call(raw: &Value, index: usize) -> ToolCall {
    let id = match raw["id"].as_str() {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => format!("call_{index}"),
    };
    let function = &raw["function"];
    let name = function["name"].as_str().unwrap_or("").to_string();
    let arguments = match &function["arguments"] {
        Value::String(text) if text.trim().is_empty() => Ok(json!({})),
        Value::String(text) => serde_json::from_str(text).map_err(|e| format!("bad JSON: {e}")),
        Value::Null => Ok(json!({})),
        other => Ok(other.clone()),
    };
    let arguments_text = match &function["arguments"] {
        Value::String(text) => text.clone(),
        Value::Null => "{}".to_string(),
        other => other.to_string(),
    };
    let raw = json!({
        "id": id,
        "type": "function",
        "function": {"name": name, "arguments": arguments_text},
    });
    ToolCall { id, name, arguments, raw }
}

/// Message content as text: a string, or the text parts of an array of parts.
fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::String(text) => Some(text.clone()),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts.iter().filter_map(|p| p["text"].as_str()).collect();
            (!texts.is_empty()).then(|| texts.concat())
        }
        _ => None,
    }
}

/// `usage.cost` as the literal number in the body, so no float ever touches it.
fn raw_cost(body: &[u8]) -> Result<Option<Decimal>, String> {
    type Raw = BTreeMap<String, Box<RawValue>>;
    let Ok(top) = serde_json::from_slice::<Raw>(body) else { return Ok(None) };
    let Some(usage) = top.get("usage") else { return Ok(None) };
    let Ok(usage) = serde_json::from_str::<Raw>(usage.get()) else { return Ok(None) };
    let Some(cost) = usage.get("cost") else { return Ok(None) };

    let text = cost.get().trim();
    if text == "null" {
        return Ok(None);
    }
    let number = match serde_json::from_str::<Value>(text) {
        Ok(Value::String(s)) => s,
        _ => text.to_string(),
    };
    Decimal::parse(&number).map(Some).ok_or_else(|| untrusted(text, "", 40))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url::BaseUrl;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    fn resp(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response {
            status,
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn failure(verdict: Verdict) -> Failure {
        match verdict {
            Verdict::Fail(f) => f,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    const TOOL_REPLY: &str = r#"{"id":"gen-1","object":"chat.completion","created":1,
        "model":"openai/gpt-4o-mini","system_fingerprint":null,
        "choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant",
        "content":null,"tool_calls":[{"id":"call_a","type":"function","function":
        {"name":"write_file","arguments":"{\"path\":\"a.txt\",\"content\":\"hi\"}"}},
        {"type":"function","function":{"name":"read_budget","arguments":""}}]}}],
        "usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,"cost":0.00012345678901234567}}"#;

    #[test]
    fn tool_calls_and_exact_cost_are_read() {
        let reply = match judge(&resp(200, &[], TOOL_REPLY), "k") {
            Verdict::Reply(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(reply.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(reply.tool_calls.len(), 2);
        assert_eq!(reply.tool_calls[0].id, "call_a");
        assert_eq!(reply.tool_calls[0].arguments.as_ref().unwrap()["content"], "hi");
        assert_eq!(reply.tool_calls[1].id, "call_1");
        assert_eq!(reply.tool_calls[1].arguments.as_ref().unwrap(), &json!({}));
        assert_eq!(reply.cost.clone().unwrap().unwrap().to_string(), "0.00012345678901234567");

        let history = reply.assistant_message();
        assert_eq!(history["tool_calls"][1]["id"], "call_1");
        assert_eq!(history["content"], Value::Null);
    }

    #[test]
    fn final_answer_with_parts_and_string_cost() {
        let body = r#"{"choices":[{"finish_reason":"stop","message":{"role":"assistant",
            "content":[{"type":"text","text":"Done. "},{"type":"text","text":"Bye."}]}}],
            "usage":{"cost":"0.5"}}"#;
        let Verdict::Reply(reply) = judge(&resp(200, &[], body), "k") else { panic!() };
        assert!(reply.tool_calls.is_empty());
        assert_eq!(reply.content.as_deref(), Some("Done. Bye."));
        assert_eq!(reply.cost.unwrap().unwrap().to_string(), "0.5");
    }

    #[test]
    fn missing_or_junk_cost() {
        let none = r#"{"choices":[{"finish_reason":"stop","message":{"content":"x"}}]}"#;
        let Verdict::Reply(reply) = judge(&resp(200, &[], none), "k") else { panic!() };
        assert_eq!(reply.cost, Ok(None));
        let junk = r#"{"choices":[{"message":{"content":"x"}}],"usage":{"cost":"abc"}}"#;
        let Verdict::Reply(reply) = judge(&resp(200, &[], junk), "k") else { panic!() };
        assert!(reply.cost.is_err());
    }

    #[test]
    fn key_limit_and_payment_exit_3() {
        let body =
            r#"{"error":{"code":403,"message":"Key limit exceeded (total limit). Manage it"}}"#;
        let f = failure(judge(&resp(403, &[], body), "k"));
        assert_eq!(f.code, code::REFUSED);
        let event = f.event.unwrap();
        assert_eq!(event["kind"], "key_limit");
        assert_eq!(event["status"], 403);
        assert!(event["message"].as_str().unwrap().starts_with("Key limit exceeded"));

        let body = r#"{"error":{"code":402,"message":"Insufficient credits"}}"#;
        let f = failure(judge(&resp(402, &[], body), "k"));
        assert_eq!(f.code, code::REFUSED);
        assert_eq!(f.event.unwrap()["kind"], "payment_required");
    }

    #[test]
    fn other_refusals() {
        let moderation = r#"{"error":{"code":403,"message":"flagged"}}"#;
        assert_eq!(failure(judge(&resp(403, &[], moderation), "k")).code, code::REJECTED);
        let f = failure(judge(&resp(401, &[], r#"{"error":{"message":"User not found."}}"#), "k"));
        assert_eq!(f.code, code::UNAUTHORIZED);
        assert_eq!(failure(judge(&resp(400, &[], "nope"), "k")).code, code::REJECTED);
        assert_eq!(failure(judge(&resp(200, &[], "<html>"), "k")).code, code::REJECTED);
        assert_eq!(failure(judge(&resp(200, &[], r#"{"choices":[]}"#), "k")).code, code::REJECTED);
    }

    #[test]
    fn transient_answers_are_retried_with_retry_after() {
        match judge(&resp(429, &[("retry-after", "3")], "{}"), "k") {
            Verdict::Retry { status: Some(429), wait: Some(w), .. } => {
                assert_eq!(w, Duration::from_secs(3));
            }
            other => panic!("{other:?}"),
        }
        match judge(&resp(503, &[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")], ""), "k") {
            Verdict::Retry { status: Some(503), wait: None, .. } => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(retry_after("100000"), Some(RETRY_AFTER_CAP));
        let provider = r#"{"choices":[{"finish_reason":"error","error":{"message":"upstream"}}]}"#;
        assert!(matches!(judge(&resp(200, &[], provider), "k"), Verdict::Retry { .. }));
    }

    #[test]
    fn the_key_never_appears_in_errors() {
        let body = r#"{"error":{"message":"Key limit exceeded for sk-or-v1-secret"}}"#;
        let f = failure(judge(&resp(403, &[], body), "sk-or-v1-secret"));
        assert!(!f.event.unwrap().to_string().contains("sk-or-v1-secret"));
    }

    /// A loopback server that answers each connection with the next canned response.
    /// Each request's `Authorization` line and body, in arrival order.
    type Seen = Arc<Mutex<Vec<(String, String)>>>;

    fn serve(answers: Vec<String>) -> (u16, Seen) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        thread::spawn(move || {
            for answer in answers {
                let Ok((mut conn, _)) = listener.accept() else { return };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut len = 0;
                let mut auth = String::new();
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        len = v.trim().parse().unwrap();
                    }
                    if line.starts_with("Authorization: ") {
                        auth = line.trim().to_string();
                    }
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                log.lock().unwrap().push((auth, String::from_utf8_lossy(&body).into_owned()));
                conn.write_all(answer.as_bytes()).unwrap();
            }
        });
        (port, seen)
    }

    fn http(status: &str, extra: &str, body: &str) -> String {
        format!("HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\n\r\n{body}", body.len())
    }

    fn chat(port: u16) -> Chat {
        let url = BaseUrl::parse(&format!("http://127.0.0.1:{port}/api/v1")).unwrap();
        Chat {
            client: Client::new(url, Duration::from_secs(5)),
            key: "sk-test".into(),
            model: "m/x".into(),
            max_tokens: 64,
            tools: json!([]),
            out: Out { quiet: true },
            backoff: Duration::from_millis(1),
        }
    }

    #[test]
    fn retries_until_an_answer() {
        let ok = r#"{"choices":[{"finish_reason":"stop","message":{"content":"fine"}}]}"#;
        let (port, seen) = serve(vec![
            http("429 Too Many Requests", "Retry-After: 0\r\n", "{}"),
            http("502 Bad Gateway", "", "{}"),
            http("200 OK", "", ok),
        ]);
        let reply = chat(port).complete(&[json!({"role":"user","content":"hi"})], 1).unwrap();
        assert_eq!(reply.content.as_deref(), Some("fine"));

        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].0, "Authorization: Bearer sk-test");
        let sent: Value = serde_json::from_str(&seen[0].1).unwrap();
        assert_eq!(sent["model"], "m/x");
        assert_eq!(sent["max_tokens"], 64);
        assert_eq!(sent["messages"][0]["content"], "hi");
    }

    #[test]
    fn gives_up_after_five_tries_with_exit_5() {
        let busy = http("503 Service Unavailable", "", r#"{"error":{"message":"overloaded"}}"#);
        let (port, seen) = serve(vec![busy; 6]);
        let f = chat(port).complete(&[], 1).unwrap_err();
        assert_eq!(f.code, code::UNAVAILABLE);
        assert_eq!(f.event.as_ref().unwrap()["status"], 503);
        assert_eq!(seen.lock().unwrap().len(), MAX_TRIES as usize);
    }

    #[test]
    fn refused_connections_exit_5() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let f = chat(port).complete(&[], 1).unwrap_err();
        assert_eq!(f.code, code::UNAVAILABLE);
        assert_eq!(f.event.unwrap()["kind"], "connection_failed");
    }

    #[test]
    fn chunked_transport_error_mid_body_is_retried() {
        let ok = r#"{"choices":[{"finish_reason":"stop","message":{"content":"ok"}}]}"#;
        let (port, _) = serve(vec![
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"cho".to_string(),
            format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{ok}\r\n0\r\n\r\n",
                ok.len()
            ),
        ]);
        let reply = chat(port).complete(&[], 1).unwrap();
        assert_eq!(reply.content.as_deref(), Some("ok"));
    }
}
