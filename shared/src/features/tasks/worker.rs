//! The three ways queued work reaches the executor:
//! - AWS: SQS invokes the worker function with a batch; failures are reported per message (partial batch
//!   response), so SQS redelivers only those, and after the queue's maxReceiveCount moves them to the DLQ;
//! - Vercel: the cron calls the drain route, which works through the due-work items in the table, high
//!   priority first and round-robin across tenants within a priority, until its budget is spent;
//! - locally: `cloudagent serve` runs the same drain in-process, woken when work is queued.
//!
//! A table item is leased while it is processed; an instance that dies mid-way leaves a lease that expires, and
//! the work is picked up again. Work is removed only after the executor has written its outcome.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::engine::{Engine, Outcome};
use super::model::Priority;
use super::queue::{self, DUE_COUNT, Work};
use crate::http::ApiJson;
use crate::store::{Condition, Item, Query, StoreError, TxOp, Update, keys, now_ms};

/// How long a drain holds a due-work item: longer than any handler's deadline plus a webhook delivery.
const LEASE: Duration = Duration::from_mins(2);
/// Items read per query; processed together.
const PAGE: u32 = 10;

/// What one drain did.
#[derive(Debug, Default, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct DrainReport {
    /// Pieces of work finished (run or delivered, whatever the task's outcome).
    pub done: usize,
    /// Attempts that failed transiently and were put back with a backoff.
    pub retried: usize,
    /// Tasks that ran out of attempts (failed, as dead letters).
    pub dead_lettered: usize,
    /// Items that could not be processed now (store errors); their lease expires and they come back.
    pub errors: usize,
    /// True when the budget ran out with due work left.
    pub budget_exhausted: bool,
}

/// The tenants with due work at `rank`, in a rotating order (so no tenant is always last when there are more
/// tenants than a page holds). Entries whose count reached zero are removed, unless work arrived meanwhile.
async fn tenants_with_work(engine: &Engine, rank: u8) -> Result<Vec<String>, StoreError> {
    let mut tenants = Vec::new();
    let mut after = None;
    loop {
        let page = engine.store().query(Query::partition(keys::due_tenants(rank)).limit(1000).after(after)).await?;
        for item in &page.items {
            let Some(tenant) = item.get_str(crate::store::SK) else { continue };
            if item.get_i64(DUE_COUNT).unwrap_or(0) > 0 {
                tenants.push(tenant.to_owned());
            } else if let Err(e) =
                engine.store().delete(&keys::due_tenant(rank, tenant), Some(Condition::le(DUE_COUNT, 0))).await
                && !matches!(e, StoreError::ConditionFailed { .. })
            {
                tracing::warn!(error = %e, "drain: could not tidy the tenants with due work");
            }
        }
        after = page.next;
        if after.is_none() {
            break;
        }
    }
    if !tenants.is_empty() {
        let start = rand::random_range(0..tenants.len());
        tenants.rotate_left(start);
    }
    Ok(tenants)
}

/// Up to a page of due work at `rank`, taken round-robin across the tenants that have some: the first due item
/// of each tenant, then the second of each, and so on. One tenant's backlog cannot hold another's work back by
/// more than one turn. Tenants are asked in a rotating order until a page's worth of them has due work (a page
/// never needs more tenants than it has places). Work queued before due work was kept per tenant (`DUE#{rank}`) is taken too.
async fn fair_page(engine: &Engine, rank: u8) -> Result<Vec<Item>, StoreError> {
    let now = now_ms();
    let due = |partition: String| Query::partition(partition).between("0", format!("{now:013}~")).limit(PAGE);
    let mut queues = Vec::new();
    let legacy = engine.store().query(due(keys::legacy_due_partition(rank))).await?.items;
    if !legacy.is_empty() {
        queues.push(legacy.into_iter());
    }
    for tenant in tenants_with_work(engine, rank).await? {
        // Each tenant with due work gets at least one place: a page's worth of tenants is enough.
        if queues.len() >= PAGE as usize {
            break;
        }
        let items = engine.store().query(due(keys::due_partition(rank, &tenant))).await?.items;
        if !items.is_empty() {
            queues.push(items.into_iter());
        }
    }
    let mut page = Vec::new();
    while page.len() < PAGE as usize && !queues.is_empty() {
        queues.retain_mut(|items| match items.next() {
            Some(item) if page.len() < PAGE as usize => {
                page.push(item);
                true
            }
            _ => false,
        });
    }
    Ok(page)
}

/// Works through due work, high priority first, until none is due or `budget` is spent. Within a priority, work
/// is taken round-robin across tenants.
pub async fn drain(engine: &Arc<Engine>, budget: Duration) -> DrainReport {
    drain_scoped(engine, budget, false).await
}

/// [`drain`], leaving alone the work this binary cannot do in the time left (task types it does not link, runs
/// whose deadline is longer than the budget left, so none is cut off when the platform ends the invocation): for
/// a function that drains after its response. Skipped work is untouched (not leased, not counted) for a drain that
/// can do it. It reads the first page of each tenant's due work only: work behind a full page of skipped items
/// waits for the scheduled drain.
pub async fn drain_here(engine: &Arc<Engine>, budget: Duration) -> DrainReport {
    drain_scoped(engine, budget, true).await
}

/// After a response that queued work on the table (Vercel), drains due work this binary can run, for at most
/// the configured time: queued tasks run without waiting for a scheduled drain. Nothing happens on SQS (the
/// queue triggers the worker), on Lambda and locally (no `AfterResponse`), or with a zero budget.
pub fn drain_after_response(engine: &Arc<Engine>, after: Option<&crate::runtime::AfterResponse>) {
    let budget = engine.config().tasks.after_response_drain;
    let Some(after) = after else { return };
    if budget.is_zero() || engine.config().tasks.queue != crate::config::tasks::QueueSettings::Table {
        return;
    }
    let engine = engine.clone();
    after.spawn(async move {
        let report = drain_here(&engine, budget).await;
        tracing::debug!(?report, "drained due work after the response");
    });
}

async fn drain_scoped(engine: &Arc<Engine>, budget: Duration, only_here: bool) -> DrainReport {
    let deadline = tokio::time::Instant::now() + budget;
    let mut report = DrainReport::default();
    let mut skipped = std::collections::HashSet::new();
    'passes: loop {
        for priority in Priority::ALL {
            if tokio::time::Instant::now() >= deadline {
                report.budget_exhausted = true;
                break 'passes;
            }
            let items = match fair_page(engine, priority.rank()).await {
                Ok(items) => items,
                Err(e) => {
                    tracing::warn!(error = %e, "drain: cannot read due work");
                    report.errors += 1;
                    break 'passes;
                }
            };
            let mut items: Vec<Item> =
                items.into_iter().filter(|i| i.key().is_none_or(|k| !skipped.contains(&k))).collect();
            if only_here {
                let mut doable = Vec::with_capacity(items.len());
                for item in items {
                    match Work::from_item(&item) {
                        Some(work)
                            if !engine
                                .can_do(&work, deadline.saturating_duration_since(tokio::time::Instant::now()))
                                .await
                                .unwrap_or(false) =>
                        {
                            skipped.extend(item.key());
                        }
                        _ => doable.push(item),
                    }
                }
                items = doable;
            }
            if items.is_empty() {
                continue;
            }
            let mut running = tokio::task::JoinSet::new();
            for item in items {
                let engine = engine.clone();
                running.spawn(async move { process_item(&engine, item).await });
            }
            let mut progressed = false;
            while let Some(joined) = running.join_next().await {
                match joined {
                    Ok(Ok(Some(outcome))) => {
                        progressed = true;
                        match outcome {
                            Outcome::Done => report.done += 1,
                            Outcome::Retry(_) => report.retried += 1,
                            Outcome::DeadLetter => report.dead_lettered += 1,
                        }
                    }
                    // Leased by another drain.
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "drain: work not processed; it comes back when its lease ends");
                        report.errors += 1;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "drain: a worker task stopped");
                        report.errors += 1;
                    }
                }
            }
            if progressed {
                // Higher-priority work may have arrived meanwhile: start again from the top.
                continue 'passes;
            }
        }
        break;
    }
    report
}

/// Applies a due item's removal (or move); an item already gone (another drain took it after our lease ended) is
/// neither removed nor counted twice.
async fn remove(engine: &Engine, ops: Vec<TxOp>) -> Result<(), StoreError> {
    match crate::store::transact_retrying_conflicts(engine.store().as_ref(), ops).await {
        Err(StoreError::TransactionCanceled { reasons, .. })
            if reasons.first() == Some(&crate::store::CancelReason::ConditionalCheckFailed) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// The rank and tenant of a due item's partition (`DUE#{rank}#{tenant}`); `None` for the old layout (`DUE#{rank}`).
fn partition_of(key: &crate::store::Key) -> Option<(u8, &str)> {
    let (rank, tenant) = key.pk.strip_prefix("DUE#")?.split_once('#')?;
    Some((rank.parse().ok()?, tenant))
}

/// The writes that remove the due item at `key`: with its tenant's count, or alone for an item of the old layout.
fn removal(key: crate::store::Key) -> Vec<TxOp> {
    match partition_of(&key).map(|(rank, tenant)| (rank, tenant.to_owned())) {
        Some((rank, tenant)) => queue::removes(key, rank, &tenant),
        None => vec![TxOp::Delete { key, condition: Some(Condition::Exists) }],
    }
}

/// Leases one due-work item, runs it, then removes it (or puts it back with its backoff). `None` when another
/// drain holds it.
async fn process_item(engine: &Engine, item: Item) -> Result<Option<Outcome>, super::TaskError> {
    let Some(key) = item.key() else { return Ok(None) };
    let now = now_ms();
    let free = Condition::AttrNotExists("lease_until".into()).or(Condition::lt("lease_until", now));
    let lease = Update::new().set("lease_until", now + LEASE.as_millis() as i64).add("deliveries", 1);
    let leased = match engine.store().update(&key, lease, Some(Condition::Exists.and(free))).await {
        Ok(leased) => leased,
        Err(StoreError::ConditionFailed { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let deliveries = leased.get_i64("deliveries").and_then(|d| u32::try_from(d).ok()).unwrap_or(1);
    let Some(work) = Work::from_item(&leased) else {
        // Not ours to understand: remove it rather than loop on it forever.
        tracing::error!(key = %key, "drain: unreadable due-work item removed");
        remove(engine, removal(key)).await?;
        return Ok(Some(Outcome::DeadLetter));
    };
    let outcome = engine.process(&work, deliveries).await?;
    match &outcome {
        Outcome::Done | Outcome::DeadLetter => remove(engine, removal(key)).await?,
        Outcome::Retry(after) => {
            let again = Work { due_ms: now_ms() + after.as_millis() as i64, ..work };
            let item = again.to_item().with("deliveries", i64::from(deliveries));
            // Only while the item is still there: if another drain took it after our lease ended and finished
            // it, it is not queued twice (nor counted twice).
            let mut ops = vec![TxOp::Delete { key: key.clone(), condition: Some(Condition::Exists) }];
            if partition_of(&key).is_some() {
                // The same tenant partition: its count of due items is unchanged.
                ops.push(TxOp::Put { item, condition: None });
            } else {
                // An item of the old layout moves into its tenant's partition, and is counted there.
                ops.extend(again.table_adds().into_iter().map(|op| match op {
                    TxOp::Put { .. } => TxOp::Put { item: item.clone(), condition: None },
                    other => other,
                }));
            }
            remove(engine, ops).await?;
        }
    }
    Ok(Some(outcome))
}

/// The scheduled drain (Vercel cron, every minute): works through due tasks and webhook retries for at most
/// the configured budget.
#[utoipa::path(
    get,
    path = "/api/v1/tasks/drain",
    operation_id = "drainTasks",
    tag = "tasks",
    responses((status = 200, body = DrainReport, description = "What this drain did"))
)]
pub async fn drain_route(
    State(engine): State<Arc<Engine>>,
    State(config): State<Arc<crate::config::Config>>,
) -> ApiJson<DrainReport> {
    ApiJson(drain(&engine, config.tasks.drain_budget).await)
}

/// Runs the drain in this process until the process ends: `cloudagent serve`'s worker. It wakes when this
/// instance queues work, and every second for work that comes due.
pub fn spawn_local(state: &crate::state::AppState) -> tokio::task::JoinHandle<()> {
    let engine = state.part::<Engine>();
    tokio::spawn(async move {
        loop {
            let report = drain(&engine, Duration::from_secs(30)).await;
            if report.done + report.retried + report.dead_lettered > 0 {
                tracing::debug!(?report, "local worker drained due work");
                continue;
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), engine.wake.notified()).await;
        }
    })
}

/// An SQS event, as Lambda delivers it (only the fields the worker reads).
#[derive(Debug, Deserialize)]
pub struct SqsEvent {
    #[serde(rename = "Records", default)]
    pub records: Vec<SqsMessage>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SqsMessage {
    pub message_id: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub attributes: SqsAttributes,
}

#[derive(Debug, Default, Deserialize)]
pub struct SqsAttributes {
    #[serde(rename = "ApproximateReceiveCount", default)]
    pub approximate_receive_count: Option<String>,
}

/// The partial batch response: the messages SQS must deliver again.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct SqsBatchResponse {
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<SqsItemFailure>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct SqsItemFailure {
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

/// Processes one SQS batch: high priority first, all concurrently. A message is reported failed when its work
/// failed transiently (SQS redelivers it after the visibility timeout), when its task ran out of attempts (the
/// redrive policy moves it to the dead-letter queue), or when it cannot be read at all (a poison message, which
/// goes the same way).
pub async fn sqs_batch(engine: &Arc<Engine>, event: SqsEvent) -> SqsBatchResponse {
    let mut failures = Vec::new();
    let mut work = Vec::new();
    for message in event.records {
        match serde_json::from_str::<Work>(&message.body) {
            Ok(w) => {
                let receives = message
                    .attributes
                    .approximate_receive_count
                    .as_deref()
                    .and_then(|c| c.parse::<u32>().ok())
                    .unwrap_or(1);
                work.push((message.message_id, w, receives));
            }
            Err(e) => {
                tracing::error!(message_id = %message.message_id, error = %e, "worker: unreadable message (poison)");
                failures.push(SqsItemFailure { item_identifier: message.message_id });
            }
        }
    }
    work.sort_by_key(|(_, w, _)| w.priority);
    let running: Vec<_> = work
        .into_iter()
        .map(|(id, w, receives)| {
            let engine = engine.clone();
            (id, tokio::spawn(async move { engine.process(&w, receives).await }))
        })
        .collect();
    for (id, handle) in running {
        match handle.await {
            Ok(Ok(Outcome::Done)) => {}
            Ok(Ok(outcome)) => {
                tracing::info!(message_id = %id, ?outcome, "worker: message goes back to the queue");
                failures.push(SqsItemFailure { item_identifier: id });
            }
            Ok(Err(e)) => {
                tracing::warn!(message_id = %id, error = %e, "worker: message not processed");
                failures.push(SqsItemFailure { item_identifier: id });
            }
            Err(e) => {
                tracing::error!(message_id = %id, error = %e, "worker: processing stopped");
                failures.push(SqsItemFailure { item_identifier: id });
            }
        }
    }
    failures.sort_by(|a, b| a.item_identifier.cmp(&b.item_identifier));
    SqsBatchResponse { batch_item_failures: failures }
}

/// How long a scheduled drain of the worker may run: under the function's 60 s timeout, with room to settle.
pub const SCHEDULED_DRAIN_BUDGET: Duration = Duration::from_secs(45);

/// One invocation of the worker: a batch from SQS, or the schedule's tick (an EventBridge `Scheduled Event`),
/// which drains the table queue, where work waits when SQS refused it or its breaker was open.
pub async fn worker_event(engine: &Arc<Engine>, event: serde_json::Value) -> serde_json::Value {
    if event.get("detail-type").and_then(|t| t.as_str()) == Some("Scheduled Event") {
        let report = drain(engine, SCHEDULED_DRAIN_BUDGET).await;
        tracing::info!(?report, "scheduled drain of the table queue");
        return serde_json::to_value(report).unwrap_or_default();
    }
    let batch = match serde_json::from_value::<SqsEvent>(event) {
        Ok(batch) => sqs_batch(engine, batch).await,
        // Not an event this function is wired to: nothing to redeliver, and the log says what came.
        Err(e) => {
            tracing::error!(error = %e, "worker: an event that is neither an SQS batch nor the schedule's tick");
            SqsBatchResponse::default()
        }
    };
    serde_json::to_value(batch).unwrap_or_default()
}

/// Runs the task worker: an AWS Lambda function that SQS invokes with batches of queued work (see
/// this module). It answers with the messages to deliver again (partial batch response). `types`: the task types
/// it runs (all of them: route functions queue the ones they do not link).
pub fn run(types: super::types::TaskTypes) -> std::process::ExitCode {
    use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};

    crate::telemetry::init();
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if crate::config::Platform::detect(&env) != crate::config::Platform::Lambda {
        eprintln!(
            "task-worker: this is the SQS-triggered worker for AWS Lambda (AWS_LAMBDA_RUNTIME_API is not set).\n\
             On Vercel the cron calls /api/v1/tasks/drain; locally `cloudagent serve` runs the worker itself."
        );
        return std::process::ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("task-worker: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let state = match crate::runtime::init_state().await {
            Ok(state) => state.provide(types),
            Err(message) => {
                tracing::error!(function = "task-worker", %message, "start-up failed");
                eprintln!("task-worker: {message}");
                return std::process::ExitCode::FAILURE;
            }
        };
        let engine = state.part::<Engine>();
        tracing::info!(function = "task-worker", store = state.store().backend(), "worker started");
        let handler = service_fn(move |event: LambdaEvent<serde_json::Value>| {
            let engine = engine.clone();
            async move { Ok::<_, lambda_runtime::Error>(worker_event(&engine, event.payload).await) }
        });
        match lambda_runtime::run(handler).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(function = "task-worker", error = %e, "runtime stopped");
                std::process::ExitCode::FAILURE
            }
        }
    })
}
