//! `POST /api/v1/agent/progress` (batched, idempotent, partial success) and `GET /api/v1/agent/progress/{task_id}`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::Value as Json;
use tokio::time::Instant;

use crate::auth::AgentIdentity;
use crate::config::Config;
use crate::features::progress::{self, Claim, ItemIssue, ProgressError, Receipt, TaskProgress};
use crate::http::{ApiError, ApiJson, ApiPath, ApiQuery, json};
use crate::ids::{BatchId, ProgressTaskId};
use crate::paging::CursorKey;
use crate::store::BatchRetry;
use crate::store::DynStore;

/// The envelope: `{batch_id?, updates: [...]}` (a single update object is accepted as well).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ProgressBatch {
    /// Idempotency key for this batch (the `Idempotency-Key` header works too): 1–128 visible ASCII
    /// characters. Without one, the server makes one up (and a resend is a new batch).
    #[serde(default)]
    #[schema(pattern = "^[!-~]{1,128}$")]
    pub batch_id: Option<String>,
    /// Each update is validated on its own: one that breaks the schema is listed in the receipt's `rejected`
    /// and the others are still stored.
    #[schema(value_type = Vec<crate::features::progress::ProgressUpdate>, max_items = 100)]
    pub updates: Vec<Json>,
}

/// Report progress. Each update is validated on its own; the answer says which were stored (`accepted`),
/// which were invalid (`rejected`) and which could not be stored in time (`failed` — resend the batch with the
/// same batch id; nothing is ever duplicated).
#[utoipa::path(
    post,
    path = "/api/v1/agent/progress",
    operation_id = "postProgress",
    tag = "agent",
    security(("bearer" = [])),
    request_body(content = ProgressBatch, description = "A batch, a bare JSON list of updates, or one update (see ProgressUpdate)"),
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,128}$", description = "Same as batch_id")),
    responses(
        (status = 202, body = Receipt, description = "Receipt (also for a replayed batch: header Idempotency-Replayed)"),
        (status = 409, body = crate::http::Problem, content_type = "application/problem+json", description = "The same batch is still being processed; see Retry-After"),
        (status = 413, body = crate::http::Problem, content_type = "application/problem+json", description = "More than 100 updates"),
        (status = 422, body = crate::http::Problem, content_type = "application/problem+json", description = "Batch id reused with a different body"),
    )
)]
pub async fn post(
    State(store): State<DynStore>,
    State(config): State<Arc<Config>>,
    identity: AgentIdentity,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !content_type.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType("expected application/json".into()));
    }
    let raw: Json = json::parse(&body)?;
    // Three shapes: the envelope, a bare list of updates, or one update.
    let (batch_id, updates) = match raw {
        Json::Array(updates) => (None, updates),
        raw if raw.get("updates").is_some() => {
            let batch: ProgressBatch = json::parse(&body)?;
            (batch.batch_id, batch.updates)
        }
        raw => (None, vec![raw]),
    };
    if updates.len() > progress::MAX_UPDATES {
        return Err(ProgressError::TooMany(updates.len()).into());
    }
    let header_key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let batch_id = batch_id.or(header_key).unwrap_or_else(crate::ids::new_id);
    let batch_id = BatchId::parse(&batch_id).map_err(|_| ProgressError::BadBatchId)?;
    let agent = identity.agent_id.as_str();
    let budget = config.request_timeout;
    let lease = match progress::claim(&store, agent, &batch_id, &progress::body_hash(&body), budget).await? {
        Claim::Done(receipt) => {
            let mut response = (StatusCode::ACCEPTED, ApiJson(receipt)).into_response();
            response.headers_mut().insert("idempotency-replayed", HeaderValue::from_static("true"));
            return Ok(response);
        }
        Claim::Fresh { lease } => lease,
    };
    let mut valid = Vec::new();
    let mut rejected = Vec::new();
    for (index, raw) in updates.into_iter().enumerate() {
        match progress::validate(index, raw) {
            Ok(v) => valid.push(v),
            Err((task_id, reason)) => rejected.push(ItemIssue { index, task_id, reason }),
        }
    }
    // Leave a margin of the budget for the receipt write.
    let retry = BatchRetry { deadline: Some(started + budget.mul_f32(0.7)), ..BatchRetry::default() };
    let (accepted, failed) = progress::write(&store, &identity.owner, agent, &batch_id, valid, retry).await;
    let receipt = Receipt { batch_id: batch_id.to_string(), accepted, rejected, failed };
    progress::finish(&store, agent, &batch_id, &lease, &receipt).await?;
    tracing::info!(batch = %batch_id, accepted, rejected = receipt.rejected.len(), failed = receipt.failed.len(), "progress batch");
    Ok((StatusCode::ACCEPTED, ApiJson(receipt)).into_response())
}

#[derive(Debug, Deserialize)]
pub struct HistoryParams {
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    cursor: Option<String>,
}

/// A task's latest state and its history, newest first (`limit` ≤ 100, `cursor` for the next page). Tasks belong
/// to the user the agent works for: every agent of that user may read them; for anyone else they do not exist.
#[utoipa::path(
    get,
    path = "/api/v1/agent/progress/{task_id}",
    operation_id = "getProgress",
    tag = "agent",
    security(("bearer" = [])),
    params(
        ("task_id" = String, Path, pattern = "^[A-Za-z0-9._:-]{1,128}$"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "History items per page (default 20)"),
        ("cursor" = Option<String>, Query, max_length = 8192, description = "next_cursor of the previous page, unchanged"),
    ),
    responses(
        (status = 200, body = TaskProgress),
        (status = 400, body = crate::http::Problem, content_type = "application/problem+json", description = "A query parameter that does not parse; `pointer` names it"),
        (status = 404, body = crate::http::Problem, content_type = "application/problem+json", description = "No such task for this agent's user"),
        (status = 422, body = crate::http::Problem, content_type = "application/problem+json", description = "Invalid task id, limit or cursor"),
    )
)]
pub async fn get(
    State(store): State<DynStore>,
    State(cursors): State<Arc<CursorKey>>,
    identity: AgentIdentity,
    ApiPath(task_id): ApiPath<ProgressTaskId>,
    ApiQuery(params): ApiQuery<HistoryParams>,
) -> Result<ApiJson<TaskProgress>, ApiError> {
    let limit = params.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::Unprocessable { detail: "limit must be 1..=100".into(), pointer: None });
    }
    let scope = progress::history_scope(&identity.owner, &task_id);
    let cursor = crate::http::cursor_param(&cursors, &scope, params.cursor.as_deref())?;
    let (mut task, next) = progress::read(&store, &identity.owner, &task_id, limit, cursor).await?;
    task.next_cursor = next.map(|c| cursors.seal(&scope, &c));
    Ok(ApiJson(task))
}
