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
}
