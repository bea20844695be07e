//! The router in-process: health, request ids, and every error path rendered as problem+json.

use crate::common;

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use cloud_agent::http::{ApiError, ApiJson, layered};
use common::{TestApp, serve_router, spawn_app};
use serde::Deserialize;
use serde_json::Value;

async fn problem(response: reqwest::Response, status: u16) -> Value {
    common::assert_problem(response, status, None).await
}

#[tokio::test]
async fn health_passes_with_a_datastore_check() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/health+json");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "pass");
    assert_eq!(body["releaseId"], "test-release");
    assert_eq!(body["version"], "1");
    assert_eq!(body["environment"], "development");
    let check = &body["checks"]["datastore:responseTime"][0];
    assert_eq!(check["componentType"], "datastore");
    assert_eq!(check["componentId"], "embedded");
    assert_eq!(check["status"], "pass");
    assert_eq!(check["observedUnit"], "ms");
    assert!(check["observedValue"].as_f64().is_some());
    for key in ["circuitBreaker:state", "tokens:keys", "config:environment", "memory:utilization", "requests:errorRate"]
    {
        assert!(body["checks"][key][0]["status"].is_string(), "{key} is checked: {body}");
    }
    assert_eq!(body["checks"]["circuitBreaker:state"][0]["componentId"], "store");
    assert_eq!(body["alerts"], serde_json::json!([]));
    let live = app.client.get(app.url("/health/live")).send().await.unwrap();
    assert_eq!(live.status(), 200);
    let ready = app.client.get(app.url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.json::<Value>().await.unwrap()["status"], "pass");
    for key in body["checks"].as_object().unwrap().keys() {
        assert!(key.split(':').count() <= 2, "checks are keyed component[:measurement]: {key}");
    }
}

#[tokio::test]
async fn health_fails_with_503_when_the_datastore_is_unreachable() {
    // A real DynamoDB client pointed at a port nobody listens on.
    let nowhere = cloud_agent::store::dynamo::DynamoStore::connect(&cloud_agent::store::dynamo::DynamoConfig {
        table: "nowhere".into(),
        endpoint: Some("http://127.0.0.1:9".into()),
        region: None,
    })
    .await;
    let app = TestApp::builder().store(std::sync::Arc::new(nowhere)).spawn().await;
    let address = &app.address;
    let response = reqwest::get(format!("{address}/health")).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["content-type"], "application/health+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "fail");
    assert_eq!(reqwest::get(format!("{address}/health/ready")).await.unwrap().status(), 503, "not ready");
    assert_eq!(reqwest::get(format!("{address}/health/live")).await.unwrap().status(), 200, "but alive");
    let check = &body["checks"]["datastore:responseTime"][0];
    assert_eq!(check["status"], "fail");
    let output = check["output"].as_str().unwrap();
    assert!(!output.contains("127.0.0.1"), "health output does not leak endpoints: {output}");
}

#[tokio::test]
async fn request_ids_are_generated_echoed_and_validated() {
    let app = spawn_app().await;
    let generated = app.client.get(app.url("/health")).send().await.unwrap();
    let id = generated.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "a UUID is generated when none is sent");
    assert_eq!(generated.headers()["x-correlation-id"], id.as_str(), "correlation defaults to the request id");

    let echoed = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "req-123")
        .header("x-correlation-id", "job-9")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "req-123");
    assert_eq!(echoed.headers()["x-correlation-id"], "job-9");

    let hostile = app.client.get(app.url("/health")).header("x-request-id", "x".repeat(500)).send().await.unwrap();
    assert_eq!(hostile.headers()["x-request-id"].len(), 36, "an oversized id is replaced, not logged");
}

#[tokio::test]
async fn unknown_route_is_404_problem() {
    let app = spawn_app().await;
    let body = problem(app.client.get(app.url("/api/v1/nope")).send().await.unwrap(), 404).await;
    assert_eq!(body["instance"], "/api/v1/nope");
}

#[tokio::test]
async fn wrong_method_is_405_problem_with_allow() {
    let app = spawn_app().await;
    let response = app.client.delete(app.url("/health")).send().await.unwrap();
    let allow = response.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET"), "Allow lists GET: {allow}");
    problem(response, 405).await;
}

#[tokio::test]
async fn openapi_document_is_3_1_and_lists_every_route() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/api/v1/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for route in cloud_agent::ROUTES.iter() {
        let path = route.path;
        let ops = paths.get(path).unwrap_or_else(|| panic!("{path} missing from OpenAPI"));
        for method in route.methods {
            assert!(ops.get(method.as_str().to_lowercase()).is_some(), "{method} {path} missing from OpenAPI");
        }
    }
    assert_eq!(paths.len(), cloud_agent::ROUTES.len(), "OpenAPI names only real routes");
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}

// --- the JSON error paths, through the real layer stack and the real `ApiJson` extractor ---

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Report {
    agent_id: String,
    progress: u8,
    tags: Vec<String>,
}

async fn panicking() -> &'static str {
    let secret = std::hint::black_box("secret database password hunter2");
    panic!("{secret}")
}

/// A server of only the layer stack around a few test routes (not the app).
struct Layered {
    address: String,
    client: reqwest::Client,
}

impl Layered {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }
}

async fn json_app() -> Layered {
    let router = Router::new()
        .route(
            "/report",
            post(|ApiJson(r): ApiJson<Report>| async move { ApiJson(serde_json::json!({"agent": r.agent_id})) }),
        )
        .route("/panic", get(panicking))
        .route("/fail", get(|| async { ApiError::Internal("connection string postgres://admin:pw@db".into()) }))
        .route("/slow", get(|| async { tokio::time::sleep(Duration::from_secs(5)).await }));
    let address = serve_router(layered(router, 1024, Duration::from_millis(300), None)).await;
    Layered { address, client: reqwest::Client::new() }
}

async fn post_json(app: &Layered, body: &'static str) -> reqwest::Response {
    app.client.post(app.url("/report")).header("content-type", "application/json").body(body).send().await.unwrap()
}

#[tokio::test]
async fn valid_json_is_accepted() {
    let app = json_app().await;
    let response = post_json(&app, r#"{"agent_id":"a1","progress":50,"tags":["x"]}"#).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["agent"], "a1");
}

#[tokio::test]
async fn malformed_json_is_400_problem() {
    let app = json_app().await;
    let body = problem(post_json(&app, r#"{"agent_id": "a1", "progress": "#).await, 400).await;
    assert!(body["detail"].as_str().unwrap().contains("EOF"), "{body}");
}

#[tokio::test]
async fn wrong_field_type_is_400_naming_the_field() {
    let app = json_app().await;
    let body = problem(post_json(&app, r#"{"agent_id":"a1","progress":500,"tags":["x"]}"#).await, 400).await;
    assert_eq!(body["pointer"], "/progress");
    assert!(body["detail"].as_str().unwrap().starts_with("/progress"), "{body}");
    let body = problem(post_json(&app, r#"{"agent_id":"a1","progress":5,"tags":["x", 7]}"#).await, 400).await;
    assert_eq!(body["pointer"], "/tags/1");
    let body = problem(post_json(&app, r#"{"progress":5,"tags":[]}"#).await, 400).await;
    assert!(body["detail"].as_str().unwrap().contains("agent_id"), "a missing field is named: {body}");
}

#[tokio::test]
async fn oversize_body_is_413_problem() {
    let app = json_app().await;
    let big = format!(r#"{{"agent_id":"{}","progress":1,"tags":[]}}"#, "a".repeat(5000));
    let response = app
        .client
        .post(app.url("/report"))
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    problem(response, 413).await;
    // Without a Content-Length (streamed), the limit still holds.
    let stream = futures_once(big.into_bytes());
    let response = app
        .client
        .post(app.url("/report"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    problem(response, 413).await;
}

fn futures_once(bytes: Vec<u8>) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    struct Once(Option<Vec<u8>>);
    impl futures_core::Stream for Once {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.take().map(Ok))
        }
    }
    Once(Some(bytes))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

async fn post_encoded(app: &Layered, coding: &str, body: Vec<u8>) -> reqwest::Response {
    app.client
        .post(app.url("/report"))
        .header("content-type", "application/json")
        .header("content-encoding", coding)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn gzip_and_brotli_bodies_are_decoded_before_the_route_reads_them() {
    use std::io::Write as _;
    let app = json_app().await;
    let body = br#"{"agent_id":"zipped","progress":50,"tags":["x"]}"#;
    let response = post_encoded(&app, "gzip", gzip(body)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["agent"], "zipped");
    let mut br = Vec::new();
    brotli::CompressorWriter::new(&mut br, 4096, 5, 22).write_all(body).unwrap();
    let response = post_encoded(&app, "br", br).await;
    assert_eq!(response.json::<Value>().await.unwrap()["agent"], "zipped");
    // A body that compresses below the limit but decodes above it: 413 like a plain one.
    let padded = format!(r#"{{"agent_id":"{}","progress":1,"tags":[]}}"#, "a".repeat(5000));
    let body = problem(post_encoded(&app, "gzip", gzip(padded.as_bytes())).await, 413).await;
    assert_eq!(body["type"], "urn:cloud-agent:problem:payload-too-large");
    assert!(body["detail"].as_str().unwrap().contains("decoded body is larger than the 1024-byte limit"), "{body}");
}

#[tokio::test]
async fn a_zip_bomb_is_a_413_and_the_server_carries_on() {
    let app = json_app().await;
    // The app's limit is 1 KiB: 64 MiB of zeros (64 KiB encoded) is refused on its encoded size, and 512 KiB in
    // half a kilobyte on its decoded size, after at most 1 KiB + 1 byte was inflated.
    let bomb = gzip(&vec![0; 64 << 20]);
    problem(post_encoded(&app, "gzip", bomb).await, 413).await;
    let small_bomb = gzip(&vec![b' '; 512 << 10]);
    assert!(small_bomb.len() <= 1024, "{} bytes", small_bomb.len());
    let body = problem(post_encoded(&app, "gzip", small_bomb).await, 413).await;
    assert!(body["detail"].as_str().unwrap().contains("decoded"), "{body}");
    let response = post_json(&app, r#"{"agent_id":"after","progress":1,"tags":[]}"#).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn unknown_or_broken_encodings_are_refused_with_what_to_send() {
    let app = json_app().await;
    let response = post_encoded(&app, "zstd", b"{}".to_vec()).await;
    assert_eq!(response.headers()["accept-encoding"], "gzip, br");
    let body = problem(response, 415).await;
    assert_eq!(body["type"], "urn:cloud-agent:problem:unsupported-content-encoding");
    assert!(body["detail"].as_str().unwrap().contains("zstd"), "{body}");
    let body = problem(post_encoded(&app, "gzip", b"{\"agent_id\":1}".to_vec()).await, 400).await;
    assert_eq!(body["type"], "urn:cloud-agent:problem:invalid-content-encoding");
    assert!(body["detail"].as_str().unwrap().contains("Content-Encoding"), "{body}");
    // `identity` is no coding at all.
    let response = post_encoded(&app, "identity", br#"{"agent_id":"i","progress":1,"tags":[]}"#.to_vec()).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn large_answers_are_compressed_only_for_clients_that_accept_it() {
    let big = "x".repeat(4000);
    let router = Router::new()
        .route("/big", get(move || async move { ApiJson(serde_json::json!({ "text": big })) }))
        .route("/small", get(|| async { ApiJson(serde_json::json!({ "text": "hi" })) }));
    let address = serve_router(layered(router, 1024, Duration::from_secs(5), None)).await;
    // A client that leaves bodies as they came (reqwest would decode and drop the header otherwise).
    let client = reqwest::Client::builder().no_gzip().no_brotli().build().unwrap();
    let get = |path: &'static str, accept: Option<&'static str>| {
        let mut request = client.get(format!("{address}{path}"));
        if let Some(accept) = accept {
            request = request.header("accept-encoding", accept);
        }
        request.send()
    };
    let response = get("/big", Some("gzip")).await.unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    assert_eq!(response.headers()["vary"], "accept-encoding");
    assert!(response.headers().contains_key("x-request-id"), "the ids survive compression");
    let bytes = response.bytes().await.unwrap();
    assert!(bytes.len() < 200, "{} bytes", bytes.len());
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["text"].as_str().unwrap().len(), 4000);
    let response = get("/big", Some("br;q=1.0, gzip;q=0.5")).await.unwrap();
    assert_eq!(response.headers()["content-encoding"], "br");
    let response = get("/big", None).await.unwrap();
    assert!(!response.headers().contains_key("content-encoding"));
    assert_eq!(response.json::<Value>().await.unwrap()["text"].as_str().unwrap().len(), 4000);
    let response = get("/small", Some("gzip")).await.unwrap();
    assert!(!response.headers().contains_key("content-encoding"), "a small answer goes as it is");
}

#[tokio::test]
async fn wrong_content_type_is_415_problem() {
    let app = json_app().await;
    let response =
        app.client.post(app.url("/report")).header("content-type", "text/plain").body("{}").send().await.unwrap();
    let body = problem(response, 415).await;
    assert!(body["detail"].as_str().unwrap().contains("text/plain"));
    let response = app.client.post(app.url("/report")).body("{}").send().await.unwrap();
    problem(response, 415).await;
}

#[tokio::test]
async fn server_errors_never_leak_internals() {
    let app = json_app().await;
    for path in ["/panic", "/fail"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        let body = problem(response, 500).await;
        let text = body.to_string();
        assert!(!text.contains("hunter2") && !text.contains("postgres://"), "{text}");
    }
}

#[tokio::test]
async fn a_request_past_its_budget_is_503_problem() {
    let app = json_app().await;
    problem(app.client.get(app.url("/slow")).send().await.unwrap(), 503).await;
}

/// The bootstrap admin key, which holds metrics:read.
const METRICS_KEY: &str = "admin-key-0123456789abcdef0123456789";

#[tokio::test]
async fn metrics_are_valid_prometheus_text_with_route_counts() {
    let app = TestApp::builder().env("DEV_ADMIN_KEY", METRICS_KEY).spawn().await;
    for _ in 0..3 {
        app.client.get(app.url("/health")).send().await.unwrap();
    }
    app.client.get(app.url("/api/v1/agent/progress/some-task")).send().await.unwrap();
    app.client.get(app.url("/no/such/path")).send().await.unwrap();
    let anonymous = app.client.get(app.url("/api/v1/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401, "metrics need metrics:read");
    let response = app.client.get(app.url("/api/v1/metrics")).bearer_auth(METRICS_KEY).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = response.text().await.unwrap();
    assert!(text.contains(r#"cloud_agent_requests_total{route="/health",status="200"} 3"#), "{text}");
    assert!(
        text.contains(r#"route="/api/v1/agent/progress/{task_id}",status="401""#),
        "paths are labelled by template"
    );
    assert!(text.contains(r#"route="unmatched",status="404""#), "unknown paths do not create labels");
    assert!(text.contains(r#"cloud_agent_breaker_state{name="store"} 0"#));
    let Some(python) = std::env::var("CLOUD_AGENT_TEST_PYTHON").ok().filter(|p| !p.is_empty()) else {
        assert!(std::env::var("CLOUD_AGENT_REQUIRE_DYNAMODB").is_err(), "infra/test.sh sets CLOUD_AGENT_TEST_PYTHON");
        eprintln!("SKIPPED: the Prometheus parser check needs CLOUD_AGENT_TEST_PYTHON");
        return;
    };
    // A real parser: prometheus_client's, which rejects malformed exposition text.
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
families = {f.name: f for f in text_string_to_metric_families(sys.stdin.read())}
hist = families["cloud_agent_request_duration_seconds"]
assert hist.type == "histogram", hist.type
counts = [s for s in hist.samples if s.name.endswith("_count") and s.labels["route"] == "/health"]
assert counts and counts[0].value == 3, counts
print(len(families))
"#;
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "prometheus_client rejected the text: {}", String::from_utf8_lossy(&out.stderr));
}

/// Metrics label requests by route template, never by raw path (bounded label values); unrouted paths are
/// `unmatched`. (Formerly the unit test `routes_are_labelled_by_template`.)
#[tokio::test]
async fn metrics_label_requests_by_route_template() {
    let app = TestApp::builder().env("DEV_ADMIN_KEY", METRICS_KEY).spawn().await;
    for path in ["/health", "/api/v1/agent/progress/task-7", "/api/v1/agent/progress/", "/wp-admin.php"] {
        app.client.get(app.url(path)).send().await.unwrap();
    }
    let text =
        app.client.get(app.url("/api/v1/metrics")).bearer_auth(METRICS_KEY).send().await.unwrap().text().await.unwrap();
    assert!(text.contains(r#"route="/health""#), "{text}");
    assert!(text.contains(r#"route="/api/v1/agent/progress/{task_id}",status="401""#), "{text}");
    assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
    assert!(!text.contains("task-7") && !text.contains("wp-admin"), "raw paths never become labels: {text}");
}

/// Every answer carries the security headers, also the ones no handler wrote (404, 405, 401, 413). In process:
/// no socket is needed to see headers.
#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = TestApp::builder().in_process().await;
    let request = |method: &str, path: &str, body: String| {
        http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body))
            .unwrap()
    };
    let oversized = serde_json::json!({"pad": "x".repeat(70_000)}).to_string();
    let mut responses = Vec::new();
    for (method, path, body) in [
        ("GET", "/health/live", String::new()),
        ("GET", "/api/v1/nope", String::new()),
        ("DELETE", "/health", String::new()),
        ("GET", "/api/v1/agent/me", String::new()),
        ("POST", "/api/v1/agent/token", oversized),
    ] {
        responses.push(app.oneshot(request(method, path, body)).await);
    }
    let statuses: Vec<u16> = responses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses, [200, 404, 405, 401, 413]);
    for response in responses {
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{}", response.status());
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["content-security-policy"], "default-src 'none'; frame-ancestors 'none'");
        assert!(headers["strict-transport-security"].to_str().unwrap().contains("max-age=63072000"));
        assert_eq!(headers["referrer-policy"], "no-referrer");
    }
}

/// CORS from an allowlist: a listed origin's preflight and requests get the CORS headers, any other origin none,
/// and without a list nothing changes.
#[tokio::test]
async fn cors_answers_only_the_listed_origins() {
    let app = TestApp::builder().env("CLOUD_AGENT_CORS_ORIGINS", "https://dash.example.com").spawn().await;
    let preflight = |origin: &str| {
        app.client
            .request(http::Method::OPTIONS, app.url("/api/v1/keys"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "x-api-key, content-type")
            .send()
    };
    let allowed = preflight("https://dash.example.com").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let h = allowed.headers();
    assert_eq!(h["access-control-allow-origin"], "https://dash.example.com");
    assert!(h["access-control-allow-methods"].to_str().unwrap().contains("POST"));
    assert!(h["access-control-allow-headers"].to_str().unwrap().contains("x-api-key"));
    assert!(h.get("access-control-allow-credentials").is_none(), "credentials travel in headers, not cookies");
    let other = preflight("https://evil.example.com").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let get = app.client.get(app.url("/health")).header("origin", "https://dash.example.com").send().await.unwrap();
    assert_eq!(get.headers()["access-control-allow-origin"], "https://dash.example.com");
    assert!(get.headers()["access-control-expose-headers"].to_str().unwrap().contains("ratelimit"));
    assert!(get.headers()["vary"].to_str().unwrap().to_ascii_lowercase().contains("origin"));

    let plain = spawn_app().await;
    let get = plain.client.get(plain.url("/health")).header("origin", "https://dash.example.com").send().await.unwrap();
    assert!(get.headers().get("access-control-allow-origin").is_none(), "no list, no CORS");
}
