//! `GET /api/v1/analytics`: the caller's tenant's tasks and requests over a window, in hour or day buckets.

use axum::extract::State;
use serde::Deserialize;

use crate::analytics::window::{self, Span};
use crate::analytics::{Analytics, Bucket, requests, task_hours};
use crate::auth::Operator;
use crate::http::{ApiError, ApiJson, ApiQuery};
use crate::state::AppState;

/// The most buckets one answer holds: 31 days of hours, 400 days (the retention) of days.
const MAX_HOURS: i64 = 31 * 24;
const MAX_DAYS: i64 = 400;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsParams {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    bucket: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

fn parse_time(name: &str, text: &str) -> Result<i64, ApiError> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(time::OffsetDateTime::unix_timestamp)
        .map_err(|e| ApiError::unprocessable(&format!("/{name}"), format!("{name} must be an RFC 3339 time: {e}")))
}

/// The window's statistics: per bucket and task type, outcomes, throughput, error rate and duration percentiles
/// (merged from per-hour histograms, within `accuracy` of exact); per route, requests and durations; anomalies
/// against each series' trailing baseline; and the window's cost on Lambda and Vercel at the dated price table.
#[utoipa::path(
    get,
    path = "/api/v1/analytics",
    operation_id = "getAnalytics",
    tag = "admin",
    params(
        ("from" = Option<String>, Query, format = DateTime, description = "Window start (RFC 3339), rounded down to its bucket; default: 24 buckets before `to`"),
        ("to" = Option<String>, Query, format = DateTime, description = "Window end (RFC 3339), its bucket included; default: now"),
        ("bucket" = Option<String>, Query, pattern = "^(hour|day)$", description = "`hour` (default; at most 744 buckets) or `day` (at most 400)"),
        ("type" = Option<String>, Query, min_length = 1, max_length = 64, description = "Only this task type's series (request series are kept)"),
    ),
    responses(
        (status = 200, body = Analytics),
        (status = 400, body = crate::http::Problem, content_type = "application/problem+json", description = "An unknown query parameter"),
        (status = 422, body = crate::http::Problem, content_type = "application/problem+json", description = "A bad time, bucket, type or window (`from` after `to`, or too many buckets); `pointer` says which"),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    operator: Operator,
    ApiQuery(params): ApiQuery<AnalyticsParams>,
) -> Result<ApiJson<Analytics>, ApiError> {
    let bucket = match params.bucket.as_deref() {
        None | Some("hour") => Bucket::Hour,
        Some("day") => Bucket::Day,
        Some(other) => {
            return Err(ApiError::unprocessable("/bucket", format!("bucket {other:?}: use hour or day")));
        }
    };
    if let Some(kind) = &params.kind
        && (kind.is_empty() || kind.len() > 64 || kind.contains('#'))
    {
        return Err(ApiError::unprocessable("/type", "type must be a task type name (1-64 characters)"));
    }
    let width = bucket.seconds();
    let to = match &params.to {
        Some(text) => parse_time("to", text)?,
        None => time::OffsetDateTime::now_utc().unix_timestamp(),
    };
    let last = to.div_euclid(width) * width;
    let first = match &params.from {
        Some(text) => parse_time("from", text)?.div_euclid(width) * width,
        None => last - 23 * width,
    };
    if first > last {
        return Err(ApiError::unprocessable("/from", "from must not be after to"));
    }
    let count = (last - first) / width + 1;
    let max = if bucket == Bucket::Hour { MAX_HOURS } else { MAX_DAYS };
    if count > max {
        return Err(ApiError::unprocessable(
            "/from",
            format!(
                "the window holds {count} {}s; ask for at most {max} (a narrower window, or bucket=day)",
                bucket.as_str()
            ),
        ));
    }
    let settings = &state.config().analytics;
    let baseline = settings.anomalies.window;
    let span = Span {
        bucket,
        start: first - i64::try_from(baseline).unwrap_or_default() * width,
        baseline,
        count: usize::try_from(count).unwrap_or_default() + baseline,
    };
    let hour_key = |secs: i64| {
        crate::analytics::hours::hour_of(
            time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
        )
    };
    let (from_hour, to_hour) = (hour_key(span.start), hour_key(last + width - 3600));
    let tenant = operator.tenant.as_str();
    let store = state.store();
    let (tasks, requests) = tokio::try_join!(
        task_hours::read(store, tenant, &from_hour, &to_hour),
        requests::read(store, tenant, &from_hour, &to_hour)
    )?;
    let tasks: Vec<_> = match &params.kind {
        Some(kind) => tasks.into_iter().filter(|h| &h.kind == kind).collect(),
        None => tasks,
    };
    Ok(ApiJson(window::build(span, &tasks, &requests, &settings.anomalies, &settings.prices)))
}
