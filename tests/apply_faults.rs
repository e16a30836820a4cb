//! Apply under faults: an OpenRouter that fails, throttles, answers slowly or settles spend
//! late, and docker that cannot start a container. Real containers, a real `apf sim` process.

// A failing test shows what apf printed on stderr.
#![allow(clippy::print_stderr)]

mod common;

use std::process::Child;
use std::time::Duration;

use common::*;

fn finish(child: Child, name: &str) -> Option<i32> {
    finish_apply(child, name).0
}

#[test]
fn h12_failed_spend_polls_mark_spend_stale_and_eject_nobody() {
    demo_image();
    let sim = Sim::start(&[]);
    let ws = Workspace::new();
    let name = unique("stale");
    let text = manifest(
        &name,
        "0.05",
        &[
            ("a", "openai/gpt-4o-mini", "env = { DEMO_MODE = \"idle\" }"),
            ("b", "openai/gpt-4o-mini", "env = { DEMO_MODE = \"idle\" }"),
        ],
        "[[eject]]\nrule = \"budget_exceeded\"\n\n[[eject]]\nrule = \"wall_clock\"\nafter = \"15s\"\n",
    );
    let path = ws.write("experiment.toml", &text);
    let child = spawn_apply(&sim, &path);
    let a = wait_for_model(&ws, "a", Duration::from_secs(60), |m| m["status"] == "running");
    wait_for_model(&ws, "b", Duration::from_secs(10), |m| m["status"] == "running");

    sim.post("/_sim/faults", serde_json::json!({ "rate_5xx": 1.0, "paths": ["/keys"] }));
    let stale = wait_for_model(&ws, "a", Duration::from_secs(20), |m| m["spend_stale"] == true);
    assert_eq!(stale["status"], "running", "a failed poll ejects nobody");
    let status = run(&mut apf(&sim, &["status", "-f", path.to_str().unwrap()]));
    assert!(String::from_utf8_lossy(&status.stdout).contains("spend stale since"));

    sim.post("/_sim/faults", serde_json::json!({}));
    sim.set_spend(a["key"]["hash"].as_str().unwrap(), "0.06");
    assert_eq!(finish(child, &name), Some(0));
    let state = ws.latest_state();
    assert_eq!(state["models"]["a"]["intent"]["rule"], "budget_exceeded");
    assert_eq!(state["models"]["a"]["spend_stale"], false, "fresh readings clear the marker");
    assert_eq!(state["models"]["b"]["intent"]["rule"], "wall_clock");
}

#[test]
fn late_and_slow_spend_is_all_counted_in_the_final_reading() {
    demo_image();
    let sim = Sim::start(&["--spend-delay", "2000", "--latency", "200"]);
    let ws = Workspace::new();
    let name = unique("late");
    let text = manifest(
        &name,
        "0.05",
        &[("w1", "openai/gpt-4o-mini", ""), ("w2", "meta-llama/llama-3.3-70b-instruct", "")],
        "[[eject]]\nrule = \"budget_exceeded\"\n",
    );
    let path = ws.write("experiment.toml", &text);
    assert_eq!(finish(spawn_apply(&sim, &path), &name), Some(0));
    let state = ws.latest_state();
    let credits = sim.get("/credits");
    let used = credits["data"]["total_usage"].as_f64().unwrap();
    let spent: f64 = state["models"]
        .as_object()
        .unwrap()
        .values()
        .map(|m| m["spent"].as_str().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(used > 0.0);
    assert!((used - spent).abs() < 1e-12, "the account spent {used}, the run recorded {spent}");
    for m in state["models"].as_object().unwrap().values() {
        assert_eq!(m["status"], "done", "{m}");
    }
}

#[test]
fn a_container_that_cannot_be_created_fails_its_model_and_revokes_its_key() {
    demo_image();
    let sim = Sim::start(&[]);
    let ws = Workspace::new();
    let name = unique("noimg");
    let text = manifest(&name, "0.05", &[("ghost", "openai/gpt-4o-mini", "")], "")
        .replace("apf-demo-agent:latest", "apf-no-such-image:0")
        .replace("checks = [\"models\", \"docker_image\"]", "checks = [\"models\"]");
    let path = ws.write("experiment.toml", &text);
    assert_eq!(finish(spawn_apply(&sim, &path), &name), Some(1), "a failed model exits 1");
    let state = ws.latest_state();
    let m = &state["models"]["ghost"];
    assert_eq!(m["status"], "failed");
    assert!(m["note"].as_str().unwrap().contains("could not create its container"), "{m}");
    assert_eq!(m["key"]["revoked"], true);
    assert!(sim.keys_named(&format!("apf/{name}/")).is_empty());
}

#[test]
fn preflight_refuses_a_missing_image_before_anything_is_created() {
    let sim = Sim::start(&[]);
    let ws = Workspace::new();
    let name = unique("pf");
    let text = manifest(&name, "0.05", &[("ghost", "openai/gpt-4o-mini", "")], "")
        .replace("apf-demo-agent:latest", "apf-no-such-image:0");
    let path = ws.write("experiment.toml", &text);
    let out = run(&mut apf(&sim, &["apply", "--auto-approve", path.to_str().unwrap()]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("apf-no-such-image:0 is not present locally")
    );
    assert!(!ws.path().join(".apf").exists(), "no run was started");
    assert!(sim.keys_named("apf/").is_empty(), "no key was made");
}
