//! The `api-tester` task: runs up to 10 HTTP requests concurrently through the SSRF-safe [`Outbound`] client and
//! checks each answer against the caller's expectations (status, a substring, a JSON Pointer value).
//!
//! One rule across the outbound handlers (api-tester, health-check, webhook): a target the outbound policy refuses
//! (bad scheme, credentials in the URL, a private/loopback/metadata address, also when found by DNS or at a
//! redirect) is the caller's input error, a 422 with the pointer `/requests/N/url`: it is a fact about what was
//! asked, retrying cannot change it, and reporting it as a failed test would hide it. Failures on the way (timeout,
//! connection refused, unknown host, too many redirects) are that request's result: `passed: false`, `error`.
//!
//! Without `expect.status` a request passes on any 2xx. The summary's health score is health-check's: the share
//! of passed requests, each counted 1 up to 1 s of latency, falling linearly to 0.5 at 5 s.

use bytes::Bytes;
use http::Method;
use serde_json::{Map, Value, json};

use super::http_input::{
    MAX_BODY_BYTES, REQUEST_TIMEOUT, body_with_type, headers_field, headers_schema, health_score, json_body,
    method_field, only_fields_at, refusal, send_all, url_field, url_schema,
};
use crate::input::{self, InputError};
use crate::outbound::{Outbound, OutboundRequest, OutboundResponse};

pub const NAME: &str = "api-tester";
pub const DESCRIPTION: &str = "Runs 1 to 10 HTTP requests against public http(s) URLs concurrently (5 s each) and \
    checks each answer's status, body substring or JSON value; reports per-request pass/fail with reasons and a \
    summary with a 0-100 health score.";

/// Most requests in one run.
pub const MAX_REQUESTS: usize = 10;
/// Longest `expect.contains` and `expect.json_pointer.pointer`.
pub const MAX_EXPECT_CHARS: usize = 1024;
/// Longest rendering of an unexpected value in a failure message.
const SHOWN_VALUE_CHARS: usize = 200;
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

pub fn input_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "api-tester input",
        "type": "object",
        "additionalProperties": false,
        "required": ["requests"],
        "properties": {
            "requests": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_REQUESTS,
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["method", "url"],
                    "properties": {
                        "method": { "enum": METHODS },
                        "url": url_schema(),
                        "headers": headers_schema(),
                        "body": {
                            "description": "A string is sent as is (text/plain), any other JSON value as \
                                application/json, unless a content-type header is given; at most 64 KiB as sent; \
                                null means no body. Not allowed with GET or HEAD."
                        },
                        "expect": {
                            "type": "object",
                            "additionalProperties": false,
                            "properties": {
                                "status": { "type": "integer", "minimum": 100, "maximum": 599 },
                                "contains": { "type": "string", "minLength": 1, "maxLength": MAX_EXPECT_CHARS },
                                "json_pointer": {
                                    "type": "object",
                                    "additionalProperties": false,
                                    "required": ["pointer", "equals"],
                                    "properties": {
                                        "pointer": {
                                            "type": "string",
                                            "maxLength": MAX_EXPECT_CHARS,
                                            "pattern": "^(/.*)?$",
                                            "description": "An RFC 6901 JSON Pointer into the response body."
                                        },
                                        "equals": { "description": "The JSON value expected there." }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}

#[derive(Default)]
struct Expect {
    status: Option<u16>,
    contains: Option<String>,
    json_pointer: Option<(String, Value)>,
}

struct TestRequest {
    request: OutboundRequest,
    expect: Expect,
}

pub async fn run(outbound: &Outbound, input: &Value) -> Result<Value, InputError> {
    let obj = input::object(input)?;
    input::only_fields(obj, &["requests"])?;
    let tests = requests(outbound, obj.get("requests"))?;

    let requests = tests.iter().map(|test| test.request.clone()).collect();
    let outcomes = send_all(outbound, requests, usize::MAX).await;

    // The first refused request (by position, not by finishing order) is the input error.
    for (index, (result, _)) in outcomes.iter().enumerate() {
        if let Err(e) = result
            && e.is_refused_by_policy()
        {
            return Err(refusal(&format!("/requests/{index}/url"), &format!("/requests/{index}/headers"), e));
        }
    }

    let mut results = Vec::with_capacity(tests.len());
    let mut scored = Vec::with_capacity(tests.len());
    for (test, (result, latency_ms)) in tests.iter().zip(outcomes) {
        let mut entry = json!({
            "method": test.request.method.as_str(),
            "url": test.request.url,
            "latency_ms": latency_ms,
        });
        let failures = match result {
            Ok(response) => {
                entry["status"] = json!(response.status);
                entry["content_type"] = json!(response.content_type);
                check(&test.expect, &response)
            }
            Err(e) => {
                entry["status"] = Value::Null;
                entry["content_type"] = Value::Null;
                entry["error"] = json!(e.to_string());
                vec![format!("request failed: {e}")]
            }
        };
        let passed = failures.is_empty();
        entry["passed"] = json!(passed);
        entry["failures"] = json!(failures);
        scored.push((passed, latency_ms));
        results.push(entry);
    }
    let passed = scored.iter().filter(|(passed, _)| *passed).count();
    Ok(json!({
        "results": results,
        "summary": {
            "passed": passed,
            "failed": scored.len() - passed,
            "health_score": health_score(&scored),
        },
    }))
}

/// Every expectation `response` misses, as messages a person can act on.
fn check(expect: &Expect, response: &OutboundResponse) -> Vec<String> {
    let mut failures = Vec::new();
    let partial = if response.truncated { " (only the first part of the body was read)" } else { "" };
    match expect.status {
        Some(expected) if response.status != expected => {
            failures.push(format!("expected status {expected}, got {}", response.status));
        }
        None if !(200..300).contains(&response.status) => {
            failures.push(format!("status {} is not 2xx (no expect.status given)", response.status));
        }
        _ => {}
    }
    if let Some(needle) = &expect.contains
        && !String::from_utf8_lossy(&response.body).contains(needle.as_str())
    {
        failures.push(format!("the body does not contain {needle:?}{partial}"));
    }
    if let Some((pointer, expected)) = &expect.json_pointer {
        match serde_json::from_slice::<Value>(&response.body) {
            Err(e) => failures.push(format!("the body is not JSON ({e}){partial}")),
            Ok(body) => match body.pointer(pointer) {
                None => failures.push(format!("no value at {pointer:?}")),
                Some(actual) if actual != expected => {
                    failures.push(format!("at {pointer:?} expected {expected}, got {}", shown(actual)));
                }
                Some(_) => {}
            },
        }
    }
    failures
}

/// A value for a message, cut to [`SHOWN_VALUE_CHARS`].
fn shown(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(SHOWN_VALUE_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

fn requests(outbound: &Outbound, value: Option<&Value>) -> Result<Vec<TestRequest>, InputError> {
    let items = match value {
        None => return Err(InputError::new("/requests", "requests is required")),
        Some(Value::Array(items)) if (1..=MAX_REQUESTS).contains(&items.len()) => items,
        Some(Value::Array(_)) => {
            return Err(InputError::new("/requests", format!("requests must list 1 to {MAX_REQUESTS} requests")));
        }
        Some(_) => return Err(InputError::new("/requests", "requests must be an array of objects")),
    };
    items.iter().enumerate().map(|(index, item)| test_request(outbound, item, &format!("/requests/{index}"))).collect()
}

fn test_request(outbound: &Outbound, item: &Value, at: &str) -> Result<TestRequest, InputError> {
    let obj = item.as_object().ok_or_else(|| InputError::new(at, "a request must be an object"))?;
    only_fields_at(obj, &["method", "url", "headers", "body", "expect"], at)?;
    let method_at = format!("{at}/method");
    if !obj.contains_key("method") {
        return Err(InputError::new(method_at, "the method is required"));
    }
    let method = method_field(obj.get("method"), &method_at, METHODS, Method::GET)?;
    let url = url_field(outbound, obj.get("url"), &format!("{at}/url"))?;
    let mut headers = headers_field(obj.get("headers"), &format!("{at}/headers"))?;
    let body_at = format!("{at}/body");
    let body: Option<Bytes> = match obj.get("body") {
        None | Some(Value::Null) => None,
        Some(_) if method == Method::GET || method == Method::HEAD => {
            return Err(InputError::new(body_at, format!("a {method} request carries no body")));
        }
        Some(Value::String(text)) => {
            if text.len() > MAX_BODY_BYTES {
                return Err(InputError::new(body_at, format!("the body must be at most {MAX_BODY_BYTES} bytes")));
            }
            Some(body_with_type(text.clone().into_bytes(), "text/plain; charset=utf-8", &body_at, &mut headers)?)
        }
        Some(value) => Some(json_body(value, &body_at, &mut headers)?),
    };
    let expect = match obj.get("expect") {
        None => Expect::default(),
        Some(value) => expect(value, &format!("{at}/expect"))?,
    };
    let request = OutboundRequest { method, url, headers, body, timeout: Some(REQUEST_TIMEOUT) };
    Ok(TestRequest { request, expect })
}

fn expect(value: &Value, at: &str) -> Result<Expect, InputError> {
    let obj = value.as_object().ok_or_else(|| InputError::new(at, "expect must be an object"))?;
    only_fields_at(obj, &["status", "contains", "json_pointer"], at)?;
    let status = match obj.get("status") {
        None => None,
        Some(v) => match v.as_u64().and_then(|s| u16::try_from(s).ok()) {
            Some(status) if (100..=599).contains(&status) => Some(status),
            _ => return Err(InputError::new(format!("{at}/status"), "status must be an integer from 100 to 599")),
        },
    };
    let contains = match obj.get("contains") {
        None => None,
        Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= MAX_EXPECT_CHARS => Some(s.clone()),
        Some(_) => {
            return Err(InputError::new(
                format!("{at}/contains"),
                format!("contains must be a string of 1 to {MAX_EXPECT_CHARS} characters"),
            ));
        }
    };
    let json_pointer = match obj.get("json_pointer") {
        None => None,
        Some(value) => Some(json_pointer(value, &format!("{at}/json_pointer"))?),
    };
    Ok(Expect { status, contains, json_pointer })
}

fn json_pointer(value: &Value, at: &str) -> Result<(String, Value), InputError> {
    let obj: &Map<String, Value> = value
        .as_object()
        .ok_or_else(|| InputError::new(at, "json_pointer must be an object with pointer and equals"))?;
    only_fields_at(obj, &["pointer", "equals"], at)?;
    let pointer = match obj.get("pointer") {
        Some(Value::String(p)) if (p.is_empty() || p.starts_with('/')) && p.chars().count() <= MAX_EXPECT_CHARS => p,
        Some(_) => {
            return Err(InputError::new(
                format!("{at}/pointer"),
                format!(
                    "pointer must be a JSON Pointer (empty or starting with /) of at most {MAX_EXPECT_CHARS} characters"
                ),
            ));
        }
        None => return Err(InputError::new(format!("{at}/pointer"), "pointer is required")),
    };
    let equals = obj.get("equals").ok_or_else(|| InputError::new(format!("{at}/equals"), "equals is required"))?;
    Ok((pointer.clone(), equals.clone()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::outbound::Policy;
    use crate::outbound::testing::{Reply, assert_never_connected, serve};

    fn outbound(allow_loopback: bool) -> Outbound {
        Outbound::new(Policy { allow_loopback, ..Policy::default() })
    }

    /// `/user` answers a JSON user, `/echo` echoes method and body, `/status/N` answers N, `/slow` waits 300 ms.
    async fn server() -> std::net::SocketAddr {
        serve(|seen| match seen.path.as_str() {
            "/user" => Reply::new(200, r#"{"user":{"id":7,"name":"ada"},"tags":["a","b"]}"#)
                .header("content-type", "application/json"),
            "/echo" => {
                let answer = json!({
                    "method": seen.method,
                    "content_type": seen.header("content-type"),
                    "body": String::from_utf8_lossy(&seen.body),
                });
                Reply::new(201, answer.to_string()).header("content-type", "application/json")
            }
            "/slow" => Reply::new(200, "ok").delay(Duration::from_millis(300)),
            path => Reply::new(path.strip_prefix("/status/").and_then(|s| s.parse().ok()).unwrap_or(404), "text"),
        })
        .await
    }

    #[tokio::test]
    async fn expectations_pass_and_fail_with_reasons() {
        let addr = server().await;
        let user = format!("http://{addr}/user");
        let input = json!({ "requests": [
            { "method": "GET", "url": user, "expect": {
                "status": 200, "contains": "ada", "json_pointer": { "pointer": "/user/id", "equals": 7 } } },
            { "method": "GET", "url": user, "expect": {
                "status": 201, "contains": "grace", "json_pointer": { "pointer": "/user/id", "equals": 8 } } },
            { "method": "GET", "url": user, "expect": { "json_pointer": { "pointer": "/missing", "equals": 1 } } },
            { "method": "GET", "url": format!("http://{addr}/status/500") },
            { "method": "GET", "url": format!("http://{addr}/status/404"), "expect": { "status": 404 } },
            { "method": "GET", "url": format!("http://{addr}/status/200"), "expect": {
                "json_pointer": { "pointer": "", "equals": {} } } },
        ]});
        let out = run(&outbound(true), &input).await.unwrap();
        let results = out["results"].as_array().unwrap();
        let passed: Vec<bool> = results.iter().map(|r| r["passed"].as_bool().unwrap()).collect();
        assert_eq!(passed, [true, false, false, false, true, false]);
        assert_eq!(results[0]["failures"], json!([]));
        assert_eq!(results[0]["status"], 200);
        assert_eq!(results[0]["content_type"], "application/json");
        let failures = results[1]["failures"].as_array().unwrap();
        assert_eq!(failures.len(), 3, "{failures:?}");
        assert_eq!(failures[0], "expected status 201, got 200");
        assert!(failures[1].as_str().unwrap().contains("grace"));
        assert_eq!(failures[2], r#"at "/user/id" expected 8, got 7"#);
        assert_eq!(results[2]["failures"], json!([r#"no value at "/missing""#]));
        assert_eq!(results[3]["failures"], json!(["status 500 is not 2xx (no expect.status given)"]));
        assert!(results[5]["failures"][0].as_str().unwrap().starts_with("the body is not JSON"));
        assert_eq!(out["summary"]["passed"], 2);
        assert_eq!(out["summary"]["failed"], 4);
        assert_eq!(out["summary"]["health_score"], 33);
    }

    #[tokio::test]
    async fn bodies_and_headers_are_sent() {
        let addr = server().await;
        let echo = format!("http://{addr}/echo");
        let input = json!({ "requests": [
            { "method": "POST", "url": echo, "body": { "a": 1 }, "expect": {
                "status": 201,
                "json_pointer": { "pointer": "/body", "equals": "{\"a\":1}" } } },
            { "method": "PUT", "url": echo, "body": "plain words", "expect": {
                "status": 201, "json_pointer": { "pointer": "/content_type", "equals": "text/plain; charset=utf-8" } } },
            { "method": "PATCH", "url": echo, "headers": { "Content-Type": "application/merge-patch+json" },
              "body": { "b": null }, "expect": {
                "status": 201, "json_pointer": { "pointer": "/content_type", "equals": "application/merge-patch+json" } } },
        ]});
        let out = run(&outbound(true), &input).await.unwrap();
        assert_eq!(out["summary"]["passed"], 3, "{out}");
    }

    #[tokio::test]
    async fn requests_run_concurrently() {
        let addr = server().await;
        let requests: Vec<Value> =
            (0..MAX_REQUESTS).map(|_| json!({ "method": "GET", "url": format!("http://{addr}/slow") })).collect();
        let started = std::time::Instant::now();
        let out = run(&outbound(true), &json!({ "requests": requests })).await.unwrap();
        // Sequentially this is at least 10 x 300 ms.
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        assert_eq!(out["summary"]["passed"], MAX_REQUESTS);
    }

    #[tokio::test]
    async fn a_failed_request_is_a_result() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let input = json!({ "requests": [{ "method": "GET", "url": format!("http://{closed}/") }] });
        let out = run(&outbound(true), &input).await.unwrap();
        let result = &out["results"][0];
        assert_eq!(result["passed"], false);
        assert_eq!(result["status"], Value::Null);
        assert!(result["failures"][0].as_str().unwrap().starts_with("request failed: could not connect"), "{result}");
        assert_eq!(out["summary"]["health_score"], 0);
    }

    #[tokio::test]
    async fn refused_targets_are_input_errors() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let out = outbound(false);
        // IP literals are refused while reading the input, before anything is sent anywhere.
        for url in [
            format!("http://127.0.0.1:{port}/"),
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "http://[::ffff:169.254.169.254]/".to_owned(),
        ] {
            let input = json!({ "requests": [
                { "method": "GET", "url": "https://example.com/" },
                { "method": "GET", "url": url },
            ]});
            let err = run(&out, &input).await.unwrap_err();
            assert_eq!(err.pointer, "/requests/1/url", "{url}");
            assert!(err.detail.contains("refused"), "{url}: {}", err.detail);
        }
        // A name resolving to loopback is found at send time and refused the same way.
        let input = json!({ "requests": [{ "method": "GET", "url": format!("http://localhost:{port}/") }] });
        let err = run(&out, &input).await.unwrap_err();
        assert_eq!(err.pointer, "/requests/0/url");
        assert!(err.detail.contains("refused"), "{}", err.detail);
        assert_never_connected(&listener).await;

        let redirecting = serve(|_| Reply::redirect("http://10.0.0.1/")).await;
        let input = json!({ "requests": [{ "method": "GET", "url": format!("http://{redirecting}/") }] });
        let err = run(&outbound(true), &input).await.unwrap_err();
        assert_eq!(err.pointer, "/requests/0/url");
    }

    #[tokio::test]
    async fn bad_input_is_refused_with_a_pointer() {
        let out = outbound(true);
        let ok = json!({ "method": "GET", "url": "https://example.com/" });
        let with = |extra: Value| {
            let mut request = ok.clone();
            request.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            json!({ "requests": [ok.clone(), request] })
        };
        let cases = [
            (json!({}), "/requests"),
            (json!({ "requests": [] }), "/requests"),
            (json!({ "requests": vec![ok.clone(); MAX_REQUESTS + 1] }), "/requests"),
            (json!({ "requests": [ok.clone()], "x": 1 }), "/x"),
            (json!({ "requests": [ok.clone(), { "url": "https://example.com/" }] }), "/requests/1/method"),
            (with(json!({ "method": "TRACE" })), "/requests/1/method"),
            (with(json!({ "url": "gopher://example.com/" })), "/requests/1/url"),
            (with(json!({ "timeout": 1 })), "/requests/1/timeout"),
            (with(json!({ "headers": { "Transfer-Encoding": "chunked" } })), "/requests/1/headers/Transfer-Encoding"),
            (with(json!({ "body": "x" })), "/requests/1/body"),
            (with(json!({ "method": "POST", "body": "x".repeat(MAX_BODY_BYTES + 1) })), "/requests/1/body"),
            (with(json!({ "expect": [] })), "/requests/1/expect"),
            (with(json!({ "expect": { "status": 99 } })), "/requests/1/expect/status"),
            (with(json!({ "expect": { "contains": "" } })), "/requests/1/expect/contains"),
            (with(json!({ "expect": { "other": 1 } })), "/requests/1/expect/other"),
            (
                with(json!({ "expect": { "json_pointer": { "pointer": "a", "equals": 1 } } })),
                "/requests/1/expect/json_pointer/pointer",
            ),
            (
                with(json!({ "expect": { "json_pointer": { "pointer": "/a" } } })),
                "/requests/1/expect/json_pointer/equals",
            ),
            (
                with(json!({ "expect": { "json_pointer": { "pointer": "/a", "equals": 1, "x": 1 } } })),
                "/requests/1/expect/json_pointer/x",
            ),
        ];
        for (input, pointer) in cases {
            let err = run(&out, &input).await.unwrap_err();
            assert_eq!(err.pointer, pointer, "{input}: {}", err.detail);
        }
        // The body limit is on the bytes sent, so exactly the limit is accepted (sent to a closed local port).
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let url = format!("http://{closed}/");
        let max = json!({ "requests": [{ "method": "POST", "url": url, "body": "x".repeat(MAX_BODY_BYTES) }] });
        assert!(run(&out, &max).await.is_ok());
    }

    #[test]
    fn schema_matches_the_limits() {
        let schema = input_schema();
        let items = &schema["properties"]["requests"]["items"];
        assert_eq!(schema["properties"]["requests"]["maxItems"], MAX_REQUESTS);
        assert_eq!(items["additionalProperties"], false);
        assert_eq!(items["properties"]["expect"]["additionalProperties"], false);
        assert_eq!(items["properties"]["headers"]["maxProperties"], 20);
    }
}
