//! The built function binaries under both platform protocols, played by this test:
//! - AWS Lambda's Runtime API (2018-06-01) fed real API Gateway HTTP API v2, REST v1, ALB and Function URL events;
//! - Vercel's Rust runtime protocol (IPC socket with NUL-terminated JSON, internal headers, `/_vercel/ping`, SIGTERM).
//!
//! Every request is also sent to `cloudagent serve`; status, the headers that matter and the body must agree.

use crate::common;

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead as _, BufReader};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};

/// What a client sees: status, the headers we compare, and the body.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Value,
}

/// Headers whose values must match across platforms.
const COMPARED_HEADERS: &[&str] =
    &["content-type", "allow", "cache-control", "retry-after", "www-authenticate", "x-request-id", "x-correlation-id"];

/// One request, as the tests phrase it.
#[derive(Debug, Clone)]
struct Call {
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: Option<&'static str>,
}

fn with_body(call: Call, body: &'static str) -> Call {
    Call { body: Some(body), ..call }
}

fn call(method: &'static str, path: &'static str, request_id: &'static str) -> Call {
    Call { method, path, headers: vec![("x-request-id", request_id), ("x-correlation-id", "cmp-job")], body: None }
}

fn answer_from_parts(status: u16, headers: impl IntoIterator<Item = (String, String)>, body: &[u8]) -> Answer {
    let headers = headers
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .filter(|(k, _)| COMPARED_HEADERS.contains(&k.as_str()))
        .collect();
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
    };
    Answer { status, headers, body: normalise(body) }
}

/// Blanks what differs by instance and moment (timings, uptime, instance ids); everything else must match.
fn normalise(mut body: Value) -> Value {
    if let Some(checks) = body.get_mut("checks").and_then(Value::as_object_mut) {
        for list in checks.values_mut() {
            for check in list.as_array_mut().into_iter().flatten() {
                for field in ["time", "observedValue", "componentId"] {
                    if check.get(field).is_some() {
                        check[field] = Value::Null;
                    }
                }
            }
        }
        body["notes"] = Value::Null;
        body["description"] = Value::Null;
    }
    body
}

// ---------------------------------------------------------------- processes

/// A binary of this package: cargo builds them all, into one folder, before it runs integration tests.
fn binary(name: &str) -> PathBuf {
    let path = std::path::Path::new(env!("CARGO_BIN_EXE_cloudagent")).with_file_name(name);
    assert!(path.exists(), "{} is not built", path.display());
    path
}

/// A child process killed when dropped, so a failing test leaves nothing running.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn base_command(name: &str, data_dir: &Path) -> Command {
    let mut cmd = Command::new(binary(name));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CLOUD_AGENT_STORE", "embedded")
        .env("CLOUD_AGENT_DATA_DIR", data_dir)
        .env("CLOUD_AGENT_RELEASE", "test-release")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

// ---------------------------------------------------------------- local server

struct Local {
    _proc: Proc,
    base: String,
    _dir: tempfile::TempDir,
}

async fn start_local() -> Local {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = base_command("cloudagent", dir.path());
    cmd.args(["serve", "--port", &port.to_string(), "--data-dir"]).arg(dir.path());
    let proc = Proc(cmd.spawn().expect("spawn cloudagent serve"));
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::get(format!("{base}/health")).await.is_err() {
        assert!(Instant::now() < deadline, "cloudagent serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Local { _proc: proc, base, _dir: dir }
}

async fn http_call(base: &str, c: &Call, extra: &[(&str, String)]) -> Answer {
    let client = reqwest::Client::new();
    let mut request = client.request(c.method.parse().unwrap(), format!("{base}{}", c.path));
    for (k, v) in &c.headers {
        request = request.header(*k, *v);
    }
    for (k, v) in extra {
        request = request.header(*k, v);
    }
    if let Some(body) = c.body {
        request = request.header("content-type", "application/json").body(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers: Vec<(String, String)> =
        response.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned())).collect();
    let body = response.bytes().await.unwrap();
    answer_from_parts(status, headers, &body)
}

// ---------------------------------------------------------------- Lambda Runtime API

#[derive(Default)]
struct RuntimeApi {
    events: Mutex<VecDeque<(String, Value)>>,
    waiting: Mutex<BTreeMap<String, oneshot::Sender<Result<Value, Value>>>>,
    init_error: Mutex<Option<Value>>,
    arrived: Notify,
}

async fn next_invocation(State(api): State<Arc<RuntimeApi>>) -> axum::response::Response {
    loop {
        let notified = api.arrived.notified();
        let event = api.events.lock().unwrap().pop_front();
        if let Some((id, event)) = event {
            let deadline = (std::time::SystemTime::now() + Duration::from_secs(30))
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis();
            return axum::response::Response::builder()
                .header("lambda-runtime-aws-request-id", id)
                .header("lambda-runtime-deadline-ms", deadline.to_string())
                .header("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:123456789012:function:test")
                .header("lambda-runtime-trace-id", "Root=1-6741e45f-1c2a4c2f5b6a1d6e3f7a8b9c;Sampled=0")
                .header("content-type", "application/json")
                .body(axum::body::Body::from(event.to_string()))
                .unwrap();
        }
        notified.await;
    }
}

async fn invocation_response(
    State(api): State<Arc<RuntimeApi>>,
    UrlPath(id): UrlPath<String>,
    body: String,
) -> &'static str {
    if let Some(tx) = api.waiting.lock().unwrap().remove(&id) {
        let _ = tx.send(Ok(serde_json::from_str(&body).unwrap_or(Value::String(body))));
    }
    "{}"
}

async fn invocation_error(
    State(api): State<Arc<RuntimeApi>>,
    UrlPath(id): UrlPath<String>,
    body: String,
) -> &'static str {
    if let Some(tx) = api.waiting.lock().unwrap().remove(&id) {
        let _ = tx.send(Err(serde_json::from_str(&body).unwrap_or(Value::String(body))));
    }
    "{}"
}

async fn init_error(State(api): State<Arc<RuntimeApi>>, body: String) -> &'static str {
    *api.init_error.lock().unwrap() = Some(serde_json::from_str(&body).unwrap_or(Value::String(body)));
    "{}"
}

struct Lambda {
    api: Arc<RuntimeApi>,
    proc: Proc,
    _dir: tempfile::TempDir,
    counter: u64,
}

async fn start_lambda(function: &str) -> Lambda {
    start_lambda_with(function, &[]).await
}

async fn start_lambda_with(function: &str, envs: &[(&str, &str)]) -> Lambda {
    let api = Arc::new(RuntimeApi::default());
    let router = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(invocation_response))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(invocation_error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(api.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = base_command(function, dir.path());
    cmd.env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", format!("cloud-agent-{function}"))
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "test")
        // As template.yaml sets it: REST API stage names are not part of our routes.
        .env("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true")
        .envs(envs.iter().copied());
    let proc = Proc(cmd.spawn().expect("spawn function under Lambda"));
    Lambda { api, proc, _dir: dir, counter: 0 }
}

impl Lambda {
    async fn invoke(&mut self, event: Value) -> Value {
        self.counter += 1;
        let id = format!("8476a536-e9f4-11e8-9739-{:012}", self.counter);
        let (tx, rx) = oneshot::channel();
        self.api.waiting.lock().unwrap().insert(id.clone(), tx);
        self.api.events.lock().unwrap().push_back((id, event));
        self.api.arrived.notify_waiters();
        match tokio::time::timeout(Duration::from_secs(20), rx).await {
            Ok(Ok(Ok(response))) => response,
            Ok(Ok(Err(error))) => panic!("function reported an invocation error: {error}"),
            _ => panic!("no response from the function (init error: {:?})", self.api.init_error.lock().unwrap()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum EventKind {
    HttpApiV2,
    RestV1,
    Alb,
    FunctionUrl,
}

const EVENT_KINDS: [EventKind; 4] = [EventKind::HttpApiV2, EventKind::RestV1, EventKind::Alb, EventKind::FunctionUrl];

fn fixture(kind: EventKind) -> Value {
    let file = match kind {
        EventKind::HttpApiV2 => "apigw-http-v2.json",
        EventKind::RestV1 => "apigw-rest-v1.json",
        EventKind::Alb => "alb.json",
        EventKind::FunctionUrl => "function-url.json",
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lambda").join(file);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The fixture with this call's method, path, headers and body written in, where each event format keeps them.
fn event_for(kind: EventKind, c: &Call) -> Value {
    let mut event = fixture(kind);
    let body = c.body.map_or(Value::Null, |b| Value::String(b.to_owned()));
    match kind {
        EventKind::HttpApiV2 | EventKind::FunctionUrl => {
            event["rawPath"] = json!(c.path);
            event["requestContext"]["http"]["method"] = json!(c.method);
            event["requestContext"]["http"]["path"] = json!(c.path);
            if kind == EventKind::HttpApiV2 {
                event["routeKey"] = json!(format!("{} {}", c.method, c.path));
                event["requestContext"]["routeKey"] = event["routeKey"].clone();
            }
            for (k, v) in &c.headers {
                event["headers"][*k] = json!(v);
            }
            if c.body.is_some() {
                event["headers"]["content-type"] = json!("application/json");
                event["body"] = body;
            }
        }
        EventKind::RestV1 => {
            event["path"] = json!(c.path);
            event["resource"] = json!(c.path);
            event["httpMethod"] = json!(c.method);
            event["requestContext"]["httpMethod"] = json!(c.method);
            event["requestContext"]["path"] = json!(format!("/prod{}", c.path));
            event["requestContext"]["resourcePath"] = json!(c.path);
            for (k, v) in &c.headers {
                event["headers"][*k] = json!(v);
                event["multiValueHeaders"][*k] = json!([v]);
            }
            if c.body.is_some() {
                event["headers"]["Content-Type"] = json!("application/json");
                event["multiValueHeaders"]["Content-Type"] = json!(["application/json"]);
            }
            event["body"] = body;
        }
        EventKind::Alb => {
            event["path"] = json!(c.path);
            event["httpMethod"] = json!(c.method);
            for (k, v) in &c.headers {
                event["headers"][*k] = json!(v);
            }
            if c.body.is_some() {
                event["headers"]["content-type"] = json!("application/json");
            }
            event["body"] = c.body.map_or(json!(""), |b| json!(b));
        }
    }
    event
}

/// Reads a Lambda proxy response (any of the four formats) back into what the client would see.
fn answer_from_lambda(response: &Value) -> Answer {
    let status = u16::try_from(response["statusCode"].as_u64().expect("statusCode")).unwrap();
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(map) = response["multiValueHeaders"].as_object() {
        for (k, values) in map {
            let joined: Vec<&str> = values.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            headers.push((k.clone(), joined.join(",")));
        }
    }
    if let Some(map) = response["headers"].as_object() {
        for (k, v) in map {
            if !headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(k)) {
                headers.push((k.clone(), v.as_str().unwrap_or_default().to_owned()));
            }
        }
    }
    let raw = response["body"].as_str().unwrap_or_default();
    let body = if response["isBase64Encoded"].as_bool().unwrap_or(false) {
        base64::engine::general_purpose::STANDARD.decode(raw).unwrap()
    } else {
        raw.as_bytes().to_vec()
    };
    answer_from_parts(status, headers, &body)
}

// ---------------------------------------------------------------- Vercel

struct Vercel {
    proc: Proc,
    port: u16,
    messages: std::sync::mpsc::Receiver<Value>,
    _dir: tempfile::TempDir,
    counter: u64,
}

fn start_vercel(function: &str) -> Vercel {
    start_vercel_with(function, &[])
}

fn start_vercel_with(function: &str, envs: &[(&str, &str)]) -> Vercel {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ipc.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let port = free_port();
    let mut cmd = base_command(function, &dir.path().join("data"));
    cmd.env("VERCEL_IPC_PATH", &socket).env("VERCEL_DEV_PORT", port.to_string()).envs(envs.iter().copied());
    let proc = Proc(cmd.spawn().expect("spawn function under Vercel"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("the function connects to the IPC socket");
        let mut reader = BufReader::new(stream);
        loop {
            let mut message = Vec::new();
            match reader.read_until(0, &mut message) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    message.pop_if(|b| *b == 0);
                    if let Ok(value) = serde_json::from_slice::<Value>(&message)
                        && tx.send(value).is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    let started = rx.recv_timeout(Duration::from_secs(20)).expect("server-started message");
    assert_eq!(started["type"], "server-started");
    assert_eq!(started["payload"]["httpPort"], port);
    Vercel { proc, port, messages: rx, _dir: dir, counter: 0 }
}

impl Vercel {
    async fn call(&mut self, c: &Call) -> Answer {
        self.counter += 1;
        let invocation = format!("inv-{}", self.counter);
        let extra = [
            ("x-vercel-internal-invocation-id", invocation.clone()),
            ("x-vercel-internal-request-id", self.counter.to_string()),
        ];
        let answer = http_call(&format!("http://127.0.0.1:{}", self.port), c, &extra).await;
        let end = self.next_message(Duration::from_secs(10));
        assert_eq!(end["type"], "end", "after each request the function says end: {end}");
        assert_eq!(end["payload"]["context"]["invocationId"], invocation.as_str());
        assert_eq!(end["payload"]["context"]["requestId"], self.counter);
        answer
    }

    fn next_message(&self, wait: Duration) -> Value {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self.messages.recv_timeout(left).expect("an IPC message");
            // Log messages may interleave; the protocol messages are what we check.
            if message["type"] != "log" {
                return message;
            }
        }
    }

    /// SIGTERM: stop accepting, drain, exit 0.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.proc.0.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.proc.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the function did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

// ---------------------------------------------------------------- the tests

/// Requests each function must answer identically everywhere: its route, a wrong method, an unknown path.
fn calls_for(function: &str) -> Vec<Call> {
    match function {
        "health" => vec![
            call("GET", "/health", "cmp-1"),
            call("POST", "/health", "cmp-2"),
            call("GET", "/health/nope", "cmp-3"),
        ],
        "openapi" => {
            vec![call("GET", "/api/v1/openapi.json", "cmp-4"), call("DELETE", "/api/v1/openapi.json", "cmp-5")]
        }
        "token" => vec![
            with_body(
                call("POST", "/api/v1/agent/token", "cmp-6"),
                r#"{"agent_id":"ghost","agent_secret":"cas_nope"}"#,
            ),
            with_body(call("POST", "/api/v1/agent/token", "cmp-7"), r#"{"agent_id":"ghost""#),
            call("GET", "/api/v1/agent/token", "cmp-8"),
        ],
        "token-refresh" => {
            vec![with_body(call("POST", "/api/v1/agent/token/refresh", "cmp-9"), r#"{"refresh_token":"not.a.token"}"#)]
        }
        "token-revoke" => {
            vec![with_body(call("POST", "/api/v1/agent/token/revoke", "cmp-10"), r#"{"token":"unknown"}"#)]
        }
        "agent-me" => vec![
            call("GET", "/api/v1/agent/me", "cmp-11"),
            Call {
                headers: vec![
                    ("x-request-id", "cmp-12"),
                    ("x-correlation-id", "cmp-job"),
                    ("authorization", "Bearer forged"),
                ],
                ..call("GET", "/api/v1/agent/me", "cmp-12")
            },
        ],
        "progress" => vec![
            with_body(call("POST", "/api/v1/agent/progress", "cmp-13"), r#"{"updates":[]}"#),
            call("GET", "/api/v1/agent/progress", "cmp-14"),
        ],
        "progress-get" => vec![call("GET", "/api/v1/agent/progress/task-1", "cmp-15")],
        "context" => vec![call("GET", "/api/v1/agent/context", "cmp-16")],
        "admin-context" => {
            vec![with_body(call("PUT", "/api/v1/admin/users/u1/context", "cmp-17"), r#"{"profile":{}}"#)]
        }
        "circuit-breakers" => vec![call("POST", "/api/v1/circuit-breakers", "cmp-18")],
        "metrics" => vec![call("DELETE", "/api/v1/metrics", "cmp-19")],
        "health-live" => vec![call("POST", "/health/live", "cmp-20")],
        "health-ready" => vec![call("GET", "/health/ready", "cmp-21")],
        "agent-health" => vec![with_body(call("POST", "/api/v1/agent/health", "cmp-22"), r#"{"status":"healthy"}"#)],
        "agents-health" => vec![call("GET", "/api/v1/agents/health", "cmp-23")],
        // A route without calls of its own (a new one): each of its methods on its path, parameters filled in.
        other => {
            let route = cloud_agent::ROUTES.iter().find(|r| r.binary == other).unwrap();
            let path: &'static str = route
                .path
                .split('/')
                .map(|s| if s.starts_with('{') { "p-1" } else { s })
                .collect::<Vec<_>>()
                .join("/")
                .leak();
            route.methods.iter().map(|m| call(m.as_str().to_owned().leak(), path, "cmp-route")).collect()
        }
    }
}

/// Every function binary that exists in api/ (the infra test keeps this list and the files in step).
fn functions() -> Vec<&'static str> {
    cloud_agent::ROUTES.iter().map(|r| r.binary).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_function_answers_under_lambda_like_the_local_server() {
    let local = start_local().await;
    for function in functions() {
        let mut lambda = start_lambda(function).await;
        for c in calls_for(function) {
            let expected = http_call(&local.base, &c, &[]).await;
            for kind in EVENT_KINDS {
                let response = lambda.invoke(event_for(kind, &c)).await;
                let got = answer_from_lambda(&response);
                assert_eq!(got, expected, "{function} under Lambda ({kind:?}) differs from the local server for {c:?}");
            }
        }
        assert!(lambda.proc.0.try_wait().unwrap().is_none(), "the Lambda process stays up between events");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_function_answers_under_vercel_like_the_local_server() {
    let local = start_local().await;
    for function in functions() {
        let mut vercel = start_vercel(function);
        for c in calls_for(function) {
            let expected = http_call(&local.base, &c, &[]).await;
            let got = vercel.call(&c).await;
            assert_eq!(got, expected, "{function} under Vercel differs from the local server for {c:?}");
        }
        let ping = reqwest::get(format!("http://127.0.0.1:{}/_vercel/ping", vercel.port)).await.unwrap();
        assert_eq!(ping.status(), 200);
        assert_eq!(ping.text().await.unwrap(), "OK");
        let status = vercel.terminate();
        assert_eq!(status.code(), Some(0), "SIGTERM ends the function cleanly");
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read as _;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    out
}

/// A raw answer: status, every header (lower-case names), the body's bytes as they crossed the wire.
async fn raw_call(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, BTreeMap<String, String>, Vec<u8>) {
    // Bodies as they crossed the wire: no decoding by the client.
    let client = reqwest::Client::builder().no_gzip().no_brotli().build().unwrap();
    let mut request = client.request(method.parse().unwrap(), format!("{base}{path}"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.body(body).send().await.unwrap();
    let status = response.status().as_u16();
    let headers =
        response.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned())).collect();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

/// Content codings on every platform: a gzip request body is decoded before the route reads it, a large response
/// leaves gzip-encoded when the client accepts it (base64 in Lambda's answer, as API Gateway expects), and the
/// decoded answers are the local server's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_bodies_cross_every_platform_alike() {
    let local = start_local().await;
    let credentials = br#"{"agent_id":"ghost","agent_secret":"cas_nope"}"#;
    let json_gzip = [("content-type", "application/json"), ("content-encoding", "gzip"), ("x-request-id", "enc-1")];
    let (status, headers, body) =
        raw_call(&local.base, "POST", "/api/v1/agent/token", &json_gzip, gzip(credentials)).await;
    let plain = http_call(
        &local.base,
        &with_body(call("POST", "/api/v1/agent/token", "enc-1"), r#"{"agent_id":"ghost","agent_secret":"cas_nope"}"#),
        &[],
    )
    .await;
    assert_eq!(answer_from_parts(status, headers, &body).body, plain.body, "a gzip body reads as the plain one");
    assert_eq!(plain.status, 401);

    let (status, headers, body) =
        raw_call(&local.base, "GET", "/api/v1/openapi.json", &[("accept-encoding", "gzip")], Vec::new()).await;
    assert_eq!((status, headers.get("content-encoding").map(String::as_str)), (200, Some("gzip")));
    let document: Value = serde_json::from_slice(&gunzip(&body)).unwrap();
    assert!(document["paths"].as_object().unwrap().len() > 20);

    // Lambda: a base64 gzip body in, a base64 gzip document out, under each event shape.
    let mut lambda = start_lambda("token").await;
    for kind in EVENT_KINDS {
        let mut event = event_for(kind, &with_body(call("POST", "/api/v1/agent/token", "enc-1"), "{}"));
        event["body"] = json!(base64::engine::general_purpose::STANDARD.encode(gzip(credentials)));
        event["isBase64Encoded"] = json!(true);
        event["headers"]["content-encoding"] = json!("gzip");
        if kind == EventKind::RestV1 {
            event["multiValueHeaders"]["content-encoding"] = json!(["gzip"]);
        }
        let got = answer_from_lambda(&lambda.invoke(event).await);
        assert_eq!((got.status, &got.body), (401, &plain.body), "gzip body under Lambda ({kind:?})");
    }
    let mut lambda = start_lambda("openapi").await;
    for kind in EVENT_KINDS {
        let mut event = event_for(kind, &call("GET", "/api/v1/openapi.json", "enc-2"));
        event["headers"]["accept-encoding"] = json!("gzip");
        if kind == EventKind::RestV1 {
            event["multiValueHeaders"]["accept-encoding"] = json!(["gzip"]);
        }
        let response = lambda.invoke(event).await;
        assert_eq!(response["isBase64Encoded"], true, "a compressed answer is binary ({kind:?})");
        let raw = base64::engine::general_purpose::STANDARD.decode(response["body"].as_str().unwrap()).unwrap();
        let served: Value = serde_json::from_slice(&gunzip(&raw)).unwrap();
        assert_eq!(served, document, "the document under Lambda ({kind:?})");
    }

    // Vercel: plain HTTP to the function's own server.
    let vercel = start_vercel("openapi");
    let (status, headers, body) = raw_call(
        &format!("http://127.0.0.1:{}", vercel.port),
        "GET",
        "/api/v1/openapi.json",
        &[
            ("accept-encoding", "gzip"),
            ("x-vercel-internal-invocation-id", "inv-1"),
            ("x-vercel-internal-request-id", "1"),
        ],
        Vec::new(),
    )
    .await;
    assert_eq!((status, headers.get("content-encoding").map(String::as_str)), (200, Some("gzip")));
    assert_eq!(serde_json::from_slice::<Value>(&gunzip(&body)).unwrap(), document);
    assert_eq!(vercel.next_message(Duration::from_secs(10))["type"], "end");
    let vercel = start_vercel("token");
    let (status, headers, body) = raw_call(
        &format!("http://127.0.0.1:{}", vercel.port),
        "POST",
        "/api/v1/agent/token",
        &[
            json_gzip[0],
            json_gzip[1],
            ("x-vercel-internal-invocation-id", "inv-1"),
            ("x-vercel-internal-request-id", "1"),
        ],
        gzip(credentials),
    )
    .await;
    assert_eq!(answer_from_parts(status, headers, &body).body["type"], plain.body["type"]);
    assert_eq!(status, 401);
}

#[tokio::test]
async fn the_answers_compared_are_the_real_ones() {
    // Guards the comparison itself: a health answer and a 405 really carry what the tests compare.
    let local = start_local().await;
    let health = http_call(&local.base, &call("GET", "/health", "cmp-x"), &[]).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.headers["content-type"], "application/health+json");
    assert_eq!(health.headers["x-request-id"], "cmp-x");
    assert_eq!(health.body["status"], "pass");
    let wrong = http_call(&local.base, &call("POST", "/health", "cmp-y"), &[]).await;
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.body["request_id"], "cmp-y");
    assert!(wrong.headers["allow"].contains("GET"));
}

/// `vercel dev` starts a Rust function with `VERCEL_DEV=1` and `VERCEL_DEV_PORT` but no IPC socket: it must
/// serve, not refuse as if it ran nowhere.
#[tokio::test]
async fn a_function_under_vercel_dev_serves_without_an_ipc_socket() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = base_command("health-live", dir.path());
    cmd.env("VERCEL_DEV", "1").env("VERCEL_DEV_PORT", port.to_string());
    let _proc = Proc(cmd.spawn().expect("spawn function under vercel dev"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let answer = loop {
        if let Ok(answer) = reqwest::get(format!("http://127.0.0.1:{port}/health/live")).await {
            break answer;
        }
        assert!(Instant::now() < deadline, "the function never answered under vercel dev");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(answer.status(), 200);
    let ping = reqwest::get(format!("http://127.0.0.1:{port}/_vercel/ping")).await.unwrap();
    assert_eq!(ping.status(), 200);
}

#[test]
fn a_function_started_outside_lambda_and_vercel_points_to_cloudagent_serve() {
    let dir = tempfile::tempdir().unwrap();
    for function in functions() {
        let out = base_command(function, dir.path()).stderr(Stdio::piped()).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{function} refuses to run without a platform");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("cloudagent serve"), "{function} says what to run instead: {stderr}");
    }
}

#[test]
fn production_refuses_to_start_without_proper_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let long = "0123456789abcdef0123456789abcdef";
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[], "PROD_AGENT_SECRET"),
        (&[("AGENT_SECRET", long), ("JWT_SECRET", long)], "fallback"),
        (&[("PROD_AGENT_SECRET", long), ("PROD_JWT_SECRET", "short")], "too short"),
    ];
    for (vars, expected) in cases {
        let mut cmd = base_command("health", dir.path());
        cmd.env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
            .env("AWS_LAMBDA_FUNCTION_NAME", "x")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("APP_ENV", "production")
            .env("CLOUD_AGENT_STORE", "dynamodb")
            .stderr(Stdio::piped());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(1), "production start must fail for {vars:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "the message says what is wrong ({expected}): {stderr}");
    }
    // And `cloudagent serve` refuses the same way.
    let out = base_command("cloudagent", dir.path())
        .args(["serve", "--port", "0"])
        .env("APP_ENV", "production")
        .env("CLOUD_AGENT_STORE", "dynamodb")
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PROD_AGENT_SECRET"));
}

#[test]
fn a_lambda_function_with_bad_configuration_fails_its_cold_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = base_command("health", dir.path())
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .env("AWS_LAMBDA_FUNCTION_NAME", "x")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("CLOUD_AGENT_BODY_LIMIT", "lots")
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CLOUD_AGENT_BODY_LIMIT"), "the error names the variable: {stderr}");
}

/// Network rules, under every Lambda event shape and under Vercel: the client address is what the platform put
/// in the event (API Gateway's and Function URLs' source IP, the ALB's own last X-Forwarded-For entry) or what
/// Vercel's edge set (X-Real-IP); a client-supplied X-Forwarded-For naming an allowed address never gets a denied
/// client in. IPv4 and IPv6 both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_rules_hold_under_every_event_shape_and_on_vercel() {
    let rules = [("CLOUD_AGENT_IP_DENY", "192.0.2.0/24,2001:db8:bad::/48")];
    let addresses = [("203.0.113.10", 200), ("192.0.2.9", 403), ("2001:db8:1::1", 200), ("2001:db8:bad::9", 403)];
    let live = call("GET", "/health/live", "net-1");
    let mut lambda = start_lambda_with("health-live", &rules).await;
    for kind in EVENT_KINDS {
        for (ip, expected) in addresses {
            let mut event = event_for(kind, &live);
            match kind {
                EventKind::HttpApiV2 | EventKind::FunctionUrl => {
                    event["requestContext"]["http"]["sourceIp"] = json!(ip);
                    event["headers"]["x-forwarded-for"] = json!("203.0.113.10");
                }
                EventKind::RestV1 => {
                    event["requestContext"]["identity"]["sourceIp"] = json!(ip);
                    event["headers"]["X-Forwarded-For"] = json!("203.0.113.10");
                    event["multiValueHeaders"]["X-Forwarded-For"] = json!(["203.0.113.10"]);
                }
                // The client's claim first, the address the ALB saw appended last.
                EventKind::Alb => event["headers"]["x-forwarded-for"] = json!(format!("203.0.113.10, {ip}")),
            }
            // Without CloudFront in front, its headers are the client's own words: ignored.
            event["headers"]["cloudfront-viewer-address"] = json!("203.0.113.10:443");
            let answer = answer_from_lambda(&lambda.invoke(event).await);
            assert_eq!(answer.status, expected, "{kind:?} from {ip}: {answer:?}");
            if expected == 403 {
                assert_eq!(answer.body["type"], "urn:cloud-agent:problem:ip-denied", "{kind:?}");
                assert_eq!(answer.headers["content-type"], "application/problem+json");
            }
        }
    }

    // Behind CloudFront (the deployment says so): the viewer's address and country are CloudFront's headers, and
    // the event's source address is the edge's. Country rules need exactly this (config refuses them otherwise).
    let behind = [
        ("CLOUD_AGENT_IP_DENY", "192.0.2.0/24,2001:db8:bad::/48"),
        ("CLOUD_AGENT_COUNTRY_DENY", "KP"),
        ("CLOUD_AGENT_BEHIND_CLOUDFRONT", "true"),
    ];
    let mut lambda = start_lambda_with("health-live", &behind).await;
    for kind in [EventKind::HttpApiV2, EventKind::RestV1, EventKind::FunctionUrl] {
        for (viewer, country, expected) in [
            ("203.0.113.10:51000", "DE", None),
            ("192.0.2.9:51000", "DE", Some("ip-denied")),
            ("2001:db8:bad::9:51000", "DE", Some("ip-denied")),
            ("203.0.113.10:51000", "KP", Some("country-denied")),
        ] {
            let mut event = event_for(kind, &live);
            for (name, value) in [("cloudfront-viewer-address", viewer), ("cloudfront-viewer-country", country)] {
                event["headers"][name] = json!(value);
                if kind == EventKind::RestV1 {
                    event["multiValueHeaders"][name] = json!([value]);
                }
            }
            let answer = answer_from_lambda(&lambda.invoke(event).await);
            match expected {
                None => assert_eq!(answer.status, 200, "{kind:?} {viewer} {country}: {answer:?}"),
                Some(slug) => assert_eq!(
                    (answer.status, answer.body["type"].as_str()),
                    (403, Some(format!("urn:cloud-agent:problem:{slug}").as_str())),
                    "{kind:?} {viewer} {country}"
                ),
            }
        }
    }

    let rules = [("CLOUD_AGENT_IP_DENY", "192.0.2.0/24,2001:db8:bad::/48"), ("CLOUD_AGENT_COUNTRY_DENY", "KP")];
    let mut vercel = start_vercel_with("health-live", &rules);
    let from = |real_ip: &'static str, country: &'static str| Call {
        headers: vec![("x-real-ip", real_ip), ("x-forwarded-for", "203.0.113.10"), ("x-vercel-ip-country", country)],
        ..live.clone()
    };
    for (ip, expected) in addresses {
        let answer = vercel.call(&from(ip, "DE")).await;
        assert_eq!(answer.status, expected, "Vercel from {ip}: {answer:?}");
    }
    let answer = vercel.call(&from("203.0.113.10", "KP")).await;
    assert_eq!((answer.status, answer.body["type"].as_str()), (403, Some("urn:cloud-agent:problem:country-denied")));
}

// ---------------------------------------------------------------- the task worker on SQS

/// The SQS-compatible server the test command started (moto), or `None` (skip) outside it.
fn sqs_endpoint() -> Option<String> {
    match std::env::var("CLOUD_AGENT_TEST_SQS_ENDPOINT") {
        Ok(e) if !e.is_empty() => Some(e),
        _ => {
            assert!(
                std::env::var("CLOUD_AGENT_REQUIRE_DYNAMODB").is_err(),
                "CLOUD_AGENT_TEST_SQS_ENDPOINT is not set: run the tests with infra/test.sh"
            );
            eprintln!("SKIPPED: CLOUD_AGENT_TEST_SQS_ENDPOINT not set");
            None
        }
    }
}

async fn sqs_client(endpoint: &str) -> aws_sdk_sqs::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_credential_types::Credentials::from_keys("test", "test", None))
        .http_client({
            use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
            aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
        })
        .load()
        .await;
    aws_sdk_sqs::Client::new(&config)
}

/// The event Lambda's SQS event source sends for these messages.
fn sqs_event(messages: &[aws_sdk_sqs::types::Message], queue_arn: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .attributes()
                .map(|a| a.iter().map(|(k, v)| (k.as_str().to_owned(), Value::String(v.clone()))).collect())
                .unwrap_or_default();
            json!({
                "messageId": m.message_id().unwrap_or_default(),
                "receiptHandle": m.receipt_handle().unwrap_or_default(),
                "body": m.body().unwrap_or_default(),
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body().unwrap_or_default(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

/// Queued tasks through a real queue: the app sends them to SQS (moto), this test plays Lambda's event source
/// (receive, invoke the worker binary under the Runtime API, delete what it did not report failed), the worker
/// runs them against DynamoDB Local. A task that keeps failing and a message nobody can read both end in the
/// dead-letter queue after maxReceiveCount; the failing task's record says it was dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_tasks_run_through_sqs_and_poison_reaches_the_dead_letter_queue() {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let Some(endpoint) = sqs_endpoint() else { return };
    let Some(table) = common::dynamodb().await else { return };
    let dynamodb = common::dynamodb_endpoint().unwrap();
    let sqs = sqs_client(&endpoint).await;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let dlq = sqs.create_queue().queue_name(format!("dlq-{suffix}")).send().await.unwrap().queue_url.unwrap();
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let queue = sqs
        .create_queue()
        .queue_name(format!("tasks-{suffix}"))
        // Short, so a failed message comes back within the test; production's is six times the worker's timeout.
        .attributes(A::VisibilityTimeout, "1")
        .attributes(A::RedrivePolicy, json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3}).to_string())
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();

    let secrets = [
        ("DEV_AGENT_SECRET", "agent-secret-0123456789abcdef0123456789"),
        ("DEV_JWT_SECRET", "jwt-secret-0123456789abcdef0123456789ab"),
        ("DEV_ADMIN_KEY", "admin-key-0123456789abcdef0123456789"),
        ("CLOUD_AGENT_TASK_QUEUE_URL", queue.as_str()),
        ("CLOUD_AGENT_SQS_ENDPOINT", endpoint.as_str()),
        ("CLOUD_AGENT_TASK_MAX_ATTEMPTS", "3"),
    ];
    let app = common::TestApp::builder().envs(&secrets).store(table.store.clone()).spawn().await;
    let admin = "admin-key-0123456789abcdef0123456789";
    let mut worker_env = secrets.to_vec();
    let table_name = table.table.clone().unwrap();
    worker_env.extend([
        ("CLOUD_AGENT_STORE", "dynamodb"),
        ("TABLE_NAME", table_name.as_str()),
        ("DYNAMODB_ENDPOINT", dynamodb.as_str()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ]);
    let mut worker = start_lambda_with("task-worker", &worker_env).await;

    let mut ids = BTreeMap::new();
    for (name, payload, priority) in [
        ("high", json!({"message": "h"}), "high"),
        ("low", json!({"message": "l"}), "low"),
        ("poison", json!({"fail": "transient"}), "normal"),
    ] {
        let body = json!({"type": "echo", "payload": payload, "options": {"async": true, "priority": priority}});
        let answer = app.client.post(app.url("/v3/tasks")).bearer_auth(admin).json(&body).send().await.unwrap();
        assert_eq!(answer.status(), 202);
        let task: Value = answer.json().await.unwrap();
        ids.insert(name, task["id"].as_str().unwrap().to_owned());
    }
    // A message no worker can read.
    sqs.send_message().queue_url(&queue).message_body("{not json").send().await.unwrap();

    // Play the event source until the queue is empty and two messages sit in the DLQ (generous deadline).
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut invocations = Vec::new();
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        let messages = received.messages.unwrap_or_default();
        for m in &messages {
            // SQS fair queues: the app's messages are grouped by their tenant (the bootstrap key's, `default`).
            if m.body().is_some_and(|b| b.starts_with('{') && b.contains("\"tenant\"")) {
                let group =
                    m.attributes().and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId));
                assert_eq!(group.map(String::as_str), Some("default"), "{m:?}");
            }
        }
        if !messages.is_empty() {
            let response = worker.invoke(sqs_event(&messages, "arn:aws:sqs:us-east-1:000000000000:tasks")).await;
            let failed: Vec<String> = response["batchItemFailures"]
                .as_array()
                .expect("a partial batch response")
                .iter()
                .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
                .collect();
            for m in &messages {
                if !failed.iter().any(|f| Some(f.as_str()) == m.message_id()) {
                    sqs.delete_message()
                        .queue_url(&queue)
                        .receipt_handle(m.receipt_handle().unwrap())
                        .send()
                        .await
                        .unwrap();
                }
            }
            invocations.push((messages.len(), failed.len()));
        }
        let dead = sqs
            .get_queue_attributes()
            .queue_url(&dlq)
            .attribute_names(A::ApproximateNumberOfMessages)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()[&A::ApproximateNumberOfMessages]
            .parse::<u32>()
            .unwrap();
        if dead == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the poison never reached the DLQ: invocations {invocations:?}");
    }
    assert_eq!(invocations[0], (4, 2), "the first batch: two done, the failing task and the unreadable message back");

    for name in ["high", "low"] {
        let task: Value =
            common::get_json(&app.client, &app.url(&format!("/v3/tasks/{}", ids[name])), Some(admin)).await;
        assert_eq!(task["status"], "succeeded", "{task}");
        assert_eq!(task["attempts"], 1);
    }
    let poison: Value =
        common::get_json(&app.client, &app.url(&format!("/v3/tasks/{}", ids["poison"])), Some(admin)).await;
    assert_eq!(poison["status"], "failed", "{poison}");
    assert_eq!(poison["attempts"], 3);
    assert!(poison["problem"]["type"].as_str().unwrap().ends_with("dead-lettered"), "{poison}");

    let dead = sqs.receive_message().queue_url(&dlq).max_number_of_messages(10).send().await.unwrap();
    let bodies: Vec<String> = dead.messages.unwrap().iter().map(|m| m.body().unwrap().to_owned()).collect();
    assert!(bodies.iter().any(|b| b.contains(&ids["poison"])), "{bodies:?}");
    assert!(bodies.iter().any(|b| b == "{not json"), "{bodies:?}");

    // Work that waits in the table queue (where it goes when SQS refuses it) is run by the schedule's tick.
    let table_queued = common::TestApp::builder().envs(&secrets[..3]).store(table.store.clone()).spawn().await;
    let body = json!({"type": "echo", "payload": {"message": "t"}, "options": {"async": true}});
    let answer =
        table_queued.client.post(table_queued.url("/v3/tasks")).bearer_auth(admin).json(&body).send().await.unwrap();
    assert_eq!(answer.status(), 202);
    let waiting = answer.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let tick = json!({"version": "0", "id": "tick-1", "detail-type": "Scheduled Event", "source": "aws.events",
                      "account": "000000000000", "time": "2026-12-04T20:00:00Z", "region": "us-east-1",
                      "resources": ["arn:aws:events:us-east-1:000000000000:rule/drain"], "detail": {}});
    let report = worker.invoke(tick).await;
    assert_eq!(report["done"], 1, "{report}");
    let ran: Value = app
        .client
        .get(app.url(&format!("/v3/tasks/{waiting}")))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ran["status"], "succeeded", "{ran}");
    assert!(worker.proc.0.try_wait().unwrap().is_none(), "the worker stays up between batches");
}

/// Queued work on Vercel without a per-minute cron (which Hobby plans refuse): the function that queued a task
/// runs it after its response (`waitUntil`), before it tells Vercel the invocation has ended. No drain is called;
/// the listing served by the same function then shows the task finished. (With the after-response drain off,
/// the task is still queued at that point.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_task_finishes_on_vercel_without_a_cron() {
    const ADMIN: &str = "admin-key-0123456789abcdef0123456789";
    let mut vercel = start_vercel_with("tasks", &[("DEV_ADMIN_KEY", ADMIN)]);
    let mut create = with_body(
        call("POST", "/v3/tasks", "queue-1"),
        r#"{"type": "echo", "payload": {"message": "later"}, "options": {"async": true}}"#,
    );
    create.headers.push(("authorization", "Bearer admin-key-0123456789abcdef0123456789"));
    // `call` waits for the invocation's end message: it comes once the work after the response has settled.
    let queued = vercel.call(&create).await;
    assert_eq!(queued.status, 202, "{:?}", queued.body);
    assert_eq!(queued.body["status"], "queued");
    let id = queued.body["id"].as_str().unwrap().to_owned();

    let mut list = call("GET", "/v3/tasks", "queue-2");
    list.headers.push(("authorization", "Bearer admin-key-0123456789abcdef0123456789"));
    let listed = vercel.call(&list).await;
    let task = listed.body["tasks"].as_array().unwrap().iter().find(|t| t["id"] == id.as_str()).cloned();
    let task = task.expect("the task is listed");
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["result"]["message"], "later");
}
