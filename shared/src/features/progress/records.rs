//! The progress feature's items, typed. Attribute names are spelled here and nowhere else; keys come from
//! [`crate::store::keys`].

use crate::store::{Condition, Item, Key, Number, Update, Value, keys, now_epoch};

use super::model::{HISTORY_TTL_SECS, ProgressEvent, RECEIPT_TTL_SECS, Receipt, Valid};

mod attr {
    pub(super) const TASK_ID: &str = "task_id";
    pub(super) const AGENT_ID: &str = "agent_id";
    pub(super) const PROGRESS: &str = "progress";
    pub(super) const STATUS: &str = "status";
    pub(super) const MESSAGE: &str = "message";
    pub(super) const METRICS: &str = "metrics";
    pub(super) const TIMESTAMP: &str = "timestamp";
    pub(super) const AT_MS: &str = "at_ms";
    pub(super) const SEQ: &str = "seq";
    pub(super) const BATCH_ID: &str = "batch_id";
    pub(super) const UPDATED_AT: &str = "updated_at";
    pub(super) const EXPIRES_AT: &str = "expires_at";
    pub(super) const LEASE: &str = "lease";
    pub(super) const LEASE_UNTIL: &str = "lease_until";
    pub(super) const BODY_HASH: &str = "body_hash";
    pub(super) const RECEIPT: &str = "receipt";
}

fn number(item: &Item, name: &str) -> f64 {
    item.get(name).and_then(Value::as_number).map_or(0.0, Number::as_f64)
}

fn text(item: &Item, name: &str) -> String {
    item.get_str(name).unwrap_or_default().to_owned()
}

fn seq(v: &Valid) -> i64 {
    i64::try_from(v.update.seq).unwrap_or(i64::MAX)
}

/// One event of a task's history (`EVENT#…` in the task's partition).
pub(super) fn event_item(user: &str, agent: &str, batch_id: &str, v: &Valid) -> Item {
    let u = &v.update;
    let mut item = Item::new(&keys::progress_event(user, u.task_id.as_str(), v.at_ms, batch_id, v.index))
        .with(attr::TASK_ID, u.task_id.as_str())
        .with(attr::AGENT_ID, agent)
        .with(attr::PROGRESS, u.progress)
        .with(attr::STATUS, u.status.as_str())
        .with(attr::TIMESTAMP, u.timestamp.as_str())
        .with(attr::AT_MS, v.at_ms)
        .with(attr::SEQ, seq(v))
        .with(attr::BATCH_ID, batch_id)
        .with(attr::EXPIRES_AT, now_epoch() + HISTORY_TTL_SECS);
    if let Some(m) = &u.message {
        item.set(attr::MESSAGE, m.as_str());
    }
    if !u.metrics.is_empty() {
        item.set(attr::METRICS, Value::M(u.metrics.iter().map(|(k, v)| (k.clone(), Value::from(*v))).collect()));
    }
    item
}

pub(super) fn event_from_item(item: &Item) -> ProgressEvent {
    ProgressEvent {
        agent_id: text(item, attr::AGENT_ID),
        progress: number(item, attr::PROGRESS),
        status: text(item, attr::STATUS),
        timestamp: text(item, attr::TIMESTAMP),
        batch_id: text(item, attr::BATCH_ID),
        message: item.get_str(attr::MESSAGE).map(str::to_owned),
    }
}

/// The task's current state: the newest update wins (by the agent's timestamp, then `seq`).
pub(super) struct TaskState {
    pub(super) agent_id: String,
    pub(super) progress: f64,
    pub(super) status: String,
    pub(super) timestamp: String,
    pub(super) message: Option<String>,
}

impl TaskState {
    /// The update that makes `v` the state, and the condition that keeps a late, older update out.
    pub(super) fn write(agent: &str, v: &Valid) -> (Update, Condition) {
        let u = &v.update;
        let newer = Condition::AttrNotExists(attr::AT_MS.into())
            .or(Condition::lt(attr::AT_MS, v.at_ms))
            .or(Condition::eq(attr::AT_MS, v.at_ms).and(Condition::lt(attr::SEQ, seq(v))));
        let update = Update::new()
            .set(attr::TASK_ID, u.task_id.as_str())
            .set(attr::AGENT_ID, agent)
            .set(attr::PROGRESS, u.progress)
            .set(attr::STATUS, u.status.as_str())
            .set(attr::TIMESTAMP, u.timestamp.as_str())
            .set(attr::AT_MS, v.at_ms)
            .set(attr::SEQ, seq(v))
            .set(attr::UPDATED_AT, now_epoch());
        let update = match &u.message {
            Some(m) => update.set(attr::MESSAGE, m.as_str()),
            None => update.remove(attr::MESSAGE),
        };
        (update, newer)
    }

    pub(super) fn from_item(item: &Item) -> Self {
        Self {
            agent_id: text(item, attr::AGENT_ID),
            progress: number(item, attr::PROGRESS),
            status: text(item, attr::STATUS),
            timestamp: text(item, attr::TIMESTAMP),
            message: item.get_str(attr::MESSAGE).map(str::to_owned),
        }
    }
}

/// A batch receipt: claimed (`in_progress`, with a lease) while an attempt runs, `done` with the receipt after.
pub(super) enum ReceiptRecord {
    InProgress { body_hash: String, lease_until: i64 },
    Done { body_hash: String, receipt: Option<Receipt> },
}

impl ReceiptRecord {
    const IN_PROGRESS: &'static str = "in_progress";
    const DONE: &'static str = "done";

    /// A claim for this attempt, and the condition under which it may be taken: free, or left by an attempt
    /// whose lease ran out (it died: timeout, frozen instance).
    pub(super) fn claim(key: &Key, lease: &str, lease_until: i64, body_hash: &str, now: i64) -> (Item, Condition) {
        let item = Item::new(key)
            .with(attr::STATUS, Self::IN_PROGRESS)
            .with(attr::LEASE, lease)
            .with(attr::LEASE_UNTIL, lease_until)
            .with(attr::BODY_HASH, body_hash)
            .with(attr::EXPIRES_AT, now + RECEIPT_TTL_SECS);
        let free = Condition::NotExists
            .or(Condition::eq(attr::STATUS, Self::IN_PROGRESS).and(Condition::lt(attr::LEASE_UNTIL, now)));
        (item, free)
    }

    /// The update that stores the receipt, under the condition that the claim is still ours.
    pub(super) fn complete(receipt_json: String, lease: &str) -> (Update, Condition) {
        let update =
            Update::new().set(attr::STATUS, Self::DONE).set(attr::RECEIPT, receipt_json).remove(attr::LEASE_UNTIL);
        (update, Self::ours(lease))
    }

    /// The condition that the claim still belongs to the attempt holding `lease`.
    pub(super) fn ours(lease: &str) -> Condition {
        Condition::eq(attr::LEASE, lease)
    }

    pub(super) fn from_item(item: &Item) -> Self {
        let body_hash = text(item, attr::BODY_HASH);
        if item.get_str(attr::STATUS) == Some(Self::DONE) {
            let receipt = item.get_str(attr::RECEIPT).and_then(|r| serde_json::from_str(r).ok());
            Self::Done { body_hash, receipt }
        } else {
            Self::InProgress { body_hash, lease_until: item.get_i64(attr::LEASE_UNTIL).unwrap_or_default() }
        }
    }

    pub(super) fn body_hash(&self) -> &str {
        match self {
            Self::InProgress { body_hash, .. } | Self::Done { body_hash, .. } => body_hash,
        }
    }
}
