//! Deterministic, scripted completions. Every answer is a function of the simulator's seed and the
//! request (model, messages, tools), so the same seed and requests give the same answers.
//!
//! With `tools`, the assistant calls one of the offered tools, with small arguments shaped by the
//! tool's JSON schema, until the conversation holds the configured number of tool results; then it
//! answers in text with `finish_reason: "stop"`. Without tools it answers in text. Token counts:
//! the prompt is the characters of the messages and tool definitions divided by four (at least 1);
//! a text answer is 50–300 tokens of about four characters each; `max_tokens` truncates the answer
//! and gives `finish_reason: "length"`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::ledger::hex;

/// Filler vocabulary for text answers: about four characters a token, like English text.
const WORDS: &[&str] = &[
    "the", "plan", "looks", "sound", "and", "the", "next", "step", "is", "to", "check", "each",
    "result", "against", "the", "task", "before", "moving", "on", "with", "care", "so", "that",
    "nothing", "is", "missed", "along", "the", "way", "while", "costs", "stay", "low",
];

/// What the assistant says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    Text(String),
    ToolCall { id: String, name: String, arguments: String },
}

/// A scripted reply and its accounting.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    pub answer: Answer,
    pub completion_tokens: u64,
    /// `stop`, `tool_calls` or `length`.
    pub finish_reason: &'static str,
}

/// The parts of a request that decide the reply.
pub(crate) struct Request<'a> {
    pub model: &'a str,
    pub messages: &'a [Value],
    pub tools: &'a [Value],
    pub tool_choice: Option<&'a Value>,
    /// The completion budget after `max_tokens`/`max_completion_tokens`, if the caller set one.
    pub max_tokens: Option<u64>,
}

/// The text of a message's `content` (a string, or the `text` of its parts).
pub(crate) fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect()
        }
        _ => String::new(),
    }
}

/// The characters a message contributes to the prompt: its text and any tool calls it made.
pub(crate) fn message_chars(message: &Value) -> usize {
    let text = content_text(message.get("content")).chars().count();
    let calls = message.get("tool_calls").and_then(Value::as_array).map_or(0, |calls| {
        calls
            .iter()
            .map(|c| {
                let f = c.get("function");
                let name = f.and_then(|f| f.get("name")).and_then(Value::as_str).unwrap_or("");
                let args = f.and_then(|f| f.get("arguments")).and_then(Value::as_str).unwrap_or("");
                name.chars().count() + args.chars().count()
            })
            .sum()
    });
    text + calls
}

/// The characters the tool definitions contribute (their JSON).
pub(crate) fn tools_chars(tools: &[Value]) -> usize {
    tools.iter().map(|t| t.to_string().chars().count()).sum()
}

pub(crate) fn tokens_for_chars(chars: usize) -> u64 {
    (chars as u64).div_ceil(4).max(1)
}

/// Prompt tokens: characters of the messages and tool definitions over four, at least one.
pub(crate) fn prompt_tokens(messages: &[Value], tools: &[Value]) -> u64 {
    tokens_for_chars(messages.iter().map(message_chars).sum::<usize>() + tools_chars(tools))
}

/// A random generator seeded from the simulator's seed and the request's content.
fn rng_for(seed: u64, request: &Request) -> StdRng {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(request.model.as_bytes());
    for m in request.messages {
        h.update(m.to_string().as_bytes());
    }
    for t in request.tools {
        h.update(t.to_string().as_bytes());
    }
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    StdRng::seed_from_u64(u64::from_le_bytes(first))
}

fn tool_results(messages: &[Value]) -> usize {
    messages.iter().filter(|m| m.get("role").and_then(Value::as_str) == Some("tool")).count()
}

fn tool_name(tool: &Value) -> Option<&str> {
    tool.get("function")?.get("name")?.as_str()
}

/// Whether this turn calls a tool, and which: `tool_choice` `"none"` never does, `"required"`
/// and a named function always do, `"auto"` does until enough tool results are in.
fn pick_tool<'a>(
    request: &'a Request,
    rng: &mut StdRng,
    tool_calls_before_answer: usize,
) -> Option<&'a Value> {
    let offered: Vec<&Value> = request.tools.iter().filter(|t| tool_name(t).is_some()).collect();
    if offered.is_empty() {
        return None;
    }
    let named = request.tool_choice.and_then(|c| c.get("function")?.get("name")?.as_str());
    if let Some(name) = named {
        return offered.into_iter().find(|t| tool_name(t) == Some(name));
    }
    match request.tool_choice.and_then(Value::as_str) {
        Some("none") => None,
        Some("required") => Some(offered[rng.random_range(0..offered.len())]),
        _ if tool_results(request.messages) >= tool_calls_before_answer => None,
        _ => Some(offered[rng.random_range(0..offered.len())]),
    }
}

/// The scripted reply to `request`.
pub(crate) fn reply(seed: u64, request: &Request, tool_calls_before_answer: u32) -> Reply {
    let mut rng = rng_for(seed, request);
    let budget = request.max_tokens;
    match pick_tool(request, &mut rng, tool_calls_before_answer as usize) {
        Some(tool) => tool_call_reply(tool, &mut rng, budget),
        None => text_reply(request, &mut rng, budget),
    }
}

fn tool_call_reply(tool: &Value, rng: &mut StdRng, budget: Option<u64>) -> Reply {
    let name = tool_name(tool).unwrap_or("tool").to_string();
    let schema = tool.get("function").and_then(|f| f.get("parameters"));
    let arguments = schema.map_or_else(|| json!({}), |s| example_for(s, "", rng, 0)).to_string();
    let tokens = tokens_for_chars(name.len() + arguments.len()) + 8 + rng.random_range(0..16);
    let id = format!("call_{}", hex(&rng.random::<[u8; 12]>()));
    match budget {
        Some(max) if max < tokens => {
            let cut: String = arguments.chars().take((max as usize) * 4).collect();
            let answer = Answer::ToolCall { id, name, arguments: cut };
            Reply { answer, completion_tokens: max, finish_reason: "length" }
        }
        _ => Reply {
            answer: Answer::ToolCall { id, name, arguments },
            completion_tokens: tokens,
            finish_reason: "tool_calls",
        },
    }
}

fn text_reply(request: &Request, rng: &mut StdRng, budget: Option<u64>) -> Reply {
    let tokens: u64 = rng.random_range(50..=300);
    let done = tool_results(request.messages);
    let opening = if done > 0 {
        format!("Done after {done} tool results; the simulated work is complete. ")
    } else {
        "This is a simulated answer. ".to_string()
    };
    let text = filler(opening, tokens as usize * 4, rng);
    match budget {
        Some(max) if max < tokens => Reply {
            answer: Answer::Text(text.chars().take(max as usize * 4).collect()),
            completion_tokens: max,
            finish_reason: "length",
        },
        _ => Reply { answer: Answer::Text(text), completion_tokens: tokens, finish_reason: "stop" },
    }
}

/// `opening`, then words until the text is `chars` long.
fn filler(opening: String, chars: usize, rng: &mut StdRng) -> String {
    let mut text = opening;
    while text.len() + 1 < chars {
        text.push_str(WORDS[rng.random_range(0..WORDS.len())]);
        text.push(' ');
    }
    text.truncate(chars.saturating_sub(1).max(1));
    text.push('.');
    text
}

/// A small value that fits the JSON schema `schema` of a property called `name`.
fn example_for(schema: &Value, name: &str, rng: &mut StdRng, depth: u32) -> Value {
    if let Some(v) = schema.get("default").or_else(|| schema.get("const")) {
        return v.clone();
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array).filter(|o| !o.is_empty()) {
        return options[rng.random_range(0..options.len())].clone();
    }
    match schema_type(schema) {
        "object" if depth < 3 => object_example(schema, rng, depth),
        "object" => json!({}),
        "array" if depth < 3 => match schema.get("items") {
            Some(items) => json!([example_for(items, name, rng, depth + 1)]),
            None => json!([]),
        },
        "array" => json!([]),
        "integer" => {
            let lo = schema.get("minimum").and_then(Value::as_i64).unwrap_or(1);
            let hi = schema.get("maximum").and_then(Value::as_i64).unwrap_or(lo.saturating_add(9));
            json!(rng.random_range(lo..=hi.max(lo)))
        }
        "number" => json!(0.5),
        "boolean" => json!(rng.random_bool(0.5)),
        "null" => Value::Null,
        _ => json!(string_example(name)),
    }
}

fn schema_type(schema: &Value) -> &str {
    match schema.get("type") {
        Some(Value::String(t)) => t,
        Some(Value::Array(ts)) => {
            ts.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("string")
        }
        _ if schema.get("properties").is_some() => "object",
        _ => "string",
    }
}

/// Required properties, or all of them when none is marked required.
fn object_example(schema: &Value, rng: &mut StdRng, depth: u32) -> Value {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return json!({});
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out = Map::new();
    for (key, prop) in props {
        if required.is_empty() || required.contains(&key.as_str()) {
            out.insert(key.clone(), example_for(prop, key, rng, depth + 1));
        }
    }
    Value::Object(out)
}

/// A plausible string for a property, judged by its name.
fn string_example(name: &str) -> &'static str {
    let n = name.to_ascii_lowercase();
    let table: &[(&str, &str)] = &[
        ("path", "README.md"),
        ("file", "README.md"),
        ("dir", "."),
        ("command", "ls"),
        ("cmd", "ls"),
        ("url", "http://127.0.0.1/"),
        ("query", "status"),
        ("pattern", "budget"),
        ("code", "print(1)"),
        ("id", "1"),
        ("name", "example"),
    ];
    table.iter().find(|(k, _)| n.contains(k)).map_or("example", |(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> Vec<Value> {
        vec![json!({"type": "function", "function": {"name": "read_file", "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "limit": {"type": "integer", "minimum": 1, "maximum": 5}},
            "required": ["path"]
        }}})]
    }

    fn request<'a>(messages: &'a [Value], tools: &'a [Value]) -> Request<'a> {
        Request { model: "m/x", messages, tools, tool_choice: None, max_tokens: None }
    }

    #[test]
    fn prompt_tokens_are_characters_over_four() {
        let messages = vec![json!({"role": "user", "content": "abcdefgh"})];
        assert_eq!(prompt_tokens(&messages, &[]), 2);
        let one = vec![json!({"role": "user", "content": ""})];
        assert_eq!(prompt_tokens(&one, &[]), 1);
        let parts = vec![json!({"role": "user", "content": [{"type": "text", "text": "abcde"}]})];
        assert_eq!(prompt_tokens(&parts, &[]), 2);
    }

    #[test]
    fn tools_are_called_until_enough_results_then_a_final_answer() {
        let tools = tools();
        let mut messages = vec![json!({"role": "user", "content": "go"})];
        for n in 0..3 {
            let r = reply(7, &request(&messages, &tools), 3);
            assert_eq!(r.finish_reason, "tool_calls", "turn {n}");
            let Answer::ToolCall { name, arguments, id } = r.answer else { panic!("tool call") };
            assert_eq!(name, "read_file");
            let args: Value = serde_json::from_str(&arguments).expect("JSON arguments");
            assert_eq!(args["path"], "README.md");
            messages.push(json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}]}));
            messages.push(json!({"role": "tool", "tool_call_id": id, "content": "ok"}));
        }
        let last = reply(7, &request(&messages, &tools), 3);
        assert_eq!(last.finish_reason, "stop");
        assert!(matches!(last.answer, Answer::Text(ref t) if t.starts_with("Done after 3")));
    }

    #[test]
    fn same_seed_same_reply_and_max_tokens_truncates() {
        let messages = vec![json!({"role": "user", "content": "hello"})];
        let a = reply(1, &request(&messages, &[]), 3);
        assert_eq!(a, reply(1, &request(&messages, &[]), 3));
        assert!((50..=300).contains(&a.completion_tokens));
        let Answer::Text(text) = &a.answer else { panic!("text") };
        assert_eq!(text.chars().count() as u64, a.completion_tokens * 4);

        let short = Request { max_tokens: Some(10), ..request(&messages, &[]) };
        let r = reply(1, &short, 3);
        assert_eq!((r.completion_tokens, r.finish_reason), (10, "length"));
    }

    #[test]
    fn tool_choice_none_and_named() {
        let tools = tools();
        let messages = vec![json!({"role": "user", "content": "go"})];
        let none = json!("none");
        let r = reply(1, &Request { tool_choice: Some(&none), ..request(&messages, &tools) }, 3);
        assert_eq!(r.finish_reason, "stop");
        let named = json!({"type": "function", "function": {"name": "read_file"}});
        let r = reply(1, &Request { tool_choice: Some(&named), ..request(&messages, &tools) }, 0);
        assert_eq!(r.finish_reason, "tool_calls");
    }
}
