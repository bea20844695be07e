//! Admin routes (admin bearer key): setting the context agents read.

use std::sync::Arc;

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Operator;
use crate::config::Config;
use crate::features::context::{self, ContextCache, UserContext};
use crate::http::{ApiError, ApiJson, ApiPath};
use crate::ids::UserId;
use crate::store::DynStore;

/// Confirmation of a stored context.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContextStored {
    pub user_id: String,
    /// Instances that cached the old context serve it until their cache entry expires (the context TTL).
    pub cache_ttl_secs: u64,
}

/// Store the context of a user. Caches on other instances refresh within the context TTL.
#[utoipa::path(
    put,
    path = "/api/v1/admin/users/{user_id}/context",
    operation_id = "putUserContext",
    tag = "admin",
    security(("bearer" = [])),
    params(("user_id" = String, Path, pattern = "^[!-\"$-~]{1,128}$", description = "1-128 visible ASCII characters except #")),
    request_body = UserContext,
    responses(
        (status = 200, body = ContextStored),
        (status = 401, body = crate::http::Problem, content_type = "application/problem+json"),
        (status = 404, body = crate::http::Problem, content_type = "application/problem+json", description = "No such user in the caller's tenant (users live in the default tenant)"),
        (status = 413, body = crate::http::Problem, content_type = "application/problem+json", description = "The context is over DynamoDB's 400 KB item limit"),
        (status = 422, body = crate::http::Problem, content_type = "application/problem+json", description = "Invalid user id, or too many or too long permissions; `pointer` names which"),
    )
)]
pub async fn put_context(
    State(store): State<DynStore>,
    State(cache): State<Arc<ContextCache>>,
    State(config): State<Arc<Config>>,
    operator: Operator,
    ApiPath(user): ApiPath<UserId>,
    ApiJson(body): ApiJson<UserContext>,
) -> Result<ApiJson<ContextStored>, ApiError> {
    if !operator.sees_the_agent_plane() {
        return Err(ApiError::NotFound(format!("there is no user {} in your tenant", user.as_str())));
    }
    body.validate()?;
    context::save(&store, &user, &body).await?;
    cache.remove(&user);
    Ok(ApiJson(ContextStored { user_id: user.as_str().to_owned(), cache_ttl_secs: config.context_ttl.as_secs() }))
}
