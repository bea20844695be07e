//! `GET /api/v1/agent/context`: the calling agent's user context, cached per instance.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::AgentIdentity;
use crate::cache::CacheStatus;
use crate::config::Config;
use crate::features::context::{self, ContextCache, ContextError, StoredContext};
use crate::http::{ApiError, ApiJson};
use crate::store::DynStore;

/// The context plus where it came from.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContextResponse {
    #[serde(flatten)]
    pub context: StoredContext,
    /// True when served from this instance's cache (fresh or stale).
    pub cached: bool,
    /// HIT, MISS or STALE (also in the `X-Cache` header).
    pub cache: CacheStatus,
}

fn respond(context: &StoredContext, status: CacheStatus) -> Response {
    let cached = status != CacheStatus::Miss;
    let mut response = ApiJson(ContextResponse { context: context.clone(), cached, cache: status }).into_response();
    response.headers_mut().insert("x-cache", HeaderValue::from_static(status.as_str()));
    response
}

/// The context of the user the agent works for. While the store is failing, a copy this instance loaded less
/// than `CLOUD_AGENT_CONTEXT_STALE_MAX_SECS` ago is served as `X-Cache: STALE`; older than that, 503.
#[utoipa::path(
    get,
    path = "/api/v1/agent/context",
    operation_id = "getAgentContext",
    tag = "agent",
    security(("bearer" = [])),
    responses(
        (status = 200, body = ContextResponse, headers(("X-Cache" = String, description = "HIT, MISS or STALE"))),
        (status = 404, body = crate::http::Problem, content_type = "application/problem+json"),
        (status = 503, body = crate::http::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get(
    State(store): State<DynStore>,
    State(cache): State<Arc<ContextCache>>,
    State(config): State<Arc<Config>>,
    identity: AgentIdentity,
) -> Result<Response, ApiError> {
    let user = identity.owner;
    let loaded = cache.get_or_load(user.clone(), || context::load(&store, &user)).await;
    match loaded {
        Ok((value, status)) => Ok(respond(&value, status)),
        Err(e @ ContextError::NotFound(_)) => Err(e.into()),
        Err(ContextError::Store(e)) => match cache.get_stale(&user, config.context_stale_max) {
            Some(stale) => {
                tracing::warn!(error = %e, "store failed; serving a stale cached context");
                Ok(respond(&stale, CacheStatus::Stale))
            }
            None => Err(e.into()),
        },
    }
}
