//! Agent progress: validation of updates, durable batched writes, idempotent receipts, and the task state.
//!
//! Writes follow the serverless rule "acknowledge only what is durable": an update counts as accepted only after
//! its event item is in the store. Events go out with BatchWriteItem in chunks of 25, unprocessed items are
//! retried with full-jitter backoff inside the request's budget, and whatever still is not written is reported
//! as failed. Event keys are deterministic (`EVENT#{client ms}#{batch id}#{index}`), so replaying a batch can
//! never duplicate an event. A batch id (body `batch_id` or `Idempotency-Key`) makes a retry return the stored
//! receipt without writing; a claim with a lease keeps a crashed attempt from blocking retries for longer than
//! the request budget.

use std::collections::BTreeMap;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use super::model::{ItemIssue, MAX_UPDATES, Receipt, TaskProgress, Valid, coalesce};
use super::records::{self, ReceiptRecord, TaskState};
use crate::config::secrets::hex;
use crate::ids::{BatchId, ProgressTaskId, UserId};
use crate::store::{BatchRetry, DynStore, Key, StoreError, WriteOp, keys, now_epoch};

/// Errors of the progress service that are not per-item.
#[derive(Debug, thiserror::Error)]
pub enum ProgressError {
    #[error("too many updates in one request: {0} (at most {MAX_UPDATES})")]
    TooMany(usize),
    #[error("invalid batch id: 1-128 visible ASCII characters")]
    BadBatchId,
    #[error("batch {batch_id} is still being processed")]
    InProgress { batch_id: String, retry_after: u64 },
    #[error("batch id {0} was used with a different body")]
    Mismatch(String),
    /// Also the answer for another user's task: it is indistinguishable from a missing one.
    #[error("no progress for task {0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl crate::http::ToProblem for ProgressError {
    fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Self::Store(e) => e.status(),
            Self::TooMany(_) => S::PAYLOAD_TOO_LARGE,
            Self::BadBatchId | Self::Mismatch(_) => S::UNPROCESSABLE_ENTITY,
            Self::InProgress { .. } => S::CONFLICT,
            Self::NotFound(_) => S::NOT_FOUND,
        }
    }

    fn problem(&self) -> crate::http::Problem {
        let (slug, title) = match self {
            Self::Store(e) => return e.problem(),
            Self::TooMany(_) => ("too-many-updates", "Too many updates"),
            Self::BadBatchId => ("validation", "Invalid request"),
            Self::Mismatch(_) => ("idempotency-key-reused", "Batch id reused with a different body"),
            Self::InProgress { .. } => ("batch-in-progress", "Batch still in progress"),
            Self::NotFound(_) => ("not-found", "Not Found"),
        };
        crate::http::Problem::new(self.status(), slug, title).detail(self.to_string())
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Store(e) => e.retry_after(),
            Self::InProgress { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}
fn receipt_key(agent: &str, batch_id: &BatchId) -> Key {
    keys::batch_receipt(agent, batch_id.as_str())
}

/// A task's partition: tasks belong to the user the agent works for, so the same task id under two users is
/// two tasks, and no agent can reach (or squat) another user's ids.
fn task_partition(owner: &UserId, task: &str) -> String {
    keys::task_partition(owner.as_str(), task)
}

fn state_key(owner: &UserId, task: &str) -> Key {
    keys::task_state(owner.as_str(), task)
}

/// Outcome of claiming a batch id.
#[derive(Debug)]
pub enum Claim {
    /// Ours to process; `lease` identifies our claim.
    Fresh { lease: String },
    /// Already processed: the stored receipt.
    Done(Receipt),
}

/// Claims `batch_id` for this request, or returns the stored receipt, or says another attempt is running.
pub async fn claim(
    store: &DynStore,
    agent: &str,
    batch_id: &BatchId,
    body_hash: &str,
    budget: Duration,
) -> Result<Claim, ProgressError> {
    let now = now_epoch();
    let lease = crate::ids::new_id();
    let lease_secs = i64::try_from(budget.as_secs()).unwrap_or(60).max(1);
    let (item, free) = ReceiptRecord::claim(&receipt_key(agent, batch_id), &lease, now + lease_secs, body_hash, now);
    match store.put(item, Some(free)).await {
        Ok(()) => Ok(Claim::Fresh { lease }),
        Err(StoreError::ConditionFailed { current: Some(current) }) => {
            let record = ReceiptRecord::from_item(&current);
            if record.body_hash() != body_hash {
                return Err(ProgressError::Mismatch(batch_id.to_string()));
            }
            match record {
                ReceiptRecord::Done { receipt: Some(receipt), .. } => Ok(Claim::Done(receipt)),
                ReceiptRecord::Done { receipt: None, .. } => {
                    Err(StoreError::Internal("unreadable receipt".into()).into())
                }
                ReceiptRecord::InProgress { lease_until, .. } => Err(ProgressError::InProgress {
                    batch_id: batch_id.to_string(),
                    retry_after: u64::try_from((lease_until - now).max(1)).unwrap_or(1),
                }),
            }
        }
        Err(StoreError::ConditionFailed { current: None }) => {
            Err(StoreError::Internal("claim raced with TTL".into()).into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Stores the receipt (only when everything valid is durable), or releases the claim so a retry runs again.
pub async fn finish(
    store: &DynStore,
    agent: &str,
    batch_id: &BatchId,
    lease: &str,
    receipt: &Receipt,
) -> Result<(), ProgressError> {
    let key = receipt_key(agent, batch_id);
    if receipt.failed.is_empty() {
        let text = serde_json::to_string(receipt).map_err(|e| StoreError::Internal(e.to_string()))?;
        let (update, ours) = ReceiptRecord::complete(text, lease);
        match store.update(&key, update, Some(ours)).await {
            Ok(_) | Err(StoreError::ConditionFailed { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    } else {
        match store.delete(&key, Some(ReceiptRecord::ours(lease))).await {
            Ok(_) | Err(StoreError::ConditionFailed { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Hash of the request body, to refuse a batch id reused with different content.
pub fn body_hash(body: &[u8]) -> String {
    hex(&Sha256::digest(body)[..16])
}

/// Writes a validated batch for `owner`'s tasks: task state first (monotonic), then the events in chunks of 25.
/// Returns how many were accepted and the ones that failed (resend them).
pub async fn write(
    store: &DynStore,
    owner: &UserId,
    agent: &str,
    batch_id: &BatchId,
    valid: Vec<Valid>,
    retry: BatchRetry,
) -> (usize, Vec<ItemIssue>) {
    let mut failed = Vec::new();
    let issue = |v: &Valid, reason: &str| ItemIssue {
        index: v.index,
        task_id: v.update.task_id.to_string(),
        reason: reason.to_owned(),
    };
    // 1. One conditional update per task with its newest update; a late, older update leaves the state alone.
    let mut refused_tasks: BTreeMap<String, String> = BTreeMap::new();
    for (task, v) in coalesce(&valid) {
        let (update, newer) = TaskState::write(agent, v);
        match store.update(&state_key(owner, task), update, Some(newer)).await {
            // Written, or stale (the stored state is newer; the event still goes to history).
            Ok(_) | Err(StoreError::ConditionFailed { .. }) => {}
            Err(e) => {
                refused_tasks.insert(task.to_owned(), format!("not stored ({}); resend the batch", short(&e)));
            }
        }
    }
    let mut writable = Vec::new();
    for v in valid {
        match refused_tasks.get(v.update.task_id.as_str()) {
            Some(reason) => failed.push(issue(&v, reason)),
            None => writable.push(v),
        }
    }
    // 2. Events, 25 per BatchWriteItem; what stays unprocessed within the budget is failed, not accepted.
    let mut accepted = 0;
    for chunk in writable.chunks(crate::store::MAX_BATCH_WRITE) {
        let ops: Vec<WriteOp> = chunk
            .iter()
            .map(|v| WriteOp::Put(records::event_item(owner.as_str(), agent, batch_id.as_str(), v)))
            .collect();
        let keys: Vec<Option<Key>> = ops.iter().map(WriteOp::key).collect();
        match store.batch_write(ops, retry).await {
            Ok(left) => {
                let left_keys: std::collections::HashSet<Key> = left.iter().filter_map(WriteOp::key).collect();
                for (v, key) in chunk.iter().zip(keys) {
                    if key.is_some_and(|k| left_keys.contains(&k)) {
                        failed.push(issue(v, "not stored in time; resend the batch"));
                    } else {
                        accepted += 1;
                    }
                }
            }
            Err(e) => {
                let reason = format!("not stored ({}); resend the batch", short(&e));
                failed.extend(chunk.iter().map(|v| issue(v, &reason)));
            }
        }
    }
    (accepted, failed)
}

fn short(e: &StoreError) -> &'static str {
    if e.is_transient() { "store unavailable" } else { "store error" }
}

/// The paging scope of a task's history: a cursor issued for one owner's task opens for nothing else.
pub fn history_scope(owner: &UserId, task: &ProgressTaskId) -> String {
    format!("progress-history:{}", task_partition(owner, task.as_str()))
}

/// Reads one of `owner`'s tasks. Any agent working for the owner may read it; for anyone else it does not exist.
/// Returns the state, a page of history, and where the next page starts.
pub async fn read(
    store: &DynStore,
    owner: &UserId,
    task: &ProgressTaskId,
    limit: u32,
    cursor: Option<crate::store::Cursor>,
) -> Result<(TaskProgress, Option<crate::store::Cursor>), ProgressError> {
    let task = task.as_str();
    let state = store.get(&state_key(owner, task)).await?.ok_or_else(|| ProgressError::NotFound(task.to_owned()))?;
    let page = store
        .query(
            crate::store::Query::partition(task_partition(owner, task))
                .prefix(keys::EVENT_PREFIX)
                .backward()
                .limit(limit)
                .after(cursor),
        )
        .await?;
    let state = TaskState::from_item(&state);
    let progress = TaskProgress {
        task_id: task.to_owned(),
        owner: owner.to_string(),
        agent_id: state.agent_id,
        progress: state.progress,
        status: state.status,
        timestamp: state.timestamp,
        message: state.message,
        history: page.items.iter().map(records::event_from_item).collect(),
        next_cursor: None,
    };
    Ok((progress, page.next))
}

#[cfg(test)]
mod tests {
    use serde_json::Value as Json;

    use super::super::model::*;
    use super::*;

    fn raw(task: &str, ts: &str, seq: u64) -> Json {
        serde_json::json!({"task_id": task, "progress": 50, "status": "running", "timestamp": ts, "seq": seq})
    }

    #[test]
    fn coalescing_keeps_the_newest_per_task() {
        let items: Vec<Valid> = [
            raw("a", "2026-11-23T10:00:02Z", 0),
            raw("a", "2026-11-23T10:00:01Z", 9),
            raw("b", "2026-11-23T10:00:00Z", 0),
            raw("a", "2026-11-23T10:00:02Z", 1),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, r)| validate(i, r).unwrap())
        .collect();
        let latest = coalesce(&items);
        assert_eq!(latest["a"].index, 3, "same timestamp: higher seq wins");
        assert_eq!(latest["b"].index, 2);
    }

    #[test]
    fn the_largest_valid_update_fits_a_dynamodb_item() {
        let metrics: serde_json::Map<String, Json> =
            (0..MAX_METRICS).map(|i| (format!("{i:0>64}"), Json::from(-1.234_567_890_123_45e-120))).collect();
        let raw = serde_json::json!({
            "task_id": "t".repeat(128), "progress": 99.999_999_999_999, "status": "running",
            "message": "é".repeat(MAX_MESSAGE / 2), "metrics": metrics,
            "timestamp": "2026-11-23T10:00:00.123456789+05:00", "seq": u64::MAX,
        });
        let v = validate(0, raw).unwrap();
        let owner = UserId::parse(&"u".repeat(128)).unwrap();
        let item = records::event_item(owner.as_str(), &"a".repeat(64), &"b".repeat(128), &v);
        item.check_limits().unwrap();
        assert!(item.stored_size() < 10 * 1024, "{} bytes", item.stored_size());
    }

    #[test]
    fn limits_count_characters_and_the_widest_valid_update_still_fits_an_item() {
        // Four-byte characters at every length limit: what JSON Schema's maxLength lets a client send.
        let wide = |n: usize| "\u{1F600}".repeat(n);
        let metrics: serde_json::Map<String, Json> =
            (0..MAX_METRICS).map(|i| (format!("{i}{}", wide(MAX_METRIC_NAME - 2)), Json::from(1.5))).collect();
        let raw = serde_json::json!({
            "task_id": "t".repeat(128), "progress": 50, "status": "running",
            "message": wide(MAX_MESSAGE), "metrics": metrics, "timestamp": "2026-11-23T10:00:00Z",
        });
        let v = validate(0, raw.clone()).unwrap();
        let owner = UserId::parse(&"u".repeat(128)).unwrap();
        records::event_item(owner.as_str(), &"a".repeat(64), &"b".repeat(128), &v).check_limits().unwrap();
        let mut over = raw;
        over["message"] = Json::from(wide(MAX_MESSAGE + 1));
        assert!(validate(0, over).unwrap_err().1.contains("2000 characters"));
    }

    #[test]
    fn numbers_outside_dynamodbs_range_are_rejected_with_the_reason() {
        let with = |progress: f64, metric: f64| {
            validate(
                0,
                serde_json::json!({"task_id": "a", "progress": progress, "status": "running",
                "metrics": {"m": metric}, "timestamp": "2026-11-23T10:00:00Z"}),
            )
        };
        assert!(with(5e-324, 1.0).unwrap_err().1.contains("progress"));
        assert!(with(50.0, 1e300).unwrap_err().1.contains("metrics"));
        assert!(with(50.0, -1e-200).unwrap_err().1.contains("metrics"));
        assert!(with(0.0, 9.99e125).is_ok());
        assert!(with(1e-130, -1e-130).is_ok());
        let long_name = validate(
            0,
            serde_json::json!({"task_id": "a", "progress": 1, "status": "running",
            "metrics": {"m".repeat(300 * 1024): 1.0}, "timestamp": "2026-11-23T10:00:00Z"}),
        );
        assert!(long_name.unwrap_err().1.contains("names"));
        let junk = validate(
            0,
            serde_json::json!({"task_id": "x".repeat(300_000), "progress": 1,
            "status": "y".repeat(300_000), "timestamp": "2026-11-23T10:00:00Z"}),
        );
        let (task, reason) = junk.unwrap_err();
        assert!(task.len() <= 128 && reason.len() <= MAX_ECHO, "echoes are clipped");
    }

    #[test]
    fn validation_names_the_problem() {
        let bad = |r: Json| validate(0, r).unwrap_err().1;
        assert!(bad(serde_json::json!({"task_id": "a", "progress": 101, "status": "running", "timestamp": "2026-11-23T10:00:00Z"})).contains("progress"));
        assert!(bad(serde_json::json!({"task_id": "a", "progress": 1, "status": "bogus", "timestamp": "2026-11-23T10:00:00Z"})).contains("unknown variant"));
        assert!(
            bad(serde_json::json!({"task_id": "a", "progress": 1, "status": "running", "timestamp": "yesterday"}))
                .contains("RFC 3339")
        );
        assert!(bad(serde_json::json!({"task_id": "a b", "progress": 1, "status": "running", "timestamp": "2026-11-23T10:00:00Z"})).contains("task_id"));
        assert!(
            bad(serde_json::json!({"progress": 1, "status": "running", "timestamp": "2026-11-23T10:00:00Z"}))
                .contains("task_id")
        );
    }
}
