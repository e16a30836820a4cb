//! Reading what an agent prints. A stdout line that is a JSON object with a string `type` is an
//! event; anything else is a log line. Which event types count as tool calls, snapshots,
//! progress, errors and the end of the work comes from the manifest's event mapping.

use serde_json::{Map, Value};

use crate::manifest::resolve::{EventClass, EventMapping};

/// What one stdout line was.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Event(Event),
    Log(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: String,
    pub body: Map<String, Value>,
    pub class: Class,
}

/// The counters an event adds to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Class {
    pub tool_call: bool,
    pub snapshot: bool,
    pub progress: bool,
    pub error: bool,
    pub done: bool,
}

pub fn parse(line: &str, mapping: &EventMapping) -> Line {
    let trimmed = line.trim();
    if !trimmed.starts_with('{') {
        return Line::Log(line.to_string());
    }
    let Ok(Value::Object(body)) = serde_json::from_str::<Value>(trimmed) else {
        return Line::Log(line.to_string());
    };
    let Some(kind) = body.get("type").and_then(Value::as_str).map(str::to_string) else {
        return Line::Log(line.to_string());
    };
    let class = Class {
        tool_call: mapping.matches(EventClass::ToolCall, &body),
        snapshot: mapping.matches(EventClass::Snapshot, &body),
        progress: mapping.matches(EventClass::Progress, &body),
        error: mapping.matches(EventClass::Error, &body) || failed_tool(&kind, &body),
        done: mapping.matches(EventClass::Done, &body),
    };
    Line::Event(Event { kind, body, class })
}

/// pi-coding-agent reports a failed tool as `tool_execution_end` with `isError: true`.
fn failed_tool(kind: &str, body: &Map<String, Value>) -> bool {
    kind == "tool_execution_end" && body.get("isError").and_then(Value::as_bool) == Some(true)
}

impl Event {
    /// The HTTP status an agent reported with an error event, if any: how apf learns that an
    /// agent met 402 (account out of credits) or 403 (key cap).
    pub fn status(&self) -> Option<u64> {
        self.body.get("status").and_then(Value::as_u64)
    }

    /// A short name for the action, for budget.txt's list of recent actions.
    pub fn action_name(&self) -> String {
        ["name", "toolName", "tool"]
            .iter()
            .find_map(|k| self.body.get(*k).and_then(Value::as_str))
            .unwrap_or(&self.kind)
            .chars()
            .take(40)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_objects_with_a_type_are_events_and_the_rest_logs() {
        let m = EventMapping::default();
        assert!(matches!(parse("turn 3: calling model", &m), Line::Log(_)));
        assert!(matches!(parse("{not json", &m), Line::Log(_)));
        assert!(matches!(parse(r#"{"no_type": 1}"#, &m), Line::Log(_)));
        assert!(matches!(parse("[1,2]", &m), Line::Log(_)));
        let Line::Event(e) = parse(r#"{"type":"tool_call","name":"write_file"}"#, &m) else {
            panic!("an event")
        };
        assert!(e.class.tool_call && !e.class.done);
        assert_eq!(e.action_name(), "write_file");
    }

    #[test]
    fn pi_coding_agent_rpc_events_map_by_default() {
        let m = EventMapping::default();
        let start =
            r#"{"type":"tool_execution_start","toolName":"bash","toolCallId":"1","args":{}}"#;
        let Line::Event(e) = parse(start, &m) else { panic!("an event") };
        assert!(e.class.tool_call);
        assert_eq!(e.action_name(), "bash");
        let Line::Event(e) = parse(r#"{"type":"tool_execution_end","isError":true}"#, &m) else {
            panic!("an event")
        };
        assert!(e.class.error && e.class.progress);
        let Line::Event(e) = parse(r#"{"type":"agent_end"}"#, &m) else { panic!("an event") };
        assert!(e.class.done);
    }
}
