//! Every route apf uses, in success and error, checked against the response schemas of
//! OpenRouter's published OpenAPI document (read at test time from
//! `../shared/reference/openrouter-openapi.yaml`).
//!
//! The document is OpenAPI 3.1, whose schema objects are JSON Schema 2020-12: nullables are
//! already written as `type: [T, "null"]`, so no conversion is needed. The OpenAPI-only keywords
//! left in it (`discriminator`, `example`, `x-*`) are annotations that a 2020-12 validator
//! ignores, and `format: double`/`int32` are unknown formats, which 2020-12 treats as annotations
//! too. `$ref`s point into `#/components/schemas`, so each check validates against a schema
//! whose root carries the document's `components` beside the response schema, which makes every
//! `$ref` resolve as it does in the document.
//!
//! Where the simulator answers a status the document does not list for that operation (a 403
//! for an inference key on `GET /keys`, which the notes record OpenRouter answering), the body
//! is checked against the document's `ForbiddenResponse`, the schema of that status elsewhere.

#[path = "fixtures/sim/common.rs"]
mod common;

use std::sync::OnceLock;

use apf::sim::{Faults, ScriptedFault, SimConfig};
use common::{Api, ask, sse_events};
use serde_json::{Value, json};

const SPEC_PATH: &str = "../shared/reference/openrouter-openapi.yaml";

fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        // The project's reference folder sits beside the repository; APF_OPENAPI points at the
        // document when the checkout lives elsewhere.
        let path = std::env::var_os("APF_OPENAPI")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(SPEC_PATH));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "reading OpenRouter's OpenAPI document at {}: {e}; these tests check the simulator \
                 against it: set APF_OPENAPI to its path (reference/openrouter-openapi.yaml)",
                path.display()
            )
        });
        serde_yaml::from_str(&text).expect("the OpenAPI document is YAML")
    })
}

/// The documented schema of `status` for `method path`, in `media`, if the document lists it.
fn response_schema(path: &str, method: &str, status: u16, media: &str) -> Option<&'static Value> {
    spec()
        .get("paths")?
        .get(path)?
        .get(method)?
        .get("responses")?
        .get(status.to_string())?
        .get("content")?
        .get(media)?
        .get("schema")
}

fn component(name: &str) -> &'static Value {
    &spec()["components"]["schemas"][name]
}

fn validate_against(schema: &Value, body: &Value, what: &str) {
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": spec()["components"],
        "allOf": [schema],
    });
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&root)
        .unwrap_or_else(|e| panic!("{what}: schema does not compile: {e}"));
    let errors: Vec<String> =
        validator.iter_errors(body).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(
        errors.is_empty(),
        "{what}: body does not match the document:\n{}\n{body:#}",
        errors.join("\n")
    );
}

/// Check a JSON response against the document's schema for it.
fn check(path: &str, method: &str, status: u16, body: &Value) {
    let what = format!("{} {path} {status}", method.to_uppercase());
    match response_schema(path, method, status, "application/json") {
        Some(schema) => validate_against(schema, body, &what),
        None if status == 403 => validate_against(component("ForbiddenResponse"), body, &what),
        None => panic!("{what}: the document lists no such response"),
    }
    if status >= 400 {
        assert_eq!(body["error"]["code"], json!(status), "{what}: code equals the status");
    }
}

#[tokio::test]
async fn credits() {
    let api = Api::default().await;
    let r = api.get("/credits", api.admin()).await;
    assert_eq!(r.status, 200);
    check("/credits", "get", 200, &r.body);
    assert_eq!(r.body["data"], json!({"total_credits": 100.0, "total_usage": 0.0}));

    let r = api.get("/credits", None).await;
    assert_eq!(
        (r.status, r.body["error"]["message"].as_str()),
        (401, Some("No auth credentials found"))
    );
    check("/credits", "get", 401, &r.body);

    let r = api.get("/credits", Some("sk-or-v1-nonsense")).await;
    assert_eq!((r.status, r.body["error"]["message"].as_str()), (401, Some("User not found.")));
    check("/credits", "get", 401, &r.body);

    let (key, _) = api.create_key("inference", None).await;
    let r = api.get("/credits", Some(&key)).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body["error"]["message"], "Only management keys can perform this operation");
    check("/credits", "get", 403, &r.body);
}

#[tokio::test]
async fn models() {
    let api = Api::default().await;
    let r = api.get("/models", None).await;
    assert_eq!(r.status, 200);
    check("/models", "get", 200, &r.body);
    let ids: Vec<&str> =
        r.body["data"].as_array().expect("list").iter().filter_map(|m| m["id"].as_str()).collect();
    assert!(ids.contains(&"anthropic/claude-sonnet-4") && ids.contains(&"openrouter/auto"));
    assert_eq!(r.body["total_count"], json!(ids.len()));

    let r = api.get("/models?offset=2&limit=3", None).await;
    check("/models", "get", 200, &r.body);
    assert_eq!(r.body["data"].as_array().map(Vec::len), Some(3));
    assert!(r.body["links"]["next"].is_string());

    let r = api.get("/models?supported_parameters=tools,reasoning", None).await;
    check("/models", "get", 200, &r.body);
    assert!(r.body["data"].as_array().expect("list").iter().all(|m| {
        m["supported_parameters"].as_array().is_some_and(|p| p.contains(&json!("reasoning")))
    }));

    let r = api.get("/models?limit=0", None).await;
    assert_eq!(r.status, 400);
    check("/models", "get", 400, &r.body);

    let r = api.get("/model/anthropic/claude-sonnet-4", None).await;
    assert_eq!(r.status, 200);
    check("/model/{author}/{slug}", "get", 200, &r.body);
    assert_eq!(r.body["data"]["pricing"]["prompt"], "0.000003");
    assert_eq!(r.body["data"]["pricing"]["input_cache_write"], "0.00000375");

    let r = api.get("/model/meta-llama/llama-3.3-70b-instruct:free", None).await;
    assert_eq!((r.status, r.body["data"]["pricing"]["completion"].as_str()), (200, Some("0")));

    let r = api.get("/model/nobody/nothing", None).await;
    assert_eq!(r.status, 404);
    check("/model/{author}/{slug}", "get", 404, &r.body);
}

#[tokio::test]
async fn keys_family() {
    let api = Api::default().await;
    let created = api
        .post(
            "/keys",
            api.admin(),
            &json!({"name": "run-1", "limit": 0.25, "expires_at": "2099-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(created.status, 201);
    check("/keys", "post", 201, &created.body);
    let key = created.body["key"].as_str().expect("plaintext");
    let hash = created.body["data"]["hash"].as_str().expect("hash").to_string();
    assert!(key.starts_with("sk-or-v1-") && key.len() == "sk-or-v1-".len() + 64);
    assert_eq!(hash.len(), 64);
    assert!(!created.body["data"].to_string().contains(key), "the plaintext only beside data");

    for (body, why) in [
        (json!({}), "no name"),
        (json!({"name": ""}), "empty name"),
        (json!({"name": "x", "limit": -1}), "negative limit"),
        (json!({"name": "x", "limit_reset": "yearly"}), "bad reset"),
        (json!({"name": "x", "expires_at": "2020-01-01T00:00:00Z"}), "past expiry"),
        (json!({"name": "x", "expires_at": "2099-01-01T00:00:00+02:00"}), "not UTC"),
    ] {
        let r = api.post("/keys", api.admin(), &body).await;
        assert_eq!(r.status, 400, "{why}");
        check("/keys", "post", 400, &r.body);
    }
    let r = api.post("/keys", None, &json!({"name": "x"})).await;
    check("/keys", "post", 401, &r.body);
    let r = api.post("/keys", Some(key), &json!({"name": "x"})).await;
    assert_eq!(r.status, 403);
    check("/keys", "post", 403, &r.body);

    let r = api.get("/keys", api.admin()).await;
    assert_eq!(r.status, 200);
    check("/keys", "get", 200, &r.body);
    let r = api.get("/keys?offset=abc", api.admin()).await;
    check("/keys", "get", 400, &r.body);
    let r = api.get("/keys", Some("sk-or-v1-unknown")).await;
    check("/keys", "get", 401, &r.body);
    let r = api.get("/keys", Some(key)).await;
    assert_eq!(r.status, 403);
    check("/keys", "get", 403, &r.body);

    let path = format!("/keys/{hash}");
    let r = api.get(&path, api.admin()).await;
    assert_eq!(r.status, 200);
    check("/keys/{hash}", "get", 200, &r.body);
    assert_eq!(r.body["data"]["limit"], json!(0.25));
    let r = api.get("/keys/0000", api.admin()).await;
    check("/keys/{hash}", "get", 404, &r.body);
    let r = api.get(&path, None).await;
    check("/keys/{hash}", "get", 401, &r.body);

    let r = api
        .patch(
            &path,
            api.admin(),
            &json!({"limit": 1.5, "name": "renamed", "limit_reset": "daily"}),
        )
        .await;
    assert_eq!(r.status, 200);
    check("/keys/{hash}", "patch", 200, &r.body);
    assert_eq!(
        (r.body["data"]["limit"].as_f64(), r.body["data"]["name"].as_str()),
        (Some(1.5), Some("renamed"))
    );
    let r = api.patch(&path, api.admin(), &json!({"limit": "lots"})).await;
    check("/keys/{hash}", "patch", 400, &r.body);
    let r = api.patch("/keys/0000", api.admin(), &json!({"disabled": true})).await;
    check("/keys/{hash}", "patch", 404, &r.body);
    let r = api.patch(&path, api.admin(), &json!({"limit": null})).await;
    assert_eq!(r.body["data"]["limit"], Value::Null, "a null limit removes the cap");

    let r = api.delete(&path, api.admin()).await;
    assert_eq!(r.status, 200);
    check("/keys/{hash}", "delete", 200, &r.body);
    assert_eq!(r.body, json!({"deleted": true}));
    let r = api.delete(&path, api.admin()).await;
    check("/keys/{hash}", "delete", 404, &r.body);
    let r = api.chat(key, &ask("openai/gpt-4o-mini", "hi", Some(10))).await;
    assert_eq!((r.status, r.body["error"]["message"].as_str()), (401, Some("User not found.")));
}

#[tokio::test]
async fn current_key() {
    let api = Api::default().await;
    let (key, _) = api.create_key("mine", Some(2.0)).await;
    let r = api.get("/key", Some(&key)).await;
    assert_eq!(r.status, 200);
    check("/key", "get", 200, &r.body);
    let data = &r.body["data"];
    assert_eq!(
        (data["is_management_key"].as_bool(), data["limit_remaining"].as_f64()),
        (Some(false), Some(2.0))
    );

    let r = api.get("/key", api.admin()).await;
    assert_eq!(r.status, 200);
    check("/key", "get", 200, &r.body);
    assert_eq!(r.body["data"]["is_management_key"], true);

    let r = api.get("/key", None).await;
    check("/key", "get", 401, &r.body);
}

#[tokio::test]
async fn chat_completions_and_generation() {
    let api = Api::default().await;
    let (key, _) = api.create_key("chat", Some(1.0)).await;

    let r = api.chat(&key, &ask("openai/gpt-4o-mini", "Say hello.", Some(100))).await;
    assert_eq!(r.status, 200);
    check("/chat/completions", "post", 200, &r.body);
    let id = r.body["id"].as_str().expect("generation id").to_string();

    let tools = json!([{"type": "function", "function": {"name": "run", "parameters": {
        "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}}]);
    let mut body = ask("anthropic/claude-sonnet-4", "List files.", Some(200));
    body["tools"] = tools;
    let r = api.chat(&key, &body).await;
    check("/chat/completions", "post", 200, &r.body);
    assert_eq!(r.body["choices"][0]["finish_reason"], "tool_calls");

    body["stream"] = json!(true);
    let response = api
        .http
        .post(format!("{}/chat/completions", api.base))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .expect("stream");
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.expect("stream body");
    let (events, _) = sse_events(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let stream_schema = response_schema("/chat/completions", "post", 200, "text/event-stream")
        .expect("the document describes the stream");
    for event in &events[..events.len() - 1] {
        let chunk: Value = serde_json::from_str(event).expect("chunk JSON");
        // The document models one SSE event as an object whose `data` is the chunk.
        validate_against(stream_schema, &json!({"data": chunk}), "stream chunk");
    }

    let r = api.get(&format!("/generation?id={id}"), Some(&key)).await;
    assert_eq!(r.status, 200);
    check("/generation", "get", 200, &r.body);
    let r = api.get("/generation?id=gen-missing", Some(&key)).await;
    check("/generation", "get", 404, &r.body);
    let r = api.get(&format!("/generation?id={id}"), None).await;
    check("/generation", "get", 401, &r.body);

    let r = api.chat(&key, &ask("nobody/nothing", "hi", None)).await;
    assert_eq!(
        (r.status, r.body["error"]["message"].as_str()),
        (400, Some("nobody/nothing is not a valid model ID"))
    );
    check("/chat/completions", "post", 400, &r.body);
    let r = api.chat("sk-or-v1-bad", &ask("openai/gpt-4o-mini", "hi", None)).await;
    check("/chat/completions", "post", 401, &r.body);
    let r = api.chat(&api.admin, &ask("openai/gpt-4o-mini", "hi", None)).await;
    assert_eq!(r.status, 403, "management keys cannot do inference");
    check("/chat/completions", "post", 403, &r.body);
}

#[tokio::test]
async fn chat_refusals_402_403_429_502() {
    let api = Api::default().await;
    let (key, hash) = api.create_key("small", Some(0.001)).await;
    let r = api.chat(&key, &ask("anthropic/claude-opus-4", "Write an essay.", None)).await;
    assert_eq!(r.status, 402);
    check("/chat/completions", "post", 402, &r.body);

    api.sim.set_key_usage(&hash, "0.001".parse().expect("usd")).expect("known key");
    let r = api.chat(&key, &ask("openai/gpt-4o-mini", "hi", Some(5))).await;
    assert_eq!(r.status, 403);
    check("/chat/completions", "post", 403, &r.body);

    let (key, _) = api.create_key("faulty", None).await;
    let script = vec![
        ScriptedFault {
            path: "/chat/completions".into(),
            status: Some(429),
            drop: false,
            times: 1,
        },
        ScriptedFault {
            path: "/chat/completions".into(),
            status: Some(502),
            drop: false,
            times: 1,
        },
    ];
    api.sim.set_faults(Faults { script, ..Faults::default() }).expect("valid faults");
    let r = api.chat(&key, &ask("openai/gpt-4o-mini", "hi", Some(5))).await;
    assert_eq!(r.status, 429);
    check("/chat/completions", "post", 429, &r.body);
    let r = api.chat(&key, &ask("openai/gpt-4o-mini", "hi", Some(5))).await;
    assert_eq!(r.status, 502);
    check("/chat/completions", "post", 502, &r.body);
}

#[tokio::test]
async fn injected_429s_on_management_routes_match_the_document() {
    let api = Api::start(SimConfig::default()).await;
    let script = ["/keys", "/keys/{hash}"]
        .map(|path| ScriptedFault { path: path.into(), status: Some(429), drop: false, times: 1 })
        .to_vec();
    api.sim.set_faults(Faults { script, ..Faults::default() }).expect("valid");
    let r = api.get("/keys", api.admin()).await;
    check("/keys", "get", 429, &r.body);
    let r = api.get("/keys/abc", api.admin()).await;
    check("/keys/{hash}", "get", 429, &r.body);
}

/// The checks above would pass vacuously if `$ref`s failed to resolve or the schemas were not
/// applied; these bodies break the document in ways the simulator must not, and must be refused.
#[test]
fn the_checker_refuses_bodies_that_break_the_document() {
    let refuses = |path: &str, method: &str, status: u16, body: Value| {
        let schema = response_schema(path, method, status, "application/json").expect("documented");
        let root = json!({"components": spec()["components"], "allOf": [schema]});
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&root)
            .expect("compiles");
        assert!(!validator.is_valid(&body), "{method} {path} {status} accepted {body}");
    };
    refuses("/credits", "get", 200, json!({"data": {"total_credits": "100", "total_usage": 0}}));
    refuses("/key", "get", 200, json!({"data": {"label": "x", "limit": null}}));
    refuses("/keys/{hash}", "delete", 200, json!({"deleted": false}));
    // Through `$ref`: a ChatResult without the required, nullable system_fingerprint.
    refuses(
        "/chat/completions",
        "post",
        200,
        json!({
            "id": "gen-1", "object": "chat.completion", "created": 1, "model": "m", "choices": []
        }),
    );
    // Through two `$ref`s: the simulator's own model object, valid, then without
    // `pricing.completion` (ModelResponse -> Model -> PublicPricing).
    let catalog = apf::sim::Catalog::builtin();
    let model = catalog.get("openai/gpt-4o-mini").expect("built in").to_wire();
    let mut body = json!({"data": serde_json::to_value(model).expect("serialises")});
    validate_against(
        response_schema("/model/{author}/{slug}", "get", 200, "application/json")
            .expect("documented"),
        &body,
        "intact model",
    );
    body["data"]["pricing"].as_object_mut().expect("pricing").remove("completion");
    refuses("/model/{author}/{slug}", "get", 200, body);
    refuses("/chat/completions", "post", 402, json!({"error": {"message": "no code"}}));
}
