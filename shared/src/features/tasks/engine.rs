//! The one executor behind both API versions, the SQS worker, the scheduled drain and the local worker: it
//! stores a task before anything is acknowledged, runs it (in the request, or from the queue), settles it with a
//! conditional write (a cancelled task stays cancelled), counts it, and queues its webhook.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value as Json, json};
use sha2::Digest as _;

use cloud_agent_handlers::{Context, Descriptor, Failure, InputError, TaskInfo};

use super::model::{DeliveryState, Mode, Priority, STATUS_ATTR, Status, TaskId, TaskRecord, Webhook};
use super::queue::{self, Queue, QueueError, Work, WorkKind};
use super::types::{TaskTypes, rejection_problem};
use super::webhooks::{self, WebhookSecrets};
use super::{TaskError, stats};
use crate::auth::Operator;
use crate::config::Config;
use crate::http::Problem;
use crate::state::{AppState, Part};
use crate::store::{Condition, DynStore, Item, StoreError, TxOp, Update, keys, now_ms};
use cloud_agent_handlers::outbound::{Outbound, Policy};

/// What an edge (v2 or v3) asks for, parsed.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub handler: &'static Descriptor,
    pub input: Json,
    pub priority: Priority,
    pub webhook: Option<String>,
    pub idempotency_key: Option<String>,
    pub timeout_ms: Option<u64>,
    pub asynchronous: bool,
    /// Where the input sits in the request (`/payload`, `/task_data`, `/tasks/3/task_data`): input problems
    /// point there.
    pub input_pointer: String,
}

/// What a submission came to.
#[derive(Debug)]
pub enum Submitted {
    /// Ran in the request; the record is final (or was cancelled while it ran).
    Ran(TaskRecord),
    /// On the queue.
    Queued(TaskRecord),
    /// The idempotency key named an existing task with the same input: that task, as it is now.
    Existing(TaskRecord),
}

/// What processing one piece of queued work decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done with it (the task is settled, or there was nothing to do).
    Done,
    /// The attempt failed transiently: deliver the work again after this long.
    Retry(Duration),
    /// Out of attempts: the task is failed; the queue keeps the work as dead (SQS moves it to the DLQ).
    DeadLetter,
}

/// The longest input a queued task may carry: the task item must stay under DynamoDB's 400 KB.
pub const MAX_QUEUED_INPUT_BYTES: usize = 256 * 1024;
/// The largest result kept in the task item; a larger one is still answered to a synchronous caller.
pub const MAX_STORED_RESULT_BYTES: usize = 300 * 1024;
/// Margin between a synchronous task's deadline and the request's own.
const SYNC_MARGIN: Duration = Duration::from_millis(1500);
/// A running task older than its timeout plus this is treated as abandoned (its instance died).
const ABANDONED_AFTER: Duration = Duration::from_secs(30);
/// Idempotency keys are remembered for a day.
const IDEMPOTENCY_TTL_SECS: i64 = 86_400;
/// The count of a tenant's unfinished queued tasks (`keys::queued_count`).
const QUEUED_COUNT: &str = "n";

/// The write that gives one place back under a tenant's cap of queued tasks.
fn give_back(tenant: &str) -> TxOp {
    TxOp::Update { key: keys::queued_count(tenant), update: Update::new().add(QUEUED_COUNT, -1), condition: None }
}

/// The executor: a feature part, built once per instance.
#[derive(Debug)]
pub struct Engine {
    store: DynStore,
    config: Arc<Config>,
    outbound: Outbound,
    secrets: WebhookSecrets,
    types: Arc<TaskTypes>,
    breakers: Arc<crate::breaker::Registry>,
    queue: tokio::sync::OnceCell<Arc<dyn Queue>>,
    /// Wakes the local worker when work is queued.
    pub(super) wake: Arc<tokio::sync::Notify>,
}

impl Part for Engine {
    fn build(state: &AppState) -> Self {
        let config = state.config();
        let types = state.part::<TaskTypes>();
        // Handlers' own breakers (the model endpoint's) are listed and alerted on with the instance's.
        for kind in types.registry().types() {
            for breaker in kind.breakers() {
                state.breakers().register(breaker);
            }
        }
        Self {
            store: state.store().clone(),
            // A minute at most per request: a model's answer takes that long; handlers that call faster services
            // (webhook, health-check, api-tester: 5 s; webhook delivery: 15 s) ask for less.
            outbound: Outbound::new(Policy {
                allow_loopback: config.tasks.allow_loopback,
                timeout: Duration::from_mins(1),
                ..Policy::default()
            }),
            secrets: WebhookSecrets::derive(&config.secrets.agent),
            types,
            breakers: axum::extract::FromRef::from_ref(state),
            config: Arc::new(config.clone()),
            queue: tokio::sync::OnceCell::new(),
            wake: Arc::new(tokio::sync::Notify::new()),
        }
    }
}

fn canonical_hash(value: &Json) -> String {
    // serde_json's maps are ordered (no preserve_order): the text is canonical for equal values.
    crate::config::secrets::hex(&sha2::Sha256::digest(value.to_string().as_bytes()))
}

fn digest_hex(text: &str) -> String {
    crate::config::secrets::hex(&sha2::Sha256::digest(text.as_bytes()))
}

fn problem_json(problem: &Problem) -> Json {
    serde_json::to_value(problem).unwrap_or(Json::Null)
}

/// The problem of a failure that is not retried: an input refusal (422, pointing into the request) or a
/// rejection with its own problem.
fn failure_problem(failure: &Failure, pointer_base: &str) -> Problem {
    match failure {
        Failure::Input(e) => input_problem(e, pointer_base),
        Failure::Rejected(rejection) => rejection_problem(rejection, pointer_base),
        Failure::Transient(message) => gave_up(1, message),
        Failure::TimedOut => Problem::new(http::StatusCode::GATEWAY_TIMEOUT, "task-timed-out", "Task timed out"),
    }
}

/// A task whose type this binary cannot run (a worker built without it, or a type removed since it was queued).
fn not_run_here(kind: &str) -> cloud_agent_handlers::Rejection {
    cloud_agent_handlers::Rejection::new(
        422,
        "unknown-task-type",
        "Unknown task type",
        format!("this deployment has no handler {kind:?}"),
    )
}

/// A task's problem for an input refusal: 422, pointing into the request.
fn input_problem(e: &InputError, pointer_base: &str) -> Problem {
    let mut p = Problem::new(http::StatusCode::UNPROCESSABLE_ENTITY, "invalid-task-input", "Invalid task input")
        .detail(e.detail.clone());
    p.pointer = Some(format!("{pointer_base}{}", e.pointer));
    p
}

impl Engine {
    pub fn store(&self) -> &DynStore {
        &self.store
    }

    pub fn secrets(&self) -> &WebhookSecrets {
        &self.secrets
    }

    pub fn outbound(&self) -> &Outbound {
        &self.outbound
    }

    /// The task types this binary knows.
    pub fn types(&self) -> &cloud_agent_handlers::Registry {
        self.types.registry()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub async fn queue(&self) -> &Arc<dyn Queue> {
        self.queue
            .get_or_init(|| async {
                let settings = &self.config.tasks.queue;
                queue::open(settings, self.store.clone(), self.breakers.breaker("sqs", self.config.breaker)).await
            })
            .await
    }

    fn retention_secs(&self) -> i64 {
        i64::try_from(self.config.tasks.retention.as_secs()).unwrap_or(i64::MAX / 2)
    }

    /// The deadline a synchronous task can have inside this request.
    fn sync_budget(&self) -> Duration {
        self.config.request_timeout.saturating_sub(SYNC_MARGIN)
    }

    /// Who signs the webhooks of tasks this operator creates: its key (and, while the key is being rotated, the
    /// replacement too); operators without a key (bootstrap, identity provider) sign with their tenant's secret.
    pub fn signers(operator: &Operator) -> Vec<String> {
        match operator.key() {
            Some(key) => {
                let mut ids = vec![key.id.to_string()];
                ids.extend(key.replaced_by.as_ref().map(ToString::to_string));
                ids
            }
            None => vec![format!("tenant:{}", operator.tenant)],
        }
    }

    /// Stores the task, then runs it in the request or queues it. Nothing is acknowledged before it is durable.
    pub async fn submit(&self, operator: &Operator, new: NewTask) -> Result<Submitted, TaskError> {
        let tenant = operator.tenant.as_str().to_owned();
        let timeout_ms = new.timeout_ms.unwrap_or(new.handler.limits.default_timeout_ms);
        let kind = self.types().find(new.handler.name).ok_or_else(|| TaskError::NotFound(new.handler.name.into()))?;
        // A type whose code this binary does not link runs on the queue, in the worker that does.
        let asynchronous = new.asynchronous
            || new.handler.long
            || !kind.runs_here()
            || Duration::from_millis(timeout_ms) > self.sync_budget();
        let input_hash = canonical_hash(&json!({"type": new.handler.name, "input": new.input}));
        if asynchronous && new.input.to_string().len() > MAX_QUEUED_INPUT_BYTES {
            return Err(TaskError::QueuedInputTooLarge { pointer: new.input_pointer.clone() });
        }
        let now = now_ms();
        let id = TaskId::generate();
        let info = TaskInfo { id: id.to_string(), tenant: tenant.clone(), kind: kind.name().into(), attempt: 1 };
        kind.before(&info, &new.input)
            .map_err(|rejection| TaskError::Rejected(Box::new(rejection), new.input_pointer.clone()))?;
        let mut record = TaskRecord {
            id: id.clone(),
            kind: new.handler.name.to_owned(),
            status: if asynchronous { Status::Queued } else { Status::Running },
            priority: new.priority,
            mode: if asynchronous { Mode::Async } else { Mode::Sync },
            input_hash: input_hash.clone(),
            input: asynchronous.then(|| new.input.clone()),
            result: None,
            problem: None,
            attempts: u32::from(!asynchronous),
            max_attempts: self.config.tasks.max_attempts,
            timeout_ms,
            created_ms: now,
            started_ms: (!asynchronous).then_some(now),
            finished_ms: None,
            duration_ms: None,
            webhook: new.webhook.as_ref().map(|url| Webhook {
                url: url.clone(),
                state: DeliveryState::Pending,
                message_id: format!("msg_{}", id.as_str().trim_start_matches("t_")),
                attempts: Vec::new(),
                next_attempt_ms: None,
            }),
            idempotency_key: new.idempotency_key.clone(),
            created_by: operator.actor.clone(),
            tenant: tenant.clone(),
            signers: Engine::signers(operator),
            expires_at: None,
        };
        let work = Work {
            kind: WorkKind::Run,
            tenant: tenant.clone(),
            task: id.to_string(),
            priority: new.priority,
            due_ms: now,
        };
        let mut ops = vec![TxOp::Put { item: record.to_item(), condition: Some(Condition::NotExists) }];
        let idem_key = new.idempotency_key.as_deref().map(|k| keys::job_idempotency(&tenant, &digest_hex(k)));
        if let Some(key) = &idem_key {
            let item = Item::new(key)
                .with("task_id", id.as_str())
                .with("input_hash", input_hash.as_str())
                .with(crate::store::EXPIRES_AT, now / 1000 + IDEMPOTENCY_TTL_SECS);
            ops.push(TxOp::Put { item, condition: Some(Condition::NotExists) });
        }
        let queue = if asynchronous { Some(self.queue().await.clone()) } else { None };
        // A queued task counts against its tenant's cap until it finishes (settle and cancel give it back).
        let cap_at = asynchronous.then(|| {
            let cap = self.config.tasks.queued_cap;
            let under = Condition::NotExists.or(Condition::lt(QUEUED_COUNT, i64::from(cap)));
            ops.push(TxOp::Update {
                key: keys::queued_count(&tenant),
                update: Update::new().add(QUEUED_COUNT, 1),
                condition: Some(under),
            });
            ops.len() - 1
        });
        if let Some(queue) = &queue {
            ops.extend(queue.in_transaction(&work));
        }
        match crate::store::transact_retrying_conflicts(self.store.as_ref(), ops).await {
            Ok(()) => {}
            Err(StoreError::TransactionCanceled { reasons, .. })
                if idem_key.is_some()
                    && reasons.get(1) == Some(&crate::store::CancelReason::ConditionalCheckFailed) =>
            {
                return self.replay(&tenant, idem_key.as_ref().expect("checked"), &input_hash).await;
            }
            Err(StoreError::TransactionCanceled { reasons, .. })
                if cap_at
                    .is_some_and(|at| reasons.get(at) == Some(&crate::store::CancelReason::ConditionalCheckFailed)) =>
            {
                return Err(TaskError::QueueFull { cap: self.config.tasks.queued_cap });
            }
            // Another request with the same key was writing it at that moment: its task, once stored, is the
            // answer; until then the caller is told to retry (409 with Retry-After), never that the store is down.
            Err(e) if idem_key.is_some() && e.is_conflict() => {
                return self.replay(&tenant, idem_key.as_ref().expect("checked"), &input_hash).await;
            }
            Err(e) => return Err(e.into()),
        }
        if let Some(queue) = queue {
            if queue.in_transaction(&work).is_empty()
                && let Err(e) = queue.enqueue(&work).await
            {
                // Not acknowledged: take the task back so a retry (same idempotency key) starts clean.
                let mut undo = vec![TxOp::Delete { key: record.key(), condition: None }];
                undo.extend(idem_key.map(|key| TxOp::Delete { key, condition: None }));
                undo.push(give_back(&tenant));
                if let Err(undo_error) = crate::store::transact_retrying_conflicts(self.store.as_ref(), undo).await {
                    tracing::error!(task = %id, error = %undo_error, "could not remove a task whose enqueue failed");
                }
                return Err(e.into());
            }
            self.wake.notify_one();
            return Ok(Submitted::Queued(record));
        }
        self.run_in_request(&mut record, new.input, &new.input_pointer).await;
        Ok(Submitted::Ran(record))
    }

    async fn replay(
        &self,
        tenant: &str,
        idem_key: &crate::store::Key,
        input_hash: &str,
    ) -> Result<Submitted, TaskError> {
        let Some(item) = self.store.get(idem_key).await? else {
            // The other request's transaction lost too, or the key just expired: the caller may retry.
            return Err(TaskError::IdempotencyRace);
        };
        if item.get_str("input_hash") != Some(input_hash) {
            return Err(TaskError::IdempotencyMismatch);
        }
        let id = item.get_str("task_id").and_then(|t| TaskId::parse(t).ok()).ok_or(TaskError::IdempotencyRace)?;
        Ok(Submitted::Existing(self.get(tenant, &id).await?))
    }

    /// Runs a stored `running` task inside the request, retrying transient failures while its deadline allows.
    async fn run_in_request(&self, record: &mut TaskRecord, input: Json, pointer: &str) {
        let deadline = Duration::from_millis(record.timeout_ms).min(self.sync_budget());
        let started = tokio::time::Instant::now();
        let outcome = loop {
            let left = deadline.saturating_sub(started.elapsed());
            match tokio::time::timeout(left, self.attempt(record, input.clone())).await {
                Err(_) => {
                    self.timed_out(record);
                    break Err(None);
                }
                Ok(Ok(result)) => break Ok(result),
                Ok(Err(Failure::Transient(message))) => {
                    let backoff = backoff(record.attempts);
                    if record.attempts >= record.max_attempts || started.elapsed() + backoff >= deadline {
                        break Err(Some(gave_up(record.attempts, &message)));
                    }
                    tokio::time::sleep(backoff).await;
                    record.attempts += 1;
                }
                Ok(Err(failure)) => break Err(Some(failure_problem(&failure, pointer))),
            }
        };
        // A synchronous caller gets the outcome either way; a failure to store it is logged inside.
        let _ = self.settle(record, outcome, started.elapsed()).await;
    }

    /// One attempt of a task's handler, with its hooks. A type this binary does not run is an input problem of
    /// the deployment, not a retryable one.
    async fn attempt(&self, record: &TaskRecord, input: Json) -> Result<Json, Failure> {
        let info = Self::info(record);
        let cx = Context::new(self.outbound.clone(), info);
        match self.types().find(&record.kind) {
            Some(kind) => match kind.run(cx, input).await {
                Some(outcome) => outcome,
                None => Err(Failure::Rejected(not_run_here(&record.kind))),
            },
            None => Err(Failure::Rejected(not_run_here(&record.kind))),
        }
    }

    fn info(record: &TaskRecord) -> TaskInfo {
        TaskInfo {
            id: record.id.to_string(),
            tenant: record.tenant.clone(),
            kind: record.kind.clone(),
            attempt: record.attempts.max(1),
        }
    }

    /// Tells the type's `on_error` hooks that an attempt ran out of time.
    fn timed_out(&self, record: &TaskRecord) {
        if let Some(kind) = self.types().find(&record.kind) {
            kind.failed(&Self::info(record), &Failure::TimedOut);
        }
    }

    /// Writes a finished run: only over a `running` record (a cancel that came first wins), then counts it and
    /// queues its webhook. `outcome`: the result, a problem, or `None` for a deadline that passed. An error means
    /// the outcome is not stored (the record holds it locally): queued work must then run again, not be removed.
    async fn settle(
        &self,
        record: &mut TaskRecord,
        outcome: Result<Json, Option<Problem>>,
        took: Duration,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let (status, result, problem) = match outcome {
            Ok(result) => (Status::Succeeded, Some(result), None),
            Err(None) => {
                let p = Problem::new(http::StatusCode::GATEWAY_TIMEOUT, "task-timed-out", "Task timed out").detail(
                    format!(
                        "task {} ran past its {} ms deadline and was stopped; nothing partial was kept. Ask for a \
                         longer timeout_ms (at most {} ms for {}) or run it with async",
                        record.id,
                        record.timeout_ms.min(self.sync_budget().as_millis() as u64),
                        self.types().find(&record.kind).map_or(0, |h| h.descriptor().limits.max_timeout_ms),
                        record.kind
                    ),
                );
                (Status::TimedOut, None, Some(p))
            }
            Err(Some(p)) if p.status == 422 => (Status::Failed, None, Some(p)),
            Err(Some(p)) => (Status::Failed, None, Some(p)),
        };
        let mut update = Update::new()
            .set(STATUS_ATTR, status.as_str())
            .set("finished_ms", now)
            .set("duration_ms", took.as_millis() as i64)
            .set("attempts", i64::from(record.attempts))
            .set(crate::store::EXPIRES_AT, now / 1000 + self.retention_secs());
        let stored_result = result.as_ref().filter(|r| r.to_string().len() <= MAX_STORED_RESULT_BYTES);
        if let Some(r) = stored_result {
            update = update.set("result", r.to_string());
        } else if result.is_some() {
            update = update.set("result", json!({"stored": false, "reason": "the result is larger than the task record keeps; it was returned to the synchronous caller"}).to_string());
        }
        if let Some(p) = &problem {
            update = update.set("problem", problem_json(p).to_string());
        }
        if record.input.is_some() {
            // The input was only kept to run the task.
            update = update.remove("input");
        }
        let running = Condition::eq(STATUS_ATTR, Status::Running.as_str());
        let written = if record.mode == Mode::Async {
            self.finish_queued(&record.key(), &record.tenant, update, running).await
        } else {
            self.store.update(&record.key(), update, Some(running)).await.map(Some)
        };
        match written {
            Ok(Some(item)) => {
                if let Some(mut stored) = TaskRecord::from_item(&item) {
                    // The caller of a synchronous task gets the whole result even when the record could not keep it.
                    stored.result = result.or(stored.result);
                    *record = stored;
                }
            }
            // Written, but not read back: the record is what was written.
            Ok(None) => {
                record.status = status;
                record.finished_ms = Some(now);
                record.duration_ms = Some(took.as_millis() as u64);
                record.result = result;
                record.problem = problem.as_ref().map(problem_json);
                record.input = None;
            }
            Err(StoreError::ConditionFailed { current }) => {
                // Cancelled (or settled by another attempt) while it ran: that state stands.
                if let Some(stored) = current.as_deref().and_then(TaskRecord::from_item) {
                    *record = stored;
                }
                return Ok(());
            }
            Err(e) => {
                tracing::error!(task = %record.id, error = %e, "could not record a finished task");
                record.status = status;
                record.result = result;
                record.problem = problem.as_ref().map(problem_json);
                return Err(e);
            }
        }
        self.after_final(record).await;
        Ok(())
    }

    /// Writes the final state of a queued task and gives its place back under the tenant's cap, in one
    /// transaction (so the count can neither leak nor be given back twice); the task as written (`None` if it
    /// could not be read back). A failed `condition` is reported as a failed single write would be, with the task
    /// as it is.
    async fn finish_queued(
        &self,
        key: &crate::store::Key,
        tenant: &str,
        update: Update,
        condition: Condition,
    ) -> Result<Option<Item>, StoreError> {
        let ops = vec![
            TxOp::Update { key: key.clone(), update, condition: Some(Condition::Exists.and(condition)) },
            give_back(tenant),
        ];
        match crate::store::transact_retrying_conflicts(self.store.as_ref(), ops).await {
            // Written; a failed read-back must not undo what follows a final state (statistics, the webhook).
            Ok(()) => Ok(self.store.get(key).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "a finished task could not be read back");
                None
            })),
            Err(StoreError::TransactionCanceled { reasons, mut current })
                if reasons.first() == Some(&crate::store::CancelReason::ConditionalCheckFailed) =>
            {
                let live = if current.is_empty() { None } else { current.swap_remove(0) };
                Err(StoreError::ConditionFailed { current: live.map(Box::new) })
            }
            Err(e) => Err(e),
        }
    }

    /// Counts a task that reached a final state and queues its webhook.
    async fn after_final(&self, record: &TaskRecord) {
        // The all-time counters and the hour's (analytics) in one store call for independent updates: side by
        // side on DynamoDB (no added wait, never a transaction that hot counters would conflict in), one commit
        // on the embedded store.
        let counts = vec![
            stats::count_write(&record.tenant, &record.kind, record.status, record.duration_ms),
            crate::analytics::task_hours::count_write(
                &record.tenant,
                &record.kind,
                record.status.as_str(),
                record.duration_ms,
                time::OffsetDateTime::now_utc(),
            ),
        ];
        for outcome in self.store.update_each(counts).await {
            if let Err(e) = outcome {
                tracing::warn!(task = %record.id, error = %e, "task statistics not updated");
            }
        }
        if record.webhook.as_ref().is_some_and(|w| w.state == DeliveryState::Pending) {
            let work = Work {
                kind: WorkKind::Deliver,
                tenant: record.tenant.clone(),
                task: record.id.to_string(),
                priority: record.priority,
                due_ms: now_ms(),
            };
            match self.queue().await.enqueue(&work).await {
                Ok(()) => self.wake.notify_one(),
                Err(e) => tracing::error!(task = %record.id, error = %e, "could not queue the task's webhook"),
            }
        }
    }

    /// A task of `tenant`; another tenant's is absent. A synchronous task left `running` by an instance that
    /// died is settled as timed out when read.
    pub async fn get(&self, tenant: &str, id: &TaskId) -> Result<TaskRecord, TaskError> {
        let item = self.store.get(&keys::job(tenant, id.as_str())).await?;
        let mut record =
            item.as_ref().and_then(TaskRecord::from_item).ok_or_else(|| TaskError::NotFound(id.to_string()))?;
        if Self::abandoned(&record) {
            let took = Duration::from_millis(record.timeout_ms);
            let _ = self.settle(&mut record, Err(None), took).await;
        }
        Ok(record)
    }

    fn abandoned(record: &TaskRecord) -> bool {
        record.status == Status::Running
            && record.mode == Mode::Sync
            && record
                .started_ms
                .is_some_and(|s| (s + record.timeout_ms.cast_signed() + ABANDONED_AFTER.as_millis() as i64) < now_ms())
    }

    /// Cancels a queued or running task. A final one cannot be cancelled (409).
    pub async fn cancel(&self, operator: &Operator, id: &TaskId) -> Result<TaskRecord, TaskError> {
        let tenant = operator.tenant.as_str();
        let now = now_ms();
        let problem = Problem::new(http::StatusCode::CONFLICT, "task-cancelled", "Task cancelled")
            .detail(format!("cancelled by {}", operator.actor));
        let update = Update::new()
            .set(STATUS_ATTR, Status::Cancelled.as_str())
            .set("finished_ms", now)
            .set("problem", problem_json(&problem).to_string())
            .remove("input")
            .set(crate::store::EXPIRES_AT, now / 1000 + self.retention_secs());
        let open = Condition::eq(STATUS_ATTR, Status::Queued.as_str())
            .or(Condition::eq(STATUS_ATTR, Status::Running.as_str()));
        let key = keys::job(tenant, id.as_str());
        // A queued task's place under the cap is given back with the write that ends it.
        let queued =
            self.store.get(&key).await?.as_ref().and_then(TaskRecord::from_item).is_some_and(|r| r.mode == Mode::Async);
        let written = if queued {
            self.finish_queued(&key, tenant, update, open).await
        } else {
            self.store.update(&key, update, Some(Condition::Exists.and(open))).await.map(Some)
        };
        match written {
            Ok(item) => {
                // Cancelled; if it could not be read back, read it again (the cancel stands either way).
                let item = match item {
                    Some(item) => item,
                    None => self.store.get(&key).await?.ok_or_else(|| TaskError::NotFound(id.to_string()))?,
                };
                let record = TaskRecord::from_item(&item).ok_or_else(|| TaskError::NotFound(id.to_string()))?;
                self.after_final(&record).await;
                Ok(record)
            }
            Err(StoreError::ConditionFailed { current }) => match current.as_deref().and_then(TaskRecord::from_item) {
                Some(record) => Err(TaskError::AlreadyFinished { id: id.to_string(), status: record.status }),
                None => Err(TaskError::NotFound(id.to_string())),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Processes one piece of queued work. `delivery` counts how often the queue has handed it out (SQS's
    /// ApproximateReceiveCount; the table queue's own count).
    /// Whether this binary can do `work` within `left`: a run of a type whose code it links and whose deadline
    /// fits, or a webhook delivery (15 s at most). A task already gone or final counts as doable (there is
    /// nothing left but to remove the item).
    pub async fn can_do(&self, work: &Work, left: Duration) -> Result<bool, TaskError> {
        if work.kind == WorkKind::Deliver {
            return Ok(left >= Duration::from_secs(15));
        }
        let key = keys::job(&work.tenant, &work.task);
        let Some(record) = self.store.get(&key).await?.as_ref().and_then(TaskRecord::from_item) else {
            return Ok(true);
        };
        let fits = Duration::from_millis(record.timeout_ms) <= left;
        Ok(record.is_final() || (fits && self.types().find(&record.kind).is_some_and(|t| t.runs_here())))
    }

    pub async fn process(&self, work: &Work, delivery: u32) -> Result<Outcome, TaskError> {
        match work.kind {
            WorkKind::Run => self.run_queued(work, delivery).await,
            WorkKind::Deliver => self.deliver(work).await,
        }
    }

    async fn run_queued(&self, work: &Work, delivery: u32) -> Result<Outcome, TaskError> {
        let key = keys::job(&work.tenant, &work.task);
        let Some(mut record) = self.store.get(&key).await?.as_ref().and_then(TaskRecord::from_item) else {
            return Ok(Outcome::Done);
        };
        if record.is_final() {
            return Ok(Outcome::Done);
        }
        let now = now_ms();
        let stale_run = now - record.timeout_ms.cast_signed() - ABANDONED_AFTER.as_millis() as i64;
        let claimable = Condition::eq(STATUS_ATTR, Status::Queued.as_str()).or(Condition::eq(
            STATUS_ATTR,
            Status::Running.as_str(),
        )
        .and(Condition::lt("started_ms", stale_run)));
        let claim = Update::new().set(STATUS_ATTR, Status::Running.as_str()).set("started_ms", now).add("attempts", 1);
        let item = match self.store.update(&key, claim, Some(Condition::Exists.and(claimable))).await {
            Ok(item) => item,
            // Running elsewhere, or settled meanwhile.
            Err(StoreError::ConditionFailed { .. }) => return Ok(Outcome::Done),
            Err(e) => return Err(e.into()),
        };
        record = TaskRecord::from_item(&item).ok_or_else(|| TaskError::NotFound(work.task.clone()))?;
        let input = record.input.clone().unwrap_or(Json::Null);
        let started = tokio::time::Instant::now();
        let deadline = Duration::from_millis(record.timeout_ms);
        let outcome = tokio::time::timeout(deadline, self.attempt(&record, input)).await;
        let attempts = record.attempts.max(delivery);
        match outcome {
            Err(_) => {
                self.timed_out(&record);
                self.settle(&mut record, Err(None), started.elapsed()).await?;
            }
            Ok(Ok(result)) => self.settle(&mut record, Ok(result), started.elapsed()).await?,
            Ok(Err(Failure::Transient(message))) => {
                if attempts >= record.max_attempts {
                    let mut p = gave_up(attempts, &message);
                    p.kind = format!("{}dead-lettered", crate::problem::PROBLEM_BASE);
                    self.settle(&mut record, Err(Some(p)), started.elapsed()).await?;
                    return Ok(Outcome::DeadLetter);
                }
                // Back to the queue; the next delivery claims it again.
                let back = Update::new().set(STATUS_ATTR, Status::Queued.as_str()).set("last_error", message);
                match self.store.update(&key, back, Some(Condition::eq(STATUS_ATTR, Status::Running.as_str()))).await {
                    Ok(_) | Err(StoreError::ConditionFailed { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                return Ok(Outcome::Retry(backoff(attempts)));
            }
            Ok(Err(failure)) => {
                self.settle(&mut record, Err(Some(failure_problem(&failure, "/payload"))), started.elapsed()).await?;
            }
        }
        Ok(Outcome::Done)
    }

    /// One webhook delivery attempt; a failed one queues the next on the schedule.
    async fn deliver(&self, work: &Work) -> Result<Outcome, TaskError> {
        let now = now_ms();
        if work.due_ms > now {
            // SQS delays at most 15 minutes: send the rest of the wait again.
            self.queue().await.enqueue(work).await?;
            return Ok(Outcome::Done);
        }
        let key = keys::job(&work.tenant, &work.task);
        let Some(record) = self.store.get(&key).await?.as_ref().and_then(TaskRecord::from_item) else {
            return Ok(Outcome::Done);
        };
        let Some(mut webhook) = record.webhook.clone().filter(|w| w.state == DeliveryState::Pending) else {
            return Ok(Outcome::Done);
        };
        let disabled_key = keys::webhook_disabled(&record.tenant, &digest_hex(&webhook.url));
        let next = if self.store.get(&disabled_key).await?.is_some() {
            webhook.state = DeliveryState::Disabled;
            webhooks::Next::Disabled
        } else {
            // One breaker per tenant and receiving host: a dead receiver costs its own deliveries one timeout per
            // open period, not one each, and cannot hold up another receiver's (or another tenant's) deliveries.
            let breaker = self.breakers.breaker_in(
                webhooks::BREAKER_FAMILY,
                &webhooks::breaker_name(&record.tenant, &webhook.url),
                webhooks::BREAKERS_PER_INSTANCE,
                self.config.breaker,
            );
            let Ok(permit) = crate::breaker::Breaker::try_acquire(&*breaker) else {
                // Open: put the delivery off until the breaker lets a trial through, without spending an attempt.
                let wait = breaker.snapshot().retry_after_secs.unwrap_or(1.0).max(1.0);
                let due_ms = now + (wait * 1000.0) as i64;
                self.queue().await.enqueue(&Work { due_ms, ..work.clone() }).await?;
                return Ok(Outcome::Done);
            };
            let next = webhooks::attempt(&self.outbound, &self.secrets, &record, &mut webhook, now).await;
            permit.report(webhook.attempts.last().is_some_and(webhooks::receiver_failed));
            next
        };
        if next == webhooks::Next::Disabled {
            let retention = now / 1000 + self.retention_secs() * 4;
            let item =
                Item::new(&disabled_key).with("url", webhook.url.as_str()).with(crate::store::EXPIRES_AT, retention);
            self.store.put(item, None).await?;
        }
        // The attempt is recorded before the next is queued: a crash in between repeats the attempt (receivers
        // deduplicate on webhook-id), never loses it.
        let text = serde_json::to_string(&webhook).unwrap_or_default();
        self.store.update(&key, Update::new().set("webhook", text), Some(Condition::Exists)).await?;
        if let webhooks::Next::RetryAt(due_ms) = next {
            self.queue().await.enqueue(&Work { due_ms, ..work.clone() }).await?;
        }
        Ok(Outcome::Done)
    }

    /// A tenant's tasks, newest first, filtered by status and type, one page.
    pub async fn list(
        &self,
        tenant: &str,
        status: Option<Status>,
        kind: Option<&str>,
        limit: u32,
        start: Option<crate::store::Cursor>,
    ) -> Result<(Vec<TaskRecord>, Option<crate::store::Cursor>), TaskError> {
        let mut found = Vec::new();
        let mut cursor = start;
        // A filter can skip many items: read at most this many pages per answer, then hand back a cursor.
        for _ in 0..5 {
            let query = crate::store::Query::partition(keys::jobs_of(tenant))
                .on(crate::store::Index::Gsi1)
                .backward()
                .limit(limit.max(25))
                .after(cursor.take());
            let page = self.store.query(query).await?;
            let mut stopped_early = None;
            for (i, item) in page.items.iter().enumerate() {
                let Some(record) = TaskRecord::from_item(item) else { continue };
                if status.is_some_and(|s| s != record.status) || kind.is_some_and(|k| k != record.kind) {
                    continue;
                }
                found.push(record);
                if found.len() as u32 == limit {
                    if i + 1 < page.items.len() || page.next.is_some() {
                        stopped_early = Some(crate::store::Cursor::after_item(item, crate::store::Index::Gsi1));
                    }
                    break;
                }
            }
            if found.len() as u32 == limit {
                return Ok((found, stopped_early.flatten()));
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok((found, None)),
            }
        }
        Ok((found, cursor))
    }
}

/// Step Functions' default retry: 1 s, doubling.
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1 << attempt.saturating_sub(1).min(10))
}

fn gave_up(attempts: u32, message: &str) -> Problem {
    Problem::new(http::StatusCode::BAD_GATEWAY, "task-failed", "Task failed")
        .detail(format!("gave up after {attempts} attempt(s); the last one failed: {message}"))
}

impl From<QueueError> for TaskError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Store(s) => Self::Store(s),
            QueueError::Sqs(m) => Self::QueueUnavailable(m),
        }
    }
}
