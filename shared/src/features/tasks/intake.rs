//! The one task intake behind both API versions: a task as an edge received it ([`Draft`]), checked the same way
//! for v2 and v3 ([`parse_task`]), with problems pointing at the fields as each version names them ([`Edge`]);
//! and the problem a finished task that did not succeed is answered with. Neither version imports the other.

use cloud_agent_handlers::Registry;
use http::StatusCode;
use serde_json::Value as Json;

use super::engine::NewTask;
use super::model::{Priority, Status, TaskRecord};
use crate::http::{ApiError, Problem, ToProblem};

/// Which API version a task came through: its fields have different names and places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Edge {
    /// `/api/delegate`, `/api/batch`: flat fields.
    V2,
    /// `/v3/tasks`: `type`, `payload`, and the options nested under `options`.
    V3,
}

impl Edge {
    fn type_field(self) -> &'static str {
        match self {
            Self::V2 => "task_type",
            Self::V3 => "type",
        }
    }

    fn input_field(self) -> &'static str {
        match self {
            Self::V2 => "task_data",
            Self::V3 => "payload",
        }
    }

    fn webhook_field(self) -> &'static str {
        match self {
            Self::V2 => "webhook_url",
            Self::V3 => "options/webhook",
        }
    }

    fn idempotency_field(self) -> &'static str {
        match self {
            Self::V2 => "idempotency_key",
            Self::V3 => "options/idempotency_key",
        }
    }

    fn timeout_field(self) -> &'static str {
        match self {
            Self::V2 => "timeout_ms",
            Self::V3 => "options/timeout_ms",
        }
    }
}

/// A synchronous task that did not succeed, answered as its own problem (422 input, 502 failed, 504 timed out).
#[derive(Debug, thiserror::Error)]
#[error("task ended with a problem")]
pub(super) struct Finished(pub(super) Problem);

impl ToProblem for Finished {
    fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::BAD_GATEWAY)
    }

    fn problem(&self) -> Problem {
        self.0.clone()
    }
}

/// The stored problem of a final task that did not succeed.
pub(super) fn problem_of(record: &TaskRecord) -> Option<Problem> {
    if record.status == Status::Succeeded || !record.is_final() {
        return None;
    }
    let mut problem = record
        .problem
        .as_ref()
        .and_then(|p| serde_json::from_value::<Problem>(p.clone()).ok())
        .unwrap_or_else(|| Problem::for_status(StatusCode::BAD_GATEWAY));
    problem.detail = Some(format!("task {}: {}", record.id, problem.detail.unwrap_or_default()));
    Some(problem)
}

/// A task as an edge (v2 or v3) received it, before the shared checks.
#[derive(Debug)]
pub(super) struct Draft {
    pub(super) kind: String,
    pub(super) input: Json,
    pub(super) priority: Option<Priority>,
    pub(super) webhook: Option<String>,
    pub(super) idempotency_key: Option<String>,
    pub(super) timeout_ms: Option<u64>,
    pub(super) asynchronous: bool,
}

/// Checks what every edge shares: the type, the options, the input against the type's schema. `at` is where the
/// task sits in the request (empty, or `/tasks/3`); `edge` names its fields in that API version.
pub(super) fn parse_task(types: &Registry, edge: Edge, at: &str, draft: Draft) -> Result<NewTask, ApiError> {
    let Draft { kind, input, priority, webhook, idempotency_key, timeout_ms, asynchronous } = draft;
    let kind = kind.as_str();
    let task_type = types.find(kind).ok_or_else(|| {
        ApiError::unprocessable(
            &format!("{at}/{}", edge.type_field()),
            format!("unknown task type {kind:?}; this deployment runs: {}", types.names()),
        )
    })?;
    let handler = task_type.descriptor();
    if let Some(url) = &webhook {
        check_webhook_url(url)
            .map_err(|detail| ApiError::unprocessable(&format!("{at}/{}", edge.webhook_field()), detail))?;
    }
    if let Some(key) = &idempotency_key
        && (key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(ApiError::unprocessable(
            &format!("{at}/{}", edge.idempotency_field()),
            "idempotency_key must be 1-255 visible ASCII characters",
        ));
    }
    if let Some(ms) = timeout_ms
        && !(1..=handler.limits.max_timeout_ms).contains(&ms)
    {
        return Err(ApiError::unprocessable(
            &format!("{at}/{}", edge.timeout_field()),
            format!("timeout_ms must be 1-{} for {}", handler.limits.max_timeout_ms, handler.name),
        ));
    }
    let input_pointer = format!("{at}/{}", edge.input_field());
    task_type.validate(&input).map_err(|e| ApiError::Unprocessable {
        detail: e.detail,
        pointer: Some(format!("{input_pointer}{}", e.pointer)),
    })?;
    Ok(NewTask {
        handler,
        input,
        priority: priority.unwrap_or_default(),
        webhook,
        idempotency_key,
        timeout_ms,
        asynchronous,
        input_pointer,
    })
}

/// A webhook URL: http or https, with a host, at most 2048 characters. Where it points is checked at delivery,
/// on every attempt, by the SSRF-safe client (names can resolve differently later).
fn check_webhook_url(url: &str) -> Result<(), String> {
    if url.len() > 2048 {
        return Err("the webhook URL must be at most 2048 characters".into());
    }
    let uri: http::Uri = url.parse().map_err(|e| format!("the webhook must be an absolute http(s) URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("the webhook must be an http:// or https:// URL".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("the webhook URL needs a host".into());
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err("the webhook URL must not carry credentials (user:password@)".into());
    }
    Ok(())
}
