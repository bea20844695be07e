//! The OpenAPI document is the contract a generated client relies on: this test walks every route of the router
//! with the requests a client can get wrong (no credential, wrong content type, broken or oversized body, bad
//! path and query parameters) and through a store outage, and fails when a route answers a status its operation
//! in the document does not declare.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;

use cloud_agent::route::RouteSpec;
use common::TestApp;
use serde_json::{Value, json};

const ADMIN_KEY: &str = "admin-key-0123456789abcdef0123456789";

/// One request of a probe: method, path, content type and body, whether it carries the route's credential.
struct Probe {
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    authenticated: bool,
}

fn concrete(path: &str, value: &str) -> String {
    path.replace("{task_id}", value).replace("{user_id}", value).replace("{agent_id}", value).replace("{key_id}", value)
}

fn probes(route: &RouteSpec) -> Vec<Probe> {
    let has_body = route.methods.iter().any(|m| *m == http::Method::POST || *m == http::Method::PUT);
    let ok_path = concrete(route.path, "t-1");
    let json = |body: &str| Probe {
        path: ok_path.clone(),
        content_type: Some("application/json"),
        body: body.as_bytes().to_vec(),
        authenticated: true,
    };
    let mut out = vec![
        Probe { authenticated: false, ..json("{}") },
        json("{}"),
        Probe { path: concrete(route.path, "bad%20id%23"), ..json("{}") },
        Probe { path: format!("{ok_path}?limit=abc"), ..json("{}") },
        Probe { path: format!("{ok_path}?limit=0"), ..json("{}") },
        Probe { path: format!("{ok_path}?cursor=not-a-cursor"), ..json("{}") },
    ];
    if has_body {
        out.push(Probe { content_type: Some("text/plain"), ..json("{}") });
        out.push(Probe { content_type: None, ..json("{}") });
        out.push(json("{"));
        out.push(json(r#"{"unexpected": [1, 2, 3]}"#));
        out.push(json("[1, 2]"));
        out.push(Probe { body: vec![b' '; 70 * 1024], ..json("") });
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_a_route_answers_is_in_its_openapi_operation() {
    let app = TestApp::builder().env("DEV_ADMIN_KEY", ADMIN_KEY).spawn().await;
    let (base, outage) = (&app.address, &app.store);
    // A connection per request: an early answer (401, 413) may leave a connection unfit for reuse.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let agent_token = app.access_token("agent-1", "user-1");
    let doc: Value = client.get(format!("{base}/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();

    let mut observed: BTreeMap<(String, String), BTreeSet<u16>> = BTreeMap::new();
    for down in [false, true] {
        outage.down.store(down, Ordering::SeqCst);
        for route in cloud_agent::ROUTES.iter() {
            for method in route.methods {
                for probe in probes(route) {
                    let mut request = client.request(method.clone(), format!("{base}{}", probe.path));
                    if *method != http::Method::GET {
                        request = request.body(probe.body.clone());
                    }
                    if let Some(content_type) = probe.content_type {
                        request = request.header("content-type", content_type);
                    }
                    if probe.authenticated {
                        request = match route.access.permission_for(method) {
                            None => request,
                            Some(p) if p.is_agent_only() => request.bearer_auth(&agent_token),
                            Some(_) => request.bearer_auth(ADMIN_KEY),
                        };
                    }
                    let status = request.send().await.unwrap().status().as_u16();
                    observed.entry((route.path.to_owned(), method.as_str().to_lowercase())).or_default().insert(status);
                }
            }
        }
    }
    outage.down.store(false, Ordering::SeqCst);

    let mut undeclared = Vec::new();
    for ((path, method), statuses) in &observed {
        let responses = &doc["paths"][path][method]["responses"];
        assert!(responses.is_object(), "{method} {path} is not in the OpenAPI document");
        for status in statuses {
            if responses.get(status.to_string()).is_none() {
                undeclared.push(format!("{} {path} answers {status}", method.to_uppercase()));
            }
        }
    }
    assert!(undeclared.is_empty(), "statuses missing from the OpenAPI document:\n{}", undeclared.join("\n"));
    // The probes did reach the interesting answers (so the check above is not vacuous).
    let all: BTreeSet<u16> = observed.values().flatten().copied().collect();
    for status in [200, 202, 400, 401, 404, 413, 415, 422, 503] {
        assert!(all.contains(&status), "no probe produced {status}: {all:?}");
    }
}

#[tokio::test]
async fn operations_declare_the_security_scheme_of_their_auth() {
    let doc: Value = serde_json::from_str(cloud_agent::app::openapi_document()).unwrap();
    for route in cloud_agent::ROUTES.iter() {
        for method in route.methods {
            let operation = &doc["paths"][route.path][method.as_str().to_lowercase()];
            let scheme = operation["security"][0].as_object().and_then(|s| s.keys().next().cloned());
            let schemes: Vec<String> = operation["security"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_object().and_then(|s| s.keys().next().cloned()))
                .collect();
            let expected: &[&str] = match route.access.permission_for(method) {
                None if route.access == cloud_agent::route::Access::Scheduler => &["cronBearer"],
                None => &[],
                Some(p) if p.is_agent_only() => &["bearer"],
                Some(_) => &["apiKey", "operatorBearer"],
            };
            assert_eq!(schemes, expected, "{method} {}", route.path);
            assert_eq!(scheme.as_deref(), expected.first().copied(), "{method} {}", route.path);
            let parameters = operation["parameters"].as_array().cloned().unwrap_or_default();
            assert!(
                !parameters.iter().any(|p| p["in"] == "header" && p["name"].as_str() == Some("Authorization")),
                "credentials are a security scheme, not a header parameter: {method} {}",
                route.path
            );
        }
    }
}

/// The route serves the committed `shared/openapi.json` (so the openapi function links no generator); it must be
/// exactly what the code describes. `CLOUD_AGENT_BLESS_OPENAPI=1` rewrites it after an intended change.
#[test]
fn served_document_is_the_one_the_code_generates() {
    let generated = cloud_agent::app::generate_openapi_document(&cloud_agent_functions::everything());
    let committed = cloud_agent::app::openapi_document();
    if generated != committed && std::env::var_os("CLOUD_AGENT_BLESS_OPENAPI").is_some() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shared/openapi.json");
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let first_difference = generated.lines().zip(committed.lines()).position(|(g, c)| g != c);
    assert!(
        generated == committed,
        "shared/openapi.json is stale (first differing line: {first_difference:?}); regenerate it with \
         `cargo cloudagent openapi > shared/openapi.json` or CLOUD_AGENT_BLESS_OPENAPI=1 cargo test --test api openapi_contract"
    );
}

/// `$ref`s resolved against the document's components.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/schemas/");
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// Every typed input below `schema` that declares no bound, as `where: what`.
fn unbounded(doc: &Value, schema: &Value, at: &str, out: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    for part in schema["allOf"].as_array().into_iter().flatten() {
        unbounded(doc, part, at, out);
    }
    // One shape per task type (`CreateTask`): each is an input.
    for part in schema["oneOf"].as_array().into_iter().flatten() {
        let name = part["$ref"].as_str().and_then(|r| r.rsplit('/').next()).unwrap_or("oneOf");
        unbounded(doc, part, &format!("{at} ({name})"), out);
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return, // free-form JSON (a context's profile): bounded by the body and item limits only
    };
    let has = |key: &str| !schema[key].is_null();
    if types.contains(&"string") && !(has("maxLength") || has("pattern") || has("enum") || has("format")) {
        out.push(format!("{at}: a string without maxLength, pattern, enum or format"));
    }
    if types.contains(&"array") {
        if !has("maxItems") {
            out.push(format!("{at}: an array without maxItems"));
        }
        unbounded(doc, &schema["items"], &format!("{at}[]"), out);
    }
    if types.contains(&"object") {
        if schema["additionalProperties"].is_object() {
            if !has("maxProperties") {
                out.push(format!("{at}: a map without maxProperties"));
            }
            unbounded(doc, &schema["propertyNames"], &format!("{at}{{name}}"), out);
            unbounded(doc, &schema["additionalProperties"], &format!("{at}{{value}}"), out);
        }
        for (name, property) in schema["properties"].as_object().into_iter().flatten() {
            unbounded(doc, property, &format!("{at}.{name}"), out);
        }
    }
}

/// What a client may send is bounded in the document, so a generated client knows the limits the service
/// enforces (and a new field without one fails here).
#[test]
fn every_request_input_declares_its_bounds() {
    let doc: Value = serde_json::from_str(cloud_agent::app::openapi_document()).unwrap();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let at = format!("{} {path}", method.to_uppercase());
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let name = parameter["name"].as_str().unwrap();
                unbounded(&doc, &parameter["schema"], &format!("{at} parameter {name}"), &mut out);
            }
            for (_, content) in operation["requestBody"]["content"].as_object().into_iter().flatten() {
                unbounded(&doc, &content["schema"], &format!("{at} body"), &mut out);
            }
        }
    }
    assert!(out.is_empty(), "inputs without bounds in the OpenAPI document:\n{}", out.join("\n"));
}

/// The `n` in a `{1,n}` pattern.
fn pattern_max(pattern: &str) -> usize {
    let inner = pattern.rsplit_once(',').unwrap().1;
    inner.trim_end_matches("}$").parse().unwrap()
}

/// Each bound the document declares is the one the route enforces: a value at the bound is taken, one past it
/// refused. The limits are read from the document, not repeated here.
#[tokio::test]
async fn declared_bounds_are_the_ones_the_routes_enforce() {
    let app = TestApp::builder().env("DEV_ADMIN_KEY", ADMIN_KEY).env("CLOUD_AGENT_BODY_LIMIT", "1048576").spawn().await;
    let app = &app;
    let doc: Value = serde_json::from_str(cloud_agent::app::openapi_document()).unwrap();
    let schema = |name: &str| doc["components"]["schemas"][name]["properties"].clone();
    // Four-byte characters: maxLength counts characters, whatever their UTF-8 size.
    let wide = |n: usize| "\u{1F600}".repeat(n);
    let n = |v: &Value| usize::try_from(v.as_u64().unwrap()).unwrap();

    // Progress: updates per batch, message length, metrics per update and metric names.
    let update = schema("ProgressUpdate");
    let (message_max, metrics_max) = (n(&update["message"]["maxLength"]), n(&update["metrics"]["maxProperties"]));
    let name_max = n(&update["metrics"]["propertyNames"]["maxLength"]);
    let one = |message: String, metrics: usize, name_len: usize| {
        let metrics: serde_json::Map<String, Value> =
            (0..metrics).map(|i| (format!("{i:0>3}{}", wide(name_len - 3)), json!(1))).collect();
        json!({"task_id": "t", "progress": 1, "status": "running", "message": message, "metrics": metrics,
               "timestamp": "2026-11-23T10:00:00Z"})
    };
    let accepted = |receipt: Value| receipt["accepted"].as_u64().unwrap();
    let post = |body: Value| async move { app.post_progress("agent-1", "user-1", &body).await };
    let at_bounds = post(json!([one(wide(message_max), metrics_max, name_max)])).await;
    assert_eq!(accepted(at_bounds.json().await.unwrap()), 1, "an update at every bound is stored");
    for (what, over) in [
        ("message", one(wide(message_max + 1), 1, 4)),
        ("metrics", one(String::new(), metrics_max + 1, 4)),
        ("metric name", one(String::new(), 1, name_max + 1)),
        (
            "progress",
            json!({"task_id": "t", "progress": update["progress"]["maximum"].as_f64().unwrap() + 0.5,
                            "status": "running", "timestamp": "2026-11-23T10:00:00Z"}),
        ),
    ] {
        let receipt: Value = post(json!([over])).await.json().await.unwrap();
        assert_eq!((what, accepted(receipt.clone())), (what, 0), "{what} past its bound is rejected: {receipt}");
    }
    let batch_max = n(&schema("ProgressBatch")["updates"]["maxItems"]);
    let batch = |count: usize| json!({"updates": vec![one(String::new(), 0, 4); count]});
    assert_eq!(post(batch(batch_max)).await.status(), 202);
    assert_eq!(post(batch(batch_max + 1)).await.status(), 413);

    // Agent health: checks, metrics, names, details, version.
    let report = schema("AgentReport");
    let (checks_max, detail_max) =
        (n(&report["checks"]["maxProperties"]), n(&schema("AgentCheck")["detail"]["maxLength"]));
    let (entry_name_max, version_max) =
        (n(&report["checks"]["propertyNames"]["maxLength"]), n(&report["version"]["maxLength"]));
    let health = |checks: usize, name_len: usize, detail: usize, version: usize| {
        let checks: serde_json::Map<String, Value> = (0..checks)
            .map(|i| (format!("{i:0>3}{}", wide(name_len - 3)), json!({"status": "healthy", "detail": wide(detail)})))
            .collect();
        json!({"status": "healthy", "checks": checks, "version": wide(version)})
    };
    let report_as = |body: Value| async move {
        app.client
            .post(app.url("/api/v1/agent/health"))
            .bearer_auth(app.access_token("agent-1", "user-1"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(report_as(health(checks_max, entry_name_max, detail_max, version_max)).await, 200);
    for over in [
        health(checks_max + 1, 4, 0, 0),
        health(1, entry_name_max + 1, 0, 0),
        health(1, 4, detail_max + 1, 0),
        health(1, 4, 0, version_max + 1),
    ] {
        assert_eq!(report_as(over).await, 422);
    }

    // A context's permissions.
    let permissions = &schema("UserContext")["permissions"];
    let (count_max, len_max) = (n(&permissions["maxItems"]), n(&permissions["items"]["maxLength"]));
    let put = |permissions: Vec<String>| async move {
        app.client
            .put(app.url("/api/v1/admin/users/user-1/context"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"permissions": permissions}))
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(put(vec![wide(len_max); count_max]).await, 200);
    assert_eq!(put(vec!["p".into(); count_max + 1]).await, 422);
    assert_eq!(put(vec![wide(len_max + 1)]).await, 422);

    // Path parameters: the longest id the pattern allows reaches the handler, one more character does not.
    for (path, template, id_char) in [
        ("/api/v1/agent/progress/{task_id}", "/api/v1/agent/progress/", 't'),
        ("/api/v1/agents/{agent_id}/health", "/api/v1/agents/", 'a'),
    ] {
        let parameter = &doc["paths"][path]["get"]["parameters"][0];
        let max = pattern_max(parameter["schema"]["pattern"].as_str().unwrap());
        let url = |len: usize| {
            let id = id_char.to_string().repeat(len);
            let suffix = if path.ends_with("/health") { "/health" } else { "" };
            app.url(&format!("{template}{id}{suffix}"))
        };
        let bearer = if path.starts_with("/api/v1/agents/") {
            ADMIN_KEY.to_owned()
        } else {
            app.access_token("agent-1", "user-1")
        };
        let status = |len: usize| {
            let request = app.client.get(url(len)).bearer_auth(&bearer);
            async move { request.send().await.unwrap().status().as_u16() }
        };
        assert_eq!(status(max).await, 404, "{path}: the longest valid id is looked up (and not found)");
        assert_eq!(status(max + 1).await, 422, "{path}: one past the pattern is refused");
    }
    let user_max = pattern_max(
        doc["paths"]["/api/v1/admin/users/{user_id}/context"]["put"]["parameters"][0]["schema"]["pattern"]
            .as_str()
            .unwrap(),
    );
    let put_user = |len: usize| {
        let request = app
            .client
            .put(app.url(&format!("/api/v1/admin/users/{}/context", "u".repeat(len))))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({}));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(put_user(user_max).await, 200);
    assert_eq!(put_user(user_max + 1).await, 422);
}

/// The test tools of `infra/` (npm, the venv), which `infra/test.sh` installs; `None` (the test skips) only when
/// the run does not require them.
fn tool(path: &str) -> Option<std::path::PathBuf> {
    let tool = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    if tool.exists() {
        return Some(tool);
    }
    assert!(std::env::var("CLOUD_AGENT_REQUIRE_DYNAMODB").is_err(), "infra/test.sh installs {path}");
    eprintln!("SKIPPED: {path} is not installed (infra/test.sh installs it)");
    None
}

/// Another tool of the OpenAPI ecosystem reads the document as we mean it: Redocly's linter, recommended rules,
/// reports nothing (unique operation ids, every operation's security declared, servers, resolvable references).
#[test]
fn the_document_lints_clean_under_redocly_recommended_rules() {
    let Some(redocly) = tool("infra/node_modules/.bin/redocly") else { return };
    let out = std::process::Command::new(redocly)
        .args(["lint", "shared/openapi.json", "--extends", "recommended", "--format", "json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("REDOCLY_TELEMETRY", "off")
        .env("REDOCLY_SUPPRESS_UPDATE_NOTICE", "true")
        .output()
        .expect("run redocly");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("redocly printed no JSON report ({e}): {stdout}{}", String::from_utf8_lossy(&out.stderr))
    });
    let problems: Vec<String> = report["problems"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| format!("{} {}: {} at {}", p["severity"], p["ruleId"], p["message"], p["location"][0]["pointer"]))
        .collect();
    assert!(
        problems.is_empty() && out.status.success(),
        "Redocly found {} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// A client generated by a standard generator (openapi-python-client, from PyPI) has every operation of the
/// document, and its typed calls work against the server: an API key made with it, a task created through v3 and
/// one delegated through v2, read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_python_client_has_every_operation_and_round_trips_tasks() {
    let Some(generator) = tool("infra/.venv/bin/openapi-python-client") else { return };
    let python = tool("infra/.venv/bin/python").expect("the venv's python");
    let work = tempfile::tempdir().unwrap();
    let package = work.path().join("cloud_agent_client");
    let out = std::process::Command::new(generator)
        .args(["generate", "--path", "shared/openapi.json", "--meta", "none", "--output-path"])
        .arg(&package)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run openapi-python-client");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the generator failed: {said}");
    // A schema it cannot read is dropped with a warning (and the operations using it with it).
    assert!(!said.contains("Unable to"), "the generator skipped parts of the document: {said}");

    let doc: Value = serde_json::from_str(cloud_agent::app::openapi_document()).unwrap();
    let operations: BTreeSet<String> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values().map(|op| op["operationId"].as_str().unwrap().to_owned()))
        .collect();
    let app = TestApp::builder().env("DEV_ADMIN_KEY", ADMIN_KEY).spawn().await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openapi/python_client.py");
    let out = tokio::process::Command::new(python)
        .arg(script)
        .arg(work.path())
        .arg(&app.address)
        .arg(ADMIN_KEY)
        .arg(operations.len().to_string())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "the generated client failed: {}", String::from_utf8_lossy(&out.stderr));
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    let generated = seen["generated"].as_array().unwrap();
    assert_eq!(generated.len(), operations.len(), "one module per operation: {generated:?} for {operations:?}");
    assert_eq!(seen["v3_status"], 201);
    assert_eq!(seen["v3"]["status"], "succeeded");
    assert_eq!(seen["v3"]["result"]["message"], "v3");
    assert_eq!(seen["v2"]["success"], true);
    assert_eq!(seen["read"]["id"], seen["v2"]["task_id"]);
    assert_eq!(seen["read"]["result"]["message"], "v2", "{seen}");
}
