//! v3: `/v3/tasks` — create (synchronous or queued), read, list with filters, cancel.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use serde::Deserialize;

use super::engine::{Engine, Submitted};
use super::intake::{Draft, Edge, Finished, parse_task, problem_of};
use super::model::{Status, Task, TaskId};
use crate::auth::Operator;
use crate::http::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::paging::CursorKey;
use crate::runtime::AfterResponse;
pub use cloud_agent_wire::tasks::{CreateTask, TaskOptions, TaskPage};

fn location(id: &TaskId) -> String {
    format!("/v3/tasks/{id}")
}

/// Create a task: run it now (the answer carries the result), or queue it (202 with its URL).
#[utoipa::path(
    post,
    path = "/v3/tasks",
    operation_id = "createTask",
    tag = "tasks",
    request_body = CreateTask,
    responses(
        (status = 201, body = Task, description = "Ran synchronously and succeeded; Location names it"),
        (status = 200, body = Task, description = "The idempotency key named an existing task with the same input (Idempotent-Replayed: true)"),
        (status = 202, body = Task, description = "Queued; poll Location or wait for the webhook"),
        (status = 409, body = crate::http::Problem, content_type = "application/problem+json", description = "Another request with the same idempotency key is being processed (idempotency-in-progress), or a concurrent change (write-conflict); retry after Retry-After"),
        (status = 429, body = crate::http::Problem, content_type = "application/problem+json", description = "Over the delegation quota (rate-limited), or the tenant already has its cap of queued tasks unfinished (queue-full); see Retry-After"),
        (status = 413, body = crate::http::Problem, content_type = "application/problem+json", description = "A queued task's input is over 256 KiB, or a hook's size policy refused it (the hook's own problem type)"),
        (status = 422, body = crate::http::Problem, content_type = "application/problem+json", description = "Unknown type, bad options, an input the handler refuses (`pointer` names the field), or an idempotency key reused with another input"),
        (status = 502, body = crate::http::Problem, content_type = "application/problem+json", description = "The task failed after its attempts (task-failed)"),
        (status = 503, body = crate::http::Problem, content_type = "application/problem+json", description = "Datastore unavailable or the request budget ran out (see Retry-After); or the task's type depends on a service that is unavailable (model-unavailable: no model configured, or its circuit breaker open with no cached answer)"),
        (status = 504, body = crate::http::Problem, content_type = "application/problem+json", description = "The task ran past its deadline and was stopped (task-timed-out)"),
    )
)]
pub async fn create(
    State(engine): State<Arc<Engine>>,
    operator: Operator,
    after: Option<Extension<AfterResponse>>,
    ApiJson(body): ApiJson<CreateTask>,
) -> Result<Response, ApiError> {
    let options = body.options;
    let draft = Draft {
        kind: body.kind,
        input: body.payload,
        priority: options.priority,
        webhook: options.webhook,
        idempotency_key: options.idempotency_key,
        timeout_ms: options.timeout_ms,
        asynchronous: options.asynchronous,
    };
    let new = parse_task(engine.types(), Edge::V3, "", draft)?;
    let submitted = engine.submit(&operator, new).await?;
    if matches!(submitted, Submitted::Queued(_)) {
        super::worker::drain_after_response(&engine, after.as_deref());
    }
    Ok(answer(submitted))
}

fn answer(submitted: Submitted) -> Response {
    match submitted {
        Submitted::Existing(record) => (
            StatusCode::OK,
            [
                (header::LOCATION, location(&record.id)),
                (header::HeaderName::from_static("idempotent-replayed"), "true".into()),
            ],
            ApiJson(record.view()),
        )
            .into_response(),
        Submitted::Queued(record) => {
            (StatusCode::ACCEPTED, [(header::LOCATION, location(&record.id))], ApiJson(record.view())).into_response()
        }
        Submitted::Ran(record) => match problem_of(&record) {
            Some(problem) => ApiError::from(Finished(problem)).into_response(),
            None => (StatusCode::CREATED, [(header::LOCATION, location(&record.id))], ApiJson(record.view()))
                .into_response(),
        },
    }
}

/// One task of the caller's tenant.
#[utoipa::path(
    get,
    path = "/v3/tasks/{task_id}",
    operation_id = "getTask",
    tag = "tasks",
    params(("task_id" = String, Path, description = "The task's id (t_ and 32 hex digits)", pattern = "^t_[0-9a-f]{32}$")),
    responses(
        (status = 200, body = Task),
        (status = 404, body = crate::http::Problem, content_type = "application/problem+json", description = "No such task in your tenant"),
        (status = 422, body = crate::http::Problem, content_type = "application/problem+json", description = "Not a task id"),
    )
)]
pub async fn get_one(
    State(engine): State<Arc<Engine>>,
    operator: Operator,
    ApiPath(id): ApiPath<TaskId>,
) -> Result<ApiJson<Task>, ApiError> {
    Ok(ApiJson(engine.get(operator.tenant.as_str(), &id).await?.view()))
}

/// Cancel a queued or running task. A running task's result, if it comes, is discarded.
#[utoipa::path(
    delete,
    path = "/v3/tasks/{task_id}",
    operation_id = "cancelTask",
    tag = "tasks",
    params(("task_id" = String, Path, description = "The task's id", pattern = "^t_[0-9a-f]{32}$")),
    responses(
        (status = 200, body = Task, description = "Cancelled"),
        (status = 404, body = crate::http::Problem, content_type = "application/problem+json", description = "No such task in your tenant"),
        (status = 409, body = crate::http::Problem, content_type = "application/problem+json", description = "Already finished"),
        (status = 422, body = crate::http::Problem, content_type = "application/problem+json", description = "Not a task id"),
    )
)]
pub async fn cancel(
    State(engine): State<Arc<Engine>>,
    operator: Operator,
    ApiPath(id): ApiPath<TaskId>,
) -> Result<ApiJson<Task>, ApiError> {
    Ok(ApiJson(engine.cancel(&operator, &id).await?.view()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    #[serde(default)]
    status: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    cursor: Option<String>,
}

/// The caller's tenant's tasks, newest first.
#[utoipa::path(
    get,
    path = "/v3/tasks",
    operation_id = "listTasks",
    tag = "tasks",
    params(
        ("status" = Option<String>, Query, description = "queued, running, succeeded, failed, cancelled or timed_out", max_length = 16),
        ("type" = Option<String>, Query, description = "A handler name", max_length = 64),
        ("limit" = Option<u32>, Query, description = "1-100 (default 20)", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page, with the same filters", max_length = 1024),
    ),
    responses(
        (status = 200, body = TaskPage),
        (status = 400, body = crate::http::Problem, content_type = "application/problem+json", description = "An unknown query parameter"),
        (status = 422, body = crate::http::Problem, content_type = "application/problem+json", description = "Bad status, type, limit or cursor; `pointer` names it"),
    )
)]
pub async fn list(
    State(engine): State<Arc<Engine>>,
    State(cursors): State<Arc<CursorKey>>,
    operator: Operator,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<ApiJson<TaskPage>, ApiError> {
    let status = params
        .status
        .as_deref()
        .map(|s| {
            Status::parse(s).ok_or_else(|| {
                ApiError::unprocessable(
                    "/status",
                    "status must be queued, running, succeeded, failed, cancelled or timed_out",
                )
            })
        })
        .transpose()?;
    if let Some(kind) = params.kind.as_deref()
        && engine.types().find(kind).is_none()
    {
        return Err(ApiError::unprocessable(
            "/type",
            format!("unknown task type {kind:?}; known: {}", engine.types().names()),
        ));
    }
    let tenant = operator.tenant.as_str();
    // The cursor is bound to the tenant and the filters: it cannot page into anything else.
    let scope = format!(
        "v3-tasks\u{1f}{tenant}\u{1f}{}\u{1f}{}",
        params.status.as_deref().unwrap_or_default(),
        params.kind.as_deref().unwrap_or_default()
    );
    let page = crate::http::PageParams { cursor: params.cursor, limit: params.limit };
    let (limit, start) = page.open(&cursors, &scope, 20, 100)?;
    let (tasks, next) = engine.list(tenant, status, params.kind.as_deref(), limit, start).await?;
    let tasks = tasks.iter().map(super::model::TaskRecord::view).collect();
    Ok(ApiJson(TaskPage { tasks, next_cursor: next.map(|c| cursors.seal(&scope, &c)) }))
}
