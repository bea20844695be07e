//! Problem details (RFC 9457): the one error shape of every non-2xx answer.

use http::StatusCode;
use serde::{Deserialize, Serialize};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem details object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request path this occurrence happened on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Quote this id when reporting the problem; it is in every log line of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// For invalid input: where in the body (a JSON Pointer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// The OAuth 2.0 error code (RFC 6749 §5.2), on token endpoint and bearer failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Base of our problem type URIs.
pub const PROBLEM_BASE: &str = "urn:cloud-agent:problem:";

impl Problem {
    pub fn new(status: StatusCode, slug: &str, title: &str) -> Self {
        Self {
            kind: format!("{PROBLEM_BASE}{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: None,
            instance: None,
            request_id: None,
            pointer: None,
            error: None,
        }
    }

    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// A problem for a status that reached us without one (axum's own rejections, tower-http's layers).
    /// Implementations of [`ToProblem`] answer 500s with this, so a 5xx body never carries internals.
    pub fn for_status(status: StatusCode) -> Self {
        let (slug, detail) = match status {
            StatusCode::NOT_FOUND => ("not-found", "no route matches this path"),
            StatusCode::METHOD_NOT_ALLOWED => {
                ("method-not-allowed", "this route does not accept this method; see the Allow header")
            }
            StatusCode::PAYLOAD_TOO_LARGE => {
                ("payload-too-large", "the request body is larger than this service accepts")
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported-media-type", "send the body as application/json"),
            StatusCode::SERVICE_UNAVAILABLE => {
                ("unavailable", "the request did not finish within its time budget; retry later")
            }
            s if s.is_server_error() => {
                ("internal", "an internal error occurred; quote the request_id when reporting it")
            }
            _ => ("http-error", ""),
        };
        let title = status.canonical_reason().unwrap_or("Error");
        let problem = Self::new(status, slug, title);
        if detail.is_empty() { problem } else { problem.detail(detail) }
    }
}
