//! What an operator call can come to, built from the server's problem details: one variant per thing a caller
//! does differently, each keeping the problem (its `type`, `detail` and `request_id`) to quote.

use std::time::Duration;

use cloud_agent_wire::Problem;

/// An operator call that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No credential, or one the server refused: fix the configuration.
    #[error("unauthorized: {}", describe(.0))]
    Unauthorized(Box<Problem>),
    /// The credential lacks the permission this call needs.
    #[error("forbidden: {}", describe(.0))]
    Forbidden(Box<Problem>),
    /// Nothing of yours has that id (another tenant's data is absent too).
    #[error("not found: {}", describe(.0))]
    NotFound(Box<Problem>),
    /// The request was refused as it is: `pointer` names the field.
    #[error("invalid request{}: {}", .pointer.as_deref().map(|p| format!(" at {p}")).unwrap_or_default(), describe(.problem))]
    Validation { pointer: Option<String>, detail: String, problem: Box<Problem> },
    /// A concurrent change, or the task is already finished.
    #[error("conflict: {}", describe(.0))]
    Conflict(Box<Problem>),
    /// Over a quota; `retry_after` says when trying again can work.
    #[error("rate limited{}: {}", .retry_after.map(|d| format!(" (retry after {} s)", d.as_secs())).unwrap_or_default(), describe(.problem))]
    RateLimited { retry_after: Option<Duration>, problem: Box<Problem> },
    /// The client's breaker for every endpoint is open: the service failed recently; retry after this long.
    #[error("circuit open: the service failed recently; retry in {} ms", .retry_after.as_millis())]
    CircuitOpen { retry_after: Duration },
    /// The server failed (5xx) after the retries the budget allowed.
    #[error("server error {}: {}", .problem.status, describe(.problem))]
    Server { problem: Box<Problem> },
    /// No answer within the client's timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The connection failed.
    #[error("network error: {0}")]
    Network(String),
    /// An answer this client cannot read (a proxy's page, a newer server's shape).
    #[error("unexpected answer: {0}")]
    Protocol(String),
}

fn describe(problem: &Problem) -> String {
    let detail = problem.detail.as_deref().unwrap_or(&problem.title);
    match &problem.request_id {
        Some(id) => format!("{detail} ({}; request {id})", problem.kind),
        None => format!("{detail} ({})", problem.kind),
    }
}

impl ClientError {
    /// The error's kind in snake case (`rate_limited`, `server`, `network`…), for counting errors by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Validation { .. } => "validation",
            Self::Conflict(_) => "conflict",
            Self::RateLimited { .. } => "rate_limited",
            Self::CircuitOpen { .. } => "circuit_open",
            Self::Server { .. } => "server",
            Self::Timeout(_) => "timeout",
            Self::Network(_) => "network",
            Self::Protocol(_) => "protocol",
        }
    }

    /// The problem the server answered with, when it answered.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::Unauthorized(p) | Self::Forbidden(p) | Self::NotFound(p) | Self::Conflict(p) => Some(p),
            Self::Validation { problem, .. } | Self::RateLimited { problem, .. } | Self::Server { problem } => {
                Some(problem)
            }
            Self::CircuitOpen { .. } | Self::Timeout(_) | Self::Network(_) | Self::Protocol(_) => None,
        }
    }

    /// The error for a non-2xx answer: its status, its problem (or one made from the status when the body was
    /// not problem details), and its `Retry-After`.
    pub(crate) fn from_answer(status: u16, body: &[u8], retry_after: Option<Duration>) -> Self {
        let problem = serde_json::from_slice::<Problem>(body).unwrap_or_else(|_| {
            let status_code = reqwest::StatusCode::from_u16(status).unwrap_or(reqwest::StatusCode::BAD_GATEWAY);
            let mut problem = Problem::for_status(status_code);
            problem.detail = Some(String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
            problem
        });
        let problem = Box::new(problem);
        match status {
            401 => Self::Unauthorized(problem),
            403 => Self::Forbidden(problem),
            404 => Self::NotFound(problem),
            409 => Self::Conflict(problem),
            429 => Self::RateLimited { retry_after, problem },
            400..=499 => Self::Validation {
                pointer: problem.pointer.clone(),
                detail: problem.detail.clone().unwrap_or_else(|| problem.title.clone()),
                problem,
            },
            _ => Self::Server { problem },
        }
    }
}
