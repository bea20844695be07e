//! What an agent reports about itself (the body of `POST /api/v1/agent/health`) and the limits that keep a
//! report storable. Shared by the route that takes reports and the record that keeps them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::http::ApiError;

/// An agent's reported status, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    Healthy,
    Degraded,
    Unhealthy,
}

/// One of the agent's own checks.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentCheck {
    pub status: AgentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1000)]
    pub detail: Option<String>,
}

/// What an agent reports.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentReport {
    pub status: AgentStatus,
    /// At most 50, named by 1–64 characters.
    #[serde(default)]
    #[schema(schema_with = checks_schema)]
    pub checks: BTreeMap<String, AgentCheck>,
    /// At most 50, named by 1–64 characters; numbers in DynamoDB's range (0 or a magnitude of 1e-130 to
    /// 9.99e125).
    #[serde(default)]
    #[schema(schema_with = metrics_schema)]
    pub metrics: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 64)]
    pub version: Option<String>,
}

/// Most checks, and most metrics, in one report.
const MAX_ENTRIES: usize = 50;

fn checks_schema() -> utoipa::openapi::Object {
    crate::openapi::bounded_map(MAX_ENTRIES, MAX_NAME, utoipa::openapi::Ref::from_schema_name("AgentCheck"))
}

fn metrics_schema() -> utoipa::openapi::Object {
    crate::openapi::bounded_map(MAX_ENTRIES, MAX_NAME, <f64 as utoipa::PartialSchema>::schema())
}
/// Longest check or metric name, and `version`.
const MAX_NAME: usize = 64;
/// Longest check `detail`.
const MAX_DETAIL: usize = 1000;

/// Keeps a report storable (DynamoDB's number range, an item far below 400 KB), naming what is wrong.
pub(super) fn validate(report: &AgentReport) -> Result<(), ApiError> {
    let refuse = |pointer: &str, detail: &str| {
        Err(ApiError::Unprocessable { detail: detail.to_owned(), pointer: Some(pointer.to_owned()) })
    };
    if report.checks.len() > MAX_ENTRIES {
        return refuse("/checks", "at most 50 checks");
    }
    if report.metrics.len() > MAX_ENTRIES {
        return refuse("/metrics", "at most 50 metrics");
    }
    if report.checks.keys().chain(report.metrics.keys()).any(|k| k.is_empty() || k.chars().count() > MAX_NAME) {
        return refuse("/checks", "check and metric names must be 1-64 characters");
    }
    if report.checks.values().any(|c| c.detail.as_ref().is_some_and(|d| d.chars().count() > MAX_DETAIL)) {
        return refuse("/checks", "a check's detail is at most 1000 characters");
    }
    if report.metrics.values().any(|v| !crate::store::Number::storable(*v)) {
        return refuse("/metrics", "metrics must be 0 or of magnitude 1e-130 to 9.99e125 (DynamoDB's range)");
    }
    if report.version.as_ref().is_some_and(|v| v.chars().count() > MAX_NAME) {
        return refuse("/version", "version is at most 64 characters");
    }
    Ok(())
}
