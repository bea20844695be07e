//! The OpenAPI document is the contract a generated client relies on: this test walks every route of the router
//! with the requests a client can get wrong (no credential, wrong content type, broken or oversized body, bad
//! path and query parameters) and through a store outage, and fails when a route answers a status its operation
//! in the document does not declare.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;

use cloud_agent::route::{Auth, RouteSpec};
use common::TestApp;
use serde_json::Value;

const ADMIN_KEY: &str = "admin-key-0123456789abcdef0123456789";

/// One request of a probe: method, path, content type and body, whether it carries the route's credential.
struct Probe {
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    authenticated: bool,
}

fn concrete(path: &str, value: &str) -> String {
    path.replace("{task_id}", value).replace("{user_id}", value)
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
                        request = match route.auth {
                            Auth::Public => request,
                            Auth::Agent => request.bearer_auth(&agent_token),
                            Auth::Admin => request.bearer_auth(ADMIN_KEY),
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
            let expected = match route.auth {
                Auth::Public => None,
                Auth::Agent => Some("bearer".to_owned()),
                Auth::Admin => Some("adminKey".to_owned()),
            };
            assert_eq!(scheme, expected, "{method} {}", route.path);
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
    let generated = cloud_agent::app::generate_openapi_document();
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
         `cargo cloudagent openapi > shared/openapi.json` or CLOUD_AGENT_BLESS_OPENAPI=1 cargo test --test openapi_contract"
    );
}
