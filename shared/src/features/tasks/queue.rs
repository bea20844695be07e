//! Where queued work goes: an SQS queue on AWS (its messages trigger the worker function), or due-work items in
//! the table, drained by a schedule on Vercel and by `cloudagent serve`'s in-process worker. Either way a piece
//! of work is durable when `enqueue` returns, and the same executor runs it.
//!
//! Tenants share the queue fairly: on SQS each message's group is its tenant (SQS fair queues keep one tenant's
//! backlog from delaying another's); in the table each tenant's due work has its own partition per priority, and
//! a count per tenant says who has work, so the drain takes work round-robin across tenants within a priority.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::model::Priority;
use crate::breaker::Breaker;
use crate::config::tasks::QueueSettings;
use crate::store::{Condition, DynStore, Item, StoreError, TxOp, Update, keys};

/// What a piece of queued work asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkKind {
    /// Run the task.
    Run,
    /// Deliver its completion webhook.
    Deliver,
}

impl WorkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Run => "run",
            Self::Deliver => "deliver",
        }
    }
}

/// One piece of queued work: the message body on SQS, the due-work item in the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Work {
    pub kind: WorkKind,
    pub tenant: String,
    pub task: String,
    pub priority: Priority,
    /// Not before this (epoch ms): SQS delays at most 15 minutes, so a longer wait comes back early and is sent
    /// again for the rest.
    pub due_ms: i64,
}

impl Work {
    fn entry_key(&self) -> crate::store::Key {
        keys::due_entry(self.priority.rank(), self.due_ms, self.kind.as_str(), &self.tenant, &self.task)
    }

    /// The table queue's writes that add this work: its due item, and one more due item in its tenant's entry
    /// among the tenants with due work (which the drain reads to take work round-robin across tenants).
    pub fn table_adds(&self) -> Vec<TxOp> {
        vec![
            TxOp::Put { item: self.to_item(), condition: Some(Condition::NotExists) },
            TxOp::Update {
                key: keys::due_tenant(self.priority.rank(), &self.tenant),
                update: Update::new().add(DUE_COUNT, 1),
                condition: None,
            },
        ]
    }

    /// The due-work item for the table queue.
    pub fn to_item(&self) -> Item {
        Item::new(&self.entry_key()).with("work", serde_json::to_string(self).unwrap_or_default())
    }

    pub fn from_item(item: &Item) -> Option<Self> {
        serde_json::from_str(item.get_str("work")?).ok()
    }
}

/// The count of due items in a tenant's entry among the tenants with due work.
pub const DUE_COUNT: &str = "n";

/// The writes that remove one due item of `tenant` at `rank`: the item (only if it is still there, so the count
/// is decremented once) and one from the tenant's count.
pub fn removes(key: crate::store::Key, rank: u8, tenant: &str) -> Vec<TxOp> {
    vec![
        TxOp::Delete { key, condition: Some(Condition::Exists) },
        TxOp::Update { key: keys::due_tenant(rank, tenant), update: Update::new().add(DUE_COUNT, -1), condition: None },
    ]
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the queue refused the message: {0}")]
    Sqs(String),
}

/// A queue of work. Durable when `enqueue` returns.
#[async_trait]
pub trait Queue: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &'static str;
    async fn enqueue(&self, work: &Work) -> Result<(), QueueError>;
    /// The writes that enqueue `work` inside the transaction creating its task, when this queue lives in the
    /// table (so a task is never stored without its work, nor the reverse); empty otherwise.
    fn in_transaction(&self, work: &Work) -> Vec<TxOp>;
}

/// Due-work items in the table.
#[derive(Debug)]
pub struct TableQueue {
    store: DynStore,
}

impl TableQueue {
    pub fn new(store: DynStore) -> Self {
        Self { store }
    }
}

#[async_trait]
impl Queue for TableQueue {
    fn name(&self) -> &'static str {
        "table"
    }

    async fn enqueue(&self, work: &Work) -> Result<(), QueueError> {
        crate::store::transact_retrying_conflicts(self.store.as_ref(), work.table_adds()).await?;
        Ok(())
    }

    fn in_transaction(&self, work: &Work) -> Vec<TxOp> {
        work.table_adds()
    }
}

/// The longest delay SQS allows on a message.
pub const SQS_MAX_DELAY: Duration = Duration::from_mins(15);

/// An SQS queue.
#[derive(Debug)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    /// Builds the client once (no network I/O here), with the same fail-fast timeouts as the store.
    pub async fn connect(url: &str, endpoint: Option<&str>) -> Self {
        let sdk = crate::aws::sdk_config(None, endpoint, Duration::from_secs(2), Duration::from_secs(5)).await;
        Self { client: aws_sdk_sqs::Client::new(&sdk), url: url.to_owned() }
    }
}

#[async_trait]
impl Queue for SqsQueue {
    fn name(&self) -> &'static str {
        "sqs"
    }

    async fn enqueue(&self, work: &Work) -> Result<(), QueueError> {
        let wait = (work.due_ms - crate::store::now_ms()).max(0);
        let delay = (wait / 1000).min(SQS_MAX_DELAY.as_secs().cast_signed()) as i32;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(serde_json::to_string(work).unwrap_or_default())
            // SQS fair queues: messages grouped by tenant, so one tenant's backlog does not hold up another's.
            .message_group_id(&work.tenant)
            .delay_seconds(delay)
            .send()
            .await
            .map_err(|e| QueueError::Sqs(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?;
        Ok(())
    }

    fn in_transaction(&self, _work: &Work) -> Vec<TxOp> {
        Vec::new()
    }
}

/// SQS behind its breaker, with the table queue standing in: when SQS fails or its breaker is open, work goes
/// to the table (durable all the same), which the scheduled drain works through (on AWS the worker function is
/// also invoked every minute for it). So an SQS outage delays queued work; it does not fail the requests that
/// queue it.
#[derive(Debug)]
pub struct SqsOrTable {
    sqs: SqsQueue,
    table: TableQueue,
    breaker: Arc<Breaker>,
}

impl SqsOrTable {
    pub fn new(sqs: SqsQueue, table: TableQueue, breaker: Arc<Breaker>) -> Self {
        Self { sqs, table, breaker }
    }
}

#[async_trait]
impl Queue for SqsOrTable {
    fn name(&self) -> &'static str {
        "sqs"
    }

    async fn enqueue(&self, work: &Work) -> Result<(), QueueError> {
        let Ok(permit) = Breaker::try_acquire(&*self.breaker) else {
            return self.table.enqueue(work).await;
        };
        match self.sqs.enqueue(work).await {
            Ok(()) => {
                permit.report(false);
                Ok(())
            }
            Err(e) => {
                permit.report(true);
                tracing::warn!(task = %work.task, error = %e, "SQS refused the work; it waits in the table queue");
                self.table.enqueue(work).await
            }
        }
    }

    fn in_transaction(&self, _work: &Work) -> Vec<TxOp> {
        Vec::new()
    }
}

/// The configured queue; SQS comes with its breaker (`sqs` in the instance's registry) and the table behind it.
pub async fn open(settings: &QueueSettings, store: DynStore, breaker: Arc<Breaker>) -> Arc<dyn Queue> {
    match settings {
        QueueSettings::Table => Arc::new(TableQueue::new(store)),
        QueueSettings::Sqs { url, endpoint } => Arc::new(SqsOrTable::new(
            SqsQueue::connect(url, endpoint.as_deref()).await,
            TableQueue::new(store),
            breaker,
        )),
    }
}
