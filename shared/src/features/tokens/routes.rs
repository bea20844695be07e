//! Token routes: issue (client credentials), refresh (rotation), revoke (RFC 7009), and `me`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::AgentIdentity;
use crate::config::Config;
use crate::config::SecretString;
use crate::features::tokens::credentials::{self, AgentId};
use crate::features::tokens::family::{self, Issued};
use crate::http::{ApiError, ApiJson, json};
use crate::store::DynStore;
use crate::token::TokenError;
use crate::token::Tokens;

/// Body of `POST /api/v1/agent/token` as JSON. (The OAuth form `grant_type=client_credentials` with HTTP Basic
/// or `client_id`/`client_secret` in the body is accepted too.)
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub agent_id: String,
    #[schema(value_type = String, max_length = 256)]
    pub agent_secret: SecretString,
}

/// Body of `POST /api/v1/agent/token/refresh` as JSON (or the form `grant_type=refresh_token&refresh_token=…`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[schema(value_type = String, max_length = 4096)]
    pub refresh_token: SecretString,
}

/// Body of `POST /api/v1/agent/token/revoke` (RFC 7009), as JSON or form.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RevokeRequest {
    #[schema(value_type = String, max_length = 4096)]
    pub token: SecretString,
    /// `access_token` or `refresh_token`; optional, as in RFC 7009 (an unknown hint is ignored).
    #[serde(default)]
    #[schema(max_length = 64)]
    pub token_type_hint: Option<String>,
}

/// The OAuth form fields we read.
#[derive(Debug, Default, Deserialize)]
struct OAuthForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    refresh_token: Option<SecretString>,
    token: Option<SecretString>,
    token_type_hint: Option<String>,
}

enum Body {
    Json(Bytes),
    Form(OAuthForm),
}

fn body(headers: &HeaderMap, bytes: Bytes) -> Result<Body, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(Body::Json(bytes)),
        "application/x-www-form-urlencoded" => serde_urlencoded::from_bytes(&bytes)
            .map(Body::Form)
            .map_err(|e| ApiError::InvalidJson { detail: format!("invalid form body: {e}"), pointer: None }),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "expected application/json or application/x-www-form-urlencoded, got {}",
            if content_type.is_empty() { "no Content-Type" } else { content_type }
        ))),
    }
}

/// `Authorization: Basic` client credentials (RFC 6749 §2.3.1: each part form-urlencoded).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape =
        |s: &str| serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}")).ok()?.pop().map(|(_, v)| v);
    Some((unescape(id)?, unescape(secret)?))
}

fn require_grant(form: &OAuthForm, wanted: &str) -> Result<(), ApiError> {
    match form.grant_type.as_deref() {
        Some(g) if g == wanted => Ok(()),
        Some(other) => {
            Err(TokenError::InvalidRequest(format!("unsupported grant_type {other:?}; use {wanted}")).into())
        }
        None => Err(TokenError::InvalidRequest(format!("grant_type is required ({wanted})")).into()),
    }
}

/// Token responses must not be cached (RFC 6749 §5.1).
fn token_response(issued: Issued) -> Response {
    let mut response = ApiJson(issued).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// Exchange an agent credential for an access token and a refresh token.
///
/// Agents get a refresh token although RFC 6749 §4.4.3 says client credentials SHOULD NOT: an agent's secret is
/// a long-lived credential that should travel as rarely as possible, and rotation with reuse detection notices a
/// stolen refresh token, which re-presenting the secret every 15 minutes would not.
#[utoipa::path(
    post,
    path = "/api/v1/agent/token",
    operation_id = "issueAgentToken",
    tag = "agent",
    request_body(content = TokenRequest, description = "JSON, or the OAuth client_credentials form"),
    responses(
        (status = 200, body = Issued, description = "A new token pair (a new refresh family)"),
        (status = 401, body = crate::http::Problem, content_type = "application/problem+json", description = "Invalid agent credentials"),
    )
)]
pub async fn token(
    State(store): State<DynStore>,
    State(tokens): State<Arc<Tokens>>,
    State(config): State<Arc<Config>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let (id, secret) = match body(&headers, bytes)? {
        Body::Json(bytes) => {
            let request: TokenRequest = json::parse(&bytes)?;
            (request.agent_id, request.agent_secret.into_inner())
        }
        Body::Form(form) => {
            require_grant(&form, "client_credentials")?;
            match (basic_credentials(&headers), form.client_id, form.client_secret) {
                (Some(pair), _, _) => pair,
                (None, Some(id), Some(secret)) => (id, secret.into_inner()),
                _ => return Err(TokenError::InvalidClient.into()),
            }
        }
    };
    // A malformed id cannot belong to any agent: answer like any other bad credential.
    let id = AgentId::parse(&id).map_err(|_| TokenError::InvalidClient)?;
    let agent = credentials::authenticate(&store, &config.secrets.agent, &id, &secret).await?;
    let issued = family::issue(&store, &tokens, &agent).await?;
    tracing::info!(agent = %agent.id, "issued a token pair");
    Ok(token_response(issued))
}

/// Rotate a refresh token: the presented one stops working and its successor is returned.
#[utoipa::path(
    post,
    path = "/api/v1/agent/token/refresh",
    operation_id = "refreshAgentToken",
    tag = "agent",
    request_body(content = RefreshRequest, description = "JSON, or the OAuth refresh_token form"),
    responses(
        (status = 200, body = Issued, description = "The successor pair"),
        (status = 401, body = crate::http::Problem, content_type = "application/problem+json",
         description = "Unknown or expired token, revoked family, reuse detected (the family is then revoked), or the agent's credential changed since login (new secret, new owner, disabled: log in again)"),
    )
)]
pub async fn refresh(
    State(store): State<DynStore>,
    State(tokens): State<Arc<Tokens>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let presented = match body(&headers, bytes)? {
        Body::Json(bytes) => json::parse::<RefreshRequest>(&bytes)?.refresh_token,
        Body::Form(form) => {
            require_grant(&form, "refresh_token")?;
            form.refresh_token.ok_or_else(|| TokenError::InvalidRequest("refresh_token is required".into()))?
        }
    };
    let issued = family::refresh(&store, &tokens, presented.expose()).await?;
    Ok(token_response(issued))
}

/// Revoke a token (RFC 7009): always 200, also for unknown tokens. Revoking either token of a pair revokes the
/// refresh family at once; access tokens already issued stay valid until they expire (minutes).
#[utoipa::path(
    post,
    path = "/api/v1/agent/token/revoke",
    operation_id = "revokeAgentToken",
    tag = "agent",
    request_body(content = RevokeRequest, description = "JSON or form"),
    responses((status = 200, description = "Revoked, or there was nothing to revoke"))
)]
pub async fn revoke(
    State(store): State<DynStore>,
    State(tokens): State<Arc<Tokens>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let request = match body(&headers, bytes)? {
        Body::Json(bytes) => json::parse::<RevokeRequest>(&bytes)?,
        Body::Form(form) => RevokeRequest {
            token: form.token.ok_or_else(|| TokenError::InvalidRequest("token is required".into()))?,
            token_type_hint: form.token_type_hint,
        },
    };
    family::revoke(&store, &tokens, request.token.expose()).await?;
    Ok(ApiJson(serde_json::json!({})).into_response())
}

/// The calling agent, as its access token says.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub agent_id: String,
    pub owner: String,
    pub environment: &'static str,
    /// Epoch seconds.
    pub token_expires_at: i64,
}

/// Who am I? Checks an access token and says whom it belongs to.
#[utoipa::path(
    get,
    path = "/api/v1/agent/me",
    operation_id = "getAgentSelf",
    tag = "agent",
    security(("bearer" = [])),
    responses(
        (status = 200, body = Me),
        (status = 401, body = crate::http::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn me(State(tokens): State<Arc<Tokens>>, identity: AgentIdentity) -> ApiJson<Me> {
    ApiJson(Me {
        agent_id: identity.agent_id,
        owner: identity.owner.to_string(),
        environment: tokens.environment(),
        token_expires_at: identity.expires_at,
    })
}
