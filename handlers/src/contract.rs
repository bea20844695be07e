//! The handler contract: what a task type declares about itself ([`Descriptor`]) and how it runs ([`Handler`]).
//! The server never looks inside a handler: it lists the descriptor, checks inputs against its schema, and calls
//! `run` with a [`Context`] that carries the only outbound HTTP client a handler is given.

use serde_json::Value;

use crate::input::InputError;
use crate::outbound::Outbound;

/// A task type as callers see it: `GET /api/capabilities`, the OpenAPI document and `cloudagent tasks
/// capabilities` list these fields.
#[derive(Debug, Clone, Copy)]
pub struct Descriptor {
    /// The task type: 1-64 of `a-z`, `0-9` and `-`, starting with a letter. Unique in a registry.
    pub name: &'static str,
    pub description: &'static str,
    /// JSON Schema (draft 2020-12) of the input. Every input is checked against it before the task is stored.
    pub input_schema: fn() -> Value,
    pub limits: Limits,
    /// Declared long: always queued (answered 202), never run inside the caller's request.
    pub long: bool,
    /// How a task of this type can end other than with a result.
    pub failures: &'static [FailureKind],
}

/// A handler's deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The deadline when the caller gives none.
    pub default_timeout_ms: u64,
    /// The longest deadline a caller may ask for.
    pub max_timeout_ms: u64,
}

/// One way a handler can fail, as documented to callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureKind {
    /// The problem type's last segment (`invalid-task-input`) as the task's `problem.type` ends.
    pub kind: &'static str,
    /// Whether another attempt may succeed (the engine retries these within the task's attempts).
    pub retryable: bool,
    /// When it happens, for the listing.
    pub when: &'static str,
}

/// The input was refused: 422, pointing at the field; never retried.
pub const INPUT_FAILURE: FailureKind = FailureKind {
    kind: "invalid-task-input",
    retryable: false,
    when: "the input is refused; `pointer` names the field",
};
/// Something outside the input failed; retried with backoff until the attempts run out.
pub const TRANSIENT_FAILURE: FailureKind =
    FailureKind { kind: "task-failed", retryable: true, when: "a transient failure outlasted the task's attempts" };

/// A running task, as handlers and hooks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    /// `t_` and 32 hex digits.
    pub id: String,
    /// The tenant that owns the task.
    pub tenant: String,
    /// The task type.
    pub kind: String,
    /// 1 for the first attempt.
    pub attempt: u32,
}

/// What a handler is given besides its input.
#[derive(Debug, Clone)]
pub struct Context {
    outbound: Outbound,
    task: TaskInfo,
}

impl Context {
    pub fn new(outbound: Outbound, task: TaskInfo) -> Self {
        Self { outbound, task }
    }

    /// The SSRF-safe HTTP client: the only way out a handler is handed (private, loopback and metadata addresses
    /// are refused, also after DNS and at redirects).
    pub fn outbound(&self) -> &Outbound {
        &self.outbound
    }

    pub fn task(&self) -> &TaskInfo {
        &self.task
    }
}

/// Why a task did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The input is wrong: retrying cannot help (422).
    #[error("invalid input: {0}")]
    Input(#[from] InputError),
    /// Something outside the input failed; another attempt may succeed.
    #[error("transient failure: {0}")]
    Transient(String),
    /// Refused with a problem of the refuser's own (a hook's policy, a handler's limit); never retried.
    #[error("refused: {}", .0.detail)]
    Rejected(Rejection),
    /// The task ran past its deadline (the engine reports this to `on_error` hooks; handlers never return it).
    #[error("timed out")]
    TimedOut,
}

/// A refusal with its own problem type: what a `before` hook (or a handler) answers when policy says no.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status: 400-499 for the caller's doing, 500-599 otherwise; anything else is answered as 422.
    pub status: u16,
    /// The problem type: an absolute URI, or a slug the server puts under its own problem base.
    pub kind: String,
    pub title: String,
    pub detail: String,
    /// A JSON Pointer into the task's input (`/rows`), when one field is to blame.
    pub pointer: Option<String>,
}

impl Rejection {
    pub fn new(status: u16, kind: impl Into<String>, title: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { status, kind: kind.into(), title: title.into(), detail: detail.into(), pointer: None }
    }

    #[must_use]
    pub fn at(mut self, pointer: impl Into<String>) -> Self {
        self.pointer = Some(pointer.into());
        self
    }

    /// The status as answered: a 4xx or 5xx, else 422.
    pub fn status(&self) -> u16 {
        if (400..600).contains(&self.status) { self.status } else { 422 }
    }
}

/// A task type's code. Implement it, give it a [`Descriptor`], and register it in a
/// [`Registry`](crate::Registry); see the README's "Writing a task handler".
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    fn descriptor(&self) -> &'static Descriptor;

    /// Runs one attempt. The input has passed the descriptor's schema; the handler still checks what a schema
    /// cannot say. CPU-heavy work belongs on the blocking pool ([`blocking`]) so the task's deadline can fire.
    /// Plugins are trusted code linked into the functions: the outbound client in the [`Context`] is the one that
    /// enforces the SSRF policy, and a handler should make every request through it.
    async fn run(&self, cx: &Context, input: Value) -> Result<Value, Failure>;

    /// The circuit breakers this handler keeps around its own dependencies: the server lists them with its own
    /// (`/api/v1/circuit-breakers`, health) and alerts when one opens.
    fn breakers(&self) -> Vec<std::sync::Arc<cloud_agent_breaker::Breaker>> {
        Vec::new()
    }
}

/// Runs CPU work on the blocking pool: the caller's deadline can still fire (the work itself runs to its end, so
/// bound it by its input's limits), and a panic fails the task rather than a worker thread.
pub async fn blocking<F>(work: F) -> Result<Value, Failure>
where
    F: FnOnce() -> Result<Value, Failure> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) => Err(Failure::Rejected(Rejection::new(
            500,
            "handler-failed",
            "Handler failed",
            "the handler failed unexpectedly; the task was not completed",
        )))
        .inspect_err(|_| tracing::error!(error = %e, "a task handler panicked on the blocking pool")),
    }
}
