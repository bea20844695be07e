//! `GET /health`: IETF health check (draft-inadarei-api-health-check), `application/health+json`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use serde::Serialize;

use crate::alerts::AlertKind;
use crate::breaker::State as BreakerState;
use crate::config::Environment;
use crate::config::secrets::SecretSource;
use crate::problem::OwnErrorBody;
use crate::state::{AppState, InstanceId, Part, STORE_BREAKER};
use crate::store::{PROBE_TIMEOUT, probe_key};

pub const HEALTH_JSON: &str = "application/health+json";

/// Public interface version (the `v1` of `/api/v1`), the draft's `version`.
pub const API_VERSION: &str = "1";

/// Above this a datastore round trip is reported as `warn`.
const SLOW_STORE_MS: f64 = 500.0;

// The report's types are the wire's: the SDK reads the same definitions.
pub use cloud_agent_wire::health::{Check, HealthReport, HealthStatus};

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
        E::Conflict(_) => "write conflict",
        E::Validation(_) | E::Limit(_) | E::Internal(_) | E::ConditionFailed { .. } | E::TransactionCanceled { .. } => {
            "error"
        }
    }
}

fn check(
    component_type: &str,
    id: Option<String>,
    value: Option<f64>,
    unit: Option<&str>,
    status: HealthStatus,
    output: Option<String>,
) -> Check {
    Check {
        component_type: component_type.into(),
        component_id: id,
        observed_value: value,
        observed_unit: unit.map(Into::into),
        status,
        time: now_rfc3339(),
        output,
    }
}

/// Builds the report, or reuses one younger than the configured health cache.
pub async fn report(state: &AppState) -> HealthReport {
    let cache = state.part::<ReportCache>();
    if let Some(cached) = cache.get(state.config().health_cache) {
        return cached;
    }
    let config = state.config();
    let mut checks = BTreeMap::new();
    checks.insert("datastore:responseTime".to_owned(), vec![datastore_check(state).await]);
    // Tenants' own breakers (their webhook receivers) are counted, never named: the report is public, and one
    // tenant's dead receiver is not the service's failure (it warns, and raises no alert).
    // Breakers never called nor ever moved say nothing about health, and which exist depends on what the
    // function links (the local server builds every handler's): leaving them out keeps the report one answer.
    let (scoped, breakers): (Vec<_>, Vec<_>) = state
        .breakers()
        .snapshots()
        .into_iter()
        .filter(|b| b.state != BreakerState::Closed || b.transitions > 0 || b.calls_in_window > 0)
        .partition(|b| crate::breaker::Registry::scope_of(&b.name).is_some());
    let is_open = |b: &&crate::breaker::Snapshot| matches!(b.state, BreakerState::Open | BreakerState::ForcedOpen);
    let open_breakers = breakers.iter().filter(is_open).count();
    let open_receivers = scoped.iter().filter(is_open).count();
    let receivers = (!scoped.is_empty()).then(|| {
        check(
            "component",
            Some("webhook receivers".into()),
            Some(open_receivers as f64),
            Some("open"),
            if open_receivers > 0 { HealthStatus::Warn } else { HealthStatus::Pass },
            Some(format!("{open_receivers} of {} receivers' breakers open", scoped.len())),
        )
    });
    checks.insert(
        "circuitBreaker:state".to_owned(),
        breakers
            .iter()
            .map(|b| {
                let status = match b.state {
                    BreakerState::Closed => HealthStatus::Pass,
                    // Only the store has nothing to stand in for it; the others' callers fall back (degraded).
                    BreakerState::Open | BreakerState::ForcedOpen if b.name == STORE_BREAKER => HealthStatus::Fail,
                    BreakerState::HalfOpen | BreakerState::Open | BreakerState::ForcedOpen => HealthStatus::Warn,
                };
                let state_name = serde_json::to_value(b.state).ok().and_then(|v| v.as_str().map(str::to_owned));
                check("component", Some(b.name.clone()), Some(b.failure_rate), Some("failure rate"), status, state_name)
            })
            .chain(receivers)
            .collect(),
    );
    let secrets = &config.secrets;
    let weak = config.environment != Environment::Development
        && (secrets.jwt_source != SecretSource::Specific || secrets.agent_source != SecretSource::Specific);
    checks.insert(
        "tokens:keys".to_owned(),
        vec![check(
            "component",
            None,
            Some(state.tokens().verification_keys() as f64),
            Some("verification keys"),
            if weak { HealthStatus::Warn } else { HealthStatus::Pass },
            weak.then(|| "using the shared fallback secret".to_owned()),
        )],
    );
    checks.insert(
        "config:environment".to_owned(),
        vec![check("component", None, None, None, HealthStatus::Pass, Some(config.environment.as_str().to_owned()))],
    );
    let summary = state.metrics().summary();
    let rss = crate::alerts::resident_bytes();
    let dead_letters = match &config.dead_letter_queue {
        None => None,
        Some(queue) => Some(state.part::<DeadLetterGauge>().depth(queue).await),
    };
    let evaluation = state.alerts().evaluate(&crate::alerts::Readings {
        requests: summary.requests,
        error_rate: summary.error_rate,
        p95: std::time::Duration::from_secs_f64(summary.p95_seconds.min(3600.0)),
        open_breakers,
        memory_bytes: rss,
        dead_letters: dead_letters.as_ref().and_then(|d| d.as_ref().ok().copied()),
    });
    // Sent before the answer: an instance may be frozen right after it (store calls only when one was raised).
    if !evaluation.raised.is_empty() {
        let delivery = state.part::<crate::alerts::delivery::Delivery>();
        if delivery.configured() {
            delivery.send(state, &evaluation.raised).await;
        }
    }
    let active = evaluation.active;
    let alert = |kind| active.iter().any(|a| a.kind == kind);
    let warn_if = |b: bool| if b { HealthStatus::Warn } else { HealthStatus::Pass };
    checks.insert(
        "memory:utilization".to_owned(),
        vec![check(
            "system",
            None,
            rss.map(|b| (b >> 20) as f64),
            Some("MiB"),
            warn_if(alert(AlertKind::Memory)),
            None,
        )],
    );
    checks.insert(
        "requests:errorRate".to_owned(),
        vec![check(
            "system",
            None,
            Some(summary.error_rate),
            Some("ratio"),
            warn_if(alert(AlertKind::ErrorRate)),
            None,
        )],
    );
    checks.insert(
        "requests:p95".to_owned(),
        vec![check(
            "system",
            None,
            Some(summary.p95_seconds * 1000.0),
            Some("ms"),
            warn_if(alert(AlertKind::Latency)),
            None,
        )],
    );
    if let Some(depth) = dead_letters {
        let (value, status, output) = match depth {
            Ok(n) => (Some(n as f64), warn_if(alert(AlertKind::DeadLetters)), None),
            Err(why) => (None, HealthStatus::Warn, Some(why)),
        };
        checks.insert(
            "queue:deadLetters".to_owned(),
            vec![check("component", None, value, Some("messages"), status, output)],
        );
    }
    checks.insert(
        "uptime".to_owned(),
        vec![check(
            "system",
            Some(state.instance_id().into()),
            Some(summary.uptime_seconds.round()),
            Some("s"),
            HealthStatus::Pass,
            None,
        )],
    );
    let status = checks.values().flatten().map(|c| c.status).max().unwrap_or(HealthStatus::Pass);
    let report = HealthReport {
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
        notes: vec![format!("instance {}", state.instance_id()), format!("cold start: {}", summary.cold)],
        alerts: active,
    };
    cache.put(&report);
    report
}

/// Reads the dead-letter queue's depth (SQS `ApproximateNumberOfMessages`), within [`PROBE_TIMEOUT`].
#[derive(Debug, Default)]
pub struct DeadLetterGauge {
    client: tokio::sync::OnceCell<aws_sdk_sqs::Client>,
}

impl Part for DeadLetterGauge {
    fn build(_: &AppState) -> Self {
        Self::default()
    }
}

impl DeadLetterGauge {
    /// The depth, or why it could not be read (the reason is for the report; the error goes to the log).
    async fn depth(&self, queue: &crate::config::alerting::DeadLetterQueue) -> Result<u64, String> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let client = self
            .client
            .get_or_init(|| async {
                let sdk = crate::aws::sdk_config(None, queue.endpoint.as_deref(), PROBE_TIMEOUT, PROBE_TIMEOUT).await;
                aws_sdk_sqs::Client::new(&sdk)
            })
            .await;
        let read = client.get_queue_attributes().queue_url(&queue.url).attribute_names(A::ApproximateNumberOfMessages);
        match tokio::time::timeout(PROBE_TIMEOUT, read.send()).await {
            Ok(Ok(answer)) => answer
                .attributes()
                .and_then(|a| a.get(&A::ApproximateNumberOfMessages))
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| "the queue did not say its depth".to_owned()),
            Ok(Err(e)) => {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "dead-letter queue unreadable");
                Err("unreadable".to_owned())
            }
            Err(_) => Err(format!("no answer within {} ms", PROBE_TIMEOUT.as_millis())),
        }
    }
}

/// The last report, reused while younger than the configured health cache: probes cost store calls.
#[derive(Debug, Default)]
pub struct ReportCache(Mutex<Option<(Instant, HealthReport)>>);

impl Part for ReportCache {
    fn build(_: &AppState) -> Self {
        Self::default()
    }
}

impl ReportCache {
    fn get(&self, max_age: std::time::Duration) -> Option<HealthReport> {
        let guard = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.as_ref().filter(|(at, _)| at.elapsed() < max_age).map(|(_, r)| r.clone())
    }

    fn put(&self, report: &HealthReport) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((Instant::now(), report.clone()));
    }
}

fn health_json(status: StatusCode, body: &impl Serialize) -> Response {
    health_response(status, serde_json::to_vec(body).unwrap_or_default())
}

fn health_response(status: StatusCode, body: Vec<u8>) -> Response {
    // Health is a live reading: never cached by a CDN (Vercel) or a client.
    let headers = [(header::CONTENT_TYPE, HEALTH_JSON), (header::CACHE_CONTROL, "no-store")];
    let mut response = (status, headers, body).into_response();
    response.extensions_mut().insert(OwnErrorBody);
    response
}

/// Liveness: the process runs and answers (no dependency is consulted: a dead store must not get us restarted).
#[utoipa::path(get, path = "/health/live", operation_id = "getLiveness", tag = "platform",
    responses((status = 200, description = "alive", content_type = "application/health+json")))]
pub async fn live(State(instance): State<InstanceId>) -> Response {
    // The instance id is 12 hex digits: nothing to escape, so the body is formatted, not serialised.
    health_response(StatusCode::OK, format!(r#"{{"status":"pass","instance":"{}"}}"#, instance.0).into_bytes())
}

/// Readiness: the datastore answers and its breaker is not open (from the cached report).
#[utoipa::path(get, path = "/health/ready", operation_id = "getReadiness", tag = "platform",
    responses((status = 200, description = "ready", content_type = "application/health+json"),
              (status = 503, description = "not ready", content_type = "application/health+json")))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let report = report(&state).await;
    let failing: Vec<&str> = ["datastore:responseTime", "circuitBreaker:state"]
        .into_iter()
        .filter(|k| report.checks.get(*k).is_some_and(|cs| cs.iter().any(|c| c.status == HealthStatus::Fail)))
        .collect();
    let (code, status) =
        if failing.is_empty() { (StatusCode::OK, "pass") } else { (StatusCode::SERVICE_UNAVAILABLE, "fail") };
    health_json(code, &serde_json::json!({"status": status, "failing": failing}))
}

/// Health of this instance and its datastore.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "getHealth",
    tag = "platform",
    responses(
        (status = 200, description = "pass or warn", body = HealthReport, content_type = "application/health+json"),
        (status = 503, description = "fail", body = HealthReport, content_type = "application/health+json"),
    )
)]
pub async fn health(State(state): State<AppState>) -> Response {
    let report = report(&state).await;
    let status = if report.status == HealthStatus::Fail { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    health_json(status, &report)
}
