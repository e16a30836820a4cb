//! A client no one here wrote drives the simulator: tests/sdk/openai_sdk_check.py uses the
//! official `openai` Python SDK against a real `apf sim` process to complete chats and tool
//! calls, plain and streamed, and checks the usage the SDK parses against what the simulator
//! recorded. The SDK is a test dependency installed by `scripts/ci-sdk-deps.sh`; without it (or
//! without python3) this test fails, saying how to install it, because a skipped check would let
//! the simulator drift from what real clients accept.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL: &str = "run `python3 -m pip install -r tests/sdk/requirements.txt` \
                       (CI does it with scripts/ci-sdk-deps.sh)";

/// The whole check takes a few seconds; this only bounds a hung run.
const CHECK_TIMEOUT: Duration = Duration::from_secs(180);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `openai` version tests/sdk/requirements.txt pins.
fn pinned_sdk() -> String {
    let path = repo().join("tests/sdk/requirements.txt");
    let text = std::fs::read_to_string(&path).expect("tests/sdk/requirements.txt is readable");
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .find_map(|l| l.strip_prefix("openai=="))
        .map(|v| v.trim().to_string())
        .expect("tests/sdk/requirements.txt pins openai==VERSION")
}

/// The version of the `openai` package python3 imports.
fn installed_sdk() -> String {
    let out = Command::new("python3")
        .args(["-c", "import openai; print(openai.__version__)"])
        .stdin(Stdio::null())
        .output();
    match out {
        Err(e) => panic!(
            "python3 could not be run ({e}); the openai SDK check needs Python 3 with the \
             openai package: install Python 3, then {INSTALL}"
        ),
        Ok(o) if !o.status.success() => panic!(
            "python3 cannot import the openai package: {INSTALL}\n{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Ok(o) => String::from_utf8_lossy(&o.stdout).trim().to_string(),
    }
}

/// A real `apf sim` process, killed on drop.
struct SimProcess {
    child: Child,
    base_url: String,
    /// Held open so the simulator never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl SimProcess {
    /// The management key goes in the environment, never on argv, as users are told to pass it.
    fn start(management_key: &str, stderr: File) -> SimProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_apf"))
            .args(["sim", "--listen", "127.0.0.1:0"])
            .env("OR_ADMIN_KEY", management_key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("apf sim starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("the sim's stdout is piped"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("the sim's stdout is readable");
        let base_url = line.trim().to_string();
        let sim = SimProcess { child, base_url, _stdout: stdout };
        assert!(
            sim.base_url.starts_with("http://127.0.0.1:") && sim.base_url.ends_with("/api/v1"),
            "the sim's first stdout line is its base URL, got {:?}",
            sim.base_url
        );
        sim
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh inference key, with no limit and no spend, made with the management key.
fn create_inference_key(base_url: &str, management_key: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        let resp = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("an HTTP client")
            .post(format!("{base_url}/keys"))
            .bearer_auth(management_key)
            .json(&serde_json::json!({"name": "openai-sdk-check"}))
            .send()
            .await
            .expect("POST /keys is answered");
        assert_eq!(resp.status().as_u16(), 201, "POST /keys creates a key");
        let body: serde_json::Value = resp.json().await.expect("POST /keys answers JSON");
        body["key"].as_str().expect("the created key's plaintext is in `key`").to_string()
    })
}

/// Run the Python check, keys in its environment; its exit status and everything it printed.
fn run_check(base_url: &str, key: &str, management_key: &str, log: &Path) -> (bool, String) {
    let out = File::create(log).expect("the check's log file");
    let err = out.try_clone().expect("the log file, twice");
    let mut child = Command::new("python3")
        .arg(repo().join("tests/sdk/openai_sdk_check.py"))
        .current_dir(repo())
        .env("APF_SIM_BASE_URL", base_url)
        .env("APF_SIM_API_KEY", key)
        .env("APF_SIM_MANAGEMENT_KEY", management_key)
        .env_remove("APF_SIM_TOOL_CALLS")
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("python3 runs the check");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("the check's status") {
            break Some(status);
        }
        if started.elapsed() > CHECK_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let printed = std::fs::read_to_string(log).unwrap_or_default();
    match status {
        Some(s) => (s.success(), printed),
        None => (false, format!("{printed}\n(killed after {CHECK_TIMEOUT:?})")),
    }
}

#[test]
fn the_openai_python_sdk_drives_the_simulator() {
    let installed = installed_sdk();
    let pinned = pinned_sdk();
    assert_eq!(
        installed, pinned,
        "python3 has openai {installed}, but tests/sdk/requirements.txt pins {pinned}: {INSTALL}"
    );

    let dir = tempfile::tempdir().expect("a temp dir");
    let sim_log = dir.path().join("sim.stderr");
    let management_key = format!("sk-or-v1-sdk-check-{:032x}", rand::random::<u128>());
    let sim =
        SimProcess::start(&management_key, File::create(&sim_log).expect("the sim's log file"));
    let key = create_inference_key(&sim.base_url, &management_key);

    let (ok, printed) = run_check(&sim.base_url, &key, &management_key, &dir.path().join("check"));
    drop(sim);
    let sim_stderr = std::fs::read_to_string(&sim_log).unwrap_or_default();
    assert!(
        ok && printed.contains("checks passed; all passed"),
        "the openai SDK check failed:\n{printed}\n--- apf sim stderr\n{sim_stderr}"
    );
    assert!(printed.contains(&format!("openai SDK {pinned} ")), "it ran openai {pinned}");
    for must in ["PASS stream: the SDK parses one usage chunk", "PASS /key usage = the sum"] {
        assert!(printed.contains(must), "the check ran `{must}`:\n{printed}");
    }
}
