//! The main job end to end: `apf apply` against a real `apf sim` process, running real
//! containers of the demo agent, and what it leaves behind (nothing).

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

fn named(name: &str) -> impl Fn(String) -> String + '_ {
    move |src| src.replace("name = \"quickstart\"", &format!("name = \"{name}\""))
}

#[test]
fn quickstart_runs_end_to_end_and_leaves_nothing_behind() {
    demo_image();
    let sim = Sim::start(&[]);
    let ws = Workspace::new();
    let name = unique("qs");
    let manifest = ws.quickstart(named(&name));

    let out =
        run(apf(&sim, &["apply", "--auto-approve", manifest.to_str().unwrap()]).current_dir("/"));
    remove_containers(&name);
    assert_eq!(out.status.code(), Some(0), "apply succeeds");

    let state = ws.latest_state();
    assert_eq!(state["status"], "finished");
    let models = state["models"].as_object().unwrap();
    assert_eq!(models.len(), 3);
    for (alias, m) in models {
        let status = m["status"].as_str().unwrap();
        assert!(["done", "ejected", "budget_spent"].contains(&status), "{alias} ended as {status}");
        assert_eq!(m["key"]["revoked"], true, "{alias}'s key is revoked");
        assert_eq!(m["container"]["removed"], true, "{alias}'s container is removed");
        let events =
            std::fs::read_to_string(ws.run_dir().join("models").join(alias).join("events.jsonl"))
                .unwrap();
        assert!(events.lines().count() > 0, "{alias} has events recorded");
    }
    for alias in ["gpt4o-mini", "llama"] {
        assert_eq!(models[alias]["status"], "done", "{alias} finishes its task");
        assert!(models[alias]["counts"]["tool_calls"].as_u64().unwrap() > 0);
        let output = ws.run_dir().join("models").join(alias).join("output");
        assert!(output.join("result.md").is_file(), "{alias} wrote its result");
        let budget = std::fs::read_to_string(output.join("budget.txt")).unwrap();
        assert!(budget.starts_with("Budget: $"), "budget.txt: {budget}");
    }

    let opus = &models["opus"];
    assert!(["ejected", "budget_spent"].contains(&opus["status"].as_str().unwrap()));
    let note = opus["note"].as_str().unwrap();
    assert!(note.contains("budget"), "the over-budget model's reason is recorded: {note}");

    assert!(sim.keys_named(&format!("apf/{name}/")).is_empty(), "no key of the run is left");
    assert!(containers_of(&name).is_empty(), "no container of the run is left");

    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ws.run_dir().join("results.json")).unwrap())
            .unwrap();
    assert_eq!(results["models"].as_array().unwrap().len(), 3);
}

#[test]
fn budget_txt_is_readable_inside_a_running_container() {
    demo_image();
    let sim = Sim::start(&[]);
    let ws = Workspace::new();
    let name = unique("bt");
    // One model, so the progress events come from a single container.
    let manifest = ws.quickstart(|src| {
        let one = src.split("[[models]]").take(2).collect::<Vec<_>>().join("[[models]]");
        let rest = src.split("[preflight]").nth(1).unwrap();
        named(&name)(format!("{one}\n[preflight]{rest}"))
    });
    let out = run(&mut apf(&sim, &["apply", "--auto-approve", manifest.to_str().unwrap()]));
    remove_containers(&name);
    assert_eq!(out.status.code(), Some(0));

    let events =
        std::fs::read_to_string(ws.run_dir().join("models/gpt4o-mini/events.jsonl")).unwrap();
    let budgets: Vec<String> = events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"]["type"] == "progress")
        .filter_map(|e| e["event"]["budget"].as_str().map(str::to_string))
        .collect();
    assert!(!budgets.is_empty(), "the agent read budget.txt from inside its container: {events}");
    assert!(
        budgets.iter().all(|b| b.starts_with("Budget: $") && b.contains("remaining of $0.05")),
        "{budgets:?}"
    );
}

/// A manifest whose agents sleep until stopped, so an interrupt always lands mid-run.
fn sleeping_field(ws: &Workspace, name: &str) -> std::path::PathBuf {
    ws.quickstart(|src| {
        named(name)(src)
            .replace("DEMO_TURN_DELAY_MS = \"700\"", "DEMO_MODE = \"idle\"")
            .replace("env = { DEMO_MODE = \"spin\" }", "")
    })
}

fn wait_for_running(ws: &Workspace, n: usize) {
    let ok = wait_until(Duration::from_secs(60), || {
        let Ok(latest) = std::fs::read_to_string(ws.path().join(".apf/runs/latest")) else {
            return false;
        };
        let path = ws.path().join(".apf/runs").join(latest.trim()).join("state.json");
        let Ok(text) = std::fs::read_to_string(path) else { return false };
        let Ok(state) = serde_json::from_str::<serde_json::Value>(&text) else { return false };
        state["models"]
            .as_object()
            .is_some_and(|m| m.values().filter(|v| v["status"] == "running").count() == n)
    });
    assert!(ok, "all models reach running");
}

#[test]
fn interrupt_during_apply_leaves_no_container_and_no_live_key() {
    demo_image();
    let sim = Sim::start(&[]);
    let ws = Workspace::new();
    let name = unique("int");
    let manifest = sleeping_field(&ws, &name);
    let mut child = apf(&sim, &["apply", "--auto-approve", manifest.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_running(&ws, 3);
    assert_eq!(containers_of(&name).len(), 3);
    assert_eq!(sim.keys_named(&format!("apf/{name}/")).len(), 3);

    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    let left = containers_of(&name);
    remove_containers(&name);

    assert_eq!(status.code(), Some(130), "an interrupted apply exits 130");
    assert!(left.is_empty(), "no container is left: {left:?}");
    assert!(sim.keys_named(&format!("apf/{name}/")).is_empty(), "no key is left");
    let state = ws.latest_state();
    assert_eq!(state["status"], "interrupted");
    for m in state["models"].as_object().unwrap().values() {
        assert_eq!(m["status"], "interrupted");
        assert_eq!(m["exit"]["cause"], "killed by apf: interrupt");
    }
}

#[test]
fn kill_9_during_apply_then_destroy_leaves_nothing() {
    demo_image();
    let sim = Sim::start(&[]);
    let ws = Workspace::new();
    let name = unique("k9");
    let manifest = sleeping_field(&ws, &name);
    let mut child = apf(&sim, &["apply", "--auto-approve", manifest.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_running(&ws, 3);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(containers_of(&name).len(), 3, "SIGKILL leaves the containers running");
    assert_eq!(sim.keys_named(&format!("apf/{name}/")).len(), 3, "and the keys live");
    // 117 newer keys on the account: listings are newest first, so the run's keys now sit on
    // the second page of 100.
    for i in 0..117 {
        sim.post("/keys", serde_json::json!({ "name": format!("someone-else-{i}") }));
    }

    // Destroy works from the labels and key names alone: remove the state first.
    std::fs::remove_dir_all(ws.path().join(".apf")).unwrap();
    let out = run(&mut apf(&sim, &["destroy", "--experiment", &name, "--auto-approve"]));
    let left = containers_of(&name);
    remove_containers(&name);
    assert_eq!(out.status.code(), Some(0));
    assert!(left.is_empty(), "destroy removes every container: {left:?}");
    assert!(sim.keys_named(&format!("apf/{name}/")).is_empty(), "destroy deletes every key");
    assert_eq!(sim.keys_named("someone-else-").len(), 117, "and only the run's keys");
}
