//! Tasks on the wire: their states, priorities and webhooks, the task as shown, and the bodies of `/v3/tasks`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// Where a task is in its life. The last four are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed_out",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Queued, Self::Running, Self::Succeeded, Self::Failed, Self::Cancelled, Self::TimedOut]
            .into_iter()
            .find(|s| s.as_str() == text)
    }

    pub fn is_final(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

/// Priority orders a batch's start and the queue's drain: high first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    High,
    #[default]
    Normal,
    Low,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Normal => "normal",
            Self::Low => "low",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::High, Self::Normal, Self::Low].into_iter().find(|p| p.as_str() == text)
    }

    /// The queue partition rank: 0 is drained first.
    pub fn rank(self) -> u8 {
        match self {
            Self::High => 0,
            Self::Normal => 1,
            Self::Low => 2,
        }
    }

    pub const ALL: [Self; 3] = [Self::High, Self::Normal, Self::Low];
}

/// How the task was asked to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// In the request that created it; the answer carries the result.
    Sync,
    /// On the queue; the answer is 202 with the task's URL.
    Async,
}

/// One delivery attempt of the completion webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryAttempt {
    /// Epoch milliseconds.
    pub at_ms: i64,
    /// The endpoint's status, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// Where the completion webhook stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not yet delivered; `next_attempt_ms` says when the next try is due.
    Pending,
    Delivered,
    /// Every scheduled attempt failed.
    Failed,
    /// The endpoint answered 410 Gone (now or earlier): it gets no more deliveries.
    Disabled,
}

/// The task's completion webhook and every attempt to deliver it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Webhook {
    pub url: String,
    pub state: DeliveryState,
    /// The message id receivers deduplicate on (`webhook-id`): the same for every attempt.
    pub message_id: String,
    #[serde(default)]
    pub attempts: Vec<DeliveryAttempt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_ms: Option<i64>,
}

/// A task, as the API shows it (`GET /v3/tasks/{id}`, the answer to a creation, a list's items, the webhook's
/// `data`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Task {
    /// `t_` and 32 hex digits, time-ordered.
    #[cfg_attr(feature = "openapi", schema(example = "t_0192f0c6a1b27c3d8e4f5a6b7c8d9e0f"))]
    pub id: String,
    /// The handler that runs it.
    #[serde(rename = "type")]
    pub kind: String,
    pub status: Status,
    pub priority: Priority,
    pub mode: Mode,
    /// SHA-256 of the input's canonical JSON: how an idempotency key recognises the same request.
    pub input_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Json>,
    /// Why the task failed, timed out or was cancelled (an RFC 9457 problem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::problem::Problem>))]
    pub problem: Option<Json>,
    pub attempts: u32,
    pub max_attempts: u32,
    pub timeout_ms: u64,
    /// Epoch milliseconds.
    pub created_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Who created it (as the audit trail names them).
    pub created_by: String,
}

impl Task {
    /// Whether it has stopped: succeeded, failed, cancelled or timed out.
    pub fn is_final(&self) -> bool {
        self.status.is_final()
    }
}

/// A new task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    /// The handler (see `GET /api/capabilities`).
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub kind: String,
    /// The handler's input; its schema is in the capabilities listing.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub payload: Json,
    #[serde(default)]
    pub options: TaskOptions,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TaskOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// Where to POST the finished task (Standard Webhooks signatures with your key's `whsec_` secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 2048))]
    pub webhook: Option<String>,
    /// The same key with the same input returns the same task; with another input it is refused (422).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 255))]
    pub idempotency_key: Option<String>,
    /// The task's deadline (default and maximum per handler, in the capabilities listing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 900_000))]
    pub timeout_ms: Option<u64>,
    /// Queue it and answer 202 at once (long handlers are always queued).
    #[serde(default, rename = "async", skip_serializing_if = "std::ops::Not::not")]
    pub asynchronous: bool,
}

/// A page of tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskPage {
    pub tasks: Vec<Task>,
    /// Present when there may be more: pass it back unchanged, with the same filters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A task type's limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Limits {
    pub default_timeout_ms: u64,
    pub max_timeout_ms: u64,
    /// Always queued (answered 202), even without `async`.
    pub always_async: bool,
    /// The largest input a queued task may carry, in bytes.
    pub max_queued_input_bytes: usize,
}

/// One way a task of this type can end without a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FailureKind {
    /// The last segment of the task's `problem.type`.
    pub kind: String,
    /// Retried (within the task's attempts) before it is final.
    pub retryable: bool,
    pub when: String,
}

/// A task type this deployment runs, as `GET /api/capabilities` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Capability {
    pub name: String,
    pub description: String,
    /// JSON Schema (2020-12) of the task's input.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub input_schema: Json,
    pub limits: Limits,
    pub failures: Vec<FailureKind>,
    /// The hooks run around this type (its own, then the deployment's).
    pub hooks: Vec<String>,
}

/// Every task type of the deployment, and the largest batch it takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Capabilities {
    pub handlers: Vec<Capability>,
    pub max_batch: usize,
}

/// Latency percentiles, each its bucket's upper bound.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Latency {
    pub p50: Option<u64>,
    pub p95: Option<u64>,
    pub p99: Option<u64>,
    pub mean: Option<f64>,
}

/// One task type's finished tasks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TypeStats {
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub cancelled: u64,
    /// Milliseconds, from the run's start to its end.
    pub latency_ms: Latency,
}

/// A tenant's task statistics, aggregated across every instance (`GET /api/metrics`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskMetrics {
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub cancelled: u64,
    /// Succeeded ÷ finished; null before the first task finishes.
    pub success_rate: Option<f64>,
    pub by_type: BTreeMap<String, TypeStats>,
    /// The tenant's queue now.
    #[serde(default)]
    pub queue: QueueStats,
}

/// A tenant's queued work at the moment of reading.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueStats {
    /// Queued tasks not finished yet (what counts against the tenant's cap).
    pub depth: u64,
    /// When the longest-waiting piece of due work in the table queue became due (RFC 3339); null when none waits
    /// there (on AWS queued work waits in SQS, whose oldest message age is a CloudWatch metric).
    pub oldest_due_at: Option<String>,
}
