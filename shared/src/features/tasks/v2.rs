//! v2, the first API's shape (flat fields), kept for existing callers: `/api/delegate`, `/api/batch`, `/api/status`,
//! `/api/capabilities`, `/api/metrics`. Every answer says it is deprecated (`Deprecation`, `Sunset`) and links
//! to its v3 successor. Each route is a view of the same engine as v3.

use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use utoipa::ToSchema;

use super::engine::{Engine, NewTask, Submitted};
use super::intake::{Draft, Edge, Finished, parse_task, problem_of};
use super::model::{Priority, Status, TaskId, TaskRecord};
use super::stats::{self, TaskMetrics};
use super::types::TaskTypes;
use crate::auth::Operator;
use crate::http::{ApiError, ApiJson, ApiQuery, Problem};
use crate::perimeter::rate_limit::Charge;
use crate::runtime::AfterResponse;
use crate::store::DynStore;
pub use cloud_agent_wire::tasks::{Capabilities, Capability, FailureKind, Limits};

/// When v2 was deprecated (RFC 9745 `Deprecation: @<epoch>`): 2026-12-01.
const DEPRECATED_AT: &str = "@1796083200";
/// When v2 stops answering (RFC 8594): 2027-06-01.
const SUNSET: &str = "Tue, 01 Jun 2027 00:00:00 GMT";
/// At most this many tasks per batch.
pub const MAX_BATCH: usize = 10;

/// Adds the deprecation headers to every v2 answer, and the successor link unless the route named a closer one.
pub async fn deprecation_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert("deprecation", HeaderValue::from_static(DEPRECATED_AT));
    headers.insert("sunset", HeaderValue::from_static(SUNSET));
    if !headers.contains_key(header::LINK) {
        headers.insert(header::LINK, HeaderValue::from_static("</v3/tasks>; rel=\"successor-version\""));
    }
    response
}

/// One task, v2's way.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DelegateRequest {
    #[schema(min_length = 1, max_length = 64)]
    pub task_type: String,
    #[schema(value_type = Object)]
    pub task_data: Json,
    #[serde(default)]
    pub priority: Option<Priority>,
    #[serde(default)]
    #[schema(max_length = 2048)]
    pub webhook_url: Option<String>,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 900_000)]
    pub timeout_ms: Option<u64>,
    /// Queue it (202); long handlers are always queued.
    #[serde(default, rename = "async")]
    pub asynchronous: bool,
}

/// v2's view of a task.
#[derive(Debug, Serialize, ToSchema)]
pub struct DelegateResponse {
    pub success: bool,
    pub task_id: String,
    pub task_type: String,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_time_ms: Option<u64>,
    /// Poll here (v2).
    pub status_url: String,
    /// The same task in v3.
    pub task_url: String,
}

impl From<&TaskRecord> for DelegateResponse {
    fn from(r: &TaskRecord) -> Self {
        Self {
            success: r.status == Status::Succeeded,
            task_id: r.id.to_string(),
            task_type: r.kind.clone(),
            status: r.status,
            result: r.result.clone(),
            error: problem_of(r),
            execution_time_ms: r.duration_ms,
            status_url: format!("/api/status?task_id={}", r.id),
            task_url: format!("/v3/tasks/{}", r.id),
        }
    }
}

fn parse(engine: &Engine, at: &str, body: DelegateRequest) -> Result<NewTask, ApiError> {
    let draft = Draft {
        kind: body.task_type,
        input: body.task_data,
        priority: body.priority,
        webhook: body.webhook_url,
        idempotency_key: body.idempotency_key,
        timeout_ms: body.timeout_ms,
        asynchronous: body.asynchronous,
    };
    parse_task(engine.types(), Edge::V2, at, draft)
}

fn successor(record: &TaskRecord) -> (header::HeaderName, String) {
    (header::LINK, format!("</v3/tasks/{}>; rel=\"successor-version\"", record.id))
}

/// Delegate one task (deprecated: use `POST /v3/tasks`).
#[utoipa::path(
    post,
    path = "/api/delegate",
    operation_id = "delegateTaskV2",
    tag = "tasks-v2",
    request_body = DelegateRequest,
    responses(
        (status = 200, body = DelegateResponse, description = "Ran and succeeded, or the idempotency key named an existing task with the same input"),
        (status = 202, body = DelegateResponse, description = "Queued; poll status_url"),
        (status = 409, body = crate::http::Problem, content_type = "application/problem+json", description = "Another request with the same idempotency key is being processed (idempotency-in-progress), or a concurrent change (write-conflict); retry after Retry-After"),
        (status = 429, body = crate::http::Problem, content_type = "application/problem+json", description = "Over the delegation quota (rate-limited), or the tenant already has its cap of queued tasks unfinished (queue-full); see Retry-After"),
        (status = 413, body = crate::http::Problem, content_type = "application/problem+json", description = "A queued task's input is over 256 KiB, or a hook's size policy refused it (the hook's own problem type)"),
        (status = 422, body = crate::http::Problem, content_type = "application/problem+json", description = "Unknown task_type, bad options, an input the handler refuses (`pointer` names the field), or an idempotency key reused with another input"),
        (status = 502, body = crate::http::Problem, content_type = "application/problem+json", description = "The task failed after its attempts"),
        (status = 503, body = crate::http::Problem, content_type = "application/problem+json", description = "Datastore unavailable or the request budget ran out (see Retry-After); or the task's type depends on a service that is unavailable (model-unavailable: no model configured, or its circuit breaker open with no cached answer)"),
        (status = 504, body = crate::http::Problem, content_type = "application/problem+json", description = "The task ran past its deadline"),
    )
)]
#[deprecated = "v2: use POST /v3/tasks"]
pub async fn delegate(
    State(engine): State<Arc<Engine>>,
    operator: Operator,
    after: Option<Extension<AfterResponse>>,
    ApiJson(body): ApiJson<DelegateRequest>,
) -> Result<Response, ApiError> {
    let new = parse(&engine, "", body)?;
    let (status, record) = match engine.submit(&operator, new).await? {
        Submitted::Queued(r) => {
            super::worker::drain_after_response(&engine, after.as_deref());
            (StatusCode::ACCEPTED, r)
        }
        Submitted::Existing(r) => (StatusCode::OK, r),
        Submitted::Ran(r) => match problem_of(&r) {
            Some(problem) => {
                let mut response = ApiError::from(Finished(problem)).into_response();
                if let Ok(v) = HeaderValue::from_str(&successor(&r).1) {
                    response.headers_mut().insert(header::LINK, v);
                }
                return Ok(response);
            }
            None => (StatusCode::OK, r),
        },
    };
    Ok((status, [successor(&record)], ApiJson(DelegateResponse::from(&record))).into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// 1-10 tasks, run concurrently (high priority first).
    #[schema(min_items = 1, max_items = 10)]
    pub tasks: Vec<DelegateRequest>,
}

/// One task's outcome in a batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchItem {
    /// The task's position in the request.
    pub index: usize,
    pub success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<DelegateResponse>,
    /// Why this task was refused or failed (its pointer is into the whole request: `/tasks/3/task_data/...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    /// One per task, in request order.
    pub results: Vec<BatchItem>,
    pub succeeded: usize,
    pub failed: usize,
    /// Wall time of the whole batch: about the slowest task's, since they run together.
    pub duration_ms: u64,
}

/// Delegate up to ten tasks at once (deprecated: use `POST /v3/tasks` per task).
#[utoipa::path(
    post,
    path = "/api/batch",
    operation_id = "batchTasksV2",
    tag = "tasks-v2",
    request_body = BatchRequest,
    responses(
        (status = 200, body = BatchResponse, description = "One result per task; each succeeded, was queued, or carries its own problem"),
        (status = 422, body = crate::http::Problem, content_type = "application/problem+json", description = "No tasks, or more than ten (`/tasks`)"),
        (status = 429, body = crate::http::Problem, content_type = "application/problem+json", description = "The delegation quota cannot cover every task of the batch (each task is one delegation); none was created"),
    )
)]
#[deprecated = "v2: use POST /v3/tasks"]
pub async fn batch(
    State(engine): State<Arc<Engine>>,
    operator: Operator,
    charge: Charge,
    after: Option<Extension<AfterResponse>>,
    ApiJson(body): ApiJson<BatchRequest>,
) -> Result<ApiJson<BatchResponse>, ApiError> {
    if body.tasks.is_empty() || body.tasks.len() > MAX_BATCH {
        return Err(ApiError::unprocessable("/tasks", format!("a batch holds 1-{MAX_BATCH} tasks")));
    }
    let started = Instant::now();
    let mut results: Vec<Option<BatchItem>> = (0..body.tasks.len()).map(|_| None).collect();
    let mut parsed = Vec::new();
    for (index, task) in body.tasks.into_iter().enumerate() {
        match parse(&engine, &format!("/tasks/{index}"), task) {
            Ok(new) => parsed.push((index, new)),
            Err(e) => {
                let problem = e.problem();
                results[index] = Some(BatchItem { index, success: false, task: None, error: Some(problem) });
            }
        }
    }
    // Each task is one delegation: the perimeter charged the first, the rest are charged before any is created.
    charge.more(u32::try_from(parsed.len()).unwrap_or(u32::MAX).saturating_sub(1)).await?;
    // High priority starts first; all run together.
    parsed.sort_by_key(|(index, new)| (new.priority, *index));
    let mut running = tokio::task::JoinSet::new();
    for (index, new) in parsed {
        let engine = engine.clone();
        let operator = operator.clone();
        running.spawn(async move { (index, engine.submit(&operator, new).await) });
    }
    while let Some(joined) = running.join_next().await {
        let Ok((index, outcome)) = joined else { continue };
        let item = match outcome {
            Ok(Submitted::Ran(r) | Submitted::Queued(r) | Submitted::Existing(r)) => {
                let error = problem_of(&r);
                BatchItem { index, success: error.is_none(), task: Some(DelegateResponse::from(&r)), error }
            }
            Err(e) => {
                let problem = ApiError::from(e).problem();
                BatchItem { index, success: false, task: None, error: Some(problem) }
            }
        };
        results[index] = Some(item);
    }
    let results: Vec<BatchItem> = results
        .into_iter()
        .enumerate()
        .map(|(index, r)| {
            r.unwrap_or_else(|| BatchItem {
                index,
                success: false,
                task: None,
                error: Some(Problem::for_status(StatusCode::INTERNAL_SERVER_ERROR)),
            })
        })
        .collect();
    if results.iter().any(|r| r.task.as_ref().is_some_and(|t| t.status == Status::Queued)) {
        super::worker::drain_after_response(&engine, after.as_deref());
    }
    let succeeded = results.iter().filter(|r| r.success).count();
    Ok(ApiJson(BatchResponse {
        failed: results.len() - succeeded,
        succeeded,
        results,
        duration_ms: started.elapsed().as_millis() as u64,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusParams {
    task_id: String,
}

/// A task's status (deprecated: use `GET /v3/tasks/{task_id}`).
#[utoipa::path(
    get,
    path = "/api/status",
    operation_id = "getTaskStatusV2",
    tag = "tasks-v2",
    params(("task_id" = String, Query, description = "The task's id", pattern = "^t_[0-9a-f]{32}$")),
    responses(
        (status = 200, body = DelegateResponse),
        (status = 400, body = crate::http::Problem, content_type = "application/problem+json", description = "task_id missing, or an unknown parameter"),
        (status = 404, body = crate::http::Problem, content_type = "application/problem+json", description = "No such task in your tenant"),
        (status = 422, body = crate::http::Problem, content_type = "application/problem+json", description = "Not a task id"),
    )
)]
#[deprecated = "v2: use GET /v3/tasks/{task_id}"]
pub async fn status(
    State(engine): State<Arc<Engine>>,
    operator: Operator,
    ApiQuery(params): ApiQuery<StatusParams>,
) -> Result<Response, ApiError> {
    let id = TaskId::parse(&params.task_id).map_err(|e| ApiError::unprocessable("/task_id", e.0))?;
    let record = engine.get(operator.tenant.as_str(), &id).await?;
    Ok(([successor(&record)], ApiJson(DelegateResponse::from(&record))).into_response())
}

/// What this deployment can run (deprecated path; the v3 API uses the same handlers).
#[utoipa::path(
    get,
    path = "/api/capabilities",
    operation_id = "listCapabilitiesV2",
    tag = "tasks-v2",
    responses((status = 200, body = Capabilities))
)]
#[deprecated = "v2"]
// The task types, not the engine: a function that only lists types links no engine (its HTTP and queue clients).
pub async fn capabilities(State(types): State<Arc<TaskTypes>>) -> ApiJson<Capabilities> {
    ApiJson(Capabilities {
        handlers: types
            .registry()
            .types()
            .map(|t| {
                let h = t.descriptor();
                Capability {
                    name: h.name.to_owned(),
                    description: h.description.to_owned(),
                    input_schema: (h.input_schema)(),
                    limits: Limits {
                        default_timeout_ms: h.limits.default_timeout_ms,
                        max_timeout_ms: h.limits.max_timeout_ms,
                        always_async: h.long,
                        max_queued_input_bytes: super::engine::MAX_QUEUED_INPUT_BYTES,
                    },
                    failures: h
                        .failures
                        .iter()
                        .map(|f| FailureKind {
                            kind: f.kind.to_owned(),
                            retryable: f.retryable,
                            when: f.when.to_owned(),
                        })
                        .collect(),
                    hooks: t.hook_names().into_iter().map(str::to_owned).collect(),
                }
            })
            .collect(),
        max_batch: MAX_BATCH,
    })
}

/// The caller's tenant's task statistics, aggregated in the table across every instance.
#[utoipa::path(
    get,
    path = "/api/metrics",
    operation_id = "getTaskMetricsV2",
    tag = "tasks-v2",
    responses((status = 200, body = TaskMetrics))
)]
#[deprecated = "v2"]
pub async fn metrics(State(store): State<DynStore>, operator: Operator) -> Result<ApiJson<TaskMetrics>, ApiError> {
    // The store, not the engine: reading statistics links no engine (its HTTP and queue clients).
    let metrics = stats::read(&store, operator.tenant.as_str()).await.map_err(super::TaskError::from)?;
    Ok(ApiJson(metrics))
}
