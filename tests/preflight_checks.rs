//! Each preflight check passing and failing against the simulator (in this process), real
//! Docker and real commands; and the hazards preflight must catch: the wrong kind of key (H1),
//! prices as exact decimals with sentinels and junk (H4), and model ids that are gone (H5).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use apf::docker::Docker;
use apf::manifest::Experiment;
use apf::money::Usd;
use apf::openrouter::{Client, wire};
use apf::plan::{Plan, PlanEndpoint};
use apf::preflight::{self, Check, Inputs, Mark, Report, Schedule};
use apf::secret::Secret;
use apf::sim::{Catalog, Faults, ScriptedFault, SimConfig, SimHandle};

const IMAGE: &str = "apf-demo-agent:latest";

/// Build the demo agent's image once, when it is missing.
fn demo_image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let present = Command::new("docker")
            .args(["image", "inspect", IMAGE])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !present {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-demo-image.sh");
            let status = Command::new("bash").arg(script).status().expect("build the demo image");
            assert!(status.success(), "the demo image builds");
        }
    });
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{:x}", rand::random::<u32>())
}

fn usd(s: &str) -> Usd {
    s.parse().expect("a dollar amount")
}

/// A simulator with `credits`, the built-in catalog plus `catalog` (TOML), and `faults`.
async fn sim(credits: &str, catalog: Option<&str>, faults: Faults) -> SimHandle {
    let catalog = match catalog {
        Some(text) => Catalog::parse(text).expect("a catalog"),
        None => Catalog::builtin(),
    };
    apf::sim::start(SimConfig { credits: usd(credits), catalog, faults, ..SimConfig::default() })
        .await
        .expect("the simulator starts")
}

/// A manifest in a fresh folder (with a TASK.md beside it), loaded.
struct Manifest {
    _dir: tempfile::TempDir,
    exp: Experiment,
}

fn manifest(name: &str, body: &str) -> Manifest {
    let dir = tempfile::Builder::new().prefix("apf preflight ").tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("TASK.md"), "Write a haiku.\n").expect("write TASK.md");
    let text =
        format!("version = 1\nname = \"{name}\"\n\n[budget]\nper_model_usd = 0.05\n\n{body}\n");
    let path = dir.path().join("experiment.toml");
    std::fs::write(&path, text).expect("write the manifest");
    let exp = apf::manifest::load(&path).unwrap_or_else(|e| panic!("a valid manifest: {e:?}"));
    Manifest { _dir: dir, exp }
}

const CONTAINER: &str = r#"[container]
image = "apf-demo-agent:latest"
env = { DEMO_MAX_TOKENS = "256" }
mounts = [{ source = "TASK.md", target = "/workspace/TASK.md", read_only = true }]
"#;

fn models(ids: &[&str]) -> String {
    ids.iter()
        .enumerate()
        .map(|(n, id)| format!("[[models]]\nid = \"{id}\"\nalias = \"m{n}\"\n"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn checks(names: &[&str]) -> String {
    let list: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    format!("[preflight]\nchecks = [{}]\n", list.join(", "))
}

async fn preflight_with(
    exp: &Experiment,
    sim: &SimHandle,
    key: Option<&Secret>,
    var: &str,
) -> Report {
    let client = Client::new(&sim.base_url);
    let docker = Docker::default();
    preflight::run(Inputs {
        exp,
        client: &client,
        management_key: key,
        management_key_env: var,
        docker: &docker,
        schedule: Schedule::Concurrent,
    })
    .await
}

async fn preflight(exp: &Experiment, sim: &SimHandle) -> Report {
    preflight_with(exp, sim, Some(&sim.management_key), "OR_ADMIN_KEY").await
}

fn check<'a>(r: &'a Report, name: &str) -> &'a Check {
    r.checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("a {name} check in {:#?}", r.checks))
}

fn item_detail<'a>(c: &'a Check, subject: &str) -> (&'a str, Mark) {
    let i = c
        .items
        .iter()
        .find(|i| i.subject == subject)
        .unwrap_or_else(|| panic!("{subject} in {c:#?}"));
    (i.detail.as_str(), i.mark)
}

async fn keys_named(sim: &SimHandle, prefix: &str) -> Vec<wire::Key> {
    let client = Client::new(&sim.base_url);
    let all = client.list_keys(&sim.management_key, true).await.expect("list keys");
    all.into_iter().filter(|k| k.name.starts_with(prefix)).collect()
}

// ---- every check passes ----------------------------------------------------------------------

#[tokio::test]
async fn every_check_passes_against_the_simulator_and_shares_one_catalog_and_balance() {
    demo_image();
    let sim = sim("100", None, Faults::default()).await;
    let name = unique("pf-ok");
    let m = manifest(
        &name,
        &format!(
            "{CONTAINER}\n{}\n{}common_required_params = [\"tools\"]\n\n\
             [[preflight.custom]]\nname = \"task file is not empty\"\nrun = [\"test\", \"-s\", \"TASK.md\"]\n\n\
             [[preflight.custom]]\nname = \"balance covers twice the budgets\"\nexpr = \"balance_usd >= 2.0 * total_budget_usd\"\n",
            models(&["openai/gpt-4o-mini", "anthropic/claude-sonnet-4"]),
            checks(&[
                "balance",
                "math",
                "models",
                "tool_support",
                "key_smoke",
                "cache_smoke",
                "docker_image"
            ]),
        ),
    );
    let r = preflight(&m.exp, &sim).await;

    let names: Vec<&str> = r.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "balance",
            "math",
            "models",
            "tool_support",
            "key_smoke",
            "cache_smoke",
            "docker_image",
            "custom",
            "leftovers"
        ],
        "every check, in DESIGN.md's order"
    );
    for c in &r.checks {
        assert_eq!(c.mark, Mark::Passed, "{} passes: {}", c.name, c.detail);
    }
    assert!(
        check(&r, "balance").detail.starts_with("$100.00 available"),
        "{:?}",
        check(&r, "balance")
    );
    assert!(check(&r, "key_smoke").detail.contains("capped at $0.01"));
    let cache = &check(&r, "cache_smoke").detail;
    assert!(
        cache.starts_with("anthropic/claude-sonnet-4: the second of two cacheable requests read"),
        "{cache}"
    );
    assert!(check(&r, "docker_image").detail.starts_with("apf-demo-agent:latest is "));
    assert_eq!(check(&r, "custom").items.len(), 2);

    assert_eq!(sim.count("GET", "/models"), 1, "one catalog, shared by every check");
    assert_eq!(sim.count("GET", "/credits"), 1, "one balance, shared");
    assert_eq!(sim.count("POST", "/keys"), 2, "one key for key_smoke, one for cache_smoke");
    assert!(
        keys_named(&sim, &format!("apf/{name}/")).await.is_empty(),
        "the smoke keys are deleted"
    );
    assert_eq!(r.facts.balance, Some(usd("100")));
    assert!(r.facts.image.as_ref().is_some_and(|i| i.id.starts_with("sha256:")));
}

// ---- balance (H1) ----------------------------------------------------------------------------

#[tokio::test]
async fn balance_fails_when_it_is_not_above_the_minimum() {
    let sim = sim("100", None, Faults::default()).await;
    let m = manifest(
        "pf-min",
        &format!(
            "{CONTAINER}\n{}\n{}min_balance_usd = 150\n",
            models(&["openai/gpt-4o-mini"]),
            checks(&["balance", "key_smoke"])
        ),
    );
    let r = preflight(&m.exp, &sim).await;
    let b = check(&r, "balance");
    assert_eq!(b.mark, Mark::Failed);
    assert!(
        b.detail.contains("$100.00 available") && b.detail.contains("minimum $150.00"),
        "{}",
        b.detail
    );
    assert_eq!(
        check(&r, "key_smoke").mark,
        Mark::Warned,
        "a failed free check holds back the paid ones"
    );
    assert_eq!(sim.count("POST", "/keys"), 0, "nothing is created");
}

#[tokio::test]
async fn h1_an_inference_key_in_the_management_variable_fails_balance_naming_the_variable() {
    let sim = sim("100", None, Faults::default()).await;
    let client = Client::new(&sim.base_url);
    let create = wire::CreateKey {
        name: "someone's inference key".into(),
        limit: Some(usd("1")),
        limit_reset: None,
        include_byok_in_limit: None,
        expires_at: None,
    };
    let (_, inference) = client.create_key(&sim.management_key, &create).await.expect("a key");
    let m = manifest(
        "pf-h1",
        &format!(
            "[openrouter]\nmanagement_key_env = \"LAB_ADMIN_KEY\"\n\n{CONTAINER}\n{}\n{}",
            models(&["openai/gpt-4o-mini"]),
            checks(&["balance", "math", "models", "key_smoke", "cache_smoke"])
        ),
    );
    let r = preflight_with(&m.exp, &sim, Some(&inference), "LAB_ADMIN_KEY").await;

    let b = check(&r, "balance");
    assert_eq!(b.mark, Mark::Failed);
    assert!(b.detail.contains("$LAB_ADMIN_KEY"), "names the variable: {}", b.detail);
    assert!(b.detail.contains("not a management key"), "{}", b.detail);
    assert!(!b.detail.contains("$0.00"), "never read as an empty account: {}", b.detail);
    assert_eq!(r.facts.balance, None);
    assert_eq!(check(&r, "key_smoke").mark, Mark::Warned);
    assert_eq!(sim.count("POST", "/keys"), 1, "only the test's own key was ever created");
}

#[tokio::test]
async fn h1_a_missing_management_key_fails_balance_naming_the_variable() {
    let sim = sim("100", None, Faults::default()).await;
    let m = manifest(
        "pf-h1-unset",
        &format!("{CONTAINER}\n{}\n{}", models(&["openai/gpt-4o-mini"]), checks(&["balance"])),
    );
    let r = preflight_with(&m.exp, &sim, None, "OR_ADMIN_KEY").await;
    let b = check(&r, "balance");
    assert_eq!(b.mark, Mark::Failed);
    assert!(b.detail.contains("$OR_ADMIN_KEY is not set"), "{}", b.detail);
}

/// A server that answers as OpenRouter was seen to for an inference key: `/key` says it is
/// not a management key, and `/credits` answers 200 with zeros.
async fn zero_credits_server() -> String {
    use axum::{Json, Router, routing::get};
    let key = || async {
        Json(serde_json::json!({"data": {"label": "sk-or-v1-abc...xyz", "limit": null,
            "usage": 0, "is_free_tier": false, "is_management_key": false}}))
    };
    let credits =
        || async { Json(serde_json::json!({"data": {"total_credits": 0, "total_usage": 0}})) };
    let models = || async { Json(serde_json::json!({"data": []})) };
    let app = Router::new()
        .route("/api/v1/key", get(key))
        .route("/api/v1/credits", get(credits))
        .route("/api/v1/models", get(models));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/api/v1")
}

#[tokio::test]
async fn h1_all_zero_credits_from_a_non_management_key_is_not_a_zero_balance() {
    let base = zero_credits_server().await;
    let m = manifest(
        "pf-h1-zero",
        &format!(
            "{CONTAINER}\n{}\n{}",
            models(&["openai/gpt-4o-mini"]),
            checks(&["balance", "math"])
        ),
    );
    let client = Client::new(&base);
    let docker = Docker::default();
    let key = Secret::new("sk-or-v1-not-a-management-key");
    let r = preflight::run(Inputs {
        exp: &m.exp,
        client: &client,
        management_key: Some(&key),
        management_key_env: "OR_ADMIN_KEY",
        docker: &docker,
        schedule: Schedule::Concurrent,
    })
    .await;
    let b = check(&r, "balance");
    assert_eq!(b.mark, Mark::Failed);
    assert!(
        b.detail.contains("$OR_ADMIN_KEY holds an inference key, not a management key"),
        "{}",
        b.detail
    );
    assert!(b.detail.contains("all-zero"), "{}", b.detail);
    assert!(!b.detail.contains("$0.00 available"), "{}", b.detail);
    assert!(
        r.checks.iter().all(|c| c.name != "math"),
        "no arithmetic on a balance that is not one"
    );
}

// ---- math ------------------------------------------------------------------------------------

#[tokio::test]
async fn math_fails_when_the_budgets_exceed_the_balance() {
    let sim = sim("0.08", None, Faults::default()).await;
    let m = manifest(
        "pf-math",
        &format!(
            "{CONTAINER}\n{}\n{}",
            models(&["openai/gpt-4o-mini", "openai/gpt-4o-mini"]),
            checks(&["math"])
        ),
    );
    let r = preflight(&m.exp, &sim).await;
    let c = check(&r, "math");
    assert_eq!(c.mark, Mark::Failed);
    assert_eq!(c.detail, "budgets $0.10 exceed the balance $0.08 by $0.02");
}

#[tokio::test]
async fn math_warns_when_the_worst_case_overshoot_would_not_fit() {
    // Opus's worst request is far dearer than its $0.05 cap, so its overshoot is the cap.
    let sim = sim("0.075", None, Faults::default()).await;
    let m = manifest(
        "pf-math-over",
        &format!("{CONTAINER}\n{}\n{}", models(&["anthropic/claude-opus-4"]), checks(&["math"])),
    );
    let r = preflight(&m.exp, &sim).await;
    let c = check(&r, "math");
    assert_eq!(c.mark, Mark::Warned, "{}", c.detail);
    assert!(c.detail.contains("worst-case overshoot of $0.05"), "{}", c.detail);
}

// ---- models (H4, H5) -------------------------------------------------------------------------

const H4_CATALOG: &str = r#"
[[models]]
id = "acme/normal"
context_length = 100000
max_completion_tokens = 8000
prompt = "0.000003"
completion = "0.000015"
supported_parameters = ["tools", "max_tokens"]

[[models]]
id = "acme/tiny:free"
context_length = 32768
prompt = "0"
completion = "0"
supported_parameters = ["tools", "max_tokens"]

[[models]]
id = "acme/junk"
prompt = "abc"
completion = "0.000001"
"#;

#[tokio::test]
async fn h4_prices_are_exact_the_router_is_variable_free_is_capped_and_junk_is_named() {
    let sim = sim("100", Some(H4_CATALOG), Faults::default()).await;
    let m = manifest(
        "pf-h4",
        &format!(
            "{CONTAINER}\n{}\n{}",
            models(&["acme/normal", "openrouter/auto", "acme/tiny:free", "acme/junk"]),
            checks(&["models", "key_smoke"])
        ),
    );
    let r = preflight(&m.exp, &sim).await;
    let c = check(&r, "models");
    assert_eq!(c.mark, Mark::Failed);
    assert_eq!(
        item_detail(c, "acme/normal"),
        ("acme/normal: prompt $3.00 / 1M, completion $15.00 / 1M", Mark::Passed)
    );
    let (auto, mark) = item_detail(c, "openrouter/auto");
    assert_eq!(mark, Mark::Warned);
    assert!(auto.contains("variable price"), "{auto}");
    assert_eq!(
        item_detail(c, "acme/tiny:free"),
        ("acme/tiny:free: free; it still gets a capped key", Mark::Passed)
    );
    assert_eq!(
        item_detail(c, "acme/junk"),
        ("acme/junk: pricing.prompt \"abc\" is not a decimal number", Mark::Failed),
        "junk names the model and the field"
    );
    assert_eq!(sim.count("POST", "/keys"), 0, "nothing is provisioned");
}

#[tokio::test]
async fn h4_the_plan_shows_per_million_prices_and_keeps_variable_prices_out_of_arithmetic() {
    let sim = sim("100", Some(H4_CATALOG), Faults::default()).await;
    let m = manifest(
        "pf-h4-plan",
        &format!(
            "{CONTAINER}\n{}\n{}",
            models(&["acme/normal", "openrouter/auto", "acme/tiny:free"]),
            checks(&["models", "math"])
        ),
    );
    let r = preflight(&m.exp, &sim).await;
    let plan =
        Plan::new(&m.exp, PlanEndpoint { simulator: false, base_url: sim.base_url.clone() }, &r);
    let text = plan.render(true);
    assert!(text.contains("$3.00 / $15.00 per 1M"), "{text}");
    assert!(text.contains("variable price"), "{text}");
    assert!(
        text.contains("apf/pf-h4-plan/<run>/m2 (cap $0.05)"),
        "the free model gets a capped key: {text}"
    );
    assert_eq!(plan.summary.overshoot_unknown, ["m1"], "the router's overshoot is not estimated");
    // acme/normal: 99,744 prompt tokens at $3/1M + 256 at $15/1M = $0.30, bounded by its $0.05
    // cap; the free model costs nothing.
    assert_eq!(plan.summary.worst_case_overshoot, Some(usd("0.05")));
    let json = serde_json::to_value(&plan).expect("json");
    assert_eq!(json["models"][0]["prompt_price"]["usd_per_million"], "3");
    assert_eq!(json["models"][1]["prompt_price"]["variable"], true);
    assert_eq!(json["models"][1]["prompt_price"]["usd_per_token"], serde_json::Value::Null);
}

#[tokio::test]
async fn h5_an_unlisted_model_fails_naming_the_closest_ids_and_nothing_is_provisioned() {
    let sim = sim("100", None, Faults::default()).await;
    let m = manifest(
        "pf-h5",
        &format!(
            "{CONTAINER}\n{}\n{}",
            models(&["anthropic/claude-sonet-4"]),
            checks(&["models", "tool_support", "key_smoke", "cache_smoke"])
        ),
    );
    let r = preflight(&m.exp, &sim).await;
    let c = check(&r, "models");
    assert_eq!(c.mark, Mark::Failed);
    assert!(c.detail.starts_with("anthropic/claude-sonet-4 is not listed; the closest listed ids are anthropic/claude-sonnet-4"), "{}", c.detail);
    assert!(r.facts.models.is_empty(), "no other model is taken in its place");
    assert_eq!(check(&r, "key_smoke").mark, Mark::Warned);
    assert_eq!(check(&r, "cache_smoke").mark, Mark::Warned);
    assert_eq!(sim.count("POST", "/keys"), 0, "nothing is provisioned");
    assert_eq!(sim.count("POST", "/chat/completions"), 0);
}

// ---- tool_support ----------------------------------------------------------------------------

#[tokio::test]
async fn tool_support_fails_when_a_model_lacks_a_required_parameter() {
    let sim = sim("100", None, Faults::default()).await;
    let m = manifest(
        "pf-tools",
        &format!(
            "{CONTAINER}\n{}\n{}common_required_params = [\"tools\"]\nrequired_params = {{ \"openai/gpt-4o-mini\" = [\"reasoning\"] }}\n",
            models(&["openai/gpt-4o-mini", "anthropic/claude-sonnet-4"]),
            checks(&["tool_support"])
        ),
    );
    let r = preflight(&m.exp, &sim).await;
    let c = check(&r, "tool_support");
    assert_eq!(c.mark, Mark::Failed);
    assert_eq!(
        item_detail(c, "openai/gpt-4o-mini"),
        ("openai/gpt-4o-mini does not support reasoning", Mark::Failed)
    );
    assert_eq!(item_detail(c, "anthropic/claude-sonnet-4").1, Mark::Passed);
}

// ---- key_smoke -------------------------------------------------------------------------------

fn scripted(path: &str, status: u16, times: u32) -> Faults {
    Faults {
        script: vec![ScriptedFault { path: path.into(), status: Some(status), drop: false, times }],
        ..Faults::default()
    }
}

#[tokio::test]
async fn key_smoke_fails_when_its_key_cannot_be_created() {
    // The listing of keys for leftovers meets the same route; enough failures for both.
    let sim = sim("100", None, scripted("/keys", 500, 10)).await;
    let m = manifest(
        "pf-ks-create",
        &format!("{CONTAINER}\n{}\n{}", models(&["openai/gpt-4o-mini"]), checks(&["key_smoke"])),
    );
    let r = preflight(&m.exp, &sim).await;
    let c = check(&r, "key_smoke");
    assert_eq!(c.mark, Mark::Failed);
    assert!(c.detail.starts_with("could not create a key"), "{}", c.detail);
    assert!(c.detail.contains("may exist anyway"), "a 5xx may have created it: {}", c.detail);
}

#[tokio::test]
async fn key_smoke_fails_when_its_call_fails_and_still_deletes_its_key() {
    let sim = sim("100", None, scripted("/chat/completions", 503, 1)).await;
    let name = unique("pf-ks-call");
    let m = manifest(
        &name,
        &format!("{CONTAINER}\n{}\n{}", models(&["openai/gpt-4o-mini"]), checks(&["key_smoke"])),
    );
    let r = preflight(&m.exp, &sim).await;
    let c = check(&r, "key_smoke");
    assert_eq!(c.mark, Mark::Failed);
    assert!(c.detail.starts_with("one call to openai/gpt-4o-mini"), "{}", c.detail);
    assert_eq!(sim.count("DELETE", "/keys/{hash}"), 1);
    assert!(
        keys_named(&sim, &format!("apf/{name}/")).await.is_empty(),
        "the key is deleted anyway"
    );
}

#[tokio::test]
async fn key_smoke_calls_the_cheapest_paid_model() {
    let sim = sim("100", None, Faults::default()).await;
    let m = manifest(
        "pf-ks-cheap",
        &format!(
            "{CONTAINER}\n{}\n{}",
            models(&[
                "anthropic/claude-opus-4",
                "meta-llama/llama-3.3-70b-instruct:free",
                "openai/gpt-4o-mini"
            ]),
            checks(&["key_smoke"])
        ),
    );
    let r = preflight(&m.exp, &sim).await;
    let c = check(&r, "key_smoke");
    assert_eq!(c.mark, Mark::Passed, "{}", c.detail);
    assert!(c.detail.contains("one call to openai/gpt-4o-mini"), "{}", c.detail);
}

// ---- cache_smoke -----------------------------------------------------------------------------

#[tokio::test]
async fn cache_smoke_fails_when_the_second_request_reads_nothing_from_the_cache() {
    // A model that publishes a cache-write price but does not cache.
    let catalog = r#"
[[models]]
id = "acme/forgetful"
prompt = "0.000003"
completion = "0.000015"
input_cache_write = "0.00000375"
input_cache_read = "0.0000003"
cache = "none"
"#;
    let sim = sim("100", Some(catalog), Faults::default()).await;
    let name = unique("pf-cache-none");
    let m = manifest(
        &name,
        &format!("{CONTAINER}\n{}\n{}", models(&["acme/forgetful"]), checks(&["cache_smoke"])),
    );
    let r = preflight(&m.exp, &sim).await;
    let c = check(&r, "cache_smoke");
    assert_eq!(c.mark, Mark::Failed);
    assert!(c.detail.contains("reported no cached tokens"), "{}", c.detail);
    assert_eq!(sim.count("POST", "/chat/completions"), 2);
    assert!(keys_named(&sim, &format!("apf/{name}/")).await.is_empty(), "its key is deleted");
}

#[tokio::test]
async fn cache_smoke_warns_when_no_model_caches_explicitly() {
    let sim = sim("100", None, Faults::default()).await;
    let m = manifest(
        "pf-cache-skip",
        &format!("{CONTAINER}\n{}\n{}", models(&["openai/gpt-4o-mini"]), checks(&["cache_smoke"])),
    );
    let r = preflight(&m.exp, &sim).await;
    let c = check(&r, "cache_smoke");
    assert_eq!(c.mark, Mark::Warned);
    assert!(
        c.detail.contains("no model of this experiment caches prompts explicitly"),
        "{}",
        c.detail
    );
    assert_eq!(sim.count("POST", "/keys"), 0);
}

// ---- docker_image ----------------------------------------------------------------------------

fn with_image(image: &str) -> String {
    format!("[container]\nimage = \"{image}\"\n")
}

#[tokio::test]
async fn docker_image_fails_for_a_tag_that_is_not_present() {
    let sim = sim("100", None, Faults::default()).await;
    let m = manifest(
        "pf-img",
        &format!(
            "{}\n{}\n{}",
            with_image("apf-demo-agent:no-such-tag"),
            models(&["openai/gpt-4o-mini"]),
            checks(&["docker_image"])
        ),
    );
    let r = preflight(&m.exp, &sim).await;
    let c = check(&r, "docker_image");
    assert_eq!(c.mark, Mark::Failed);
    assert_eq!(c.detail, "apf-demo-agent:no-such-tag is not present locally (apf never pulls)");
}

#[tokio::test]
async fn docker_image_fails_for_an_image_named_only_by_an_id_prefix() {
    demo_image();
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", IMAGE])
        .output()
        .expect("docker");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let prefix: String = id.trim_start_matches("sha256:").chars().take(12).collect();
    let sim = sim("100", None, Faults::default()).await;
    let m = manifest(
        "pf-img-prefix",
        &format!(
            "{}\n{}\n{}",
            with_image(&prefix),
            models(&["openai/gpt-4o-mini"]),
            checks(&["docker_image"])
        ),
    );
    let r = preflight(&m.exp, &sim).await;
    let c = check(&r, "docker_image");
    assert_eq!(c.mark, Mark::Failed, "{}", c.detail);
    assert!(c.detail.contains("only by id prefix"), "{}", c.detail);

    let whole = manifest(
        "pf-img-id",
        &format!(
            "{}\n{}\n{}",
            with_image(&id),
            models(&["openai/gpt-4o-mini"]),
            checks(&["docker_image"])
        ),
    );
    let r = preflight(&whole.exp, &sim).await;
    assert_eq!(check(&r, "docker_image").mark, Mark::Passed, "the whole id is exact");
}

// ---- custom ----------------------------------------------------------------------------------

#[tokio::test]
async fn custom_checks_fail_with_the_command_s_last_words_or_the_condition() {
    let sim = sim("100", None, Faults::default()).await;
    let m = manifest(
        "pf-custom",
        &format!(
            "{CONTAINER}\n{}\n{}\n[[preflight.custom]]\nname = \"api is up\"\nrun = [\"sh\", \"-c\", \"echo connection refused >&2; exit 3\"]\n\n\
             [[preflight.custom]]\nname = \"rich enough\"\nexpr = \"balance_usd > 1000.0\"\n\n\
             [[preflight.custom]]\nname = \"task exists\"\nrun = [\"test\", \"-f\", \"TASK.md\"]\n",
            models(&["openai/gpt-4o-mini"]),
            checks(&["balance", "key_smoke"])
        ),
    );
    let r = preflight(&m.exp, &sim).await;
    assert_eq!(check(&r, "key_smoke").mark, Mark::Warned, "a failed custom check holds it back");
    assert_eq!(sim.count("POST", "/keys"), 0);
    let c = check(&r, "custom");
    assert_eq!(c.mark, Mark::Failed);
    let (up, mark) = item_detail(c, "api is up");
    assert_eq!(mark, Mark::Failed);
    assert!(up.contains("exited with exit status: 3: connection refused"), "{up}");
    assert_eq!(
        item_detail(c, "rich enough"),
        ("rich enough: `balance_usd > 1000.0` does not hold", Mark::Failed)
    );
    assert_eq!(item_detail(c, "task exists").1, Mark::Passed);
}

// ---- leftovers -------------------------------------------------------------------------------

fn docker_create_labelled(experiment: &str, run: &str, alias: &str) -> String {
    let out = Command::new("docker")
        .args(["create", "--name", &format!("apf-{experiment}-{run}-{alias}")])
        .args(["--label", "dev.apf.managed=true"])
        .args(["--label", &format!("dev.apf.experiment={experiment}")])
        .args(["--label", &format!("dev.apf.run={run}")])
        .args(["--label", &format!("dev.apf.alias={alias}")])
        .arg(IMAGE)
        .output()
        .expect("docker create");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn docker_rm(id: &str) {
    let _ = Command::new("docker").args(["rm", "-f", id]).output();
}

#[tokio::test]
async fn leftovers_are_found_by_label_and_by_key_name_across_every_page() {
    demo_image();
    let sim = sim("100", None, Faults::default()).await;
    let name = unique("pf-left");
    let client = Client::new(&sim.base_url);
    for n in 0..120 {
        let alias = format!("a{n}");
        let body = wire::CreateKey {
            name: format!("apf/{name}/20260101-000000-dead/{alias}"),
            limit: Some(usd("0.05")),
            limit_reset: None,
            include_byok_in_limit: None,
            expires_at: None,
        };
        client.create_key(&sim.management_key, &body).await.expect("a key");
    }
    let other = wire::CreateKey {
        name: format!("apf/{name}-other/r/a"),
        limit: None,
        limit_reset: None,
        include_byok_in_limit: None,
        expires_at: None,
    };
    client.create_key(&sim.management_key, &other).await.expect("a key");
    let container = docker_create_labelled(&name, "20260101-000000-dead", "a0");

    let m = manifest(
        &name,
        &format!("{CONTAINER}\n{}\n{}", models(&["openai/gpt-4o-mini"]), checks(&["models"])),
    );
    let r = preflight(&m.exp, &sim).await;
    docker_rm(&container);

    let left = &r.facts.leftovers;
    assert_eq!(left.keys.len(), 120, "both pages of keys, and none of another experiment");
    assert_eq!(left.containers.len(), 1);
    assert_eq!(left.containers[0].run.as_deref(), Some("20260101-000000-dead"));
    let c = check(&r, "leftovers");
    assert_eq!(c.mark, Mark::Warned);
    assert!(
        c.detail.contains("1 container(s) and 120 key(s)") && c.detail.contains("apf destroy"),
        "{}",
        c.detail
    );

    let plan =
        Plan::new(&m.exp, PlanEndpoint { simulator: false, base_url: sim.base_url.clone() }, &r);
    assert_eq!(plan.summary.leftovers_to_remove, 121);
    let text = plan.render(false);
    assert!(text.contains(&format!("- container apf-{name}-20260101-000000-dead-a0")), "{text}");
    assert!(text.contains("… and 111 more"), "{text}");
    assert!(text.contains(&format!("`apf destroy --experiment {name}` removes them")), "{text}");
}

#[tokio::test]
async fn a_run_being_applied_is_not_a_leftover() {
    let sim = sim("100", None, Faults::default()).await;
    let name = unique("pf-live");
    let m = manifest(
        &name,
        &format!("{CONTAINER}\n{}\n{}", models(&["openai/gpt-4o-mini"]), checks(&["models"])),
    );
    let client = Client::new(&sim.base_url);
    for run in ["20260101-000000-live", "20260101-000000-dead"] {
        let body = wire::CreateKey {
            name: format!("apf/{name}/{run}/m0"),
            limit: Some(usd("0.05")),
            limit_reset: None,
            include_byok_in_limit: None,
            expires_at: None,
        };
        client.create_key(&sim.management_key, &body).await.expect("a key");
    }
    let run_dir = apf::state::RunDir::new(&m.exp.manifest_dir, "20260101-000000-live");
    std::fs::create_dir_all(&run_dir.root).expect("a run folder");
    let lock = apf::state::RunLock::acquire(&run_dir).expect("the run's lock");

    let r = preflight(&m.exp, &sim).await;
    drop(lock);
    let left = &r.facts.leftovers;
    let names: Vec<&str> = left.keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, [format!("apf/{name}/20260101-000000-dead/m0")]);
    assert_eq!(left.live_runs, ["20260101-000000-live"]);
}

// ---- the plan's footer -----------------------------------------------------------------------

#[tokio::test]
async fn the_overshoot_estimate_uses_the_container_s_max_tokens_and_says_where_it_came_from() {
    let sim = sim("100", None, Faults::default()).await;
    let m = manifest(
        "pf-over",
        &format!("{CONTAINER}\n{}\n{}", models(&["openai/gpt-4o-mini"]), checks(&["models"])),
    );
    let r = preflight(&m.exp, &sim).await;
    let plan =
        Plan::new(&m.exp, PlanEndpoint { simulator: false, base_url: sim.base_url.clone() }, &r);
    let o = &plan.models[0].overshoot;
    assert_eq!(o.max_tokens, Some(256));
    assert!(o.max_tokens_from.contains("DEMO_MAX_TOKENS=256"), "{}", o.max_tokens_from);
    // gpt-4o-mini: a 128,000-token context, so 127,744 prompt tokens at $0.15/1M plus 256
    // completion tokens at $0.60/1M.
    let expected = usd("127744") * usd("0.00000015").0 + usd("256") * usd("0.0000006").0;
    assert_eq!(o.usd, Some(expected));
    let text = plan.render(false);
    assert!(text.contains("Worst-case overshoot: up to $0.019"), "{text}");
    assert!(text.contains("enforces a key's cap per request"), "{text}");
    let map: BTreeMap<String, serde_json::Value> =
        serde_json::from_value(serde_json::to_value(&plan).expect("json")).expect("a map");
    assert_eq!(map["format"], "apf-plan");
    assert_eq!(map["format_version"], 1);
}

#[tokio::test]
async fn a_plan_with_no_models_has_no_changes() {
    let sim = sim("100", None, Faults::default()).await;
    let body =
        format!("{CONTAINER}\n{}\n{}", models(&["openai/gpt-4o-mini"]), checks(&["balance"]));
    let mut m = manifest("pf-none", &body);
    m.exp.models.clear();
    let r = preflight(&m.exp, &sim).await;
    let endpoint = PlanEndpoint { simulator: false, base_url: sim.base_url.clone() };
    let plan = Plan::new(&m.exp, endpoint, &r);
    assert!(!plan.summary.changes, "--detailed-exitcode gives 0 for this plan");
    assert!(plan.render(false).contains("No models: apply would create nothing."));
}
