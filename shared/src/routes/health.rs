//! `GET /health`: IETF health check (draft-inadarei-api-health-check), `application/health+json`.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::http::problem::OwnErrorBody;
use crate::state::AppState;
use crate::store::{PROBE_TIMEOUT, probe_key};

pub const HEALTH_JSON: &str = "application/health+json";

/// Public interface version (the `v1` of `/api/v1`), the draft's `version`.
pub const API_VERSION: &str = "1";

/// Above this a datastore round trip is reported as `warn`.
const SLOW_STORE_MS: f64 = 500.0;

/// pass / warn / fail, as the health-check draft defines them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Pass,
    Warn,
    Fail,
}

/// One measurement of one component.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub component_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_unit: Option<String>,
    pub status: HealthStatus,
    /// RFC 3339 time of the measurement.
    pub time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

/// The whole health document.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthReport {
    pub status: HealthStatus,
    /// Public major version of the service interface.
    pub version: String,
    /// This exact release.
    pub release_id: String,
    pub service_id: String,
    /// development, staging or production.
    pub environment: String,
    pub description: String,
    /// Keyed `component:measurement`.
    pub checks: BTreeMap<String, Vec<Check>>,
    /// Which instance answered (in-memory state is per instance).
    pub notes: Vec<String>,
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// A bounded-time read against the store.
async fn datastore_check(state: &AppState) -> Check {
    let started = Instant::now();
    let outcome = tokio::time::timeout(PROBE_TIMEOUT, state.store().get(&probe_key())).await;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (status, output) = match outcome {
        Ok(Ok(_)) if elapsed_ms > SLOW_STORE_MS => (HealthStatus::Warn, Some(format!("slow read: {elapsed_ms:.0} ms"))),
        Ok(Ok(_)) => (HealthStatus::Pass, None),
        // The kind of failure helps an operator; the full error (endpoints, ARNs) stays in the log.
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "datastore health check failed");
            (HealthStatus::Fail, Some(store_failure_kind(&e).to_owned()))
        }
        Err(_) => (HealthStatus::Fail, Some(format!("no answer within {} ms", PROBE_TIMEOUT.as_millis()))),
    };
    Check {
        component_type: "datastore".into(),
        component_id: Some(state.store().backend().into()),
        observed_value: Some((elapsed_ms * 100.0).round() / 100.0),
        observed_unit: Some("ms".into()),
        status,
        time: now_rfc3339(),
        output,
    }
}

fn store_failure_kind(e: &crate::store::StoreError) -> &'static str {
    use crate::store::StoreError as E;
    match e {
        E::Throttled(_) => "throttled",
        E::Unavailable(_) => "unreachable",
        E::CircuitOpen { .. } => "circuit open",
        E::Validation(_) | E::Internal(_) | E::ConditionFailed { .. } | E::TransactionCanceled { .. } => "error",
    }
}

/// Builds the report (also used by tests and the CLI).
pub async fn report(state: &AppState) -> HealthReport {
    let datastore = datastore_check(state).await;
    let uptime = Check {
        component_type: "system".into(),
        component_id: Some(state.instance_id().into()),
        observed_value: Some(state.uptime().as_secs_f64().round()),
        observed_unit: Some("s".into()),
        status: HealthStatus::Pass,
        time: now_rfc3339(),
        output: None,
    };
    let mut checks = BTreeMap::new();
    checks.insert("datastore:responseTime".to_owned(), vec![datastore]);
    checks.insert("uptime".to_owned(), vec![uptime]);
    let status = checks.values().flatten().map(|c| c.status).max().unwrap_or(HealthStatus::Pass);
    let config = state.config();
    HealthReport {
        status,
        version: API_VERSION.to_owned(),
        release_id: config.release_id.clone(),
        service_id: "cloud-agent".into(),
        environment: config.environment.as_str().into(),
        description: format!(
            "Cloud Agent control plane ({}, {})",
            config.environment.as_str(),
            config.platform.as_str()
        ),
        checks,
        notes: vec![format!("instance {}", state.instance_id())],
    }
}

/// Health of this instance and its datastore.
#[utoipa::path(
    get,
    path = "/health",
    tag = "platform",
    responses(
        (status = 200, description = "pass or warn", body = HealthReport, content_type = "application/health+json"),
        (status = 503, description = "fail", body = HealthReport, content_type = "application/health+json"),
    )
)]
pub async fn health(State(state): State<AppState>) -> Response {
    let report = report(&state).await;
    let status = if report.status == HealthStatus::Fail { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    let body = serde_json::to_vec(&report).unwrap_or_default();
    // Health is a live reading: never cached by a CDN (Vercel) or a client.
    let headers = [(header::CONTENT_TYPE, HEALTH_JSON), (header::CACHE_CONTROL, "no-store")];
    let mut response = (status, headers, body).into_response();
    response.extensions_mut().insert(OwnErrorBody);
    response
}
