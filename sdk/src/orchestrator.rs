//! Work routed between the cloud and this process. Each piece of work has a type, a payload and a priority; the
//! orchestrator queues it by priority (high before normal before low, first come first served within one), runs
//! at most `concurrency` at once, and sends each either to the deployment (a task delegated through the
//! [`Client`], waited for) or to a local executor registered for its type (the user's own function, or a built-in
//! handler run in-process with the `handlers` feature). Where it goes:
//! - a type with no local executor always goes to the cloud; one the cloud does not have, always local;
//! - otherwise local when the payload is larger than [`OrchestratorBuilder::max_cloud_payload`] (it would cost
//!   more to ship than to run), when the cloud is unhealthy (every endpoint `Unhealthy` or its breaker open), or
//!   when the builder prefers local; else the cloud.
//!
//! [`Orchestrator::status`] reports what is queued (by priority), running, and done or failed (by where).

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Notify, Semaphore, oneshot};

use crate::api::tasks::{CreateTask, Priority, Status, TaskOptions};
use crate::client::{Client, Health};

/// A local executor: the payload in, the result or an error message out.
pub type LocalFn = Arc<dyn Fn(Value) -> Pin<Box<dyn Future<Output = Result<Value, String>> + Send>> + Send + Sync>;

/// Where a piece of work ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Place {
    Cloud,
    Local,
}

/// A piece of work.
#[derive(Debug, Clone)]
pub struct Work {
    pub kind: String,
    pub payload: Value,
    pub priority: Priority,
}

impl Work {
    pub fn new(kind: impl Into<String>, payload: Value) -> Self {
        Self { kind: kind.into(), payload, priority: Priority::Normal }
    }

    #[must_use]
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }
}

/// What became of a piece of work.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub place: Place,
    /// The cloud task's id, when it ran there.
    pub task_id: Option<String>,
    pub result: Result<Value, String>,
}

/// Counts for a status screen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Waiting, by priority (`high`, `normal`, `low`).
    pub queued: BTreeMap<&'static str, usize>,
    pub running: usize,
    pub done: BTreeMap<Place, usize>,
    pub failed: BTreeMap<Place, usize>,
}

/// Builds an [`Orchestrator`].
pub struct OrchestratorBuilder {
    client: Option<Client>,
    local: HashMap<String, LocalFn>,
    concurrency: usize,
    max_cloud_payload: usize,
    prefer_local: bool,
    wait: Duration,
}

impl std::fmt::Debug for OrchestratorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrchestratorBuilder")
            .field("local", &self.local.keys().collect::<Vec<_>>())
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl OrchestratorBuilder {
    /// The deployment that takes cloud work.
    #[must_use]
    pub fn cloud(mut self, client: Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Runs `kind` in this process with `f` (as well as, or instead of, in the cloud).
    #[must_use]
    pub fn local<F, Fut>(mut self, kind: impl Into<String>, f: F) -> Self
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, String>> + Send + 'static,
    {
        self.local.insert(kind.into(), Arc::new(move |payload| Box::pin(f(payload))));
        self
    }

    /// How many pieces of work run at once (default 4).
    #[must_use]
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Payloads larger than this (serialised bytes) run locally when they can (default 256 KiB).
    #[must_use]
    pub fn max_cloud_payload(mut self, bytes: usize) -> Self {
        self.max_cloud_payload = bytes;
        self
    }

    /// Run locally whatever can run locally; the cloud takes the rest.
    #[must_use]
    pub fn prefer_local(mut self, prefer: bool) -> Self {
        self.prefer_local = prefer;
        self
    }

    /// The longest a cloud task is waited for (default 15 min).
    #[must_use]
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Starts the dispatcher on the current tokio runtime; it stops when the orchestrator is dropped.
    pub fn start(self) -> Orchestrator {
        let inner = Arc::new(Inner {
            client: self.client,
            local: self.local,
            max_cloud_payload: self.max_cloud_payload,
            prefer_local: self.prefer_local,
            wait: self.wait,
            queue: Mutex::new(Queue::default()),
            arrived: Notify::new(),
            slots: Arc::new(Semaphore::new(self.concurrency)),
        });
        tokio::spawn(dispatch(Arc::downgrade(&inner)));
        Orchestrator { inner }
    }
}

struct Job {
    work: Work,
    /// Arrival order: first come, first served within a priority.
    seq: u64,
    reply: oneshot::Sender<Outcome>,
}

fn rank(priority: Priority) -> u8 {
    match priority {
        Priority::High => 2,
        Priority::Normal => 1,
        Priority::Low => 0,
    }
}

impl PartialEq for Job {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}

impl Eq for Job {}

impl PartialOrd for Job {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Job {
    /// The heap's greatest is served first: the higher priority, then the earlier arrival.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        rank(self.work.priority).cmp(&rank(other.work.priority)).then(other.seq.cmp(&self.seq))
    }
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Job>,
    seq: u64,
    running: usize,
    done: BTreeMap<Place, usize>,
    failed: BTreeMap<Place, usize>,
}

struct Inner {
    client: Option<Client>,
    local: HashMap<String, LocalFn>,
    max_cloud_payload: usize,
    prefer_local: bool,
    wait: Duration,
    queue: Mutex<Queue>,
    arrived: Notify,
    slots: Arc<Semaphore>,
}

fn lock(queue: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Queues work by priority and runs it in the cloud or locally.
#[derive(Clone)]
pub struct Orchestrator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Orchestrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Orchestrator").field("status", &self.status()).finish()
    }
}

impl Orchestrator {
    pub fn builder() -> OrchestratorBuilder {
        OrchestratorBuilder {
            client: None,
            local: HashMap::new(),
            concurrency: 4,
            max_cloud_payload: 256 * 1024,
            prefer_local: false,
            wait: Duration::from_mins(15),
        }
    }

    /// Queues `work`; the returned future resolves to its outcome. Work that can run nowhere (no local executor
    /// and no cloud) fails at once.
    pub fn submit(&self, work: Work) -> impl Future<Output = Outcome> + Send + 'static {
        let (reply, outcome) = oneshot::channel();
        {
            let mut queue = lock(&self.inner.queue);
            queue.seq += 1;
            let seq = queue.seq;
            queue.heap.push(Job { work, seq, reply });
        }
        self.inner.arrived.notify_one();
        async move {
            outcome.await.unwrap_or(Outcome {
                place: Place::Local,
                task_id: None,
                result: Err("the orchestrator stopped before the work ran".into()),
            })
        }
    }

    /// What is queued, running, done and failed.
    pub fn status(&self) -> Report {
        let queue = lock(&self.inner.queue);
        let mut queued = BTreeMap::from([("high", 0), ("normal", 0), ("low", 0)]);
        for job in &queue.heap {
            *queued.entry(job.work.priority.as_str()).or_default() += 1;
        }
        Report { queued, running: queue.running, done: queue.done.clone(), failed: queue.failed.clone() }
    }
}

/// Takes the best job whenever a slot is free.
async fn dispatch(inner: std::sync::Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else { return };
        let Ok(slot) = strong.slots.clone().acquire_owned().await else { return };
        let job = {
            let mut queue = lock(&strong.queue);
            let job = queue.heap.pop();
            if job.is_some() {
                queue.running += 1;
            }
            job
        };
        let Some(job) = job else {
            drop(slot);
            // Waking now and then: once the orchestrator is dropped, the next upgrade fails and the loop ends.
            let _ = tokio::time::timeout(Duration::from_millis(500), strong.arrived.notified()).await;
            continue;
        };
        tokio::spawn(async move {
            let outcome = run(&strong, &job.work).await;
            {
                let mut queue = lock(&strong.queue);
                queue.running -= 1;
                let tally = if outcome.result.is_ok() { &mut queue.done } else { &mut queue.failed };
                *tally.entry(outcome.place).or_default() += 1;
            }
            drop(slot);
            let _ = job.reply.send(outcome);
        });
    }
}

impl Inner {
    /// Whether the deployment can take work now: some endpoint not known unhealthy and its breaker not open.
    fn cloud_up(&self) -> bool {
        self.client.as_ref().is_some_and(|client| {
            client
                .endpoints()
                .iter()
                .any(|e| e.health != Health::Unhealthy && !matches!(e.breaker, cloud_agent_breaker::State::Open))
        })
    }

    fn place(&self, work: &Work) -> Option<Place> {
        let local = self.local.contains_key(&work.kind);
        if self.client.is_none() {
            return local.then_some(Place::Local);
        }
        if !local {
            return Some(Place::Cloud);
        }
        let size = serde_json::to_vec(&work.payload).map_or(usize::MAX, |b| b.len());
        let local_first = self.prefer_local || size > self.max_cloud_payload || !self.cloud_up();
        Some(if local_first { Place::Local } else { Place::Cloud })
    }
}

async fn run(inner: &Inner, work: &Work) -> Outcome {
    match inner.place(work) {
        None => Outcome {
            place: Place::Local,
            task_id: None,
            result: Err(format!("no local executor for {:?} and no cloud to send it to", work.kind)),
        },
        Some(Place::Local) => {
            let f = inner.local[&work.kind].clone();
            Outcome { place: Place::Local, task_id: None, result: f(work.payload.clone()).await }
        }
        Some(Place::Cloud) => {
            let client = inner.client.as_ref().expect("placed in the cloud only with a client");
            let options = TaskOptions { priority: Some(work.priority), ..TaskOptions::default() };
            let create = CreateTask { kind: work.kind.clone(), payload: work.payload.clone(), options };
            let task = match client.create_task(create).await {
                Ok(task) if task.is_final() => Ok(task),
                Ok(task) => client.wait_for_task(&task.id, inner.wait).await,
                Err(e) => Err(e),
            };
            match task {
                Ok(task) => {
                    let result = match (task.status, task.result, task.problem) {
                        (Status::Succeeded, result, _) => Ok(result.unwrap_or(Value::Null)),
                        (status, _, problem) => Err(format!(
                            "{}: {}",
                            status.as_str(),
                            problem.as_ref().and_then(|p| p["detail"].as_str()).unwrap_or_default()
                        )),
                    };
                    Outcome { place: Place::Cloud, task_id: Some(task.id), result }
                }
                Err(e) => Outcome { place: Place::Cloud, task_id: None, result: Err(e.to_string()) },
            }
        }
    }
}

/// Built-in and plug-in handlers run in this process: the same code the deployment runs, from the handlers crate.
#[cfg(feature = "handlers")]
pub mod handlers {
    use std::sync::Arc;

    use cloud_agent_handlers::outbound::{Outbound, Policy};
    use cloud_agent_handlers::{Context, Registry, TaskInfo};

    use super::OrchestratorBuilder;

    impl OrchestratorBuilder {
        /// Registers every type of `registry` that runs here as a local executor: the input is checked against
        /// the type's schema, then the handler runs with the SSRF-safe outbound client of `policy`.
        #[must_use]
        pub fn local_handlers(mut self, registry: &Arc<Registry>, policy: Policy) -> Self {
            let outbound = Outbound::new(policy);
            let kinds: Vec<String> = registry
                .types()
                .filter(cloud_agent_handlers::TaskType::runs_here)
                .map(|t| t.name().to_owned())
                .collect();
            for kind in kinds {
                let (registry, outbound, name) = (registry.clone(), outbound.clone(), kind.clone());
                self = self.local(kind, move |input| {
                    let (registry, outbound, name) = (registry.clone(), outbound.clone(), name.clone());
                    async move {
                        let task_type = registry.find(&name).ok_or_else(|| format!("{name} is not registered"))?;
                        task_type.validate(&input).map_err(|e| e.to_string())?;
                        let info = TaskInfo {
                            id: format!("local_{}", uuid::Uuid::new_v4().simple()),
                            tenant: "local".into(),
                            kind: name.clone(),
                            attempt: 1,
                        };
                        match task_type.run(Context::new(outbound, info), input).await {
                            Some(Ok(result)) => Ok(result),
                            Some(Err(failure)) => Err(failure.to_string()),
                            None => Err(format!("{name} does not run in this process")),
                        }
                    }
                });
            }
            self
        }
    }
}
