//! The agent admin routes. A secret is in exactly two answers — registration and rotation — both `no-store`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Operator;
use crate::config::Config;
use crate::config::secrets::SecretString;
use crate::features::tokens::credentials::{self, AgentId, AgentSummary};
use crate::http::{ApiError, ApiJson, ApiPath, ApiQuery, PageParams, Problem, ToProblem};
use crate::ids::UserId;
use crate::paging::CursorKey;
use crate::store::DynStore;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgent {
    #[schema(value_type = String, pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub agent_id: AgentId,
    /// The user the agent works for.
    #[schema(value_type = String, pattern = "^[!-\"$-~]{1,128}$")]
    pub owner: UserId,
}

/// An agent's secret, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentSecret {
    pub agent_id: String,
    /// Store it now: only a keyed hash is kept.
    #[schema(value_type = String)]
    pub agent_secret: SecretString,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentList {
    pub agents: Vec<AgentSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentAdminError {
    #[error("agent {0} already exists")]
    Exists(String),
    #[error("no agent {0}")]
    NotFound(String),
    #[error("agents live in the default tenant")]
    OtherTenant,
}

impl ToProblem for AgentAdminError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Exists(_) => StatusCode::CONFLICT,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::OtherTenant => StatusCode::FORBIDDEN,
        }
    }

    fn problem(&self) -> Problem {
        match self {
            Self::Exists(id) => Problem::new(self.status(), "agent-exists", "Agent exists").detail(format!(
                "agent {id} is already registered; rotate its secret instead (POST /api/v1/agents/{id}/rotate)"
            )),
            Self::NotFound(id) => Problem::new(self.status(), "not-found", "Not Found")
                .detail(format!("there is no agent {id} in your tenant")),
            Self::OtherTenant => {
                Problem::new(self.status(), "agents-default-tenant", "Agents live in the default tenant")
                    .detail("agents and the users they work for belong to the default tenant; use a key of that tenant")
            }
        }
    }
}

fn secret_answer(status: StatusCode, agent: &AgentId, secret: String) -> Response {
    let body = AgentSecret { agent_id: agent.to_string(), agent_secret: SecretString::new(secret) };
    (status, [(header::CACHE_CONTROL, "no-store")], ApiJson(body)).into_response()
}

/// Register an agent in the caller's tenant; the answer holds its secret, once.
#[utoipa::path(
    post,
    path = "/api/v1/agents",
    operation_id = "createAgent",
    tag = "admin",
    request_body = CreateAgent,
    responses(
        (status = 201, body = AgentSecret, description = "Registered; the secret is shown once (Cache-Control: no-store)"),
        (status = 403, body = crate::http::Problem, content_type = "application/problem+json", description = "The caller lacks agent:manage, or belongs to a tenant other than the default one (agents live there)"),
        (status = 409, body = crate::http::Problem, content_type = "application/problem+json", description = "The agent id is taken"),
    )
)]
pub async fn create(
    State(store): State<DynStore>,
    State(config): State<Arc<Config>>,
    operator: Operator,
    ApiJson(body): ApiJson<CreateAgent>,
) -> Result<Response, ApiError> {
    if !operator.sees_the_agent_plane() {
        return Err(AgentAdminError::OtherTenant.into());
    }
    let pepper = &config.secrets.agent;
    match credentials::create(&store, pepper, &operator.tenant, &body.agent_id, &body.owner).await? {
        Some(secret) => {
            tracing::info!(agent = body.agent_id.as_str(), "agent registered over the API");
            Ok(secret_answer(StatusCode::CREATED, &body.agent_id, secret))
        }
        None => Err(AgentAdminError::Exists(body.agent_id.to_string()).into()),
    }
}

/// The caller's tenant's agents, by id.
#[utoipa::path(
    get,
    path = "/api/v1/agents",
    operation_id = "listAgents",
    tag = "admin",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Agents per page (default 50)"),
        ("cursor" = Option<String>, Query, max_length = 8192, description = "next_cursor of the previous page, unchanged"),
    ),
    responses(
        (status = 200, body = AgentList),
        (status = 400, body = crate::http::Problem, content_type = "application/problem+json", description = "A query parameter that does not parse; `pointer` names it"),
        (status = 422, body = crate::http::Problem, content_type = "application/problem+json", description = "A limit out of range, or a cursor not issued by this listing"),
    )
)]
pub async fn list(
    State(store): State<DynStore>,
    State(cursors): State<Arc<CursorKey>>,
    operator: Operator,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<ApiJson<AgentList>, ApiError> {
    let scope = format!("agents:{}", operator.tenant);
    let (limit, cursor) = params.open(&cursors, &scope, 50, 100)?;
    let (agents, next) = credentials::list(&store, &operator.tenant, limit, cursor).await?;
    Ok(ApiJson(AgentList { agents, next_cursor: next.map(|c| cursors.seal(&scope, &c)) }))
}

/// Disable an agent: its secret and every refresh token it holds stop working (access tokens live out their
/// minutes).
#[utoipa::path(
    post,
    path = "/api/v1/agents/{agent_id}/disable",
    operation_id = "disableAgent",
    tag = "admin",
    params(("agent_id" = String, Path, pattern = "^[A-Za-z0-9._-]{1,64}$")),
    responses(
        (status = 204, description = "Disabled"),
        (status = 404, body = crate::http::Problem, content_type = "application/problem+json", description = "No such agent in the caller's tenant"),
        (status = 422, body = crate::http::Problem, content_type = "application/problem+json", description = "Not an agent id; `pointer` is /agent_id"),
    )
)]
pub async fn disable(
    State(store): State<DynStore>,
    operator: Operator,
    ApiPath(agent): ApiPath<AgentId>,
) -> Result<StatusCode, ApiError> {
    if credentials::disable_in(&store, &operator.tenant, &agent).await? {
        tracing::info!(agent = agent.as_str(), "agent disabled over the API");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AgentAdminError::NotFound(agent.to_string()).into())
    }
}

/// Give an agent a new secret (shown once); the old one and its refresh tokens stop working.
#[utoipa::path(
    post,
    path = "/api/v1/agents/{agent_id}/rotate",
    operation_id = "rotateAgentCredential",
    tag = "admin",
    params(("agent_id" = String, Path, pattern = "^[A-Za-z0-9._-]{1,64}$")),
    responses(
        (status = 200, body = AgentSecret, description = "The new secret, shown once (Cache-Control: no-store)"),
        (status = 404, body = crate::http::Problem, content_type = "application/problem+json", description = "No such agent in the caller's tenant"),
        (status = 422, body = crate::http::Problem, content_type = "application/problem+json", description = "Not an agent id; `pointer` is /agent_id"),
    )
)]
pub async fn rotate(
    State(store): State<DynStore>,
    State(config): State<Arc<Config>>,
    operator: Operator,
    ApiPath(agent): ApiPath<AgentId>,
) -> Result<Response, ApiError> {
    match credentials::rotate_secret_in(&store, &config.secrets.agent, &operator.tenant, &agent).await? {
        Some(secret) => Ok(secret_answer(StatusCode::OK, &agent, secret)),
        None => Err(AgentAdminError::NotFound(agent.to_string()).into()),
    }
}
