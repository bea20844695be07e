//! `GET /api/v1/audit`: the caller's tenant's trail, newest first, by actor, route and time range.

use std::sync::Arc;

use axum::extract::State;
use serde::Deserialize;

use crate::audit::{self, Filter};
use crate::auth::Operator;
use crate::http::{ApiError, ApiJson, ApiQuery};
use crate::paging::CursorKey;
use crate::store::DynStore;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    cursor: Option<String>,
}

pub use cloud_agent_wire::admin::AuditPage;

fn time_ms(name: &str, text: Option<&str>) -> Result<Option<i64>, ApiError> {
    text.map(|t| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .map(|at| i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
            .map_err(|e| ApiError::unprocessable(&format!("/{name}"), format!("{name} must be an RFC 3339 time: {e}")))
    })
    .transpose()
}

fn bounded(name: &str, text: Option<String>) -> Result<Option<String>, ApiError> {
    match text {
        Some(t) if t.is_empty() || t.chars().count() > 256 => {
            Err(ApiError::unprocessable(&format!("/{name}"), format!("{name} must be 1-256 characters")))
        }
        other => Ok(other),
    }
}

/// The caller's tenant's audit records, newest first (30 days are kept).
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    operation_id = "listAudit",
    tag = "admin",
    params(
        ("actor" = Option<String>, Query, min_length = 1, max_length = 256, description = "Only this actor (`key:ca_live_…`, `agent:<id>`, `admin:bootstrap`)"),
        ("route" = Option<String>, Query, min_length = 1, max_length = 256, description = "Only this route template, e.g. `/api/v1/keys`"),
        ("from" = Option<String>, Query, format = DateTime, description = "Not before this time (RFC 3339)"),
        ("to" = Option<String>, Query, format = DateTime, description = "Not after this time (RFC 3339)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Records examined per page (default 100)"),
        ("cursor" = Option<String>, Query, max_length = 8192, description = "next_cursor of the previous page, unchanged"),
    ),
    responses(
        (status = 200, body = AuditPage),
        (status = 400, body = crate::http::Problem, content_type = "application/problem+json", description = "A query parameter that does not parse; `pointer` names it"),
        (status = 422, body = crate::http::Problem, content_type = "application/problem+json", description = "A bad time, range, limit or filter, or a cursor not issued for these filters; `pointer` says which"),
    )
)]
pub async fn list(
    State(store): State<DynStore>,
    State(cursors): State<Arc<CursorKey>>,
    operator: Operator,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<ApiJson<AuditPage>, ApiError> {
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::unprocessable("/limit", "limit must be 1-1000"));
    }
    let filter = Filter {
        actor: bounded("actor", params.actor)?,
        route: bounded("route", params.route)?,
        from_ms: time_ms("from", params.from.as_deref())?,
        to_ms: time_ms("to", params.to.as_deref())?,
    };
    if let (Some(from), Some(to)) = (filter.from_ms, filter.to_ms)
        && from > to
    {
        return Err(ApiError::unprocessable("/from", "from must not be after to"));
    }
    // Sealed for this tenant and these filters: a cursor cannot be replayed against another tenant or query.
    let scope = format!(
        "audit\0{}\0{}\0{}\0{:?}\0{:?}",
        operator.tenant,
        filter.actor.as_deref().unwrap_or_default(),
        filter.route.as_deref().unwrap_or_default(),
        filter.from_ms,
        filter.to_ms
    );
    let cursor = crate::http::cursor_param(&cursors, &scope, params.cursor.as_deref())?;
    let (records, next) = audit::query(&store, &operator.tenant, &filter, limit, cursor).await?;
    Ok(ApiJson(AuditPage { records, next_cursor: next.map(|c| cursors.seal(&scope, &c)) }))
}
