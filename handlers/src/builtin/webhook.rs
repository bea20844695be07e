//! The `webhook` task: one outbound HTTP request the caller describes (URL, method, headers, JSON body), sent
//! through the SSRF-safe [`Outbound`] client, answered with the status, latency and the start of the response.
//!
//! One rule across the outbound handlers (webhook, api-tester, health-check): a target the outbound policy refuses
//! (bad scheme, credentials in the URL, a private/loopback/metadata address, also when found by DNS or at a
//! redirect) is the caller's input error, a 422 whose pointer names the URL field: it is a fact about what was
//! asked, retrying cannot change it, and reporting it as "unhealthy" would hide it. Failures on the way (timeout,
//! connection refused, unknown host, too many redirects) are results, reported in the output.

use std::time::Instant;

use http::Method;
use serde_json::{Value, json};

use super::http_input::{
    REQUEST_TIMEOUT, RESPONSE_PREVIEW_BYTES, elapsed_ms, headers_field, headers_schema, json_body, method_field,
    refusal, url_field, url_schema,
};
use crate::input::{self, InputError};
use crate::outbound::{Outbound, OutboundRequest};

pub const NAME: &str = "webhook";
pub const DESCRIPTION: &str = "Sends one HTTP request (POST by default, JSON body) to a public http(s) URL and \
    reports the status, latency and the first 4 KiB of the response. Private, loopback and cloud-metadata \
    addresses are refused.";

const METHODS: &[&str] = &["POST", "PUT", "PATCH", "GET", "DELETE"];
pub fn input_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "webhook input",
        "type": "object",
        "additionalProperties": false,
        "required": ["url"],
        "properties": {
            "url": url_schema(),
            "method": { "enum": METHODS, "default": "POST" },
            "headers": headers_schema(),
            "body": {
                "description": "Any JSON value, sent as application/json (unless a content-type header is given); \
                    at most 64 KiB serialised; null means no body. Not allowed with GET."
            }
        }
    })
}

pub async fn run(outbound: &Outbound, input: &Value) -> Result<Value, InputError> {
    let obj = input::object(input)?;
    input::only_fields(obj, &["url", "method", "headers", "body"])?;
    let url = url_field(outbound, obj.get("url"), "/url")?;
    let method = method_field(obj.get("method"), "/method", METHODS, Method::POST)?;
    let mut headers = headers_field(obj.get("headers"), "/headers")?;
    let body = match obj.get("body") {
        None | Some(Value::Null) => None,
        Some(_) if method == Method::GET => return Err(InputError::new("/body", "a GET request carries no body")),
        Some(value) => Some(json_body(value, "/body", &mut headers)?),
    };

    let request = OutboundRequest { method, url, headers, body, timeout: Some(REQUEST_TIMEOUT) };
    let started = Instant::now();
    let result = outbound.send_limited(request, RESPONSE_PREVIEW_BYTES).await;
    let latency_ms = elapsed_ms(started);
    match result {
        Ok(response) => Ok(json!({
            "delivered": true,
            "status": response.status,
            "latency_ms": latency_ms,
            "content_type": response.content_type,
            "response_body": preview(&response.body),
            "truncated": response.truncated,
        })),
        Err(e) if e.is_refused_by_policy() => Err(refusal("/url", "/headers", &e)),
        Err(e) => Ok(json!({
            "delivered": false,
            "status": null,
            "latency_ms": latency_ms,
            "content_type": null,
            "response_body": null,
            "truncated": false,
            "error": e.to_string(),
        })),
    }
}

/// The response start as text: lossy UTF-8, without a replacement character for a sequence the cap cut in half.
fn preview(body: &[u8]) -> String {
    let body = &body[..body.len().min(RESPONSE_PREVIEW_BYTES)];
    let whole = match std::str::from_utf8(body) {
        Err(e) if e.error_len().is_none() => &body[..e.valid_up_to()],
        _ => body,
    };
    String::from_utf8_lossy(whole).into_owned()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::Map;

    use super::super::http_input::{MAX_BODY_BYTES, MAX_HEADERS, MAX_URL_CHARS};
    use super::*;
    use crate::outbound::Policy;
    use crate::outbound::testing::{Reply, assert_never_connected, serve, silent};

    fn outbound(allow_loopback: bool) -> Outbound {
        Outbound::new(Policy { allow_loopback, ..Policy::default() })
    }

    async fn echo() -> std::net::SocketAddr {
        serve(|seen| {
            let answer = json!({
                "method": seen.method,
                "path": seen.path,
                "content_type": seen.header("content-type"),
                "signature": seen.header("x-signature"),
                "body": String::from_utf8_lossy(&seen.body),
            });
            Reply::new(202, answer.to_string()).header("content-type", "application/json")
        })
        .await
    }

    #[tokio::test]
    async fn delivers_a_json_post() {
        let addr = echo().await;
        let input = json!({
            "url": format!("http://{addr}/hook"),
            "headers": { "X-Signature": "sha256=abc" },
            "body": { "event": "done", "n": 1 }
        });
        let out = run(&outbound(true), &input).await.unwrap();
        assert_eq!(out["delivered"], true);
        assert_eq!(out["status"], 202);
        assert_eq!(out["content_type"], "application/json");
        assert_eq!(out["truncated"], false);
        let seen: Value = serde_json::from_str(out["response_body"].as_str().unwrap()).unwrap();
        assert_eq!(seen["method"], "POST");
        assert_eq!(seen["path"], "/hook");
        assert_eq!(seen["content_type"], "application/json");
        assert_eq!(seen["signature"], "sha256=abc");
        assert_eq!(seen["body"], r#"{"event":"done","n":1}"#);
        assert!(out["latency_ms"].is_u64());
    }

    #[tokio::test]
    async fn method_and_content_type_are_the_callers() {
        let addr = echo().await;
        let input = json!({
            "url": format!("http://{addr}/"),
            "method": "PUT",
            "headers": { "Content-Type": "application/vnd.thing+json" },
            "body": [1, 2]
        });
        let out = run(&outbound(true), &input).await.unwrap();
        let seen: Value = serde_json::from_str(out["response_body"].as_str().unwrap()).unwrap();
        assert_eq!(seen["method"], "PUT");
        assert_eq!(seen["content_type"], "application/vnd.thing+json");
    }

    #[tokio::test]
    async fn the_response_is_cut_at_4_kib() {
        // 4095 ASCII bytes then a 2-byte character across the cut: no replacement character at the end.
        let mut body = vec![b'a'; RESPONSE_PREVIEW_BYTES - 1];
        body.extend_from_slice("éé".as_bytes());
        let addr = serve(move |_| Reply::new(200, body.clone())).await;
        let out = run(&outbound(true), &json!({ "url": format!("http://{addr}/") })).await.unwrap();
        let text = out["response_body"].as_str().unwrap();
        assert_eq!(text.len(), RESPONSE_PREVIEW_BYTES - 1);
        assert_eq!(out["truncated"], true);
    }

    #[tokio::test]
    async fn failures_on_the_way_are_results() {
        let addr = silent().await;
        let policy = Policy { allow_loopback: true, timeout: Duration::from_millis(200), ..Policy::default() };
        let out = run(&Outbound::new(policy), &json!({ "url": format!("http://{addr}/") })).await.unwrap();
        assert_eq!(out["delivered"], false);
        assert!(out["error"].as_str().unwrap().contains("timed out"), "{out}");
    }

    #[tokio::test]
    async fn refused_targets_are_input_errors() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let out = outbound(false);
        for url in [
            format!("http://127.0.0.1:{port}/"),
            format!("http://localhost:{port}/"),
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "http://[fd00:ec2::254]/".to_owned(),
        ] {
            let err = run(&out, &json!({ "url": url })).await.unwrap_err();
            assert_eq!(err.pointer, "/url", "{url}");
            assert!(err.detail.contains("refused"), "{url}: {}", err.detail);
        }
        assert_never_connected(&listener).await;

        // A redirect to the metadata service, found only at send time, is refused the same way.
        let redirecting = serve(|_| Reply::redirect("http://169.254.169.254/")).await;
        let err = run(&outbound(true), &json!({ "url": format!("http://{redirecting}/") })).await.unwrap_err();
        assert_eq!(err.pointer, "/url");
    }

    #[tokio::test]
    async fn bad_input_is_refused_with_a_pointer() {
        let out = outbound(true);
        let cases = [
            (json!([]), ""),
            (json!({}), "/url"),
            (json!({ "url": "ftp://example.com/" }), "/url"),
            (json!({ "url": "http://u:p@example.com/" }), "/url"),
            (json!({ "url": 3 }), "/url"),
            (json!({ "url": "https://example.com/", "extra": 1 }), "/extra"),
            (json!({ "url": "https://example.com/", "method": "TRACE" }), "/method"),
            (json!({ "url": "https://example.com/", "method": "post" }), "/method"),
            (json!({ "url": "https://example.com/", "headers": { "Host": "x" } }), "/headers/Host"),
            (json!({ "url": "https://example.com/", "headers": { "content-length": "1" } }), "/headers/content-length"),
            (json!({ "url": "https://example.com/", "headers": { "Connection": "close" } }), "/headers/Connection"),
            (json!({ "url": "https://example.com/", "headers": { "X-A": 1 } }), "/headers/X-A"),
            (json!({ "url": "https://example.com/", "headers": { "X-A": "a\nb" } }), "/headers/X-A"),
            (json!({ "url": "https://example.com/", "headers": [] }), "/headers"),
            (json!({ "url": "https://example.com/", "method": "GET", "body": {} }), "/body"),
            (json!({ "url": "https://example.com/", "body": "x".repeat(MAX_BODY_BYTES) }), "/body"),
        ];
        for (input, pointer) in cases {
            let err = run(&out, &input).await.unwrap_err();
            assert_eq!(err.pointer, pointer, "{input}: {}", err.detail);
        }
        let many: Map<String, Value> = (0..=MAX_HEADERS).map(|i| (format!("x-h{i}"), json!("v"))).collect();
        let err = run(&out, &json!({ "url": "https://example.com/", "headers": many })).await.unwrap_err();
        assert_eq!(err.pointer, "/headers");
    }

    #[test]
    fn schema_matches_the_limits() {
        let schema = input_schema();
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["properties"]["headers"]["maxProperties"], MAX_HEADERS);
        assert_eq!(schema["properties"]["url"]["maxLength"], MAX_URL_CHARS);
        assert_eq!(schema["properties"]["method"]["enum"], json!(METHODS));
    }
}
