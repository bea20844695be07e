//! A progress update as agents send it, its validation, a batch's receipt, and the task's progress as it is
//! read back: the feature's shapes, used by the service, its records and its routes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use utoipa::ToSchema;

use crate::ids::ProgressTaskId;
use crate::store::Number;

/// Most updates one request may carry (more → 413).
pub const MAX_UPDATES: usize = 100;
/// Longest `message`, in characters (as JSON Schema's `maxLength` counts them).
pub const MAX_MESSAGE: usize = 2_000;
/// Most entries in `metrics`.
pub const MAX_METRICS: usize = 32;
/// How long receipts are kept for idempotent replays.
pub const RECEIPT_TTL_SECS: i64 = 24 * 3600;
/// How long progress history is kept.
pub const HISTORY_TTL_SECS: i64 = 30 * 24 * 3600;

/// Task status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// One progress update as agents send it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressUpdate {
    #[schema(value_type = String, pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    pub task_id: ProgressTaskId,
    /// 0–100 (DynamoDB stores no magnitude below 1e-130 other than 0).
    #[schema(minimum = 0, maximum = 100)]
    pub progress: f64,
    pub status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 2000)]
    pub message: Option<String>,
    /// Small numeric measurements: at most 32, names of 1–64 characters, numbers in DynamoDB's range (0 or a
    /// magnitude of 1e-130 to 9.99e125).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(schema_with = metrics_schema)]
    pub metrics: BTreeMap<String, f64>,
    /// When the agent observed this state (RFC 3339). Orders updates: a late, older one never wins.
    #[schema(format = DateTime)]
    pub timestamp: String,
    /// Tie-breaker for updates with the same timestamp (higher wins).
    #[serde(default)]
    pub seq: u64,
}

/// A validated update, with its timestamp in epoch milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Valid {
    pub index: usize,
    pub update: ProgressUpdate,
    pub at_ms: i64,
}

/// Longest metric name, in characters.
pub const MAX_METRIC_NAME: usize = 64;

fn metrics_schema() -> utoipa::openapi::Object {
    crate::openapi::bounded_map(MAX_METRICS, MAX_METRIC_NAME, <f64 as utoipa::PartialSchema>::schema())
}
/// Rejection reasons and echoed task ids are cut to this, so a receipt stays small whatever a client sends
/// (receipts are stored, and DynamoDB items stop at 400 KB).
pub(super) const MAX_ECHO: usize = 200;

/// `text` cut to at most `max` bytes, on a character boundary.
fn clip(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Checks one raw item; the error is the reason reported for its index. Everything accepted here fits
/// DynamoDB's limits (numbers in its range, the event item far below 400 KB), so a valid update can never make
/// its 25-item chunk fail on every resend.
pub fn validate(index: usize, raw: Json) -> Result<Valid, (String, String)> {
    let task_hint = clip(raw.get("task_id").and_then(Json::as_str).unwrap_or_default(), 128);
    let update: ProgressUpdate =
        serde_json::from_value(raw).map_err(|e| (task_hint.clone(), clip(&e.to_string(), MAX_ECHO)))?;
    let fail = |why: &str| Err((update.task_id.to_string(), why.to_owned()));
    if !(0.0..=100.0).contains(&update.progress) || !Number::storable(update.progress) {
        return fail("progress must be 0, or between 1e-130 and 100");
    }
    if update.message.as_ref().is_some_and(|m| m.chars().count() > MAX_MESSAGE) {
        return fail("message is longer than 2000 characters");
    }
    if update.metrics.len() > MAX_METRICS {
        return fail("metrics: at most 32 entries");
    }
    if update.metrics.keys().any(|k| k.is_empty() || k.chars().count() > MAX_METRIC_NAME) {
        return fail("metrics: names must be 1-64 characters");
    }
    if update.metrics.values().any(|v| !Number::storable(*v)) {
        return fail("metrics: numbers must be 0 or of magnitude 1e-130 to 9.99e125 (DynamoDB's range)");
    }
    let Ok(at) = time::OffsetDateTime::parse(&update.timestamp, &time::format_description::well_known::Rfc3339) else {
        return fail("timestamp must be RFC 3339, e.g. 2026-11-23T10:00:00Z");
    };
    let at_ms = i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
    if !(0..=9_999_999_999_999).contains(&at_ms) {
        return fail("timestamp out of range");
    }
    Ok(Valid { index, update, at_ms })
}

/// An item that was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ItemIssue {
    pub index: usize,
    pub task_id: String,
    pub reason: String,
}

/// The answer to a batch: what is durable, what was refused, what could not be written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Receipt {
    pub batch_id: String,
    /// Updates durably stored.
    pub accepted: usize,
    /// Invalid updates (fix and resend them, with a new batch id).
    pub rejected: Vec<ItemIssue>,
    /// Valid updates that could not be stored in time (resend the batch: nothing is duplicated).
    pub failed: Vec<ItemIssue>,
}

/// The latest of several updates: by timestamp, then `seq`, then position in the batch.
pub fn newest<'a>(a: &'a Valid, b: &'a Valid) -> &'a Valid {
    if (b.at_ms, b.update.seq, b.index) > (a.at_ms, a.update.seq, a.index) { b } else { a }
}

/// Coalesces a batch: the latest update per task (every event is still written to history).
pub fn coalesce(updates: &[Valid]) -> BTreeMap<&str, &Valid> {
    let mut latest: BTreeMap<&str, &Valid> = BTreeMap::new();
    for v in updates {
        latest.entry(v.update.task_id.as_str()).and_modify(|cur| *cur = newest(cur, v)).or_insert(v);
    }
    latest
}

/// Latest state and one page of history (newest first).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskProgress {
    pub task_id: String,
    /// The user the task belongs to.
    pub owner: String,
    /// The agent that reported the current state.
    pub agent_id: String,
    pub progress: f64,
    pub status: String,
    pub timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub history: Vec<ProgressEvent>,
    /// Pass as `cursor` for older history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One stored event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProgressEvent {
    /// The agent that reported it.
    pub agent_id: String,
    pub progress: f64,
    pub status: String,
    pub timestamp: String,
    pub batch_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
