//! Eject rules, exit causes and budget semantics, with real containers of the demo agent and a
//! real `apf sim` process. Each test names the hazard it pins.

// A failing test shows what apf printed on stderr.
#![allow(clippy::print_stderr)]

mod common;

use std::process::Child;
use std::time::Duration;

use common::*;

fn finish(child: Child, name: &str) -> (Option<i32>, String) {
    finish_apply(child, name)
}

fn model<'a>(state: &'a serde_json::Value, alias: &str) -> &'a serde_json::Value {
    &state["models"][alias]
}

#[test]
fn h3_budget_kill_at_first_reading_over_cap_and_late_spend_is_reported_as_overshoot() {
    demo_image();
    let sim = Sim::start(&[]);
    let ws = Workspace::new();
    let name = unique("h3");
    let text = manifest(
        &name,
        "5.00",
        &[
            ("spender", "openai/gpt-4o-mini", "env = { DEMO_MODE = \"idle\" }"),
            ("holder", "openai/gpt-4o-mini", "env = { DEMO_MODE = \"idle\" }\nbudget_usd = 1"),
        ],
        "[[eject]]\nrule = \"budget_exceeded\"\n\n[[eject]]\nrule = \"expr\"\nwhen = \"elapsed_s > 12.0 && budget_usd < 2.0\"\nreason = \"holder's time is up\"\n",
    );
    let path = ws.write("experiment.toml", &text);
    let child = spawn_apply(&sim, &path);

    let m = wait_for_model(&ws, "spender", Duration::from_secs(60), |m| m["status"] == "running");
    let hash = m["key"]["hash"].as_str().unwrap().to_string();
    sim.set_spend(&hash, "4.75");
    std::thread::sleep(Duration::from_millis(2500));
    let m = &peek_state(&ws).unwrap()["models"]["spender"];
    assert_eq!(m["status"], "running", "4.75 of 5.00 does not eject");

    sim.set_spend(&hash, "5.14");
    wait_for_model(&ws, "spender", Duration::from_secs(10), |m| {
        m["intent"]["rule"] == "budget_exceeded"
    });
    // Requests in flight settle late.
    sim.set_spend(&hash, "5.17");

    let (code, _) = finish(child, &name);
    assert_eq!(code, Some(0));
    let state = ws.latest_state();
    let m = model(&state, "spender");
    assert_eq!(m["status"], "ejected");
    assert_eq!(m["exit"]["cause"], "killed by apf: budget_exceeded", "budget kills are immediate");
    assert_eq!(m["spent"], "5.17", "spend is read until it settles");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ws.run_dir().join("results.json")).unwrap())
            .unwrap();
    let r = results["models"].as_array().unwrap().iter().find(|r| r["alias"] == "spender").unwrap();
    assert_eq!(r["overshoot"], "0.17");
    let status = run(&mut apf(&sim, &["status", "-f", path.to_str().unwrap()]));
    assert!(String::from_utf8_lossy(&status.stdout).contains("over by $0.17"));
}

#[test]
fn h8_idle_needs_no_events_and_no_spend_so_a_silent_spender_is_not_idle() {
    demo_image();
    let sim = Sim::start(&[]);
    let ws = Workspace::new();
    let name = unique("h8");
    let text = manifest(
        &name,
        "0.004",
        &[
            ("sleeper", "openai/gpt-4o-mini", "env = { DEMO_MODE = \"idle\" }"),
            (
                "silent",
                "openai/gpt-4o-mini",
                "env = { DEMO_MODE = \"silent-spend\", DEMO_TURN_DELAY_MS = \"500\" }",
            ),
        ],
        "[[eject]]\nrule = \"budget_exceeded\"\n\n[[eject]]\nrule = \"idle\"\nafter = \"4s\"\n",
    );
    let path = ws.write("experiment.toml", &text);
    let (code, _) = finish(spawn_apply(&sim, &path), &name);
    assert!(matches!(code, Some(0 | 1)), "{code:?}");
    let state = ws.latest_state();
    let sleeper = model(&state, "sleeper");
    assert_eq!(sleeper["status"], "ejected");
    assert!(sleeper["note"].as_str().unwrap().starts_with("idle"), "{sleeper}");
    assert!(
        sleeper["exit"]["cause"].as_str().unwrap().starts_with("stopped by apf: idle"),
        "{sleeper}"
    );

    let silent = model(&state, "silent");
    let note = silent["note"].as_str().unwrap();
    assert!(!note.starts_with("idle"), "an agent whose spend climbs is not idle: {silent}");
    assert_eq!(silent["counts"]["events"], 0, "it printed nothing");
    assert!(silent["spent"].as_str().unwrap() != "0", "its spend climbed: {silent}");
    assert!(note.contains("left"), "a failed model's note says what was left: {note}");
}

#[test]
fn h8_no_progress_fires_on_spend_since_the_last_progress_event() {
    demo_image();
    let sim = Sim::start(&[]);
    let ws = Workspace::new();
    let name = unique("np");
    let text = manifest(
        &name,
        "0.05",
        &[("spinner", "anthropic/claude-opus-4", "env = { DEMO_MODE = \"spin\" }")],
        "[[eject]]\nrule = \"no_progress\"\nspent = 0.2\n",
    );
    let path = ws.write("experiment.toml", &text);
    let (code, _) = finish(spawn_apply(&sim, &path), &name);
    assert_eq!(code, Some(0));
    let state = ws.latest_state();
    let m = model(&state, "spinner");
    assert_eq!(m["status"], "ejected");
    assert!(m["note"].as_str().unwrap().starts_with("no progress"), "{m}");
    assert!(m["counts"]["errors"].as_u64().unwrap() > 0, "its error events were counted");
}

#[test]
fn warn_only_rules_record_a_warning_and_wall_clock_ejects_with_its_reason() {
    demo_image();
    let sim = Sim::start(&[]);
    let ws = Workspace::new();
    let name = unique("wc");
    let text = manifest(
        &name,
        "0.05",
        &[("sleeper", "openai/gpt-4o-mini", "env = { DEMO_MODE = \"idle\" }")],
        "[[eject]]\nrule = \"idle\"\nafter = \"1s\"\nwarn_only = true\n\n[[eject]]\nrule = \"wall_clock\"\nafter = \"5s\"\n",
    );
    let path = ws.write("experiment.toml", &text);
    let (code, stderr) = finish(spawn_apply(&sim, &path), &name);
    assert_eq!(code, Some(0));
    let state = ws.latest_state();
    let m = model(&state, "sleeper");
    assert_eq!(m["status"], "ejected");
    assert!(m["note"].as_str().unwrap().starts_with("wall clock"), "{m}");
    let warnings = m["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "a warn-only rule warns once: {warnings:?}");
    assert!(stderr.contains("warning: sleeper: idle"), "{stderr}");
}

#[test]
fn h11_exit_causes_are_told_apart() {
    demo_image();
    let sim = Sim::start(&[]);
    let ws = Workspace::new();
    let name = unique("h11");
    let text = manifest(
        &name,
        "0.05",
        &[
            ("crasher", "openai/gpt-4o-mini", "env = { DEMO_MODE = \"crash\" }"),
            (
                "hog",
                "openai/gpt-4o-mini",
                "env = { DEMO_MODE = \"oom\", DEMO_OOM_MAX_MB = \"512\" }",
            ),
            ("victim", "openai/gpt-4o-mini", "env = { DEMO_MODE = \"idle\" }"),
        ],
        "[[eject]]\nrule = \"budget_exceeded\"\n",
    )
    .replace("stop_grace = \"3s\"", "stop_grace = \"3s\"\nmemory = \"64m\"");
    let path = ws.write("experiment.toml", &text);
    let child = spawn_apply(&sim, &path);
    let victim =
        wait_for_model(&ws, "victim", Duration::from_secs(60), |m| m["status"] == "running");
    let id = victim["container"]["id"].as_str().unwrap().to_string();
    // apf marks a model running once `docker start` is under way; kill it from outside once
    // docker agrees it runs.
    let killed = wait_until(Duration::from_secs(30), || {
        std::process::Command::new("docker")
            .args(["kill", &id])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(killed, "docker kill reaches the running container");
    let (code, _) = finish(child, &name);
    assert_eq!(code, Some(1), "a run with a failed model exits 1");

    let state = ws.latest_state();
    let crasher = model(&state, "crasher");
    assert_eq!(crasher["status"], "failed");
    assert_eq!(crasher["exit"]["cause"], "exited with code 1");
    assert!(
        !crasher["exit"]["last_lines"].as_array().unwrap().is_empty(),
        "its last log lines are kept"
    );
    let hog = model(&state, "hog");
    assert_eq!(hog["exit"]["cause"], "OOM-killed", "{hog}");
    assert_eq!(hog["exit"]["oom_killed"], true);
    let victim = model(&state, "victim");
    assert_eq!(victim["exit"]["cause"], "killed from outside (SIGKILL)", "{victim}");
    assert_eq!(victim["exit"]["code"], 137);
}

#[test]
fn h13_no_key_in_any_argv_log_or_state_and_the_key_dies_with_the_run() {
    demo_image();
    let sim = Sim::start(&[]);
    let ws = Workspace::new();
    let name = unique("h13");
    let text = manifest(
        &name,
        "0.05",
        &[("sleeper", "openai/gpt-4o-mini", "env = { DEMO_MODE = \"idle\" }")],
        "[[eject]]\nrule = \"wall_clock\"\nafter = \"4s\"\n",
    );
    let path = ws.write("experiment.toml", &text);
    let child = spawn_apply(&sim, &path);
    let m = wait_for_model(&ws, "sleeper", Duration::from_secs(60), |m| m["status"] == "running");

    let ps = apf_and_docker_command_lines();
    assert!(ps.contains("apply"), "the process table shows apf apply: {ps}");
    assert!(!ps.contains("sk-or-"), "a key shows in the process table:\n{ps}");
    // The container holds its key in its environment (the agent contract); read it back to
    // prove it stops working once the run ends.
    let id = m["container"]["id"].as_str().unwrap();
    let env = std::process::Command::new("docker")
        .args(["inspect", "--format", "{{range .Config.Env}}{{println .}}{{end}}", id])
        .output()
        .unwrap();
    let env = String::from_utf8_lossy(&env.stdout).to_string();
    let key = env.lines().find_map(|l| l.strip_prefix("OPENROUTER_API_KEY=")).unwrap().to_string();
    assert!(key.starts_with("sk-or-"));

    let (code, stderr) = finish(child, &name);
    assert_eq!(code, Some(0));
    assert!(!stderr.contains("sk-or-"), "apf's output holds no key");
    for entry in walk(ws.path()) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        assert!(!text.contains(&key), "{} holds the key", entry.display());
        assert!(!text.contains(MGMT_KEY), "{} holds the management key", entry.display());
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("{}/key", sim.base_url))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status.as_u16(), 401, "the sub-key no longer works after the run");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[test]
fn h2_an_empty_account_stops_further_models_and_says_budgets_will_not_help() {
    demo_image();
    let sim = Sim::start(&["--credits", "0.0005"]);
    let ws = Workspace::new();
    let name = unique("h2");
    let text = manifest(
        &name,
        "0.05",
        &[
            ("first", "anthropic/claude-opus-4", "env = { DEMO_MODE = \"spin\" }"),
            ("second", "openai/gpt-4o-mini", ""),
        ],
        "[[eject]]\nrule = \"budget_exceeded\"\n",
    )
    .replace("[container]", "[container]\nmax_parallel = 1");
    let path = ws.write("experiment.toml", &text);
    let (code, stderr) = finish(spawn_apply(&sim, &path), &name);
    assert_eq!(code, Some(0), "{stderr}");
    let state = ws.latest_state();
    let first = model(&state, "first");
    assert_eq!(first["status"], "no_credits", "{first}");
    assert!(first["note"].as_str().unwrap().contains("raising the budget will not help"));
    assert_eq!(model(&state, "second")["status"], "skipped", "no further model starts");
    assert_eq!(state["status"], "failed");
}

#[test]
fn resume_runs_only_unfinished_models_with_a_key_capped_at_what_remains() {
    demo_image();
    let sim = Sim::start(&[]);
    let ws = Workspace::new();
    let name = unique("rs");
    let text = manifest(
        &name,
        "0.05",
        &[
            ("worker", "openai/gpt-4o-mini", "env = { DEMO_TURN_DELAY_MS = \"0\" }"),
            ("sleeper", "openai/gpt-4o-mini", "env = { DEMO_MODE = \"idle\" }"),
        ],
        "[[eject]]\nrule = \"expr\"\nwhen = \"elapsed_s > 6.0 && events == 0\"\nreason = \"slept enough\"\n",
    );
    let path = ws.write("experiment.toml", &text);
    let child = spawn_apply(&sim, &path);
    wait_for_model(&ws, "worker", Duration::from_secs(60), |m| m["status"] == "done");
    let sleeper =
        wait_for_model(&ws, "sleeper", Duration::from_secs(10), |m| m["status"] == "running");
    sim.set_spend(sleeper["key"]["hash"].as_str().unwrap(), "0.01");
    wait_for_model(&ws, "sleeper", Duration::from_secs(10), |m| m["spent"] == "0.01");
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let (code, _) = finish(child, &name);
    assert_eq!(code, Some(130));
    let first = ws.latest_state();
    assert_eq!(first["status"], "interrupted");

    let out = run(&mut apf(&sim, &["apply", "--auto-approve", path.to_str().unwrap()]));
    remove_containers(&name);
    assert_eq!(out.status.code(), Some(0));
    let state = ws.latest_state();
    assert_eq!(state["run_id"], first["run_id"], "the same run is resumed");
    let worker = model(&state, "worker");
    assert_eq!(worker["attempts"], 1, "a finished model is not run again");
    assert_eq!(worker["status"], "done");
    let sleeper = model(&state, "sleeper");
    assert_eq!(sleeper["attempts"], 2);
    assert_eq!(sleeper["key"]["limit"], "0.04", "the new key is capped at what remains");
    assert!(sleeper["key"]["name"].as_str().unwrap().ends_with("sleeper-2"));
    assert_eq!(sleeper["status"], "ejected");
    assert!(sim.keys_named(&format!("apf/{name}/")).is_empty());
}
