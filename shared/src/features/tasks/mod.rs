//! Task delegation: operators hand work to the built-in handlers. Two API versions are views of one core
//! ([`engine::Engine`]): v2 (`/api/delegate`, `/api/batch`, `/api/status`, `/api/capabilities`, `/api/metrics`,
//! deprecated, pointing at v3) and v3 (`/v3/tasks`). Queued work runs on SQS on AWS (the worker function), from
//! the table on Vercel (the cron drain) and in `cloudagent serve`'s own worker locally — the same executor each
//! time.

pub mod engine;
mod intake;
pub mod model;
pub mod queue;
pub mod stats;
pub mod types;
pub mod v2;
pub mod v3;
pub mod webhooks;
pub mod worker;

use axum::routing::{get, post};
use http::StatusCode;

use crate::http::{Problem, ToProblem};
use crate::route::{Access, Feature, Method, Permission, RouteSpec, UPDATE_ACTIONS};
use crate::store::StoreError;

/// Failures of the task routes, each with its problem.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("no task {0}")]
    NotFound(String),
    #[error("the idempotency key was used with another input")]
    IdempotencyMismatch,
    #[error("a request with the same idempotency key is in flight")]
    IdempotencyRace,
    #[error("task {id} is already {}", status.as_str())]
    AlreadyFinished { id: String, status: model::Status },
    #[error("the input is too large to queue")]
    QueuedInputTooLarge { pointer: String },
    #[error("refused: {}", .0.detail)]
    Rejected(Box<cloud_agent_handlers::Rejection>, String),
    #[error("the queue is unavailable: {0}")]
    QueueUnavailable(String),
    #[error("the tenant has {cap} queued tasks unfinished")]
    QueueFull { cap: u32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ToProblem for TaskError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::IdempotencyMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            Self::IdempotencyRace | Self::AlreadyFinished { .. } => StatusCode::CONFLICT,
            Self::QueuedInputTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Rejected(rejection, _) => {
                StatusCode::from_u16(rejection.status()).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY)
            }
            Self::QueueUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::QueueFull { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Store(e) => e.status(),
        }
    }

    fn problem(&self) -> Problem {
        let status = self.status();
        match self {
            Self::NotFound(id) => Problem::new(status, "not-found", "Not Found")
                .detail(format!("there is no task {id} in your tenant (finished tasks expire after the retention)")),
            Self::IdempotencyMismatch => {
                let mut p = Problem::new(status, "idempotency-key-reused", "Idempotency key reused").detail(
                    "this idempotency key already made a task with a different type or input; use a new key for new \
                     work, or send exactly the same request to get the existing task",
                );
                p.pointer = Some("/idempotency_key".into());
                p
            }
            Self::IdempotencyRace => Problem::new(status, "idempotency-in-progress", "Request in progress")
                .detail("another request with this idempotency key is being processed; retry after Retry-After"),
            Self::AlreadyFinished { id, status: s } => Problem::new(status, "task-finished", "Task already finished")
                .detail(format!("task {id} is already {}; only queued or running tasks can be cancelled", s.as_str())),
            Self::QueuedInputTooLarge { pointer } => {
                let mut p = Problem::new(status, "queued-input-too-large", "Input too large to queue").detail(format!(
                    "a queued task's input may be at most {} KiB; send less, or run it synchronously",
                    engine::MAX_QUEUED_INPUT_BYTES / 1024
                ));
                p.pointer = Some(pointer.clone());
                p
            }
            Self::Rejected(rejection, input_pointer) => types::rejection_problem(rejection, input_pointer),
            Self::QueueUnavailable(_) => Problem::new(status, "queue-unavailable", "Service Unavailable")
                .detail("the task queue did not accept the task, so it was not created; retry later"),
            Self::QueueFull { cap } => Problem::new(status, "queue-full", "Too many queued tasks").detail(format!(
                "this tenant already has {cap} queued tasks that have not finished (the per-tenant cap, \
                 CLOUD_AGENT_TASK_QUEUED_CAP); wait for some to finish or cancel some, then retry"
            )),
            Self::Store(e) => e.problem(),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::QueueUnavailable(_) | Self::IdempotencyRace => Some(1),
            Self::QueueFull { .. } => Some(5),
            Self::Store(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// Creating a task: a transaction (task, idempotency key, due work), reads of an existing task, the settling
/// update, the statistics counter and the webhook's bookkeeping.
const CREATE_ACTIONS: &[&str] =
    &["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query"];

// v2's handlers are marked deprecated (the OpenAPI document says so); mounting them is not a use to warn of.
#[allow(deprecated)]
pub const DELEGATE: RouteSpec = RouteSpec {
    binary: "delegate",
    file: "api/delegate.rs",
    path: "/api/delegate",
    methods: &[Method::POST],
    dynamodb_actions: CREATE_ACTIONS,
    access: Access::Requires(Permission::TaskCreate),
    perimeter: Some(crate::perimeter::layer),
    handler: || post(v2::delegate).layer(axum::middleware::map_response(v2::deprecation_headers)),
};

// v2's handlers are marked deprecated (the OpenAPI document says so); mounting them is not a use to warn of.
#[allow(deprecated)]
pub const BATCH: RouteSpec = RouteSpec {
    binary: "batch",
    file: "api/batch.rs",
    path: "/api/batch",
    methods: &[Method::POST],
    dynamodb_actions: CREATE_ACTIONS,
    access: Access::Requires(Permission::TaskCreate),
    perimeter: Some(crate::perimeter::layer),
    handler: || post(v2::batch).layer(axum::middleware::map_response(v2::deprecation_headers)),
};

// v2's handlers are marked deprecated (the OpenAPI document says so); mounting them is not a use to warn of.
#[allow(deprecated)]
pub const STATUS: RouteSpec = RouteSpec {
    binary: "status",
    file: "api/status.rs",
    path: "/api/status",
    methods: &[Method::GET],
    // Reading may settle a task abandoned by a dead instance.
    dynamodb_actions: UPDATE_ACTIONS,
    access: Access::Requires(Permission::TaskRead),
    perimeter: Some(crate::perimeter::layer),
    handler: || get(v2::status).layer(axum::middleware::map_response(v2::deprecation_headers)),
};

// v2's handlers are marked deprecated (the OpenAPI document says so); mounting them is not a use to warn of.
#[allow(deprecated)]
pub const CAPABILITIES: RouteSpec = RouteSpec {
    binary: "capabilities",
    file: "api/capabilities.rs",
    path: "/api/capabilities",
    methods: &[Method::GET],
    dynamodb_actions: &[],
    access: Access::Requires(Permission::TaskRead),
    perimeter: Some(crate::perimeter::layer),
    handler: || get(v2::capabilities).layer(axum::middleware::map_response(v2::deprecation_headers)),
};

// v2's handlers are marked deprecated (the OpenAPI document says so); mounting them is not a use to warn of.
#[allow(deprecated)]
pub const METRICS: RouteSpec = RouteSpec {
    binary: "task-metrics",
    file: "api/metrics.rs",
    path: "/api/metrics",
    methods: &[Method::GET],
    dynamodb_actions: &["dynamodb:Query"],
    access: Access::Requires(Permission::MetricsRead),
    perimeter: Some(crate::perimeter::layer),
    handler: || get(v2::metrics).layer(axum::middleware::map_response(v2::deprecation_headers)),
};

pub const TASKS: RouteSpec = RouteSpec {
    binary: "tasks",
    file: "api/v3/tasks.rs",
    path: "/v3/tasks",
    methods: &[Method::GET, Method::POST],
    dynamodb_actions: CREATE_ACTIONS,
    access: Access::PerMethod(&[(Method::GET, Permission::TaskRead), (Method::POST, Permission::TaskCreate)]),
    perimeter: Some(crate::perimeter::layer),
    handler: || get(v3::list).post(v3::create),
};

pub const TASK: RouteSpec = RouteSpec {
    binary: "task",
    file: "api/v3/tasks/[task_id].rs",
    path: "/v3/tasks/{task_id}",
    methods: &[Method::GET, Method::DELETE],
    dynamodb_actions: CREATE_ACTIONS,
    access: Access::PerMethod(&[(Method::GET, Permission::TaskRead), (Method::DELETE, Permission::TaskCreate)]),
    perimeter: Some(crate::perimeter::layer),
    handler: || get(v3::get_one).delete(v3::cancel),
};

/// The scheduled drain of the table queue (Vercel cron). Called by the scheduler with `CRON_SECRET`.
pub const DRAIN: RouteSpec = RouteSpec {
    binary: "tasks-drain",
    file: "api/v1/tasks/drain.rs",
    path: "/api/v1/tasks/drain",
    methods: &[Method::GET],
    dynamodb_actions: CREATE_ACTIONS,
    access: Access::Scheduler,
    perimeter: Some(crate::perimeter::layer),
    handler: || get(worker::drain_route),
};

/// The worker (AWS): runs queued tasks and webhook deliveries from SQS, and every minute drains the table queue,
/// where work waits when SQS refused it.
pub const WORKER: crate::route::EventFunction = crate::route::EventFunction {
    binary: "task-worker",
    file: "api/_worker.rs",
    triggers: &["SQS", "Schedule"],
    dynamodb_actions: CREATE_ACTIONS,
};

/// The functions that send to the task queue (template.yaml grants them `sqs:SendMessage` on it, and only them).
pub const QUEUE_SENDERS: &[&str] = &["delegate", "batch", "tasks", "task", "tasks-drain", "task-worker"];

#[allow(deprecated)]
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        v2::delegate,
        v2::batch,
        v2::status,
        v2::capabilities,
        v2::metrics,
        v3::create,
        v3::list,
        v3::get_one,
        v3::cancel,
        worker::drain_route
    ),
    components(schemas(
        model::Task,
        model::Status,
        model::Priority,
        model::Mode,
        model::Webhook,
        model::DeliveryAttempt,
        model::DeliveryState,
        v2::DelegateRequest,
        v2::DelegateResponse,
        v2::BatchRequest,
        v2::BatchResponse,
        v2::BatchItem,
        v2::Capabilities,
        v2::Capability,
        v2::Limits,
        v3::CreateTask,
        v3::TaskOptions,
        v3::TaskPage,
        stats::TaskMetrics,
        stats::QueueStats,
        stats::TypeStats,
        stats::Latency,
        worker::DrainReport,
    ))
)]
struct Doc;

pub const FEATURE: Feature = Feature {
    name: "tasks",
    routes: &[DELEGATE, BATCH, STATUS, CAPABILITIES, METRICS, TASKS, TASK, DRAIN],
    openapi: <Doc as utoipa::OpenApi>::openapi,
};
