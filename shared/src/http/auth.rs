//! The agent authentication layer: a route-level middleware that accepts only a valid access token
//! (`Authorization: Bearer …`) and hands the handler a typed [`AgentIdentity`].

use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header;
use http::request::Parts;

use super::problem::ApiError;
use crate::state::AppState;
use crate::token::TokenError;

/// Who is calling: put in the request by [`require_agent`], taken by handlers as an extractor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentIdentity {
    pub agent_id: String,
    /// The user the agent works for: the tenant of everything the agent reads and writes.
    pub owner: crate::ids::UserId,
    /// The refresh family the access token belongs to.
    pub family: String,
    pub token_id: String,
    /// Epoch seconds when the access token expires.
    pub expires_at: i64,
}

fn bearer(request: &Request) -> Result<&str, ApiError> {
    let value = request.headers().get(header::AUTHORIZATION).ok_or(ApiError::MissingToken)?;
    let text = value.to_str().map_err(|_| ApiError::from(TokenError::Malformed))?;
    match text.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => Ok(token.trim()),
        _ => Err(ApiError::MissingToken),
    }
}

pub async fn require_agent(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let verified = bearer(&request).and_then(|t| state.tokens().verify_access(t).map_err(ApiError::from));
    let identity = match verified.and_then(|claims| {
        let owner = crate::ids::UserId::parse(&claims.owner).map_err(|_| TokenError::Invalid("bad owner claim"))?;
        Ok((claims, owner))
    }) {
        Ok((claims, owner)) => AgentIdentity {
            agent_id: claims.sub,
            owner,
            family: claims.fid,
            token_id: claims.jti,
            expires_at: claims.exp,
        },
        Err(e) => return e.into_response(),
    };
    tracing::Span::current().record("agent", identity.agent_id.as_str());
    request.extensions_mut().insert(identity);
    next.run(request).await
}

impl<S: Send + Sync> FromRequestParts<S> for AgentIdentity {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Only missing if a route forgot `Auth::Agent`: a bug, not the caller's fault.
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("agent route without the auth layer".into()))
    }
}

/// Admin routes: `Authorization: Bearer <admin key>` (`<ENV>_ADMIN_KEY`); without a configured key the admin
/// API is off.
pub async fn require_admin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(key) = state.config().secrets.admin.as_ref() else {
        return ApiError::AdminDisabled.into_response();
    };
    match bearer(&request) {
        Ok(presented) if crate::config::secrets::constant_time_eq(presented.as_bytes(), key.expose()) => {
            next.run(request).await
        }
        Ok(_) => ApiError::from(TokenError::Invalid("not the admin key")).into_response(),
        Err(e) => e.into_response(),
    }
}
