//! The key routes. Every answer that carries a key's text says `Cache-Control: no-store`; listings never do.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Operator;
use crate::auth::Role;
use crate::auth::api_key::{self, KeyId, KeyRecord, NewKey, RotateError, Signing};
use crate::config::Config;
use crate::config::limits::DEFAULT_TIER;
use crate::config::secrets::SecretString;
use crate::http::{ApiError, ApiJson, ApiPath, ApiQuery, PageParams, Problem, ToProblem};
use crate::ids::TenantId;
use crate::paging::CursorKey;
use crate::perimeter::PerimeterState;
use crate::store::{DynStore, now_epoch};

/// A new key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// What the key is for, shown in listings: 1–100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    pub role: Role,
    /// A configured rate-limit tier (default `standard`).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 32)]
    pub tier: Option<String>,
    #[serde(default)]
    pub signing: Signing,
    /// When the key stops working (RFC 3339); default never.
    #[serde(default)]
    #[schema(format = DateTime, max_length = 64)]
    pub expires_at: Option<String>,
    /// When given, the key works only from these address blocks (CIDR, IPv4 or IPv6; at most 20).
    #[serde(default)]
    #[schema(schema_with = cidrs_schema)]
    pub allowed_cidrs: Vec<String>,
    /// Only the bootstrap admin key may create keys for another tenant (default: the caller's own).
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub tenant: Option<TenantId>,
}

fn cidrs_schema() -> utoipa::openapi::Array {
    crate::openapi::bounded_strings(20, 49)
}

/// A key as listings show it: never its text or hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyInfo {
    pub id: String,
    /// The visible prefix that names the key in logs and audit records.
    pub prefix: String,
    pub name: String,
    pub tenant: String,
    pub role: Role,
    pub tier: String,
    pub signing: Signing,
    /// Epoch seconds.
    pub created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Epoch seconds, recorded at most once a minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<i64>,
    /// The key that replaced this one, when it was rotated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
    /// The address blocks the key works from (empty: anywhere the deployment's rules allow).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_cidrs: Vec<String>,
}

impl From<&KeyRecord> for KeyInfo {
    fn from(r: &KeyRecord) -> Self {
        Self {
            id: r.id.to_string(),
            prefix: r.display.clone(),
            name: r.name.clone(),
            tenant: r.tenant.to_string(),
            role: r.role,
            tier: r.tier.clone(),
            signing: r.signing,
            created_at: r.created_at,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
            replaced_by: r.replaced_by.as_ref().map(ToString::to_string),
            allowed_cidrs: r.allowed_cidrs.clone(),
        }
    }
}

/// A key that was just made: its text is shown here once and never again.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    /// The key. Store it now: only its hash is kept.
    #[schema(value_type = String)]
    pub key: SecretString,
    /// For keys with signing on: the HMAC secret requests are signed with (shown once, like the key).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub signing_secret: Option<SecretString>,
    /// The `whsec_` secret that signs the webhooks of tasks this key creates (Standard Webhooks; shown once).
    #[schema(value_type = String)]
    pub webhook_secret: SecretString,
    #[serde(flatten)]
    pub info: KeyInfo,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Key-route failures.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no key {0} in this tenant")]
    NotFound(String),
    #[error("key {0} was already rotated")]
    AlreadyRotated(String),
}

impl ToProblem for KeyError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::AlreadyRotated(_) => StatusCode::CONFLICT,
        }
    }

    fn problem(&self) -> Problem {
        match self {
            Self::NotFound(id) => Problem::new(self.status(), "not-found", "Not Found")
                .detail(format!("there is no key {id} in your tenant (it may have been revoked or have expired)")),
            Self::AlreadyRotated(id) => Problem::new(self.status(), "already-rotated", "Key already rotated")
                .detail(format!("key {id} was already rotated; rotate its replacement (see replaced_by)")),
        }
    }
}

fn created(config: &Config, perimeter: &PerimeterState, record: &KeyRecord, key: SecretString) -> Response {
    let signing_secret = (record.signing != Signing::Off).then(|| perimeter.hasher().signing_secret(&record.id));
    let webhook_secret =
        crate::features::tasks::webhooks::WebhookSecrets::derive(&config.secrets.agent).secret(record.id.as_str());
    let body = CreatedKey { key, signing_secret, webhook_secret, info: record.into() };
    (StatusCode::CREATED, [(header::CACHE_CONTROL, "no-store")], ApiJson(body)).into_response()
}

/// Create an API key. The answer is the only time its text is shown.
#[utoipa::path(
    post,
    path = "/api/v1/keys",
    operation_id = "createKey",
    tag = "admin",
    request_body = CreateKey,
    responses(
        (status = 201, body = CreatedKey, description = "The key, shown once (Cache-Control: no-store)"),
        (status = 422, body = crate::http::Problem, content_type = "application/problem+json", description = "Bad name, unknown tier, an expiry in the past, or a tenant the caller may not name; `pointer` says which"),
    )
)]
pub async fn create(
    State(store): State<DynStore>,
    State(config): State<Arc<Config>>,
    State(perimeter): State<Arc<PerimeterState>>,
    operator: Operator,
    ApiJson(body): ApiJson<CreateKey>,
) -> Result<Response, ApiError> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::unprocessable("/name", "name must be 1-100 characters without control characters"));
    }
    let tier = body.tier.unwrap_or_else(|| DEFAULT_TIER.to_owned());
    if config.rate_limits.tier(&tier).is_none() {
        let known: Vec<&str> = config.rate_limits.tiers.keys().map(String::as_str).collect();
        return Err(ApiError::unprocessable(
            "/tier",
            format!("unknown tier {tier:?}; configured tiers: {}", known.join(", ")),
        ));
    }
    let expires_at = body
        .expires_at
        .as_deref()
        .map(|text| time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339))
        .transpose()
        .map_err(|e| ApiError::unprocessable("/expires_at", format!("expires_at must be an RFC 3339 time: {e}")))?
        .map(time::OffsetDateTime::unix_timestamp);
    if expires_at.is_some_and(|at| at <= now_epoch()) {
        return Err(ApiError::unprocessable("/expires_at", "expires_at must be in the future"));
    }
    let tenant = match body.tenant {
        Some(t) if t != operator.tenant && !operator.is_bootstrap() => {
            return Err(ApiError::unprocessable(
                "/tenant",
                "only the bootstrap admin key may create keys for another tenant",
            ));
        }
        Some(t) => t,
        None => operator.tenant.clone(),
    };
    if body.allowed_cidrs.len() > 20 {
        return Err(ApiError::unprocessable("/allowed_cidrs", "at most 20 address blocks"));
    }
    for (i, cidr) in body.allowed_cidrs.iter().enumerate() {
        if crate::config::network::Cidr::parse(cidr).is_none() {
            return Err(ApiError::unprocessable(
                &format!("/allowed_cidrs/{i}"),
                format!("{cidr:?} is not an address or CIDR block"),
            ));
        }
    }
    let spec = NewKey {
        tenant,
        name: name.to_owned(),
        role: body.role,
        tier,
        signing: body.signing,
        expires_at,
        allowed_cidrs: body.allowed_cidrs,
    };
    let (record, key) = api_key::create(&store, perimeter.hasher(), &spec).await?;
    tracing::info!(key = record.display.as_str(), role = record.role.as_str(), "API key created");
    Ok(created(&config, &perimeter, &record, key))
}

/// The caller's tenant's keys, oldest first (never their text).
#[utoipa::path(
    get,
    path = "/api/v1/keys",
    operation_id = "listKeys",
    tag = "admin",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Keys per page (default 50)"),
        ("cursor" = Option<String>, Query, max_length = 8192, description = "next_cursor of the previous page, unchanged"),
    ),
    responses(
        (status = 200, body = KeyList),
        (status = 400, body = crate::http::Problem, content_type = "application/problem+json", description = "A query parameter that does not parse; `pointer` names it"),
        (status = 422, body = crate::http::Problem, content_type = "application/problem+json", description = "A limit out of range, or a cursor not issued by this listing"),
    )
)]
pub async fn list(
    State(store): State<DynStore>,
    State(cursors): State<Arc<CursorKey>>,
    operator: Operator,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<ApiJson<KeyList>, ApiError> {
    // The cursor is sealed for this tenant's listing: it cannot page into another tenant's keys.
    let scope = format!("keys:{}", operator.tenant);
    let (limit, cursor) = params.open(&cursors, &scope, 50, 100)?;
    let (records, next) = api_key::list(&store, &operator.tenant, limit, cursor).await?;
    let now = now_epoch();
    let keys = records.iter().filter(|r| r.is_live(now)).map(KeyInfo::from).collect();
    Ok(ApiJson(KeyList { keys, next_cursor: next.map(|c| cursors.seal(&scope, &c)) }))
}

/// Revoke a key: it stops working at once on this instance, and within 10 s on every other one.
#[utoipa::path(
    delete,
    path = "/api/v1/keys/{key_id}",
    operation_id = "revokeKey",
    tag = "admin",
    params(("key_id" = String, Path, pattern = "^[a-z2-7]{16}$")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, body = crate::http::Problem, content_type = "application/problem+json", description = "No such key in the caller's tenant"),
        (status = 422, body = crate::http::Problem, content_type = "application/problem+json", description = "Not a key id; `pointer` is /key_id"),
    )
)]
pub async fn revoke(
    State(store): State<DynStore>,
    State(perimeter): State<Arc<PerimeterState>>,
    operator: Operator,
    ApiPath(id): ApiPath<KeyId>,
) -> Result<StatusCode, ApiError> {
    if !api_key::revoke(&store, &operator.tenant, &id).await? {
        return Err(KeyError::NotFound(id.to_string()).into());
    }
    perimeter.forget(id.as_str());
    tracing::info!(key_id = id.as_str(), "API key revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// Rotate a key: a new key with the same name, role, tier and signing mode; the old one keeps working for the
/// configured grace period (`CLOUD_AGENT_KEY_GRACE_SECS`, default a day), then expires.
#[utoipa::path(
    post,
    path = "/api/v1/keys/{key_id}/rotate",
    operation_id = "rotateKey",
    tag = "admin",
    params(("key_id" = String, Path, pattern = "^[a-z2-7]{16}$")),
    responses(
        (status = 201, body = CreatedKey, description = "The replacement, shown once (Cache-Control: no-store)"),
        (status = 404, body = crate::http::Problem, content_type = "application/problem+json", description = "No such key in the caller's tenant"),
        (status = 409, body = crate::http::Problem, content_type = "application/problem+json", description = "The key was already rotated"),
        (status = 422, body = crate::http::Problem, content_type = "application/problem+json", description = "Not a key id; `pointer` is /key_id"),
    )
)]
pub async fn rotate(
    State(store): State<DynStore>,
    State(config): State<Arc<Config>>,
    State(perimeter): State<Arc<PerimeterState>>,
    operator: Operator,
    ApiPath(id): ApiPath<KeyId>,
) -> Result<Response, ApiError> {
    let grace = i64::try_from(config.key_rotation_grace.as_secs()).unwrap_or(86_400);
    match api_key::rotate(&store, perimeter.hasher(), &operator.tenant, &id, grace).await {
        Ok((record, key)) => {
            perimeter.forget(id.as_str());
            tracing::info!(old = id.as_str(), new = record.display.as_str(), "API key rotated");
            Ok(created(&config, &perimeter, &record, key))
        }
        Err(RotateError::NotFound) => Err(KeyError::NotFound(id.to_string()).into()),
        Err(RotateError::AlreadyRotated) => Err(KeyError::AlreadyRotated(id.to_string()).into()),
        Err(RotateError::Store(e)) => Err(e.into()),
    }
}
