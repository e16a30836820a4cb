//! The modes that call the model: `work`, the real agent loop, and `spin` and `silent-spend`,
//! which spend without making progress so apf's eject rules have something to catch.
//!
//! A `work` turn reads the budget (a `progress` event), calls the model, and runs every tool call
//! it gets back (a `tool_call` event each, a snapshot every second call). A reply without tool
//! calls is the final answer: it becomes `result.md` and the `done` event. The cost printed is
//! the exact sum of the `usage.cost` figures the server reported.

use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

use crate::chat::{Chat, Reply};
use crate::config::{Api, Config, DEFAULT_WORK_TURNS};
use crate::decimal::Decimal;
use crate::exit::{Failure, code};
use crate::http::Client;
use crate::out::{Out, untrusted};
use crate::task;
use crate::tools::{self, Toolbox};
use crate::workspace::Workspace;

const SYSTEM_PROMPT: &str = "You are apf's demo agent, running in a container on a capped \
    budget. Work on the user's task with the tools: write_file saves a text file under \
    /workspace/output, read_budget shows the budget left, note records a short progress note. \
    Use a few tool calls, then reply without calling a tool: that reply is your final answer, \
    a short summary of what you did.";

const FIRST_BACKOFF: Duration = Duration::from_millis(500);

fn chat(cfg: &Config, api: &Api, out: Out) -> Chat {
    Chat {
        client: Client::new(api.url.clone(), cfg.http_timeout),
        key: api.key.clone(),
        model: cfg.model.clone(),
        max_tokens: cfg.max_tokens,
        tools: tools::definitions(),
        out,
        backoff: FIRST_BACKOFF,
    }
}

fn api(cfg: &Config) -> Result<&Api, Failure> {
    cfg.api.as_ref().ok_or_else(|| {
        Failure::new(code::CONFIG, "config", None, "no API settings for this mode".into())
    })
}

fn opening(cfg: &Config, out: Out) -> Vec<Value> {
    let prompt = task::read_prompt(std::io::stdin(), cfg.stdin_timeout);
    let task = task::load(&cfg.task_path, prompt, out);
    vec![
        json!({"role": "system", "content": SYSTEM_PROMPT}),
        json!({"role": "user", "content": task}),
    ]
}

/// What a `work` run has done so far.
struct Tally {
    turns: u32,
    tool_calls: u32,
    snapshots: u32,
    cost: Decimal,
}

impl Tally {
    fn add_cost(&mut self, reply: &Reply, out: Out) {
        match &reply.cost {
            Ok(Some(cost)) => match self.cost.checked_add(*cost) {
                Some(sum) => self.cost = sum,
                None => {
                    out.log(&format!("turn {}: the cost sum overflowed; not counted", self.turns))
                }
            },
            Ok(None) => {}
            Err(text) => out.log(&format!("turn {}: unreadable usage.cost `{text}`", self.turns)),
        }
    }
}

/// The agent loop. Returns when the model gives its final answer or the turn cap is reached.
pub fn work(cfg: &Config, out: Out) -> Result<(), Failure> {
    let chat = chat(cfg, api(cfg)?, out);
    let workspace = Workspace::new(cfg.output.clone());
    let mut toolbox = Toolbox { workspace: &workspace, out, written: Vec::new() };
    let mut messages = opening(cfg, out);
    let max_turns = cfg.max_turns.unwrap_or(DEFAULT_WORK_TURNS);
    let mut tally = Tally { turns: 0, tool_calls: 0, snapshots: 0, cost: Decimal::ZERO };

    while tally.turns < max_turns {
        tally.turns += 1;
        if let Some(line) = workspace.budget_line() {
            out.event(&json!({"type": "progress", "budget": line}));
        }
        out.log(&format!("turn {}: calling model", tally.turns));
        let reply = chat.complete(&messages, tally.turns)?;
        tally.add_cost(&reply, out);

        if reply.tool_calls.is_empty() {
            if reply.finish_reason.as_deref() != Some("stop") {
                let reason = reply.finish_reason.as_deref().unwrap_or("none");
                out.log(&format!(
                    "turn {}: finish_reason {reason}; taking it as final",
                    tally.turns
                ));
            }
            let answer = reply.content.unwrap_or_default();
            return finish(&workspace, &toolbox.written, &tally, &answer, out);
        }

        messages.push(reply.assistant_message());
        for call in &reply.tool_calls {
            out.event(&json!({"type": "tool_call", "name": call.name, "id": call.id}));
            let result = toolbox.run(call);
            messages.push(json!({"role": "tool", "tool_call_id": call.id, "content": result}));
            tally.tool_calls += 1;
            if tally.tool_calls.is_multiple_of(2) {
                snapshot(&workspace, &toolbox.written, &mut tally, out);
            }
        }

        if tally.turns < max_turns && !cfg.turn_delay.is_zero() {
            thread::sleep(cfg.turn_delay);
        }
    }

    out.log(&format!("stopping after {max_turns} turns (DEMO_MAX_TURNS) without a final answer"));
    let answer = format!("Stopped after {max_turns} turns without a final answer from the model.");
    finish(&workspace, &toolbox.written, &tally, &answer, out)
}

fn snapshot(workspace: &Workspace, written: &[String], tally: &mut Tally, out: Out) {
    let n = tally.snapshots + 1;
    let files = if written.is_empty() { "(none)".to_string() } else { written.join(", ") };
    let text = format!(
        "snapshot {n}\nturn: {}\ntool calls: {}\nfiles written: {files}\ncost so far: ${}\n",
        tally.turns, tally.tool_calls, tally.cost
    );
    let name = format!("snapshot-{n}.txt");
    match workspace.write_own(&name, &text) {
        Ok(_) => {
            tally.snapshots = n;
            out.event(&json!({"type": "snapshot", "n": n, "path": name}));
        }
        Err(why) => out.log(&format!("could not write {name}: {why}")),
    }
}

fn finish(
    workspace: &Workspace,
    written: &[String],
    tally: &Tally,
    answer: &str,
    out: Out,
) -> Result<(), Failure> {
    let files = if written.is_empty() { "none".to_string() } else { written.join(", ") };
    let text = format!(
        "{}\n\n---\nturns: {}, tool calls: {}, files written: {files}, cost: ${}\n",
        answer.trim_end(),
        tally.turns,
        tally.tool_calls,
        tally.cost
    );
    workspace.write_own("result.md", &text).map_err(|why| {
        Failure::new(code::OUTPUT, "output", None, format!("could not write result.md: {why}"))
    })?;

    out.log(&format!("final answer: {}", untrusted(answer.trim(), "", 200)));
    out.event(&json!({
        "type": "done",
        "turns": tally.turns,
        "tool_calls": tally.tool_calls,
        "cost_usd": tally.cost.to_string(),
    }));
    Ok(())
}

/// `spin` (an `error` event per call) and `silent-spend` (nothing printed): call the model with
/// the same opening again and again, never running a tool and never reading the budget, until
/// the key is refused. `DEMO_MAX_TURNS`, when set, bounds the calls.
pub fn spend(cfg: &Config, out: Out, report_errors: bool) -> Result<(), Failure> {
    let chat = chat(cfg, api(cfg)?, out);
    let messages = opening(cfg, out);
    let mut calls: u32 = 0;

    loop {
        if cfg.max_turns.is_some_and(|max| calls >= max) {
            out.log(&format!("{}: stopping after {calls} calls (DEMO_MAX_TURNS)", cfg.mode.name()));
            return Ok(());
        }
        calls += 1;
        chat.complete(&messages, calls)?;
        if report_errors {
            out.event(&json!({"type": "error", "message": "tool failed"}));
        }
        if !cfg.turn_delay.is_zero() {
            thread::sleep(cfg.turn_delay);
        }
    }
}
