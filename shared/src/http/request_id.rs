//! Request and correlation ids: taken from the caller when valid, generated otherwise, echoed back on every
//! response, and recorded on the request's span so every log line of the request carries them.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;
use tracing::Instrument as _;

use super::encoding;
use crate::metrics::Tracking;

/// The request id, put in the request by the request layer for the layers and handlers inside it.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub const REQUEST_ID: &str = "x-request-id";
pub const CORRELATION_ID: &str = "x-correlation-id";

/// Accepts a caller-supplied id only if it is short and visible ASCII: ids end up in logs and headers.
fn valid_id(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    (!text.is_empty() && text.len() <= 128 && text.bytes().all(|b| b.is_ascii_graphic())).then(|| text.to_owned())
}

/// What the request layer needs: the metrics to record into (a router built without them records none) and the
/// body limit that bounds a decoded body.
#[derive(Debug, Clone)]
pub struct RequestLayer {
    pub tracking: Option<Tracking>,
    pub body_limit: usize,
}

/// The request layer: everything that happens once per request at its start and end, in one middleware so a
/// request pays for one layer, not six. It takes or makes the ids (the correlation id ties together the requests
/// of one piece of work across services and defaults to the request id), opens the request's span, decodes an
/// encoded body ([`super::encoding`]), renders any error as problem+json ([`crate::problem::render`]), echoes the
/// ids, adds the security headers, compresses a large answer for a client that accepts it, records the metrics
/// ([`Tracking`], when the router has them) and writes the access log line.
pub async fn request_context(State(layer): State<RequestLayer>, mut request: Request, next: Next) -> Response {
    let RequestLayer { tracking, body_limit } = layer;
    let started = Instant::now();
    let request_id =
        request.headers().get(REQUEST_ID).and_then(valid_id).unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let correlation_id = request.headers().get(CORRELATION_ID).and_then(valid_id).unwrap_or_else(|| request_id.clone());
    let method = request.method().clone();
    // Cheap clones (reference-counted), kept for the problem's `instance` and the span's `path`.
    let uri = request.uri().clone();
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or(uri.path(), MatchedPath::as_str);
    let label = tracking.as_ref().map(|t| t.label(matched.as_ref()));
    // `agent` is declared empty so the auth layer can fill it in: a field a span does not declare is dropped.
    // Fields recorded as `&str`, not `Display`: the log layer copies them without formatting.
    let span = tracing::info_span!(
        "request",
        request_id = request_id.as_str(),
        correlation_id = correlation_id.as_str(),
        method = method.as_str(),
        path = route,
        agent = tracing::field::Empty
    );
    let answer_in = encoding::accepted(request.headers());
    request.extensions_mut().insert(RequestId(request_id.clone()));
    let response = match encoding::decode_request(request, body_limit).instrument(span.clone()).await {
        Ok(request) => next.run(request).instrument(span.clone()).await,
        Err(refusal) => refusal,
    };
    let mut response = crate::problem::render(response, uri.path(), &request_id);

    let headers = response.headers_mut();
    // Both ids passed validation or were generated, so they are valid header values.
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert(REQUEST_ID, v);
    }
    if let Ok(v) = HeaderValue::from_str(&correlation_id) {
        headers.insert(CORRELATION_ID, v);
    }
    super::security_headers::apply(headers);
    if let Some(coding) = answer_in {
        response = encoding::compress(response, coding).await;
    }
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    if let (Some(tracking), Some(label)) = (&tracking, label) {
        tracking.record(label, status, elapsed.as_secs_f64());
    }
    // Microsecond precision: more digits are noise, and every logged byte is billed.
    let latency_ms = elapsed.as_micros() as f64 / 1000.0;
    span.in_scope(|| tracing::info!(status, latency_ms, "request served"));
    response
}
