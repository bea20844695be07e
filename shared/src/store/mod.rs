//! The store: one interface with exactly the operations the app needs, and two real backends —
//! DynamoDB (production) and an embedded redb file (local runs). Both pass the same conformance suite
//! (`tests/api/store_conformance.rs`).
//!
//! Semantics both backends keep: an item whose `expires_at` has passed is absent for every read and
//! every condition, whether or not the TTL reaper has removed it yet; writes are durable when they return.

mod condition;
pub mod dynamo;
#[cfg(feature = "embedded")]
pub mod embedded;
mod guarded;
mod item;
pub mod keys;
mod retry;

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use condition::{CmpOp, Condition, Update};
pub use guarded::Guarded;
pub use item::{
    EXPIRES_AT, GSI1_PK, GSI1_SK, Item, Key, LimitError, MAX_ITEM_BYTES, MAX_NESTING, MAX_PARTITION_KEY_BYTES,
    MAX_SORT_KEY_BYTES, Number, PK, SK, Value,
};
pub use retry::{BatchRetry, full_jitter, transact_retrying_conflicts};

/// DynamoDB's limit on one BatchWriteItem call.
pub const MAX_BATCH_WRITE: usize = 25;
/// DynamoDB's limit on one TransactWriteItems call.
pub const MAX_TRANSACT_ITEMS: usize = 100;
/// The largest page a query may ask for.
pub const MAX_QUERY_LIMIT: u32 = 1000;

/// Errors of the store, the same for both backends.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The write's condition did not hold; `current` is the live item it was checked against.
    #[error("condition check failed")]
    ConditionFailed { current: Option<Box<Item>> },
    /// A transaction was cancelled; one reason per operation, in order, and for each operation whose condition
    /// failed, the live item it was checked against (puts and updates; like a failed single write's `current`).
    #[error("transaction cancelled: {}", display_reasons(.reasons))]
    TransactionCanceled { reasons: Vec<CancelReason>, current: Vec<Option<Item>> },
    /// The request itself is invalid (too many items, duplicate keys, changing a key ...): a caller bug.
    #[error("invalid store request: {0}")]
    Validation(String),
    /// Another write was changing the same item at that moment (DynamoDB's `TransactionConflict`): contention
    /// between callers, not an outage. Nothing was written; retrying shortly can work. Never counted against the
    /// store's circuit breaker.
    #[error("write conflict: {0}")]
    Conflict(String),
    /// The backend asked us to slow down; safe to retry later.
    #[error("store throttled: {0}")]
    Throttled(String),
    /// The backend could not be reached or timed out; the write may or may not have happened.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store's circuit breaker is open: the call was not made.
    #[error("store circuit open; retry in {retry_after_secs} s")]
    CircuitOpen { retry_after_secs: u64 },
    /// The item breaks one of DynamoDB's limits (size, number range, key length, nesting).
    #[error("item refused: {0}")]
    Limit(#[from] LimitError),
    /// Anything else (misconfiguration, corrupt data).
    #[error("store failure: {0}")]
    Internal(String),
}

impl StoreError {
    /// A copy for error reporting (the current item of a failed condition is not kept).
    #[must_use]
    pub fn clone_kind(&self) -> Self {
        match self {
            Self::ConditionFailed { .. } => Self::ConditionFailed { current: None },
            Self::TransactionCanceled { reasons, .. } => {
                Self::TransactionCanceled { reasons: reasons.clone(), current: Vec::new() }
            }
            Self::Validation(m) => Self::Validation(m.clone()),
            Self::Conflict(m) => Self::Conflict(m.clone()),
            Self::Throttled(m) => Self::Throttled(m.clone()),
            Self::Unavailable(m) => Self::Unavailable(m.clone()),
            Self::CircuitOpen { retry_after_secs } => Self::CircuitOpen { retry_after_secs: *retry_after_secs },
            Self::Limit(e) => Self::Limit(e.clone()),
            Self::Internal(m) => Self::Internal(m.clone()),
        }
    }

    /// True for errors that say the store is unwell (what its breaker counts): a caller may retry them later.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Throttled(_) | Self::Unavailable(_) | Self::CircuitOpen { .. })
    }

    /// True when the write lost to a concurrent write of the same item: contention, not an outage. A
    /// transaction cancelled only by conflicts (no condition failed) is one.
    pub fn is_conflict(&self) -> bool {
        match self {
            Self::Conflict(_) => true,
            Self::TransactionCanceled { reasons, .. } => {
                reasons.contains(&CancelReason::TransactionConflict)
                    && !reasons.contains(&CancelReason::ConditionalCheckFailed)
            }
            _ => false,
        }
    }
}

/// How a store failure is answered: a limit is the caller's (413 for size, 422 otherwise), an outage is 503 with
/// `Retry-After`, anything else a 500 whose cause stays in the log.
impl crate::problem::ToProblem for StoreError {
    fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Self::Limit(LimitError::TooLarge { .. }) => S::PAYLOAD_TOO_LARGE,
            Self::Limit(_) => S::UNPROCESSABLE_ENTITY,
            e if e.is_conflict() => S::CONFLICT,
            e if e.is_transient() => S::SERVICE_UNAVAILABLE,
            _ => S::INTERNAL_SERVER_ERROR,
        }
    }

    fn problem(&self) -> crate::problem::Problem {
        use crate::problem::Problem;
        let status = self.status();
        match self {
            Self::Limit(e) => Problem::new(status, "item-limit", "Over DynamoDB's item limits")
                .detail(format!("{e}; nothing was stored — send less")),
            e if e.is_conflict() => Problem::new(status, "write-conflict", "Concurrent change")
                .detail("another request was changing the same data at that moment; nothing was changed, retry"),
            e if e.is_transient() => Problem::new(status, "unavailable", "Service Unavailable")
                .detail("the datastore is unavailable; nothing was changed by a failed write, retry later"),
            _ => Problem::for_status(status),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::CircuitOpen { retry_after_secs } => Some(*retry_after_secs),
            e if e.is_transient() || e.is_conflict() => Some(1),
            _ => None,
        }
    }
}

fn display_reasons(reasons: &[CancelReason]) -> String {
    reasons.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// Why one operation of a cancelled transaction failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelReason {
    /// This operation was fine; another one cancelled the transaction.
    None,
    ConditionalCheckFailed,
    /// Another writer touched the item at the same moment.
    TransactionConflict,
    Other(String),
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::ConditionalCheckFailed => f.write_str("ConditionalCheckFailed"),
            Self::TransactionConflict => f.write_str("TransactionConflict"),
            Self::Other(code) => f.write_str(code),
        }
    }
}

/// Which key a query walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Index {
    #[default]
    Primary,
    /// The `gsi1` global secondary index (`gsi1pk`/`gsi1sk`), eventually consistent on DynamoDB.
    Gsi1,
}

impl Index {
    pub(crate) fn key_names(self) -> (&'static str, &'static str) {
        match self {
            Self::Primary => (PK, SK),
            Self::Gsi1 => (GSI1_PK, GSI1_SK),
        }
    }
}

/// Where the previous page of a query stopped. It never leaves the process as is: routes hand clients a sealed
/// form (`crate::paging`), tamper-evident and bound to the query that issued it. Both backends also refuse a
/// cursor outside the query's partition and prefix, so even a bug upstream cannot page into another partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(Position);

/// What a cursor holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Position {
    pub pk: String,
    pub sk: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi: Option<(String, String)>,
}

impl Cursor {
    pub(crate) fn new(position: Position) -> Self {
        Self(position)
    }

    pub(crate) fn position(&self) -> &Position {
        &self.0
    }

    /// A cursor right after `item` in a query on `index`: for a listing that stops inside a page (a filter
    /// filled the answer before the page ended).
    pub fn after_item(item: &Item, index: Index) -> Option<Self> {
        let key = item.key()?;
        let gsi = match index {
            Index::Primary => None,
            Index::Gsi1 => item.gsi1_key().map(|(pk, sk)| (pk.to_owned(), sk.to_owned())),
        };
        if index == Index::Gsi1 && gsi.is_none() {
            return None;
        }
        Some(Self(Position { pk: key.pk, sk: key.sk, gsi }))
    }

    /// The position as bytes, for sealing.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.0).unwrap_or_default()
    }

    /// The position from bytes that were sealed by this service (the seal is checked before this is called).
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok().map(Self)
    }
}

/// A query over one partition, optionally narrowed to sort keys with a prefix.
#[derive(Debug, Clone)]
pub struct Query {
    pub index: Index,
    pub partition: String,
    pub sk_prefix: Option<String>,
    /// Only sort keys from the first to the second, both inclusive (DynamoDB's `BETWEEN`); not with a prefix.
    pub sk_range: Option<(String, String)>,
    /// Items examined per page (expired ones are examined, then hidden — as DynamoDB's Limit works).
    pub limit: u32,
    pub start: Option<Cursor>,
    pub forward: bool,
}

impl Query {
    pub fn partition(partition: impl Into<String>) -> Self {
        Self {
            index: Index::Primary,
            partition: partition.into(),
            sk_prefix: None,
            sk_range: None,
            limit: 100,
            start: None,
            forward: true,
        }
    }
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.sk_prefix = Some(prefix.into());
        self
    }
    #[must_use]
    pub fn between(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.sk_range = Some((from.into(), to.into()));
        self
    }
    #[must_use]
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }
    #[must_use]
    pub fn after(mut self, cursor: Option<Cursor>) -> Self {
        self.start = cursor;
        self
    }
    #[must_use]
    pub fn backward(mut self) -> Self {
        self.forward = false;
        self
    }
    #[must_use]
    pub fn on(mut self, index: Index) -> Self {
        self.index = index;
        self
    }

    /// True when `sk` is one this query can return (its prefix, its range).
    pub(crate) fn sort_key_matches(&self, sk: &str) -> bool {
        let prefix = self.sk_prefix.as_deref().unwrap_or_default();
        let in_range = self.sk_range.as_ref().is_none_or(|(from, to)| sk >= from.as_str() && sk <= to.as_str());
        sk.starts_with(prefix) && in_range
    }

    /// Where a forward scan may start (the prefix or the range's lower end).
    #[cfg(feature = "embedded")]
    pub(crate) fn lowest_sort_key(&self) -> &str {
        match (&self.sk_prefix, &self.sk_range) {
            (Some(prefix), _) => prefix,
            (None, Some((from, _))) => from,
            (None, None) => "",
        }
    }

    /// True when a forward scan at `sk` has passed every key this query can return.
    #[cfg(feature = "embedded")]
    pub(crate) fn past_the_end(&self, sk: &str) -> bool {
        match (&self.sk_prefix, &self.sk_range) {
            (Some(prefix), _) => !sk.starts_with(prefix.as_str()) && sk > prefix.as_str(),
            (None, Some((_, to))) => sk > to.as_str(),
            (None, None) => false,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        if self.limit == 0 || self.limit > MAX_QUERY_LIMIT {
            return Err(StoreError::Validation(format!("query limit must be 1..={MAX_QUERY_LIMIT}")));
        }
        if self.partition.is_empty() {
            return Err(StoreError::Validation("query partition must not be empty".into()));
        }
        if let Some((from, to)) = &self.sk_range
            && (self.sk_prefix.is_some() || from > to)
        {
            return Err(StoreError::Validation("a sort-key range needs from <= to and no prefix".into()));
        }
        if let Some(cursor) = &self.start {
            let p = cursor.position();
            let inside = match (self.index, &p.gsi) {
                (Index::Primary, None) => p.pk == self.partition && self.sort_key_matches(&p.sk),
                (Index::Gsi1, Some((gpk, gsk))) => *gpk == self.partition && self.sort_key_matches(gsk),
                _ => false,
            };
            if !inside {
                return Err(StoreError::Validation("the cursor does not belong to this query".into()));
            }
        }
        Ok(())
    }
}

/// One page of a query.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub items: Vec<Item>,
    /// Present when the query stopped at its limit; pass it back to continue.
    pub next: Option<Cursor>,
}

/// One operation of a batch write.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    Put(Item),
    Delete(Key),
}

impl WriteOp {
    pub fn key(&self) -> Option<Key> {
        match self {
            Self::Put(item) => item.key(),
            Self::Delete(key) => Some(key.clone()),
        }
    }
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum TxOp {
    Put { item: Item, condition: Option<Condition> },
    Update { key: Key, update: Update, condition: Option<Condition> },
    Delete { key: Key, condition: Option<Condition> },
    Check { key: Key, condition: Condition },
}

impl TxOp {
    pub fn key(&self) -> Option<Key> {
        match self {
            Self::Put { item, .. } => item.key(),
            Self::Update { key, .. } | Self::Delete { key, .. } | Self::Check { key, .. } => Some(key.clone()),
        }
    }
}

/// The store interface. Object safe: the app holds an `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Which backend this is (`dynamodb` or `embedded`), for health output and logs.
    fn backend(&self) -> &'static str;

    /// Strongly consistent read of a live item.
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError>;

    /// Writes a whole item if `condition` holds for the live item under its key.
    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), StoreError>;

    /// Applies `update` if `condition` holds; creates the item when absent. Returns the item as written.
    async fn update(&self, key: &Key, update: Update, condition: Option<Condition>) -> Result<Item, StoreError>;

    /// Deletes if `condition` holds; returns the live item that was removed.
    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<Option<Item>, StoreError>;

    /// One page of a partition, in sort-key order.
    async fn query(&self, query: Query) -> Result<Page, StoreError>;

    /// One BatchWriteItem call of at most 25 operations; returns what the backend left unprocessed.
    async fn batch_write_once(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteOp>, StoreError>;

    /// All-or-nothing write of up to 100 operations on distinct items.
    async fn transact_write(&self, ops: Vec<TxOp>) -> Result<(), StoreError>;

    /// Unconditional updates of distinct items, each its own atomic write: not all-or-nothing, so hot counters
    /// never conflict as a transaction's items would. One outcome per update, in order. DynamoDB has no such call:
    /// by default the updates go out side by side, one call each; the embedded store commits them together.
    async fn update_each(&self, updates: Vec<(Key, Update)>) -> Vec<Result<(), StoreError>> {
        let calls =
            updates.into_iter().map(|(key, update)| async move { self.update(&key, update, None).await.map(drop) });
        futures_util::future::join_all(calls).await
    }

    /// A batch write of at most 25 operations, retrying unprocessed items with full-jitter backoff while
    /// `policy` allows. Returns what is still unprocessed (empty when everything is durable).
    async fn batch_write(&self, ops: Vec<WriteOp>, policy: BatchRetry) -> Result<Vec<WriteOp>, StoreError> {
        retry::batch_write_with_retry(self, ops, policy).await
    }
}

/// The shared handle the app passes around.
pub type DynStore = Arc<dyn Store>;

/// Checks shared by both backends before a batch write.
pub(crate) fn validate_batch(ops: &[WriteOp]) -> Result<(), StoreError> {
    if ops.is_empty() || ops.len() > MAX_BATCH_WRITE {
        return Err(StoreError::Validation(format!(
            "a batch write takes 1..={MAX_BATCH_WRITE} operations, got {}",
            ops.len()
        )));
    }
    let mut seen = HashSet::new();
    for op in ops {
        let key = op.key().ok_or_else(|| StoreError::Validation("batch item without a string pk/sk".into()))?;
        if !seen.insert(key) {
            return Err(StoreError::Validation("a batch write must not name the same key twice".into()));
        }
        // DynamoDB refuses the whole call when one item breaks a limit; so do we, before any I/O.
        if let WriteOp::Put(item) = op {
            item.check_limits()?;
        }
    }
    Ok(())
}

/// Checks shared by both backends before a transaction.
pub(crate) fn validate_transaction(ops: &[TxOp]) -> Result<(), StoreError> {
    if ops.is_empty() || ops.len() > MAX_TRANSACT_ITEMS {
        return Err(StoreError::Validation(format!(
            "a transaction takes 1..={MAX_TRANSACT_ITEMS} operations, got {}",
            ops.len()
        )));
    }
    let mut seen = HashSet::new();
    for op in ops {
        let key = op.key().ok_or_else(|| StoreError::Validation("transaction item without a string pk/sk".into()))?;
        if !seen.insert(key) {
            return Err(StoreError::Validation("a transaction must not touch the same item twice".into()));
        }
        match op {
            TxOp::Update { update, .. } => validate_update(update)?,
            TxOp::Put { item, .. } => item.check_limits()?,
            TxOp::Delete { .. } | TxOp::Check { .. } => {}
        }
    }
    Ok(())
}

pub(crate) fn validate_update(update: &Update) -> Result<(), StoreError> {
    update.check_values()?;
    if update.is_empty() {
        return Err(StoreError::Validation("an update must change something".into()));
    }
    let mut seen = HashSet::new();
    for attr in update.attributes() {
        if attr == PK || attr == SK {
            return Err(StoreError::Validation(format!("an update must not change the key attribute {attr}")));
        }
        if !seen.insert(attr) {
            return Err(StoreError::Validation(format!("an update names {attr} twice")));
        }
    }
    Ok(())
}

/// Seconds since the epoch, the unit of `expires_at`.
pub fn now_epoch() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Now, in epoch milliseconds.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// How long a health probe may take before the datastore counts as failing.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The key the health check reads (see [`keys::probe`]).
pub fn probe_key() -> Key {
    keys::probe()
}
