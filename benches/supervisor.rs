//! What supervising costs: apf's CPU time and peak memory while it watches a field of idle
//! containers, and how many spend requests each poll makes for 1, 10 and 50 models. Runs the
//! real binary against a real `apf sim` process and real containers.
//!
//! `cargo bench --bench supervisor` (it needs Docker and the demo agent's image).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MGMT: &str = concat!("sk-or-v1-", "bench-management-key");
const SUPERVISE_SECS: u64 = 20;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let apf = env!("CARGO_BIN_EXE_apf");
    println!(
        "models  cpu_s  cpu_pct  peak_rss_mb  key_listings  polls  listings_per_poll  other_requests"
    );
    for n in [1usize, 10, 20, 50] {
        let r = measure(apf, n);
        println!(
            "{n:>6}  {:>5.2}  {:>6.2}%  {:>11.1}  {:>12}  {:>5}  {:>17.2}  {:>14}",
            r.cpu_s,
            100.0 * r.cpu_s / r.wall_s,
            r.peak_rss_kb as f64 / 1024.0,
            r.listings,
            r.polls,
            r.listings as f64 / r.polls.max(1) as f64,
            r.other
        );
    }
}

struct Figures {
    cpu_s: f64,
    wall_s: f64,
    peak_rss_kb: u64,
    listings: u64,
    polls: u64,
    other: u64,
}

fn measure(apf: &str, n: usize) -> Figures {
    let mut sim = Command::new(apf)
        .args(["sim", "--listen", "127.0.0.1:0"])
        .env("OR_ADMIN_KEY", MGMT)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start apf sim");
    let mut line = String::new();
    BufReader::new(sim.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base = line.trim().to_string();

    let dir = tempfile::tempdir().unwrap();
    let name = format!("bench{n}-{:x}", rand::random::<u16>());
    let mut text = format!(
        "version = 1\nname = \"{name}\"\n[budget]\nper_model_usd = 0.01\npoll_every = \"1s\"\ninject_every = \"1s\"\n\
         [container]\nimage = \"apf-demo-agent:latest\"\nenv = {{ DEMO_MODE = \"idle\" }}\n\
         [preflight]\nchecks = [\"models\"]\n[[eject]]\nrule = \"wall_clock\"\nafter = \"{SUPERVISE_SECS}s\"\n"
    );
    for i in 0..n {
        text.push_str(&format!("[[models]]\nid = \"openai/gpt-4o-mini\"\nalias = \"m{i}\"\n"));
    }
    let manifest = dir.path().join("experiment.toml");
    std::fs::write(&manifest, text).unwrap();

    let start = Instant::now();
    let mut child = Command::new(apf)
        .args(["apply", "--auto-approve", "--settle", "3s", "-q"])
        .arg(&manifest)
        .env("OPENROUTER_BASE_URL", &base)
        .env("OR_ADMIN_KEY", MGMT)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak = 0;
    let mut cpu = 0.0;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "apply succeeds");
            break;
        }
        if let Some((c, rss)) = sample(pid) {
            cpu = c;
            peak = peak.max(rss);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let wall = start.elapsed().as_secs_f64();
    let counts = requests(&base);
    let _ = sim.kill();
    let _ = sim.wait();
    let listings = counts.get("GET /keys").copied().unwrap_or(0);
    let other: u64 = counts.iter().filter(|(k, _)| *k != "GET /keys").map(|(_, v)| *v).sum();
    // One poll a second while supervising, plus the settling reads at the end.
    let polls = SUPERVISE_SECS;
    Figures { cpu_s: cpu, wall_s: wall, peak_rss_kb: peak, listings, polls, other }
}

/// CPU seconds (user + system) and resident memory in KiB of a live process.
fn sample(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((ticks / 100.0, rss))
}

fn requests(base: &str) -> std::collections::BTreeMap<String, u64> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let body: serde_json::Value = rt.block_on(async {
        reqwest::Client::new()
            .get(format!("{base}/_sim/requests"))
            .bearer_auth(MGMT)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    body["counts"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0))).collect())
        .unwrap_or_default()
}
