//! What the outbound handlers (webhook, health-check, api-tester) share: their input readers (URL, method,
//! headers, body), their bounds, and how a refusal of the outbound policy becomes the caller's input error.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use serde_json::{Map, Value, json};

use crate::input::{self, InputError};
use tokio::task::JoinSet;

use crate::outbound::{Outbound, OutboundError, OutboundRequest, OutboundResponse};

/// Longest URL accepted.
pub(super) const MAX_URL_CHARS: usize = 2048;
/// Most request headers a caller may set.
pub(super) const MAX_HEADERS: usize = 20;
/// Longest header value accepted.
pub(super) const MAX_HEADER_VALUE_CHARS: usize = 4096;
/// Largest request body, in bytes as sent.
pub(super) const MAX_BODY_BYTES: usize = 64 * 1024;
/// How much of the response is returned (and read).
pub(super) const RESPONSE_PREVIEW_BYTES: usize = 4 * 1024;
/// Per-request timeout of the outbound handlers (the client caps it at its own policy).
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A JSON Schema `pattern` for an HTTP header name (RFC 9110 token).
const HEADER_NAME_PATTERN: &str = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";

/// The schema of a URL field, bounds as [`url_field`] checks them.
pub(super) fn url_schema() -> Value {
    json!({
        "type": "string",
        "format": "uri",
        "minLength": 1,
        "maxLength": MAX_URL_CHARS,
        "description": "An http or https URL without credentials; private, loopback, link-local and cloud-metadata \
            hosts are refused."
    })
}

/// The schema of a headers object, bounds as [`headers_field`] checks them.
pub(super) fn headers_schema() -> Value {
    json!({
        "type": "object",
        "maxProperties": MAX_HEADERS,
        "propertyNames": { "pattern": HEADER_NAME_PATTERN },
        "additionalProperties": { "type": "string", "maxLength": MAX_HEADER_VALUE_CHARS },
        "description": "Request headers. Host, Content-Length and hop-by-hop headers (Connection, Transfer-Encoding, \
            Upgrade, ...) are refused in any letter case."
    })
}

/// A required URL the outbound policy accepts before any lookup (scheme, credentials, IP literal, metadata name).
pub(super) fn url_field(outbound: &Outbound, value: Option<&Value>, pointer: &str) -> Result<String, InputError> {
    let url = match value {
        None => return Err(InputError::new(pointer, "the URL is required")),
        Some(Value::String(s)) if s.chars().count() > MAX_URL_CHARS => {
            return Err(InputError::new(pointer, format!("the URL must be at most {MAX_URL_CHARS} characters")));
        }
        Some(Value::String(s)) => s,
        Some(_) => return Err(InputError::new(pointer, "the URL must be a string")),
    };
    outbound.check_url(url).map_err(|e| InputError::new(pointer, e.to_string()))?;
    Ok(url.clone())
}

/// An optional method, one of `allowed` (upper case, as HTTP spells them).
pub(super) fn method_field(
    value: Option<&Value>,
    pointer: &str,
    allowed: &[&str],
    default: Method,
) -> Result<Method, InputError> {
    let refuse = || InputError::new(pointer, format!("the method must be one of: {}", allowed.join(", ")));
    match value {
        None => Ok(default),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => {
            Method::from_bytes(s.as_bytes()).map_err(|_| refuse())
        }
        Some(_) => Err(refuse()),
    }
}

/// Optional request headers: an object of strings, at most [`MAX_HEADERS`], each one the client would send.
pub(super) fn headers_field(value: Option<&Value>, pointer: &str) -> Result<Vec<(String, String)>, InputError> {
    let headers = match value {
        None => return Ok(Vec::new()),
        Some(Value::Object(headers)) => headers,
        Some(_) => return Err(InputError::new(pointer, "headers must be an object of header name to string value")),
    };
    if headers.len() > MAX_HEADERS {
        return Err(InputError::new(pointer, format!("at most {MAX_HEADERS} headers")));
    }
    let mut out = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let at = format!("{pointer}/{}", escape_pointer(name));
        let Value::String(value) = value else {
            return Err(InputError::new(at, "a header value must be a string"));
        };
        if value.chars().count() > MAX_HEADER_VALUE_CHARS {
            return Err(InputError::new(
                at,
                format!("a header value must be at most {MAX_HEADER_VALUE_CHARS} characters"),
            ));
        }
        crate::outbound::check_header(name, value).map_err(|e| InputError::new(at, e.to_string()))?;
        out.push((name.clone(), value.clone()));
    }
    Ok(out)
}

/// `value` serialised as a JSON body of at most [`MAX_BODY_BYTES`]; adds `content-type: application/json`
/// unless the caller set a content type.
pub(super) fn json_body(
    value: &Value,
    pointer: &str,
    headers: &mut Vec<(String, String)>,
) -> Result<Bytes, InputError> {
    let body = serde_json::to_vec(value).map_err(|e| InputError::new(pointer, e.to_string()))?;
    body_with_type(body, "application/json", pointer, headers)
}

/// `body` if it is at most [`MAX_BODY_BYTES`], adding `content_type` unless the caller set one.
pub(super) fn body_with_type(
    body: Vec<u8>,
    content_type: &str,
    pointer: &str,
    headers: &mut Vec<(String, String)>,
) -> Result<Bytes, InputError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(InputError::new(pointer, format!("the body must be at most {MAX_BODY_BYTES} bytes")));
    }
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-type")) {
        headers.push(("content-type".to_owned(), content_type.to_owned()));
    }
    Ok(Bytes::from(body))
}

/// A policy refusal at send time (found by DNS or at a redirect) as the caller's input error.
pub(super) fn refusal(url_pointer: &str, headers_pointer: &str, error: &OutboundError) -> InputError {
    let pointer = if matches!(error, OutboundError::InvalidHeader { .. }) { headers_pointer } else { url_pointer };
    InputError::new(pointer, error.to_string())
}

/// The first field of `obj` outside `known`, refused with its full pointer (`at` is the object's pointer).
pub(super) fn only_fields_at(obj: &Map<String, Value>, known: &[&str], at: &str) -> Result<(), InputError> {
    input::only_fields(obj, known).map_err(|e| InputError::new(format!("{at}{}", e.pointer), e.detail))
}

pub(super) fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// JSON Pointer escaping of one reference token (RFC 6901).
pub(super) fn escape_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// 0..100: the mean over all results of 0 (failed) or a latency factor (1 up to 1 s, falling linearly to 0.5 at
/// 5 s and beyond), so slow-but-up counts for something and down counts for nothing.
pub(super) fn health_score(results: &[(bool, u64)]) -> u64 {
    if results.is_empty() {
        return 0;
    }
    let sum: f64 = results
        .iter()
        .filter(|(ok, _)| *ok)
        .map(|&(_, latency_ms)| 1.0 - 0.5 * (latency_ms.saturating_sub(1000) as f64 / 4000.0).min(1.0))
        .sum();
    (100.0 * sum / results.len() as f64).round() as u64
}

/// Sends every request at once and answers each one's outcome and latency (ms), in request order. Spawned so
/// they run in parallel; the JoinSet aborts them all if the caller is dropped.
pub(super) async fn send_all(
    outbound: &Outbound,
    requests: Vec<OutboundRequest>,
    max_body: usize,
) -> Vec<(Result<OutboundResponse, OutboundError>, u64)> {
    let count = requests.len();
    let mut tasks = JoinSet::new();
    for (index, request) in requests.into_iter().enumerate() {
        let outbound = outbound.clone();
        tasks.spawn(async move {
            let started = Instant::now();
            let result = outbound.send_limited(request, max_body).await;
            (index, result, elapsed_ms(started))
        });
    }
    let mut outcomes: Vec<Option<_>> = (0..count).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, result, latency_ms)) => outcomes[index] = Some((result, latency_ms)),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => unreachable!("outbound requests are never cancelled while joined: {e}"),
        }
    }
    outcomes.into_iter().map(|o| o.expect("every request reported")).collect()
}
