//! `apf plan` and `apf apply` as a user runs them: the real binary against the simulator (run
//! in this test process), real Docker. The plan's text, JSON, saved file and exit codes; and a
//! saved plan refused whenever the world it saw has changed or it was applied already (H18),
//! including a model that left the catalog (H5).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use apf::money::Usd;
use apf::secret::Secret;
use apf::sim::{Catalog, SimConfig, SimHandle};

const MGMT: &str = concat!("sk-or-v1-", "plan-test-management-key-000000000000");
const IMAGE: &str = "apf-demo-agent:latest";

fn demo_image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let present = docker(&["image", "inspect", IMAGE]).status.success();
        if !present {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-demo-image.sh");
            let status = Command::new("bash").arg(script).status().expect("build the demo image");
            assert!(status.success(), "the demo image builds");
        }
    });
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).stdin(Stdio::null()).output().expect("docker runs")
}

fn usd(s: &str) -> Usd {
    s.parse().expect("a dollar amount")
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{:x}", rand::random::<u32>())
}

/// A simulator served by this test's own runtime, a manifest folder, and the binary.
struct World {
    rt: tokio::runtime::Runtime,
    sim: Option<SimHandle>,
    ws: tempfile::TempDir,
    name: String,
}

impl World {
    fn new(prefix: &str) -> World {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let ws = tempfile::Builder::new().prefix("apf plan test ").tempdir().expect("a temp dir");
        std::fs::write(ws.path().join("TASK.md"), "Write a haiku to haiku.md.\n").expect("TASK.md");
        let mut w = World { rt, sim: None, ws, name: unique(prefix) };
        w.start_sim(None, None);
        w
    }

    /// (Re)start the simulator, on `addr` when given, with a catalog added to the built-in one.
    fn start_sim(&mut self, addr: Option<std::net::SocketAddr>, catalog: Option<&str>) {
        let mut config = SimConfig {
            management_key: Secret::new(MGMT),
            management_key_generated: false,
            ..SimConfig::default()
        };
        if let Some(a) = addr {
            config.listen = a;
        }
        if let Some(text) = catalog {
            config.catalog = Catalog::parse(text).expect("a catalog");
        }
        self.sim = Some(self.rt.block_on(apf::sim::start(config)).expect("the simulator starts"));
    }

    fn sim(&self) -> &SimHandle {
        self.sim.as_ref().expect("a running simulator")
    }

    /// Stop the simulator and start another on the same address with `catalog`.
    fn restart_sim(&mut self, catalog: &str) {
        let old = self.sim.take().expect("a running simulator");
        let addr = old.addr;
        self.rt.block_on(old.shutdown());
        self.start_sim(Some(addr), Some(catalog));
    }

    fn path(&self) -> &Path {
        self.ws.path()
    }

    fn manifest(&self, body: &str) -> PathBuf {
        let text = format!(
            "version = 1\nname = \"{}\"\n\n[budget]\nper_model_usd = 0.05\ninject_every = \"1s\"\n\
             poll_every = \"1s\"\n\n{body}\n",
            self.name
        );
        let path = self.path().join("experiment.toml");
        std::fs::write(&path, text).expect("write the manifest");
        path
    }

    fn apf(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_apf"));
        cmd.args(args)
            .current_dir(self.path())
            .env("OPENROUTER_BASE_URL", &self.sim().base_url)
            .env("OR_ADMIN_KEY", MGMT)
            .env("NO_COLOR", "1")
            .env_remove("OPENROUTER_API_KEY")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self.apf(args).output().expect("apf runs");
        // Shown only when a test fails, to tell why.
        #[allow(clippy::print_stderr)]
        {
            eprintln!(
                "$ apf {}\n--- stdout\n{}\n--- stderr\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out
    }

    fn remove_containers(&self) {
        let out =
            docker(&["ps", "-aq", "--filter", &format!("label=dev.apf.experiment={}", self.name)]);
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            docker(&["rm", "-f", id]);
        }
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

const CONTAINER: &str = r#"[container]
image = "apf-demo-agent:latest"
timeout = "2m"
stop_grace = "2s"
env = { DEMO_MAX_TOKENS = "256", DEMO_MAX_TURNS = "2" }
mounts = [{ source = "TASK.md", target = "/workspace/TASK.md", read_only = true }]
"#;

const TWO_MODELS: &str = r#"
[[models]]
id = "openai/gpt-4o-mini"
alias = "mini"

[[models]]
id = "anthropic/claude-sonnet-4"
alias = "sonnet"
budget_usd = 0.10
"#;

const FREE_CHECKS: &str = r#"
[preflight]
checks = ["balance", "math", "models", "tool_support", "docker_image"]
common_required_params = ["tools"]

[[eject]]
rule = "budget_exceeded"

[[eject]]
rule = "idle"
after = "1m"
"#;

fn standard(w: &World) -> PathBuf {
    w.manifest(&format!("{CONTAINER}\n{TWO_MODELS}\n{FREE_CHECKS}"))
}

// ---- apf plan --------------------------------------------------------------------------------

#[test]
fn plan_shows_the_checks_each_model_its_key_and_container_mounts_eject_rules_and_totals() {
    demo_image();
    let w = World::new("plan-text");
    let m = standard(&w);
    let out = w.run(&["plan", m.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    for line in [
        "  ok   balance       $100.00 available",
        "  ok   models        2 listed, each with a price",
        "  ok   docker_image  apf-demo-agent:latest is ",
        "apf will create 2 key(s) and 2 container(s):",
        "mini    openai/gpt-4o-mini         $0.05  $0.15 / $0.60 per 1M   apf-demo-agent:latest",
        "sonnet  anthropic/claude-sonnet-4  $0.10  $3.00 / $15.00 per 1M  apf-demo-agent:latest",
        &format!("+ key        apf/{}/<run>/sonnet (cap $0.10)", w.name),
        &format!("+ container  apf-{}-<run>-mini", w.name),
        "mount  TASK.md -> /workspace/TASK.md (read-only)",
        "mount  .apf/runs/<run>/models/<alias>/output -> /workspace/output (read-write)",
        "  - eject when spend reaches the budget",
        "  - eject when idle (no events, no spend) for 1m",
        "Plan: 2 model(s): 2 key(s) and 2 container(s) to create.",
        "Budget: $0.15 of $100.00 available ($99.85 to spare); at most 2 container(s) at once.",
        "Worst-case overshoot: up to $0.12 past the budgets",
        "enforces a key's cap per request",
    ] {
        assert!(text.contains(line), "the plan shows {line:?}:\n{text}");
    }
    assert!(!text.contains("labels dev.apf"), "labels only with --detail");

    let detail = stdout(&w.run(&["plan", "--detail", m.to_str().unwrap()]));
    for line in [
        "ok anthropic/claude-sonnet-4: prompt $3.00 / 1M, completion $15.00 / 1M",
        "key expires 15m after the run's timeout (2m)",
        "labels dev.apf.alias=mini, dev.apf.experiment=",
        "DEMO_MAX_TOKENS=256 in the container's environment",
        "env    OPENROUTER_API_KEY=the model's own capped key",
    ] {
        assert!(detail.contains(line), "--detail shows {line:?}:\n{detail}");
    }
}

#[test]
fn plan_json_is_a_versioned_shape() {
    demo_image();
    let w = World::new("plan-json");
    let m = standard(&w);
    let out = w.run(&["plan", "--json", m.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["format"], "apf-plan");
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["summary"]["models"], 2);
    assert_eq!(v["summary"]["total_budget"], "0.15");
    assert_eq!(v["summary"]["balance"], "100");
    assert_eq!(v["models"][1]["completion_price"]["usd_per_million"], "15");
    assert_eq!(v["models"][1]["key"]["limit"], "0.1");
    assert_eq!(v["checks"][0]["name"], "balance");
    assert_eq!(v["checks"][0]["mark"], "passed");
    assert!(v["seen"]["image_id"].as_str().is_some_and(|id| id.starts_with("sha256:")));
}

#[test]
fn detailed_exitcode_is_2_with_actions_and_1_on_a_failed_check() {
    demo_image();
    let w = World::new("plan-exit");
    let m = standard(&w);
    let out = w.run(&["plan", "--detailed-exitcode", m.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "actions");

    let bad = w
        .manifest(&format!("{CONTAINER}\n[[models]]\nid = \"openai/gpt-4o-mni\"\n\n{FREE_CHECKS}"));
    let out = w.run(&["plan", "--detailed-exitcode", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "a failed check");
    let text = stdout(&out);
    assert!(
        text.contains("Preflight check failed; nothing was created and nothing will be:"),
        "{text}"
    );
    assert!(text.contains("  - models: openai/gpt-4o-mni is not listed; the closest listed ids are openai/gpt-4o-mini"), "{text}");
    assert!(!text.contains("apf will create"), "{text}");
    let out = w.run(&["plan", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "a failed check is an error without the flag too");

    // A manifest always has a model, so apply always creates something; an empty field is
    // refused before any check (the 0 case is pinned in preflight_checks).
    let none = w.path().join("none.toml");
    let text = "version = 1\nname = \"none\"\nmodels = []\n[budget]\nper_model_usd = 0.05\n\
                [container]\nimage = \"x\"\n";
    std::fs::write(&none, text).unwrap();
    let out = w.run(&["plan", "--detailed-exitcode", none.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("`models` needs at least 1 entry"), "{}", stderr(&out));
}

#[test]
fn out_saves_the_plan_in_every_spelling_and_a_failed_plan_is_not_saved() {
    demo_image();
    let w = World::new("plan-out");
    let m = standard(&w);
    let m = m.to_str().unwrap();
    for (args, file) in [
        (vec!["plan", "--out", "a.json", m], "a.json"),
        (vec!["plan", "-o", "b.json", m], "b.json"),
        (vec!["plan", "-out", "c.json", m], "c.json"),
        (vec!["plan", m, "-out=d.json"], "d.json"),
    ] {
        let out = w.run(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let saved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(w.path().join(file)).expect("the plan file"))
                .expect("JSON");
        assert_eq!(saved["format"], "apf-plan", "{args:?}");
        assert!(
            stderr(&out).contains(&format!("To carry out exactly this plan: apf apply {file}"))
        );
    }
    let bad =
        w.manifest(&format!("{CONTAINER}\n[[models]]\nid = \"nobody/nothing\"\n\n{FREE_CHECKS}"));
    let out = w.run(&["plan", "-out", "e.json", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!w.path().join("e.json").exists(), "a failed plan is not saved");
}

// ---- apf apply PLANFILE (H18, H5) ------------------------------------------------------------

fn saved_plan(w: &World, m: &Path) -> PathBuf {
    let out = w.run(&["plan", "--out", "plan.json", m.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "the plan is made");
    w.path().join("plan.json")
}

fn refused(w: &World, plan: &Path, why: &str) {
    let keys_before = w.sim().count("POST", "/keys");
    let out = w.run(&["apply", plan.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "refused");
    let err = stderr(&out);
    assert!(err.contains(why), "says {why:?}:\n{err}");
    assert!(err.contains("no longer describes what apply would do; nothing was created"), "{err}");
    assert_eq!(w.sim().count("POST", "/keys"), keys_before, "nothing was provisioned");
}

#[test]
fn h18_a_saved_plan_is_refused_when_the_manifest_changed() {
    demo_image();
    let w = World::new("h18-manifest");
    let m = standard(&w);
    let plan = saved_plan(&w, &m);
    let text =
        std::fs::read_to_string(&m).unwrap().replace("budget_usd = 0.10", "budget_usd = 0.20");
    std::fs::write(&m, text).unwrap();
    refused(&w, &plan, "the manifest");
    refused(&w, &plan, "changed since the plan was made");
}

#[test]
fn h18_a_saved_plan_is_refused_when_a_mounted_file_changed() {
    demo_image();
    let w = World::new("h18-input");
    let m = standard(&w);
    let plan = saved_plan(&w, &m);
    std::fs::write(w.path().join("TASK.md"), "Write a sonnet instead.\n").unwrap();
    refused(&w, &plan, "TASK.md changed since the plan was made");
}

#[test]
fn h18_a_saved_plan_is_refused_when_the_balance_no_longer_covers_it() {
    demo_image();
    let w = World::new("h18-balance");
    let m = standard(&w);
    let plan = saved_plan(&w, &m);
    w.sim().set_credits(usd("0.10"));
    refused(
        &w,
        &plan,
        "the balance $0.10 no longer covers the plan's budgets $0.15 (it was $100.00)",
    );
}

#[test]
fn h18_a_saved_plan_is_refused_when_a_price_changed() {
    demo_image();
    let mut w = World::new("h18-price");
    let m = standard(&w);
    let plan = saved_plan(&w, &m);
    w.restart_sim(
        r#"
[[models]]
id = "openai/gpt-4o-mini"
context_length = 128000
prompt = "0.0000003"
completion = "0.0000012"
supported_parameters = ["tools", "max_tokens"]
"#,
    );
    refused(&w, &plan, "openai/gpt-4o-mini's prompt price changed from $0.15 / 1M to $0.30 / 1M");
    refused(
        &w,
        &plan,
        "openai/gpt-4o-mini's completion price changed from $0.60 / 1M to $1.20 / 1M",
    );
}

#[test]
fn h5_a_saved_plan_is_refused_when_its_model_left_the_catalog() {
    demo_image();
    let mut w = World::new("h5-saved");
    let m = w.manifest(&format!(
        "{CONTAINER}\n[[models]]\nid = \"acme/widget-7\"\nalias = \"widget\"\n\n{FREE_CHECKS}"
    ));
    w.restart_sim(
        r#"
[[models]]
id = "acme/widget-7"
prompt = "0.000001"
completion = "0.000002"
supported_parameters = ["tools"]

[[models]]
id = "acme/widget-8"
prompt = "0.000001"
completion = "0.000002"
supported_parameters = ["tools"]
"#,
    );
    let plan = saved_plan(&w, &m);
    w.restart_sim(
        r#"
[[models]]
id = "acme/widget-8"
prompt = "0.000001"
completion = "0.000002"
supported_parameters = ["tools"]
"#,
    );
    refused(&w, &plan, "acme/widget-7 is not listed; the closest listed ids are acme/widget-8");
}

#[test]
fn h18_a_saved_plan_is_refused_when_the_image_id_changed() {
    demo_image();
    let w = World::new("h18-image");
    let tag = format!("apf-plan-test-{:x}:latest", rand::random::<u32>());
    assert!(docker(&["tag", IMAGE, &tag]).status.success());
    let m = w.manifest(&format!(
        "{}\n{TWO_MODELS}\n{FREE_CHECKS}",
        CONTAINER.replace("apf-demo-agent:latest", &tag)
    ));
    let plan = saved_plan(&w, &m);

    let dockerfile = format!("FROM {IMAGE}\nLABEL dev.apf.test=\"{tag}\"\n");
    let mut build = Command::new("docker")
        .args(["build", "--quiet", "-t", &tag, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker build");
    std::io::Write::write_all(build.stdin.as_mut().unwrap(), dockerfile.as_bytes()).unwrap();
    drop(build.stdin.take());
    let built = build.wait_with_output().unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));

    refused(&w, &plan, &format!("the image {tag} is now sha256:"));
    docker(&["rmi", "-f", &tag]);
}

#[test]
fn h18_an_edited_plan_file_is_refused() {
    demo_image();
    let w = World::new("h18-edited");
    let m = standard(&w);
    let plan = saved_plan(&w, &m);
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&plan).unwrap()).unwrap();
    v["models"][0]["budget"] = serde_json::json!("5");
    std::fs::write(&plan, serde_json::to_vec(&v).unwrap()).unwrap();
    refused(&w, &plan, "the plan file does not describe its own manifest: it was edited");
}

#[test]
fn h18_a_plan_made_against_the_simulator_needs_sim_to_be_applied() {
    demo_image();
    let w = World::new("h18-sim");
    let m = standard(&w);
    let out = w.run(&["plan", "--sim", "--out", "plan.json", m.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("apf apply --sim plan.json"));
    refused(&w, &w.path().join("plan.json"), "pass --sim to apply it");
}

#[test]
fn h18_a_saved_plan_is_applied_once_and_a_copy_of_it_is_refused_too() {
    demo_image();
    let w = World::new("h18-once");
    let m = w.manifest(&format!(
        "{CONTAINER}\n[[models]]\nid = \"openai/gpt-4o-mini\"\nalias = \"mini\"\n\n{FREE_CHECKS}"
    ));
    let plan = saved_plan(&w, &m);
    std::fs::copy(&plan, w.path().join("copy.json")).unwrap();

    let out = w.run(&["apply", plan.to_str().unwrap()]);
    w.remove_containers();
    assert_eq!(out.status.code(), Some(0), "the saved plan is applied, without asking");
    assert!(stderr(&out).contains("Applying the saved plan"));
    assert_eq!(w.sim().count("POST", "/keys"), 1, "exactly the plan's one key");
    let runs = apf::state::list_runs(w.path());
    assert_eq!(runs.len(), 1);
    let kept = runs[0].1.join("plan.json");
    assert!(kept.is_file(), "the plan is kept beside its run");

    for again in [plan.clone(), w.path().join("copy.json")] {
        let out = w.run(&["apply", again.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(err.contains("this plan was applied at"), "{err}");
        assert!(err.contains(&format!("as run {}", runs[0].0)), "names the run: {err}");
    }
    assert_eq!(w.sim().count("POST", "/keys"), 1, "nothing more was provisioned");
}

// ---- apf apply FILE --------------------------------------------------------------------------

#[test]
fn apply_without_a_terminal_or_auto_approve_refuses_before_spending_anything() {
    let w = World::new("apply-tty");
    let m = w.manifest(&format!(
        "{CONTAINER}\n{TWO_MODELS}\n[preflight]\nchecks = [\"balance\", \"key_smoke\"]\n"
    ));
    let out = w.run(&["apply", m.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("there is no terminal to ask on; pass --auto-approve"),
        "{}",
        stderr(&out)
    );
    assert_eq!(w.sim().count("POST", "/keys"), 0, "not even the smoke key");
    assert_eq!(w.sim().count("GET", "/credits"), 0);
}

#[test]
fn plan_without_a_manifest_checks_the_field_from_preflight_models() {
    let w = World::new("plan-env");
    let run = |extra: &[&str]| {
        let mut cmd = w.apf(&[&["plan", "--detailed-exitcode"], extra].concat());
        cmd.env("PREFLIGHT_MODELS", "openai/gpt-4o-mini, llama=meta-llama/llama-3.3-70b-instruct")
            .env("PREFLIGHT_BUDGET", "0.25");
        cmd.output().expect("apf runs")
    };
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(0), "nothing to apply: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("  ok   models        2 listed, each with a price"), "{text}");
    assert!(text.contains("llama        meta-llama/llama-3.3-70b-instruct  $0.25"), "{text}");
    assert!(text.contains("There is no manifest, so nothing to apply."), "{text}");
    assert!(!text.contains("+ key"), "{text}");
    assert_eq!(w.sim().count("POST", "/keys"), 0, "a manifest-less preflight spends nothing");

    let out = run(&["--out", "env.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("its plan is not saved"), "{}", stderr(&out));
    assert!(!w.path().join("env.json").exists());
}
