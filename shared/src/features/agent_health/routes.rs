//! Agents report their own health; operators list the latest report of every agent.
//! The answer to a report has the health-report shape agents already parse: `{status, agent_id, environment, health: {overall, checks,
//! metrics, alerts}, performance: {responseTime, uptime, requestCounts, errorRate}}`.

use std::collections::BTreeMap;

use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{AgentIdentity, Operator};
use crate::features::health::{HealthStatus, report};
use crate::features::tokens::credentials::AgentId;
use crate::http::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::paging::CursorKey;
use crate::state::AppState;
use crate::store::DynStore;
use crate::store::{Query as StoreQuery, keys, now_epoch};

use super::records::ReportRecord;
use super::report::{AgentCheck, AgentReport, AgentStatus, validate};

const PARTITION: &str = keys::AGENT_HEALTH_PARTITION;

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthSection {
    pub overall: AgentStatus,
    pub checks: BTreeMap<String, AgentCheck>,
    pub metrics: BTreeMap<String, f64>,
    #[schema(value_type = Vec<Object>)]
    pub alerts: Vec<crate::alerts::Active>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Performance {
    /// Median and p95 response time of this instance, in ms.
    pub response_time: BTreeMap<String, f64>,
    /// Seconds this instance has been up.
    pub uptime: f64,
    pub request_counts: BTreeMap<String, u64>,
    pub error_rate: f64,
}

/// The answer to a health report: the agent's status, its checks and its performance.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentHealth {
    pub status: AgentStatus,
    pub agent_id: String,
    pub environment: String,
    pub health: HealthSection,
    pub performance: Performance,
}

fn from_service(s: HealthStatus) -> AgentStatus {
    match s {
        HealthStatus::Pass => AgentStatus::Healthy,
        HealthStatus::Warn => AgentStatus::Degraded,
        HealthStatus::Fail => AgentStatus::Unhealthy,
    }
}

/// Report this agent's health; the answer combines it with the service's view.
#[utoipa::path(
    post,
    path = "/api/v1/agent/health",
    operation_id = "reportAgentHealth",
    tag = "agent",
    security(("bearer" = [])),
    request_body = AgentReport,
    responses(
        (status = 200, body = AgentHealth),
        (status = 400, body = crate::http::Problem, content_type = "application/problem+json", description = "Malformed report, naming the field"),
        (status = 422, body = crate::http::Problem, content_type = "application/problem+json", description = "Too many or too long entries, or numbers DynamoDB cannot store"),
    )
)]
pub async fn post(
    State(state): State<AppState>,
    identity: AgentIdentity,
    ApiJson(agent_report): ApiJson<AgentReport>,
) -> Result<ApiJson<AgentHealth>, ApiError> {
    validate(&agent_report)?;
    let record =
        ReportRecord { agent_id: identity.agent_id.clone(), reported_at: now_epoch(), report: agent_report.clone() };
    // Bounded by `validate` far below 400 KB; `to_item` checks it stays so if the limits above ever grow.
    state.store().put(record.to_item()?, None).await?;
    let service = report(&state).await;
    let summary = state.metrics().summary();
    let overall = agent_report.status.max(from_service(service.status));
    Ok(ApiJson(AgentHealth {
        status: overall,
        agent_id: identity.agent_id,
        environment: state.config().environment.as_str().into(),
        health: HealthSection {
            overall,
            checks: agent_report.checks,
            metrics: agent_report.metrics,
            alerts: service.alerts,
        },
        performance: Performance {
            response_time: BTreeMap::from([
                ("p50".to_owned(), summary.p50_seconds * 1000.0),
                ("p95".to_owned(), summary.p95_seconds * 1000.0),
            ]),
            uptime: summary.uptime_seconds,
            request_counts: BTreeMap::from([
                ("total".to_owned(), summary.requests),
                ("errors".to_owned(), summary.server_errors),
            ]),
            error_rate: summary.error_rate,
        },
    }))
}

#[derive(Debug, Deserialize)]
pub struct ListParams {
    #[serde(default)]
    cursor: Option<String>,
}

/// One agent's latest report.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reported {
    pub agent_id: String,
    pub reported_at: i64,
    pub report: AgentReport,
}

impl From<ReportRecord> for Reported {
    fn from(record: ReportRecord) -> Self {
        Self { agent_id: record.agent_id, reported_at: record.reported_at, report: record.report }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentHealthList {
    pub agents: Vec<Reported>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The latest report of every agent that reported within the last hour (admin key).
#[utoipa::path(
    get,
    path = "/api/v1/agents/health",
    operation_id = "listAgentHealth",
    tag = "admin",
    security(("bearer" = [])),
    params(("cursor" = Option<String>, Query, max_length = 8192, description = "next_cursor of the previous page, unchanged")),
    responses(
        (status = 200, body = AgentHealthList),
        (status = 400, body = crate::http::Problem, content_type = "application/problem+json", description = "A query parameter that does not parse; `pointer` names it"),
        (status = 422, body = crate::http::Problem, content_type = "application/problem+json", description = "A cursor that was not issued by this listing"),
    )
)]
pub async fn list(
    State(store): State<DynStore>,
    State(cursors): State<Arc<CursorKey>>,
    operator: Operator,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<ApiJson<AgentHealthList>, ApiError> {
    if !operator.sees_the_agent_plane() {
        return Ok(ApiJson(AgentHealthList { agents: Vec::new(), next_cursor: None }));
    }
    let cursor = crate::http::cursor_param(&cursors, PARTITION, params.cursor.as_deref())?;
    let page = store.query(StoreQuery::partition(PARTITION).limit(100).after(cursor)).await?;
    let agents = page.items.iter().filter_map(ReportRecord::from_item).map(Reported::from).collect();
    let next_cursor = page.next.map(|c| cursors.seal(PARTITION, &c));
    Ok(ApiJson(AgentHealthList { agents, next_cursor }))
}

/// One agent's latest report, if it reported within the last hour (admin key).
#[utoipa::path(
    get,
    path = "/api/v1/agents/{agent_id}/health",
    operation_id = "getAgentHealth",
    tag = "admin",
    params(("agent_id" = String, Path, pattern = "^[A-Za-z0-9._-]{1,64}$")),
    responses(
        (status = 200, body = Reported),
        (status = 404, body = crate::http::Problem, content_type = "application/problem+json", description = "No report from this agent within the last hour"),
        (status = 422, body = crate::http::Problem, content_type = "application/problem+json", description = "Not an agent id; `pointer` is /agent_id"),
    )
)]
pub async fn get(
    State(store): State<DynStore>,
    operator: Operator,
    ApiPath(agent): ApiPath<AgentId>,
) -> Result<ApiJson<Reported>, ApiError> {
    let item = if operator.sees_the_agent_plane() { store.get(&ReportRecord::key(&agent)).await? } else { None };
    item.as_ref().and_then(ReportRecord::from_item).map(|record| ApiJson(record.into())).ok_or_else(|| {
        ApiError::NotFound(format!("no health report from agent {} within the last hour", agent.as_str()))
    })
}
