//! Every store call through the store's circuit breaker. Timeouts and retries with backoff happen below, in the
//! AWS SDK (standard retry mode, attempt and operation timeouts); the breaker sees their final outcome, so a
//! failing DynamoDB is not hammered by every request of every instance. Only transient errors count: a failed
//! condition is an answer, not a failure.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Condition, DynStore, Item, Key, Page, Query, Store, StoreError, TxOp, Update, WriteOp};
use crate::breaker::{Breaker, BreakerError};

/// A store behind a circuit breaker.
#[derive(Debug)]
pub struct Guarded {
    inner: DynStore,
    breaker: Arc<Breaker>,
}

impl Guarded {
    pub fn new(inner: DynStore, breaker: Arc<Breaker>) -> Self {
        Self { inner, breaker }
    }

    async fn run<T, F, Fut>(&self, call: F) -> Result<T, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        self.breaker.call(StoreError::is_transient, call).await.map_err(|e| match e {
            BreakerError::Open { retry_after } => {
                StoreError::CircuitOpen { retry_after_secs: retry_after.as_secs().max(1) }
            }
            BreakerError::Inner(e) => e,
        })
    }
}

#[async_trait]
impl Store for Guarded {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.run(|| self.inner.get(key)).await
    }
    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), StoreError> {
        self.run(|| self.inner.put(item, condition)).await
    }
    async fn update(&self, key: &Key, update: Update, condition: Option<Condition>) -> Result<Item, StoreError> {
        self.run(|| self.inner.update(key, update, condition)).await
    }
    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<Option<Item>, StoreError> {
        self.run(|| self.inner.delete(key, condition)).await
    }
    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        self.run(|| self.inner.query(query)).await
    }
    async fn batch_write_once(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteOp>, StoreError> {
        self.run(|| self.inner.batch_write_once(ops)).await
    }
    async fn transact_write(&self, ops: Vec<TxOp>) -> Result<(), StoreError> {
        self.run(|| self.inner.transact_write(ops)).await
    }
    async fn update_each(&self, updates: Vec<(Key, Update)>) -> Vec<Result<(), StoreError>> {
        let n = updates.len();
        let mut outcomes = None;
        // The breaker judges the call by its first transient failure; the caller gets every update's own outcome.
        let judged = self
            .run(|| async {
                let each = self.inner.update_each(updates).await;
                let transient =
                    each.iter().find_map(|r| r.as_ref().err().filter(|e| e.is_transient()).map(StoreError::clone_kind));
                outcomes = Some(each);
                transient.map_or(Ok(()), Err)
            })
            .await;
        match (outcomes, judged) {
            (Some(each), _) => each,
            // Refused by an open breaker: nothing was sent.
            (None, Err(e)) => (0..n).map(|_| Err(e.clone_kind())).collect(),
            (None, Ok(())) => (0..n).map(|_| Ok(())).collect(),
        }
    }
}
