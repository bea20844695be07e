//! Retrying the unprocessed part of a batch write: full-jitter exponential backoff inside a time budget.

use std::time::Duration;

use rand::Rng as _;
use tokio::time::Instant;

use super::{Store, StoreError, TxOp, WriteOp};

/// How hard a batch write retries what DynamoDB left unprocessed.
#[derive(Debug, Clone, Copy)]
pub struct BatchRetry {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
    /// Give up (and report the rest unprocessed) rather than sleep past this instant.
    pub deadline: Option<Instant>,
}

impl Default for BatchRetry {
    fn default() -> Self {
        Self { max_attempts: 8, base: Duration::from_millis(25), cap: Duration::from_secs(1), deadline: None }
    }
}

/// AWS's "full jitter": sleep a uniform random time in [0, min(cap, base * 2^attempt)].
pub fn full_jitter(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let ceiling = base.saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX)).min(cap);
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=millis))
}

pub(super) async fn batch_write_with_retry<S: Store + ?Sized>(
    store: &S,
    ops: Vec<WriteOp>,
    policy: BatchRetry,
) -> Result<Vec<WriteOp>, StoreError> {
    let mut pending = store.batch_write_once(ops).await?;
    let mut attempt = 0;
    while !pending.is_empty() && attempt + 1 < policy.max_attempts {
        let pause = full_jitter(policy.base, policy.cap, attempt);
        if policy.deadline.is_some_and(|d| Instant::now() + pause >= d) {
            break;
        }
        tokio::time::sleep(pause).await;
        attempt += 1;
        pending = match store.batch_write_once(pending.clone()).await {
            Ok(rest) => rest,
            // A throttled retry leaves the same items pending; anything else is the caller's to see.
            Err(StoreError::Throttled(_)) => pending,
            Err(e) => return Err(e),
        };
    }
    Ok(pending)
}

/// Attempts of a transaction that keeps meeting concurrent writes of the same items.
const CONFLICT_ATTEMPTS: u32 = 5;

/// Runs a transaction, trying again (full jitter, 10 ms doubling to 200 ms, 5 attempts in all) while DynamoDB
/// cancels it for a conflict with a concurrent write of one of its items — the retry AWS recommends for
/// `TransactionConflict`. Transactions that touch a shared counter (a tenant's queued tasks, its due work) meet
/// each other under bursts; any other failure, or a conflict that outlasts the attempts, is the caller's.
pub async fn transact_retrying_conflicts<S: Store + ?Sized>(store: &S, ops: Vec<TxOp>) -> Result<(), StoreError> {
    let mut attempt = 0;
    loop {
        match store.transact_write(ops.clone()).await {
            Err(e) if e.is_conflict() && attempt + 1 < CONFLICT_ATTEMPTS => {
                tokio::time::sleep(full_jitter(Duration::from_millis(10), Duration::from_millis(200), attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use crate::store::{Condition, Item, Key, Page, Query, TxOp, Update};

    /// DynamoDB returns UnprocessedItems under throttling, which DynamoDB Local never does. This wrapper plays
    /// only that part of the cloud: it writes all but the last item through the real embedded store for the
    /// first `stingy_calls` calls and hands the rest back as unprocessed.
    #[derive(Debug)]
    struct Throttling {
        inner: EmbeddedStore,
        stingy_calls: usize,
        calls: AtomicUsize,
    }

    #[async_trait]
    impl Store for Throttling {
        fn backend(&self) -> &'static str {
            "throttling"
        }
        async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
            self.inner.get(key).await
        }
        async fn put(&self, item: Item, c: Option<Condition>) -> Result<(), StoreError> {
            self.inner.put(item, c).await
        }
        async fn update(&self, key: &Key, u: Update, c: Option<Condition>) -> Result<Item, StoreError> {
            self.inner.update(key, u, c).await
        }
        async fn delete(&self, key: &Key, c: Option<Condition>) -> Result<Option<Item>, StoreError> {
            self.inner.delete(key, c).await
        }
        async fn query(&self, q: Query) -> Result<Page, StoreError> {
            self.inner.query(q).await
        }
        async fn transact_write(&self, ops: Vec<TxOp>) -> Result<(), StoreError> {
            self.inner.transact_write(ops).await
        }
        async fn batch_write_once(&self, mut ops: Vec<WriteOp>) -> Result<Vec<WriteOp>, StoreError> {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            if call < self.stingy_calls && ops.len() > 1 {
                let rest = ops.split_off(ops.len() / 2);
                self.inner.batch_write_once(ops).await?;
                return Ok(rest);
            }
            self.inner.batch_write_once(ops).await
        }
    }

    fn ops(n: usize) -> Vec<WriteOp> {
        (0..n).map(|i| WriteOp::Put(Item::new(&Key::new("P", format!("{i:02}"))))).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn unprocessed_items_are_retried_until_written() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Throttling { inner: EmbeddedStore::open(dir.path()).unwrap(), stingy_calls: 3, calls: AtomicUsize::new(0) };
        let left = store.batch_write(ops(25), BatchRetry::default()).await.unwrap();
        assert!(left.is_empty());
        assert_eq!(store.calls.load(Ordering::SeqCst), 4);
        assert_eq!(store.query(Query::partition("P")).await.unwrap().items.len(), 25);
    }

    #[tokio::test(start_paused = true)]
    async fn what_cannot_be_written_in_budget_is_reported_not_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Throttling {
            inner: EmbeddedStore::open(dir.path()).unwrap(),
            stingy_calls: 100,
            calls: AtomicUsize::new(0),
        };
        let policy = BatchRetry { max_attempts: 3, ..BatchRetry::default() };
        let left = store.batch_write(ops(24), policy).await.unwrap();
        let written = store.query(Query::partition("P")).await.unwrap().items.len();
        assert_eq!(store.calls.load(Ordering::SeqCst), 3);
        assert!(!left.is_empty());
        assert_eq!(written + left.len(), 24, "every item is either durable or handed back");
    }

    #[test]
    fn full_jitter_stays_under_the_cap() {
        for attempt in 0..30 {
            let d = full_jitter(Duration::from_millis(25), Duration::from_secs(1), attempt);
            assert!(d <= Duration::from_secs(1));
        }
        assert!(full_jitter(Duration::from_millis(25), Duration::from_secs(1), 0) <= Duration::from_millis(25));
    }
}
