//! Who is calling and what they may do. Three kinds of credential reach the perimeter layer
//! ([`crate::perimeter`]): an agent's access token, an operator's API key (`X-API-Key`, or
//! `Authorization: Bearer ca_…`), and the environment's bootstrap admin key. Each becomes a [`Principal`] with a
//! tenant, an actor name for the audit trail, and a set of [`Permission`]s from the one table in
//! [`permissions`].

pub mod api_key;
pub mod oidc;
pub mod permissions;
pub mod signing;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use http::request::Parts;
use http::{HeaderMap, StatusCode, header};

pub use permissions::{Permission, Role};

use crate::ids::{TenantId, UserId};
use crate::problem::{ApiError, Problem, ToProblem};
use crate::store::StoreError;
use crate::token::TokenError;

/// An authenticated agent, as handlers see it (the `AgentIdentity` extractor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentIdentity {
    pub agent_id: String,
    /// The user the agent works for: the tenant of everything the agent reads and writes.
    pub owner: UserId,
    /// The refresh family the access token belongs to.
    pub family: String,
    pub token_id: String,
    /// Epoch seconds when the access token expires.
    pub expires_at: i64,
}

/// An authenticated operator: the bootstrap admin, an API key's holder, or a user of the identity provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub tenant: TenantId,
    pub role: Role,
    /// How the audit trail names the caller: `key:ca_test_…`, `user:<sub>`, `admin:bootstrap`.
    pub actor: String,
    /// Which credential it presented: what it may do beyond its role follows from this, never from a missing
    /// field (an identity-provider user has no key either, and is not the bootstrap admin).
    pub via: Via,
}

/// The kind of credential an operator presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// The environment's bootstrap admin key: the only principal that may act across tenants.
    Bootstrap,
    /// An API key (its live record).
    Key(Arc<api_key::KeyRecord>),
    /// A user signed in at the identity provider (the token's `sub`).
    User(String),
}

impl Operator {
    /// The key used, when it was an API key.
    pub fn key(&self) -> Option<&Arc<api_key::KeyRecord>> {
        match &self.via {
            Via::Key(key) => Some(key),
            Via::Bootstrap | Via::User(_) => None,
        }
    }

    /// Whether this is the bootstrap admin key, which alone may name another tenant.
    pub fn is_bootstrap(&self) -> bool {
        matches!(self.via, Via::Bootstrap)
    }

    /// Agents, the users they work for, their health reports and contexts live in the default tenant (agent tokens
    /// carry no tenant yet): an operator of another tenant sees none of them, as if absent, and cannot add any.
    pub fn sees_the_agent_plane(&self) -> bool {
        self.tenant == TenantId::default_tenant()
    }
}

/// Whoever passed the perimeter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Agent(AgentIdentity),
    Operator(Operator),
}

impl Principal {
    pub fn allows(&self, permission: Permission) -> bool {
        match self {
            Self::Agent(_) => permissions::AGENT.contains(&permission),
            Self::Operator(o) => o.role.allows(permission),
        }
    }

    /// `agent:<id>`, `key:ca_test_…`, `admin:bootstrap`: never a secret.
    pub fn actor(&self) -> String {
        match self {
            Self::Agent(a) => format!("agent:{}", a.agent_id),
            Self::Operator(o) => o.actor.clone(),
        }
    }

    /// The role named in the audit trail (`agent` for agents).
    pub fn role_name(&self) -> &'static str {
        match self {
            Self::Agent(_) => "agent",
            Self::Operator(o) => o.role.as_str(),
        }
    }

    /// The tenant whose audit trail the request joins. Agents belong to the deployment's default tenant
    /// (agents are registered by its admins); their data is further scoped by the user they work for.
    /// The tenant, borrowed (no copy on the request path).
    pub fn tenant_str(&self) -> &str {
        match self {
            Self::Agent(_) => TenantId::DEFAULT,
            Self::Operator(o) => o.tenant.as_str(),
        }
    }

    pub fn tenant(&self) -> TenantId {
        match self {
            Self::Agent(_) => TenantId::default_tenant(),
            Self::Operator(o) => o.tenant.clone(),
        }
    }
}

/// Why the perimeter refused a request.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no credential")]
    Missing,
    #[error("unknown, revoked or expired API key")]
    InvalidKey,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Oidc(#[from] oidc::OidcError),
    #[error("{actor} ({role}) lacks {needed}")]
    Forbidden { needed: Permission, role: &'static str, actor: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A scheduler-only route called without the scheduler's secret.
    #[error("not the scheduler")]
    SchedulerOnly,
}

const CHALLENGE: &str = r#"Bearer realm="cloud-agent""#;

impl ToProblem for AuthError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Token(e) => e.status(),
            Self::Oidc(e) => e.status(),
            Self::Store(e) => e.status(),
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    fn problem(&self) -> Problem {
        let status = self.status();
        match self {
            Self::Missing => Problem {
                error: Some("invalid_request".into()),
                ..Problem::new(status, "missing-token", "Authentication required").detail(
                    "send a credential: an agent access token or an API key as Authorization: Bearer <credential>, \
                     or an API key as X-API-Key",
                )
            },
            Self::InvalidKey => Problem {
                error: Some("invalid_token".into()),
                ..Problem::new(status, "invalid-key", "Invalid API key")
                    .detail("the API key is unknown, revoked or expired, or belongs to another environment")
            },
            Self::Token(e) => e.problem(),
            Self::Oidc(e) => e.problem(),
            Self::Forbidden { needed, role, .. } => Problem::new(status, "forbidden", "Forbidden").detail(format!(
                "this route needs the permission {needed}, which the role {role} does not have (see the README's \
                 permission table)"
            )),
            Self::Store(e) => e.problem(),
            Self::SchedulerOnly => Problem::new(status, "scheduler-only", "Scheduler only").detail(
                "this route is called by the platform's scheduler with Authorization: Bearer <CRON_SECRET>; no \
                 operator or agent credential opens it",
            ),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Store(e) => e.retry_after(),
            Self::Token(e) => e.retry_after(),
            Self::Oidc(e) => e.retry_after(),
            _ => None,
        }
    }

    fn www_authenticate(&self) -> Option<&'static str> {
        match self {
            Self::Missing | Self::InvalidKey | Self::SchedulerOnly => Some(CHALLENGE),
            Self::Token(e) => e.www_authenticate(),
            Self::Oidc(e) => e.www_authenticate(),
            _ => None,
        }
    }
}

/// A credential as presented, before it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    /// Something that looks like one of our API keys (or the bootstrap admin key in `X-API-Key`).
    Key(&'a str),
    /// Any other bearer token: an agent's access token (or, later, an identity provider's).
    Bearer(&'a str),
}

/// The header that carries API keys.
pub const API_KEY_HEADER: &str = "x-api-key";

/// Reads the request's credential: `X-API-Key` wins over `Authorization`.
pub fn presented(headers: &HeaderMap) -> Result<Presented<'_>, AuthError> {
    if let Some(value) = headers.get(API_KEY_HEADER) {
        let text = value.to_str().map_err(|_| AuthError::InvalidKey)?.trim();
        return if text.is_empty() { Err(AuthError::Missing) } else { Ok(Presented::Key(text)) };
    }
    let value = headers.get(header::AUTHORIZATION).ok_or(AuthError::Missing)?;
    let text = value.to_str().map_err(|_| TokenError::Malformed)?;
    match text.split_once(' ') {
        Some((scheme, credential)) if scheme.eq_ignore_ascii_case("bearer") && !credential.trim().is_empty() => {
            let credential = credential.trim();
            Ok(if api_key::KeyHasher::looks_like_key(credential) {
                Presented::Key(credential)
            } else {
                Presented::Bearer(credential)
            })
        }
        _ => Err(AuthError::Missing),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AgentIdentity {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Only missing if a route needing an agent permission lost its perimeter: a bug, not the caller's fault.
        match parts.extensions.get::<Arc<Principal>>().map(AsRef::as_ref) {
            Some(Principal::Agent(identity)) => Ok(identity.clone()),
            _ => Err(ApiError::Internal("agent route without an agent principal".into())),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Arc<Principal>>().map(AsRef::as_ref) {
            Some(Principal::Operator(operator)) => Ok(operator.clone()),
            _ => Err(ApiError::Internal("operator route without an operator principal".into())),
        }
    }
}
