//! Shared test harness: a real `apf sim` process on loopback, a real demo-agent image, the
//! real `apf` binary, and helpers to ask docker and the simulator what is left behind.
// Each test binary uses a different part of the harness.
#![allow(dead_code)]
// A failing test shows what apf printed; that is the point of these lines.
#![allow(clippy::print_stderr)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const MGMT_KEY: &str = concat!("sk-or-v1-", "test-management-key-0000000000000000");
pub const IMAGE: &str = "apf-demo-agent:latest";

pub fn apf_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_apf"))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Build the demo agent's image once per test process, when it is missing.
pub fn demo_image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let present = Command::new("docker")
            .args(["image", "inspect", IMAGE])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !present {
            let status = Command::new("bash")
                .arg(repo().join("scripts/build-demo-image.sh"))
                .status()
                .expect("run scripts/build-demo-image.sh");
            assert!(status.success(), "the demo image builds");
        }
    });
}

/// A running `apf sim` child process, killed on drop.
pub struct Sim {
    pub child: Child,
    pub base_url: String,
}

impl Sim {
    pub fn start(extra: &[&str]) -> Sim {
        let mut child = Command::new(apf_bin())
            .arg("sim")
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("OR_ADMIN_KEY", MGMT_KEY)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start apf sim");
        let stdout = child.stdout.take().expect("sim stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("the sim prints its base URL");
        let base_url = line.trim().to_string();
        assert!(base_url.starts_with("http://127.0.0.1:"), "base URL: {base_url:?}");
        Sim { child, base_url }
    }

    /// GET a management path, as JSON.
    pub fn get(&self, path: &str) -> serde_json::Value {
        let url = format!("{}{path}", self.base_url);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(MGMT_KEY)
                .send()
                .await
                .expect("sim answers")
                .json()
                .await
                .expect("sim answers JSON")
        })
    }

    /// POST JSON to a path under the base URL, with the management key.
    pub fn post(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let url = format!("{}{path}", self.base_url);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let resp = reqwest::Client::new()
                .post(url)
                .bearer_auth(MGMT_KEY)
                .json(&body)
                .send()
                .await
                .expect("sim answers");
            assert!(resp.status().is_success(), "POST {path}: {}", resp.status());
            resp.json().await.expect("sim answers JSON")
        })
    }

    /// Set a key's recorded usage, as if its requests had settled.
    pub fn set_spend(&self, hash: &str, usd: &str) {
        self.post(&format!("/_sim/keys/{hash}/spend"), serde_json::json!({ "usd": usd }));
    }

    /// Every key on the simulated account whose name starts with `prefix`, disabled included.
    pub fn keys_named(&self, prefix: &str) -> Vec<serde_json::Value> {
        let mut all = Vec::new();
        loop {
            let page = self.get(&format!("/keys?offset={}&include_disabled=true", all.len()));
            let data = page["data"].as_array().cloned().unwrap_or_default();
            let n = data.len();
            all.extend(data);
            if n < 100 {
                break;
            }
        }
        all.into_iter()
            .filter(|k| k["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
            .collect()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A manifest for tests: `models` are `(alias, id, extra TOML lines)`; `eject` is TOML.
pub fn manifest(name: &str, budget: &str, models: &[(&str, &str, &str)], eject: &str) -> String {
    let mut text = format!(
        r#"version = 1
name = "{name}"

[budget]
per_model_usd = {budget}
inject_every = "1s"
poll_every = "1s"

[container]
image = "apf-demo-agent:latest"
timeout = "5m"
stop_grace = "3s"
env = {{ DEMO_TURN_DELAY_MS = "300", DEMO_MAX_TOKENS = "64" }}

[preflight]
checks = ["models", "docker_image"]
"#
    );
    for (alias, id, extra) in models {
        text.push_str(&format!("\n[[models]]\nid = \"{id}\"\nalias = \"{alias}\"\n{extra}\n"));
    }
    text.push('\n');
    text.push_str(eject);
    text
}

/// The state of a run while it runs, or `None` before it exists or while it is replaced.
pub fn peek_state(ws: &Workspace) -> Option<serde_json::Value> {
    let latest = std::fs::read_to_string(ws.path().join(".apf/runs/latest")).ok()?;
    let path = ws.path().join(".apf/runs").join(latest.trim()).join("state.json");
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Wait until the model `alias` of the latest run satisfies `f`.
pub fn wait_for_model(
    ws: &Workspace,
    alias: &str,
    limit: Duration,
    f: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let ok = wait_until(limit, || match peek_state(ws) {
        Some(s) => {
            last = s["models"][alias].clone();
            f(&last)
        }
        None => false,
    });
    assert!(ok, "{alias} never reached the expected state; last seen: {last}");
    last
}

/// A copy of an example folder in a fresh temp dir, so runs never write into the repo.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace { dir: tempfile::Builder::new().prefix("apf test ").tempdir().unwrap() }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    /// The quickstart manifest and its task, with `edit` applied to the manifest's text.
    pub fn quickstart(&self, edit: impl Fn(String) -> String) -> PathBuf {
        let src =
            std::fs::read_to_string(repo().join("examples/experiments/quickstart.toml")).unwrap();
        let task = std::fs::read_to_string(repo().join("examples/experiments/TASK.md")).unwrap();
        self.write("TASK.md", &task);
        self.write("experiment.toml", &edit(src))
    }

    /// The state of the latest run beside the manifest.
    pub fn latest_state(&self) -> serde_json::Value {
        let latest = std::fs::read_to_string(self.path().join(".apf/runs/latest"))
            .expect("a run was recorded");
        let state = self.path().join(".apf/runs").join(latest.trim()).join("state.json");
        serde_json::from_str(&std::fs::read_to_string(state).unwrap()).unwrap()
    }

    pub fn run_dir(&self) -> PathBuf {
        let latest = std::fs::read_to_string(self.path().join(".apf/runs/latest")).unwrap();
        self.path().join(".apf/runs").join(latest.trim())
    }
}

/// `apf` with the simulator's address and management key in its environment.
pub fn apf(sim: &Sim, args: &[&str]) -> Command {
    let mut cmd = Command::new(apf_bin());
    cmd.args(args)
        .env("OPENROUTER_BASE_URL", &sim.base_url)
        .env("OR_ADMIN_KEY", MGMT_KEY)
        .env("NO_COLOR", "1")
        .env_remove("OPENROUTER_API_KEY")
        .stdin(Stdio::null());
    cmd
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run apf");
    eprintln!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `apf apply --auto-approve` on `manifest` in the background, its stderr captured.
pub fn spawn_apply(sim: &Sim, manifest: &Path) -> Child {
    apf(sim, &["apply", "--auto-approve", "--settle", "20s", manifest.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait for a background apply, show its stderr, remove whatever of `experiment` a failed
/// test would leave, and return the exit code with the stderr.
pub fn finish_apply(child: Child, experiment: &str) -> (Option<i32>, String) {
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    eprintln!("--- apf stderr\n{stderr}");
    remove_containers(experiment);
    (out.status.code(), stderr)
}

/// Containers of an experiment, running or not, by apf's labels.
pub fn containers_of(experiment: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-a", "-q", "--filter", &format!("label=dev.apf.experiment={experiment}")])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// Remove an experiment's containers; for a test's own cleanup after a failure.
pub fn remove_containers(experiment: &str) {
    for id in containers_of(experiment) {
        let _ = Command::new("docker").args(["rm", "-f", &id]).output();
    }
}

/// Command lines of apf's own processes and of docker clients, from the process table. Other
/// programs on a shared machine are none of these tests' business.
pub fn apf_and_docker_command_lines() -> String {
    let ps = Command::new("ps").args(["-eo", "args"]).output().expect("ps");
    String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|l| {
            let program = l.split_whitespace().next().unwrap_or("");
            program.ends_with("/apf") || program == "apf" || program.ends_with("docker")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Wait until `f` holds, for at most `limit`.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// A unique experiment name, so parallel tests never see each other's containers or keys.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:x}", rand::random::<u32>())
}
