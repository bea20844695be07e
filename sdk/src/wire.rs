//! The agent API's bodies as this client sends and reads them. The server's own types carry its validation and
//! OpenAPI schema; these carry only the fields a client needs, and `tests/progress_sdk.rs` runs them against
//! the server on both store backends.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Task status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// One progress update (`POST /api/v1/agent/progress`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressUpdate {
    /// `[A-Za-z0-9._:-]{1,128}`.
    pub task_id: String,
    /// 0–100.
    pub progress: f64,
    pub status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Small numeric measurements (at most 32).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// When the agent observed this state (RFC 3339); a late, older update never overwrites a newer one.
    pub timestamp: String,
    /// Tie-breaker for updates with the same timestamp (higher wins).
    #[serde(default)]
    pub seq: u64,
}

/// An update the server did not store, by its position in the batch.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ItemIssue {
    pub index: usize,
    pub task_id: String,
    pub reason: String,
}

/// The server's answer to a batch.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Receipt {
    pub batch_id: String,
    pub accepted: usize,
    /// Invalid updates: resending them cannot help.
    pub rejected: Vec<ItemIssue>,
    /// Valid updates not stored in time: resend the batch under the same id.
    pub failed: Vec<ItemIssue>,
}
