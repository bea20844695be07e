//! Step 7: the audit record, under CloudTrail's model — management events always, data events opt-in. Stored
//! durably (before the response leaves) for every operator request, every state-changing request and every
//! denial (401, 403, 405, 429); an agent's successful reads (`/agent/me`, its context, progress reads) go to the
//! request's access log line only, unless `CLOUD_AGENT_AUDIT=all`. A refusal this instance answered from memory
//! (a subject already over its limit, an address already over its failed-authentication quota) is logged, not
//! stored: the refusal that put it over was stored, and a flood must not buy writes.
//!
//! A failed authentication is recorded in the trail of the tenant it concerns when that is known (a real key with
//! the wrong secret, revoked or expired), otherwise in the [`crate::audit::UNAUTHENTICATED`] trail.

use axum::response::Response;
use http::{Method, StatusCode};

use super::rate_limit::Repeated;
use super::{Gate, Seen, bounded};
use crate::audit::{self, AuditRecord};
use crate::auth::Principal;
use crate::config::AuditPolicy;
use crate::ids::TenantId;
use crate::state::AppState;

/// Whether a refusal without a principal is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Yes,
    No,
}

fn is_denial(status: StatusCode) -> bool {
    matches!(status.as_u16(), 401 | 403 | 405 | 429)
}

/// Whether the policy stores this request's record.
pub fn stores(policy: AuditPolicy, principal: &Principal, method: &Method, status: StatusCode) -> bool {
    match (policy, principal) {
        (AuditPolicy::All, _) | (_, Principal::Operator(_)) => true,
        (AuditPolicy::Standard, Principal::Agent(_)) => !method.is_safe() || is_denial(status),
    }
}

fn record_of(gate: &Gate, seen: &Seen, actor: String, role: &str, status: StatusCode) -> AuditRecord {
    AuditRecord {
        id: crate::audit::new_id(),
        at_ms: seen.at_ms,
        request_id: seen.request_id.clone(),
        actor,
        role: role.to_owned(),
        method: seen.method.as_str().to_owned(),
        route: gate.route.to_owned(),
        status: status.as_u16(),
        duration_ms: seen.started.elapsed().as_micros() as f64 / 1000.0,
        client_ip: seen.client.ip.map(|ip| ip.to_string()),
        country: seen.client.country.clone(),
        task_type: None,
    }
}

/// Stores `record` in `trail`, or, if the store fails, writes it whole into a log line (Lambda ships stdout
/// before it freezes), so it is never lost silently.
async fn store(state: &AppState, trail: &str, record: &AuditRecord) {
    if let Err(e) = bounded(state, audit::write_to(state.store(), trail, record)).await {
        tracing::error!(
            error = %e,
            audit = %serde_json::to_string(record).unwrap_or_default(),
            "audit record not stored; kept in this log line"
        );
    }
}

/// The record of a request that had a principal; returns the response unchanged.
pub async fn record(state: &AppState, gate: &Gate, seen: &Seen, principal: &Principal, response: Response) -> Response {
    let status = response.status();
    let repeated = response.extensions().get::<Repeated>().is_some();
    if repeated || !stores(state.config().audit, principal, &seen.method, status) {
        if repeated {
            tracing::info!(actor = principal.actor().as_str(), status = status.as_u16(), "refusal logged, not stored");
        }
        return response;
    }
    let record = record_of(gate, seen, principal.actor(), principal.role_name(), status);
    store(state, principal.tenant().as_str(), &record).await;
    response
}

/// The record of a failed authentication: in `tenant`'s trail when the credential named one, else the
/// unauthenticated trail; only logged when `store` is [`Store::No`].
pub async fn denied_unauthenticated(
    state: &AppState,
    gate: &Gate,
    seen: &Seen,
    tenant: Option<TenantId>,
    response: Response,
    store_it: Store,
) -> Response {
    let status = response.status();
    if store_it == Store::No || response.extensions().get::<Repeated>().is_some() {
        tracing::info!(client = %seen.client.limit_key(), status = status.as_u16(), "refusal logged, not stored");
        return response;
    }
    let record = record_of(gate, seen, "anonymous".to_owned(), "none", status);
    let trail = tenant.as_ref().map_or(audit::UNAUTHENTICATED, TenantId::as_str);
    store(state, trail, &record).await;
    response
}
