//! The `health-check` task: checks up to 10 public http(s) endpoints concurrently through the SSRF-safe
//! [`Outbound`] client and reports, per endpoint, status, latency and whether it is healthy, plus a 0..100 score.
//!
//! One rule across the outbound handlers (health-check, api-tester, webhook): a target the outbound policy refuses
//! (bad scheme, credentials in the URL, a private/loopback/metadata address, also when found by DNS or at a
//! redirect) is the caller's input error, a 422 with the pointer `/endpoints/N/url`: it is a fact about what was
//! asked, retrying cannot change it, and reporting it as "unhealthy" would hide it. Failures on the way (timeout,
//! connection refused, unknown host, too many redirects) are the endpoint's result: `ok: false` and `error`.
//!
//! Healthy means the expected status (any 2xx when none is given; redirects are followed). The score is the
//! share of healthy endpoints, each counted 1 up to 1 s of latency, falling linearly to 0.5 at 5 s.

use http::Method;
use serde_json::{Value, json};

use super::http_input::{
    REQUEST_TIMEOUT, health_score, method_field, only_fields_at, refusal, send_all, url_field, url_schema,
};
use crate::input::{self, InputError};
use crate::outbound::{Outbound, OutboundError, OutboundRequest};

pub const NAME: &str = "health-check";
pub const DESCRIPTION: &str = "Checks 1 to 10 public http(s) endpoints concurrently (GET or HEAD, 5 s each) and \
    reports status, latency and health per endpoint, the healthy count and a 0-100 health score.";

/// Most endpoints in one check.
pub const MAX_ENDPOINTS: usize = 10;
/// Only the start of a body is read: the check is about the answer, not its content.
const BODY_BYTES: usize = 1024;
const METHODS: &[&str] = &["GET", "HEAD"];

pub fn input_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "health-check input",
        "type": "object",
        "additionalProperties": false,
        "required": ["endpoints"],
        "properties": {
            "endpoints": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_ENDPOINTS,
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["url"],
                    "properties": {
                        "url": url_schema(),
                        "method": { "enum": METHODS, "default": "GET" },
                        "expected_status": {
                            "type": "integer",
                            "minimum": 100,
                            "maximum": 599,
                            "description": "The status that counts as healthy; any 2xx when absent."
                        }
                    }
                }
            }
        }
    })
}

struct Endpoint {
    url: String,
    method: Method,
    expected_status: Option<u16>,
}

pub async fn run(outbound: &Outbound, input: &Value) -> Result<Value, InputError> {
    let obj = input::object(input)?;
    input::only_fields(obj, &["endpoints"])?;
    let endpoints = endpoints(outbound, obj.get("endpoints"))?;

    let requests = endpoints
        .iter()
        .map(|endpoint| OutboundRequest {
            method: endpoint.method.clone(),
            url: endpoint.url.clone(),
            timeout: Some(REQUEST_TIMEOUT),
            ..OutboundRequest::default()
        })
        .collect();
    let outcomes: Vec<Outcome> = send_all(outbound, requests, BODY_BYTES)
        .await
        .into_iter()
        .map(|(result, latency)| (result.map(|r| (r.status, r.content_type)), latency))
        .collect();

    // The first refused endpoint (by position, not by finishing order) is the input error.
    for (index, (result, _)) in outcomes.iter().enumerate() {
        if let Err(e) = result
            && e.is_refused_by_policy()
        {
            return Err(refusal(&format!("/endpoints/{index}/url"), &format!("/endpoints/{index}"), e));
        }
    }

    let mut report = Vec::with_capacity(endpoints.len());
    let mut scored = Vec::with_capacity(endpoints.len());
    for (endpoint, (result, latency_ms)) in endpoints.iter().zip(outcomes) {
        let mut entry = json!({
            "url": endpoint.url,
            "method": endpoint.method.as_str(),
            "latency_ms": latency_ms,
        });
        let ok = match result {
            Ok((status, content_type)) => {
                let ok = endpoint.expected_status.map_or((200..300).contains(&status), |expected| status == expected);
                entry["status"] = json!(status);
                entry["content_type"] = json!(content_type);
                ok
            }
            Err(e) => {
                entry["status"] = Value::Null;
                entry["content_type"] = Value::Null;
                entry["error"] = json!(e.to_string());
                false
            }
        };
        entry["ok"] = json!(ok);
        scored.push((ok, latency_ms));
        report.push(entry);
    }
    let healthy = scored.iter().filter(|(ok, _)| *ok).count();
    Ok(json!({
        "endpoints": report,
        "healthy": healthy,
        "total": scored.len(),
        "health_score": health_score(&scored),
    }))
}

type Outcome = (Result<(u16, Option<String>), OutboundError>, u64);

fn endpoints(outbound: &Outbound, value: Option<&Value>) -> Result<Vec<Endpoint>, InputError> {
    let items = match value {
        None => return Err(InputError::new("/endpoints", "endpoints is required")),
        Some(Value::Array(items)) if (1..=MAX_ENDPOINTS).contains(&items.len()) => items,
        Some(Value::Array(_)) => {
            return Err(InputError::new("/endpoints", format!("endpoints must list 1 to {MAX_ENDPOINTS} endpoints")));
        }
        Some(_) => return Err(InputError::new("/endpoints", "endpoints must be an array of objects")),
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let at = format!("/endpoints/{index}");
            let obj =
                item.as_object().ok_or_else(|| InputError::new(&at, "an endpoint must be an object with a url"))?;
            only_fields_at(obj, &["url", "method", "expected_status"], &at)?;
            let url = url_field(outbound, obj.get("url"), &format!("{at}/url"))?;
            let method = method_field(obj.get("method"), &format!("{at}/method"), METHODS, Method::GET)?;
            let expected_status = match obj.get("expected_status") {
                None => None,
                Some(v) => match v.as_u64().and_then(|s| u16::try_from(s).ok()) {
                    Some(status) if (100..=599).contains(&status) => Some(status),
                    _ => {
                        return Err(InputError::new(
                            format!("{at}/expected_status"),
                            "expected_status must be an integer from 100 to 599",
                        ));
                    }
                },
            };
            Ok(Endpoint { url, method, expected_status })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;
    use std::time::Instant;

    use super::*;
    use crate::outbound::Policy;
    use crate::outbound::testing::{Reply, assert_never_connected, serve, silent};

    fn outbound(allow_loopback: bool) -> Outbound {
        Outbound::new(Policy { allow_loopback, ..Policy::default() })
    }

    /// `/status/N` answers N; `/slow` answers 200 after 300 ms.
    async fn server() -> std::net::SocketAddr {
        serve(|seen| match seen.path.as_str() {
            "/slow" => Reply::new(200, "ok").delay(Duration::from_millis(300)),
            path => {
                let status = path.strip_prefix("/status/").and_then(|s| s.parse().ok()).unwrap_or(404);
                Reply::new(status, format!("{} {}", seen.method, status)).header("content-type", "text/plain")
            }
        })
        .await
    }

    #[tokio::test]
    async fn reports_each_endpoint_and_a_score() {
        let addr = server().await;
        let input = json!({ "endpoints": [
            { "url": format!("http://{addr}/status/200") },
            { "url": format!("http://{addr}/status/503") },
            { "url": format!("http://{addr}/status/404"), "expected_status": 404 },
            { "url": format!("http://{addr}/status/204"), "method": "HEAD" },
        ]});
        let out = run(&outbound(true), &input).await.unwrap();
        let endpoints = out["endpoints"].as_array().unwrap();
        let summary: Vec<(Value, Value)> = endpoints.iter().map(|e| (e["status"].clone(), e["ok"].clone())).collect();
        assert_eq!(
            summary,
            [
                (json!(200), json!(true)),
                (json!(503), json!(false)),
                (json!(404), json!(true)),
                (json!(204), json!(true))
            ]
        );
        assert_eq!(endpoints[0]["content_type"], "text/plain");
        assert_eq!(endpoints[3]["method"], "HEAD");
        assert!(endpoints.iter().all(|e| e.get("error").is_none()));
        assert_eq!(out["healthy"], 3);
        assert_eq!(out["total"], 4);
        assert_eq!(out["health_score"], 75);
    }

    #[tokio::test]
    async fn endpoints_are_checked_concurrently() {
        let addr = server().await;
        let endpoints: Vec<Value> =
            (0..MAX_ENDPOINTS).map(|_| json!({ "url": format!("http://{addr}/slow") })).collect();
        let started = Instant::now();
        let out = run(&outbound(true), &json!({ "endpoints": endpoints })).await.unwrap();
        // Sequentially this is at least 10 x 300 ms.
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        assert_eq!(out["healthy"], MAX_ENDPOINTS);
        assert_eq!(out["health_score"], 100);
    }

    #[tokio::test]
    async fn a_failing_endpoint_is_a_result() {
        let addr = server().await;
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let quiet = silent().await;
        let policy = Policy { allow_loopback: true, timeout: Duration::from_millis(300), ..Policy::default() };
        let input = json!({ "endpoints": [
            { "url": format!("http://{addr}/status/200") },
            { "url": format!("http://{closed}/") },
            { "url": format!("http://{quiet}/") },
        ]});
        let out = run(&Outbound::new(policy), &input).await.unwrap();
        let endpoints = out["endpoints"].as_array().unwrap();
        assert_eq!(endpoints[1]["ok"], false);
        assert!(endpoints[1]["error"].as_str().unwrap().contains("connect"), "{}", endpoints[1]);
        assert!(endpoints[2]["error"].as_str().unwrap().contains("timed out"), "{}", endpoints[2]);
        assert_eq!(endpoints[2]["status"], Value::Null);
        assert_eq!(out["healthy"], 1);
        assert_eq!(out["health_score"], 33);
    }

    #[tokio::test]
    async fn refused_targets_are_input_errors() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let out = outbound(false);
        let input = json!({ "endpoints": [
            { "url": "https://example.com/" },
            { "url": format!("http://127.0.0.1:{port}/") },
        ]});
        let err = run(&out, &input).await.unwrap_err();
        assert_eq!(err.pointer, "/endpoints/1/url");
        assert!(err.detail.contains("refused"), "{}", err.detail);
        // A name that resolves to loopback is found at send time and refused the same way.
        let input = json!({ "endpoints": [{ "url": format!("http://localhost:{port}/") }] });
        let err = run(&out, &input).await.unwrap_err();
        assert_eq!(err.pointer, "/endpoints/0/url");
        assert_never_connected(&listener).await;
    }

    #[tokio::test]
    async fn bad_input_is_refused_with_a_pointer() {
        let out = outbound(true);
        let ok = json!({ "url": "https://example.com/" });
        let cases = [
            (json!({}), "/endpoints"),
            (json!({ "endpoints": [] }), "/endpoints"),
            (json!({ "endpoints": vec![ok.clone(); MAX_ENDPOINTS + 1] }), "/endpoints"),
            (json!({ "endpoints": [ok.clone()], "more": 1 }), "/more"),
            (json!({ "endpoints": ["https://example.com/"] }), "/endpoints/0"),
            (json!({ "endpoints": [ok.clone(), ok.clone(), ok.clone(), { "url": "nope" }] }), "/endpoints/3/url"),
            (json!({ "endpoints": [ok.clone(), ok.clone(), ok.clone(), { "url": "ftp://x/" }] }), "/endpoints/3/url"),
            (json!({ "endpoints": [{ "url": "https://example.com/", "method": "POST" }] }), "/endpoints/0/method"),
            (
                json!({ "endpoints": [{ "url": "https://example.com/", "expected_status": 600 }] }),
                "/endpoints/0/expected_status",
            ),
            (
                json!({ "endpoints": [{ "url": "https://example.com/", "expected_status": "200" }] }),
                "/endpoints/0/expected_status",
            ),
            (json!({ "endpoints": [{ "url": "https://example.com/", "timeout": 1 }] }), "/endpoints/0/timeout"),
        ];
        for (input, pointer) in cases {
            let err = run(&out, &input).await.unwrap_err();
            assert_eq!(err.pointer, pointer, "{input}: {}", err.detail);
        }
    }

    #[test]
    fn score() {
        assert_eq!(health_score(&[]), 0);
        assert_eq!(health_score(&[(true, 10), (true, 1000)]), 100);
        assert_eq!(health_score(&[(true, 3000)]), 75);
        assert_eq!(health_score(&[(true, 60_000)]), 50);
        assert_eq!(health_score(&[(true, 0), (false, 0)]), 50);
    }

    #[test]
    fn schema_matches_the_limits() {
        let schema = input_schema();
        let endpoints = &schema["properties"]["endpoints"];
        assert_eq!(endpoints["maxItems"], MAX_ENDPOINTS);
        assert_eq!(endpoints["items"]["additionalProperties"], false);
        assert_eq!(schema["additionalProperties"], false);
    }
}
