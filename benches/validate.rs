//! How long `apf validate` takes on a 100-model manifest, beside a 1-model one measured in the
//! same run: in process (`manifest::load`, the work itself) and as a command (`apf validate`,
//! what a user or an editor waits for, process start included). Prints medians and the ratio.
//!
//! Run with `cargo bench --bench validate`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn manifest(models: usize) -> String {
    let mut text = String::from(
        r#"#:schema ./experiment.schema.json
version = 1
name = "bench"
description = "A large field"

[budget]
per_model_usd = 0.25
mode = "detailed"
inject_every = "30s"
poll_every = "5s"

[container]
image = "agent:latest"
timeout = "45m"
max_parallel = 8
env = { LOG_LEVEL = "info" }
mounts = [
  { source = "TASK.md", target = "/workspace/TASK.md", read_only = true },
  "./data:/workspace/data:ro",
]

[preflight]
checks = ["balance", "math", "models", "tool_support", "key_smoke", "docker_image"]
common_required_params = ["tools"]

[[preflight.custom]]
name = "balance covers twice the budgets"
expr = "balance_usd >= 2.0 * total_budget_usd"

[[eject]]
rule = "budget_exceeded"

[[eject]]
rule = "idle"
after = "3m"

[[eject]]
rule = "budget_fraction"
spent = 0.25
unless = "tool_calls > 0"

[[eject]]
rule = "all"
of = [{ rule = "no_progress", spent = 0.2 }, { rule = "expr", when = "errors > 3" }]

[events]
tool_call = ["tool_call", { expr = "event.type == 'message' && has(event.tool)" }]
"#,
    );
    for i in 0..models {
        text.push_str(&format!(
            "\n[[models]]\nid = \"vendor-{}/model-{i}-instruct\"\nalias = \"m{i}\"\n",
            i % 7
        ));
        if i % 3 == 0 {
            text.push_str("budget_usd = 0.5\nextra_models = [\"google/gemini-2.5-flash\"]\n");
        }
        if i % 5 == 0 {
            text.push_str(&format!("env = {{ MODEL_INDEX = \"{i}\" }}\n"));
        }
    }
    text
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn write(dir: &Path, name: &str, models: usize) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, manifest(models)).unwrap();
    path
}

/// Median time of `f`, run `n` times, the two sizes taking turns so drift hits both alike.
fn measure(n: usize, small: &dyn Fn(), large: &dyn Fn()) -> (Duration, Duration) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let t = Instant::now();
        small();
        a.push(t.elapsed());
        let t = Instant::now();
        large();
        b.push(t.elapsed());
    }
    (median(a), median(b))
}

// A benchmark's output is its report.
#[allow(clippy::print_stdout)]
fn main() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("TASK.md"), "task\n").unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let one = write(dir.path(), "one.toml", 1);
    let hundred = write(dir.path(), "hundred.toml", 100);
    assert!(apf::manifest::load(&one).is_ok() && apf::manifest::load(&hundred).is_ok());

    let load = |p: &Path| {
        let exp = apf::manifest::load(p).unwrap();
        std::hint::black_box(exp);
    };
    let (small, large) = measure(300, &|| load(&one), &|| load(&hundred));
    println!(
        "manifest::load   1 model: {:>9.3?}   100 models: {:>9.3?}   ratio {:.1}x",
        small,
        large,
        ratio(small, large)
    );

    let bin = env!("CARGO_BIN_EXE_apf");
    let run = |p: &Path| {
        let out = Command::new(bin).arg("validate").arg(p).output().unwrap();
        assert!(out.status.success());
    };
    let (small, large) = measure(40, &|| run(&one), &|| run(&hundred));
    println!(
        "apf validate     1 model: {:>9.3?}   100 models: {:>9.3?}   ratio {:.1}x",
        small,
        large,
        ratio(small, large)
    );
}

fn ratio(small: Duration, large: Duration) -> f64 {
    large.as_secs_f64() / small.as_secs_f64().max(1e-9)
}
