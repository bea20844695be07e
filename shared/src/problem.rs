//! The one place errors become `application/problem+json` (RFC 9457).
//!
//! Handlers return [`ApiError`]; it becomes a [`Problem`] carried in the response's extensions. The
//! request layer then writes, through [`render`], every error response — ours, axum's 404/405, the body limit's
//! 413, the timeout's 503, a caught panic's 500 — as one problem+json shape with `request_id` and `instance`.

use std::any::Any;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// An error that knows its HTTP answer. Each module implements it next to its own error type, so the centre
/// needs no match over every domain: handlers return [`ApiError`], and any `ToProblem` error converts into it.
pub trait ToProblem: std::error::Error + Send + Sync + 'static {
    fn status(&self) -> StatusCode;
    /// The problem document (its `status` is taken from [`ToProblem::status`]).
    fn problem(&self) -> Problem;
    /// Seconds for `Retry-After`, when retrying later can work.
    fn retry_after(&self) -> Option<u64> {
        None
    }
    /// `WWW-Authenticate` for 401s (RFC 6750 §3, RFC 6749 §5.2).
    fn www_authenticate(&self) -> Option<&'static str> {
        None
    }
}

pub use cloud_agent_wire::problem::{PROBLEM_BASE, PROBLEM_JSON, Problem};

/// Every error a handler can return. Each maps to exactly one status and problem type.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("not found: {0}")]
    NotFound(String),
    /// Syntactically broken or wrongly shaped JSON.
    #[error("invalid JSON body: {detail}")]
    InvalidJson { detail: String, pointer: Option<String> },
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    #[error("payload too large")]
    PayloadTooLarge,
    /// A query or path parameter that does not parse; `pointer` names it (`/limit`).
    #[error("invalid parameter: {detail}")]
    InvalidParameter { detail: String, pointer: Option<String> },
    /// Well-formed input that breaks a rule.
    #[error("invalid request: {detail}")]
    Unprocessable { detail: String, pointer: Option<String> },
    /// A dependency is down or slow; the client may retry after `retry_after` seconds.
    #[error("service unavailable: {detail}")]
    Unavailable { detail: String, retry_after: u64 },
    /// A module's own error, which says how it is answered ([`ToProblem`]).
    #[error("{0}")]
    Domain(Box<dyn ToProblem>),
    /// A bug or misconfiguration. The message is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl<E: ToProblem> From<E> for ApiError {
    fn from(e: E) -> Self {
        Self::Domain(Box::new(e))
    }
}

impl ApiError {
    /// A 422 whose `pointer` names the offending field (`/name`, `/allowed_cidrs/1`).
    pub fn unprocessable(pointer: &str, detail: impl Into<String>) -> Self {
        Self::Unprocessable { detail: detail.into(), pointer: Some(pointer.to_owned()) }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::InvalidJson { .. } | Self::InvalidParameter { .. } => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Domain(e) => e.status(),
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem document this error is answered with.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        match self {
            Self::NotFound(what) => Problem::new(status, "not-found", "Not Found").detail(what.clone()),
            Self::InvalidJson { detail, pointer } => Problem {
                pointer: pointer.clone(),
                ..Problem::new(status, "invalid-json", "Invalid JSON body").detail(detail.clone())
            },
            Self::InvalidParameter { detail, pointer } => Problem {
                pointer: pointer.clone(),
                ..Problem::new(status, "invalid-parameter", "Invalid parameter").detail(detail.clone())
            },
            Self::UnsupportedMediaType(detail) => {
                Problem::new(status, "unsupported-media-type", "Unsupported Media Type").detail(detail.clone())
            }
            Self::Unprocessable { detail, pointer } => Problem {
                pointer: pointer.clone(),
                ..Problem::new(status, "validation", "Invalid request").detail(detail.clone())
            },
            Self::Unavailable { detail, .. } => {
                Problem::new(status, "unavailable", "Service Unavailable").detail(detail.clone())
            }
            Self::Domain(e) => Problem { status: status.as_u16(), ..e.problem() },
            Self::PayloadTooLarge | Self::Internal(_) => Problem::for_status(status),
        }
    }

    fn www_authenticate(&self) -> Option<&'static str> {
        match self {
            Self::Domain(e) => e.www_authenticate(),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Unavailable { retry_after, .. } => Some(*retry_after),
            Self::Domain(e) => e.retry_after(),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            // The cause goes to the log (with the request id from the span), not to the client.
            tracing::error!(error = %self, status = status.as_u16(), "request failed");
        } else {
            tracing::info!(error = %self, status = status.as_u16(), "request rejected");
        }
        let mut response = status.into_response();
        if let Some(challenge) = self.www_authenticate() {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        if let Some(secs) = self.retry_after() {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response.extensions_mut().insert(self.problem());
        response
    }
}

/// Response extension: this error-status response carries a deliberate body (e.g. health+json on 503),
/// so [`render`] must leave it alone.
#[derive(Debug, Clone, Copy)]
pub struct OwnErrorBody;

/// Writes an error response as problem+json (see the module docs), naming the request's `path` and id; a
/// successful response passes untouched. Called by the request layer ([`crate::http::request_id::request_context`])
/// on every response, so no error leaves without it.
pub fn render(response: Response, path: &str, request_id: &str) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let mut problem = match parts.extensions.remove::<Problem>() {
        Some(problem) => problem,
        // A handler that answers an error status with a document of its own (health's 503) says so.
        None if parts.extensions.get::<OwnErrorBody>().is_some() => return Response::from_parts(parts, body),
        // Already problem+json from elsewhere in our code: keep its body.
        None if is_problem(&parts.headers) && !status.is_server_error() => {
            return Response::from_parts(parts, body);
        }
        // Anything else — including a 5xx body we did not write — is replaced, so internals never leak.
        None => Problem::for_status(status),
    };
    problem.instance.get_or_insert_with(|| path.to_owned());
    problem.request_id.get_or_insert_with(|| request_id.to_owned());
    let bytes = serde_json::to_vec(&problem).unwrap_or_default();
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(bytes))
}

fn is_problem(headers: &http::HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with(PROBLEM_JSON))
}

/// A panic becomes a plain 500; [`render`] turns it into a generic problem. The payload is logged.
#[allow(clippy::needless_pass_by_value)] // the signature CatchPanicLayer::custom requires
pub fn panic_response(payload: Box<dyn Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<&str>()
        .map(ToString::to_string)
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    tracing::error!(panic = %message, "handler panicked");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}
