//! A delegated task as the table keeps it, typed: its id, status, priority, and the record both API versions
//! show. Attribute names are spelled here and nowhere else; keys come from [`crate::store::keys`].

use serde_json::Value as Json;

use crate::store::{GSI1_PK, GSI1_SK, Item, Key, keys};

pub use crate::ids::TaskId;
pub use cloud_agent_wire::tasks::{DeliveryAttempt, DeliveryState, Mode, Priority, Status, Task, Webhook};

/// A task as the table keeps it: what the API shows ([`Task`], from [`TaskRecord::view`]) and what only the
/// server may see (its tenant, input, signers, expiry).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub id: TaskId,
    /// The handler that runs it.
    pub kind: String,
    pub status: Status,
    pub priority: Priority,
    pub mode: Mode,
    /// SHA-256 of the input's canonical JSON: how an idempotency key recognises the same request.
    pub input_hash: String,
    /// The input, kept for queued work only (a synchronous task's input is not stored).
    pub input: Option<Json>,
    pub result: Option<Json>,
    /// Why the task failed, timed out or was cancelled (an RFC 9457 problem).
    pub problem: Option<Json>,
    pub attempts: u32,
    pub max_attempts: u32,
    pub timeout_ms: u64,
    /// Epoch milliseconds.
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub duration_ms: Option<u64>,
    pub webhook: Option<Webhook>,
    pub idempotency_key: Option<String>,
    /// Who created it (as the audit trail names them).
    pub created_by: String,
    /// The tenant that owns it. Never shown to another tenant: their reads find nothing.
    pub tenant: String,
    /// The secrets its webhook is signed with (key ids; more than one during a key rotation).
    pub signers: Vec<String>,
    /// When a finished task leaves the table (epoch seconds).
    pub expires_at: Option<i64>,
}

mod attr {
    pub(super) const ID: &str = "task_id";
    pub(super) const TENANT: &str = "tenant";
    pub(super) const TYPE: &str = "type";
    pub(super) const STATUS: &str = "status";
    pub(super) const PRIORITY: &str = "priority";
    pub(super) const MODE: &str = "mode";
    pub(super) const INPUT_HASH: &str = "input_hash";
    pub(super) const INPUT: &str = "input";
    pub(super) const RESULT: &str = "result";
    pub(super) const PROBLEM: &str = "problem";
    pub(super) const ATTEMPTS: &str = "attempts";
    pub(super) const MAX_ATTEMPTS: &str = "max_attempts";
    pub(super) const TIMEOUT_MS: &str = "timeout_ms";
    pub(super) const CREATED_MS: &str = "created_ms";
    pub(super) const STARTED_MS: &str = "started_ms";
    pub(super) const FINISHED_MS: &str = "finished_ms";
    pub(super) const DURATION_MS: &str = "duration_ms";
    pub(super) const WEBHOOK: &str = "webhook";
    pub(super) const IDEMPOTENCY_KEY: &str = "idempotency_key";
    pub(super) const CREATED_BY: &str = "created_by";
    pub(super) const SIGNERS: &str = "signers";
}

/// Attribute names other modules of the feature condition on.
pub(super) const STATUS_ATTR: &str = attr::STATUS;

impl TaskRecord {
    pub fn key(&self) -> Key {
        keys::job(&self.tenant, self.id.as_str())
    }

    pub fn is_final(&self) -> bool {
        self.status.is_final()
    }

    /// The task as the API shows it, to its own tenant.
    pub fn view(&self) -> Task {
        Task {
            id: self.id.to_string(),
            kind: self.kind.clone(),
            status: self.status,
            priority: self.priority,
            mode: self.mode,
            input_hash: self.input_hash.clone(),
            result: self.result.clone(),
            problem: self.problem.clone(),
            attempts: self.attempts,
            max_attempts: self.max_attempts,
            timeout_ms: self.timeout_ms,
            created_ms: self.created_ms,
            started_ms: self.started_ms,
            finished_ms: self.finished_ms,
            duration_ms: self.duration_ms,
            webhook: self.webhook.clone(),
            idempotency_key: self.idempotency_key.clone(),
            created_by: self.created_by.clone(),
        }
    }

    /// The whole item. JSON parts (input, result, problem, webhook) are stored as JSON text: DynamoDB's own
    /// types cannot hold every JSON number, and nothing queries inside them.
    pub fn to_item(&self) -> Item {
        let mut item = Item::new(&self.key())
            .with(attr::ID, self.id.as_str())
            .with(attr::TENANT, self.tenant.as_str())
            .with(attr::TYPE, self.kind.as_str())
            .with(attr::STATUS, self.status.as_str())
            .with(attr::PRIORITY, self.priority.as_str())
            .with(attr::MODE, if self.mode == Mode::Sync { "sync" } else { "async" })
            .with(attr::INPUT_HASH, self.input_hash.as_str())
            .with(attr::ATTEMPTS, i64::from(self.attempts))
            .with(attr::MAX_ATTEMPTS, i64::from(self.max_attempts))
            .with(attr::TIMEOUT_MS, i64::try_from(self.timeout_ms).unwrap_or(i64::MAX))
            .with(attr::CREATED_MS, self.created_ms)
            .with(attr::CREATED_BY, self.created_by.as_str())
            .with(attr::SIGNERS, self.signers.join(","))
            .with(GSI1_PK, keys::jobs_of(&self.tenant))
            .with(GSI1_SK, self.id.as_str());
        let json = |v: &Json| v.to_string();
        if let Some(v) = &self.input {
            item.set(attr::INPUT, json(v));
        }
        if let Some(v) = &self.result {
            item.set(attr::RESULT, json(v));
        }
        if let Some(v) = &self.problem {
            item.set(attr::PROBLEM, json(v));
        }
        if let Some(v) = self.started_ms {
            item.set(attr::STARTED_MS, v);
        }
        if let Some(v) = self.finished_ms {
            item.set(attr::FINISHED_MS, v);
        }
        if let Some(v) = self.duration_ms {
            item.set(attr::DURATION_MS, i64::try_from(v).unwrap_or(i64::MAX));
        }
        if let Some(w) = &self.webhook {
            item.set(attr::WEBHOOK, serde_json::to_string(w).unwrap_or_default());
        }
        if let Some(k) = &self.idempotency_key {
            item.set(attr::IDEMPOTENCY_KEY, k.as_str());
        }
        if let Some(at) = self.expires_at {
            item.set(crate::store::EXPIRES_AT, at);
        }
        item
    }

    /// The record from its item; `None` for an item that is not a task (a bug or a foreign write).
    pub fn from_item(item: &Item) -> Option<Self> {
        let json = |name: &str| item.get_str(name).and_then(|t| serde_json::from_str::<Json>(t).ok());
        let int = |name: &str| item.get_i64(name);
        Some(Self {
            id: TaskId::parse(item.get_str(attr::ID)?).ok()?,
            tenant: item.get_str(attr::TENANT)?.to_owned(),
            kind: item.get_str(attr::TYPE)?.to_owned(),
            status: Status::parse(item.get_str(attr::STATUS)?)?,
            priority: Priority::parse(item.get_str(attr::PRIORITY)?)?,
            mode: if item.get_str(attr::MODE) == Some("sync") { Mode::Sync } else { Mode::Async },
            input_hash: item.get_str(attr::INPUT_HASH)?.to_owned(),
            input: json(attr::INPUT),
            result: json(attr::RESULT),
            problem: json(attr::PROBLEM),
            attempts: u32::try_from(int(attr::ATTEMPTS)?).ok()?,
            max_attempts: u32::try_from(int(attr::MAX_ATTEMPTS)?).ok()?,
            timeout_ms: u64::try_from(int(attr::TIMEOUT_MS)?).ok()?,
            created_ms: int(attr::CREATED_MS)?,
            started_ms: int(attr::STARTED_MS),
            finished_ms: int(attr::FINISHED_MS),
            duration_ms: int(attr::DURATION_MS).and_then(|v| u64::try_from(v).ok()),
            webhook: item.get_str(attr::WEBHOOK).and_then(|t| serde_json::from_str(t).ok()),
            idempotency_key: item.get_str(attr::IDEMPOTENCY_KEY).map(str::to_owned),
            created_by: item.get_str(attr::CREATED_BY).unwrap_or_default().to_owned(),
            signers: item
                .get_str(attr::SIGNERS)
                .unwrap_or_default()
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            expires_at: item.expires_at(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_survives_the_table() {
        let record = TaskRecord {
            id: TaskId::generate(),
            kind: "echo".into(),
            status: Status::Succeeded,
            priority: Priority::High,
            mode: Mode::Async,
            input_hash: "ab".into(),
            input: Some(serde_json::json!({"a": 1.5e300})),
            result: Some(serde_json::json!([1, "x", null])),
            problem: None,
            attempts: 2,
            max_attempts: 3,
            timeout_ms: 5000,
            created_ms: 1,
            started_ms: Some(2),
            finished_ms: Some(3),
            duration_ms: Some(1),
            webhook: Some(Webhook {
                url: "https://example.com/hook".into(),
                state: DeliveryState::Pending,
                message_id: "msg_1".into(),
                attempts: vec![DeliveryAttempt { at_ms: 5, status: Some(500), error: None, duration_ms: 3 }],
                next_attempt_ms: Some(10),
            }),
            idempotency_key: Some("k".into()),
            created_by: "key:ca_test_x".into(),
            tenant: "acme".into(),
            signers: vec!["a".into(), "b".into()],
            expires_at: Some(99),
        };
        assert_eq!(TaskRecord::from_item(&record.to_item()), Some(record));
    }

    #[test]
    fn task_ids_are_time_ordered_and_strictly_shaped() {
        let a = TaskId::generate();
        let b = TaskId::generate();
        assert!(a.as_str() < b.as_str(), "{a} then {b}");
        assert!(TaskId::parse(a.as_str()).is_ok());
        for bad in ["", "t_", "x_0192f0c6a1b27c3d8e4f5a6b7c8d9e0f", "t_0192F0C6A1B27C3D8E4F5A6B7C8D9E0F", "t_#"] {
            assert!(TaskId::parse(bad).is_err(), "{bad}");
        }
    }
}
