//! `enforce = "gateway"` through `apf apply`: agents reach OpenRouter only through apf's
//! metering gateway, with a token instead of the key, and the run's books come from it.

// A failing test shows what apf printed on stderr.
#![allow(clippy::print_stderr)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

#[test]
fn gateway_mode_keeps_the_real_key_out_of_the_container_and_meters_every_request() {
    demo_image();
    let sim = Sim::start(&[]);
    let ws = Workspace::new();
    let name = unique("gw");
    let text = manifest(
        &name,
        "0.05",
        &[
            ("worker", "openai/gpt-4o-mini", "env = { DEMO_TURN_DELAY_MS = \"400\" }"),
            (
                "spinner",
                "anthropic/claude-opus-4",
                "env = { DEMO_MODE = \"spin\" }\nbudget_usd = 0.02",
            ),
        ],
        "[[eject]]\nrule = \"budget_exceeded\"\n",
    )
    .replace("poll_every = \"1s\"", "poll_every = \"1s\"\nenforce = \"gateway\"");
    let path = ws.write("experiment.toml", &text);
    let child = apf(&sim, &["apply", "--auto-approve", path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let m = wait_for_model(&ws, "worker", Duration::from_secs(60), |m| m["status"] == "running");
    let id = m["container"]["id"].as_str().unwrap().to_string();
    let inspect = std::process::Command::new("docker").args(["inspect", &id]).output().unwrap();
    let inspect = String::from_utf8_lossy(&inspect.stdout).to_string();
    let ps = apf_and_docker_command_lines();
    let out = child.wait_with_output().unwrap();
    eprintln!("--- apf stderr\n{}", String::from_utf8_lossy(&out.stderr));
    remove_containers(&name);
    assert_eq!(out.status.code(), Some(0));

    assert!(!inspect.contains("sk-or-"), "the container's config holds no OpenRouter key");
    assert!(inspect.contains("OPENROUTER_API_KEY=apf-gw-"), "it holds a gateway token instead");
    assert!(ps.contains("apf"), "the process table shows apf itself: {ps}");
    assert!(!ps.contains("sk-or-"), "a key shows in the process table:\n{ps}");

    let state = ws.latest_state();
    let worker = &state["models"]["worker"];
    assert_eq!(worker["status"], "done", "{worker}");
    let usage = &worker["usage"];
    assert_eq!(usage["source"], "gateway");
    assert!(usage["requests"].as_u64().unwrap() >= 4, "{usage}");
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0);
    let requests =
        std::fs::read_to_string(ws.run_dir().join("models/worker/requests.jsonl")).unwrap();
    assert_eq!(requests.lines().count() as u64, usage["requests"].as_u64().unwrap());

    let spinner = &state["models"]["spinner"];
    let spent: f64 = spinner["spent"].as_str().unwrap().parse().unwrap();
    assert!(spent <= 0.02, "the gateway keeps spend within the cap: {spinner}");

    let used = sim.get("/credits")["data"]["total_usage"].as_f64().unwrap();
    let recorded: f64 = state["models"]
        .as_object()
        .unwrap()
        .values()
        .map(|m| m["spent"].as_str().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(
        (used - recorded).abs() < 1e-12,
        "the account spent {used}, the run recorded {recorded}"
    );
    assert!(sim.keys_named(&format!("apf/{name}/")).is_empty());
}
