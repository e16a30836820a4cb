//! What the preflight's concurrency buys: the time to make a plan for 1 and for 50 models
//! against the simulator with 100 ms added to every request, with the checks run together (as
//! `apf plan` does) and one after another. The goal is a plan for 50 models taking about as
//! long as one for a single model: only the longest chain of requests (a smoke check's create,
//! read back or call, call, delete, after the free round) should set the time.
//!
//! `cargo bench --bench plan` (it needs Docker and the demo agent's image for docker_image).
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use apf::docker::Docker;
use apf::openrouter::Client;
use apf::plan::{Plan, PlanEndpoint};
use apf::preflight::{self, Inputs, Mark, Schedule};
use apf::sim::{Catalog, Faults, SimConfig};

const LATENCY_MS: u64 = 100;
const ROUNDS: usize = 5;
const IMAGE: &str = "apf-demo-agent:latest";

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    rt.block_on(bench());
}

/// Fifty priced models, the first caching explicitly (for cache_smoke).
fn catalog() -> Catalog {
    let mut text = String::from("replace_builtin = true\n");
    for n in 0..50 {
        let cache = if n == 0 {
            "input_cache_write = \"0.00000125\"\ninput_cache_read = \"0.0000001\"\ncache = \"explicit\"\n"
        } else {
            ""
        };
        text.push_str(&format!(
            "[[models]]\nid = \"bench/model-{n:02}\"\nprompt = \"0.000001\"\ncompletion = \
             \"0.000002\"\n{cache}supported_parameters = [\"tools\", \"max_tokens\"]\n\n"
        ));
    }
    Catalog::parse(&text).expect("the bench catalog")
}

fn manifest(dir: &std::path::Path, n: usize) -> apf::manifest::Experiment {
    let mut text = format!(
        "version = 1\nname = \"bench-{n}\"\n\n[budget]\nper_model_usd = 0.05\n\n[container]\n\
         image = \"{IMAGE}\"\n\n[preflight]\nchecks = [\"balance\", \"math\", \"models\", \
         \"tool_support\", \"key_smoke\", \"cache_smoke\", \"docker_image\"]\n\
         common_required_params = [\"tools\"]\n\n[[preflight.custom]]\nname = \"true\"\n\
         run = [\"true\"]\n\n"
    );
    for m in 0..n {
        text.push_str(&format!("[[models]]\nid = \"bench/model-{m:02}\"\nalias = \"m{m}\"\n\n"));
    }
    let path = dir.join(format!("bench-{n}.toml"));
    std::fs::write(&path, text).expect("write the manifest");
    apf::manifest::load(&path).unwrap_or_else(|e| panic!("a valid manifest: {e}"))
}

async fn bench() {
    let faults = Faults { latency_ms: LATENCY_MS, ..Faults::default() };
    let credits = "1000".parse().expect("an amount");
    let sim =
        apf::sim::start(SimConfig { catalog: catalog(), faults, credits, ..SimConfig::default() })
            .await
            .expect("the simulator starts");
    let dir = tempfile::tempdir().expect("a temp dir");
    let client = Client::new(&sim.base_url);
    let docker = Docker::default();

    println!("plan against apf sim with {LATENCY_MS} ms per request, median of {ROUNDS} rounds");
    println!("models  schedule     median_ms  requests");
    let mut medians = std::collections::BTreeMap::new();
    for n in [1usize, 50] {
        let exp = manifest(dir.path(), n);
        for (label, schedule) in
            [("concurrent", Schedule::Concurrent), ("sequential", Schedule::Sequential)]
        {
            let mut times = Vec::new();
            let before = sim.requests().len();
            for _ in 0..ROUNDS {
                let start = Instant::now();
                let report = preflight::run(Inputs {
                    exp: &exp,
                    client: &client,
                    management_key: Some(&sim.management_key),
                    management_key_env: "OR_ADMIN_KEY",
                    docker: &docker,
                    schedule,
                })
                .await;
                let plan = Plan::new(
                    &exp,
                    PlanEndpoint { simulator: true, base_url: sim.base_url.clone() },
                    &report,
                );
                times.push(start.elapsed());
                let failed: Vec<_> =
                    plan.checks.iter().filter(|c| c.mark == Mark::Failed).collect();
                assert!(failed.is_empty(), "every check passes: {failed:#?}");
            }
            let requests = (sim.requests().len() - before) / ROUNDS;
            times.sort();
            let median = times[ROUNDS / 2];
            medians.insert((n, label), median);
            println!("{n:>6}  {label:<11}  {:>9}  {requests:>8}", median.as_millis());
        }
    }
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    let at = |n, l| ms(&medians[&(n, l)]);
    println!();
    println!(
        "50 models / 1 model, concurrent:   {:.2}",
        at(50, "concurrent") / at(1, "concurrent")
    );
    println!(
        "50 models / 1 model, sequential:   {:.2}",
        at(50, "sequential") / at(1, "sequential")
    );
    println!(
        "sequential / concurrent, 1 model:   {:.2}",
        at(1, "sequential") / at(1, "concurrent")
    );
    println!(
        "sequential / concurrent, 50 models: {:.2}",
        at(50, "sequential") / at(50, "concurrent")
    );
    sim.shutdown().await;
}
