//! `GET /api/v1/circuit-breakers`: state, counts and transitions of this instance's breakers: the shared ones
//! (store, queue, identity provider, model endpoint) and the caller's tenant's own (its webhook receivers);
//! another tenant's are not listed (their names carry its receivers' hosts).

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::breaker::Registry;
use crate::http::ApiJson;
use crate::state::InstanceId;

/// The breakers of the instance that answered (breaker state is per instance).
#[derive(Debug, Serialize, ToSchema)]
pub struct Breakers {
    pub instance: String,
    #[schema(value_type = Vec<Object>)]
    pub breakers: Vec<crate::breaker::Snapshot>,
}

/// Circuit breakers of this instance.
#[utoipa::path(get, path = "/api/v1/circuit-breakers", operation_id = "listCircuitBreakers", tag = "platform", responses((status = 200, body = Breakers)))]
pub async fn list(
    State(instance): State<InstanceId>,
    State(breakers): State<Arc<Registry>>,
    Extension(principal): Extension<Arc<Principal>>,
) -> ApiJson<Breakers> {
    let tenant = principal.tenant_str();
    let breakers = breakers
        .snapshots()
        .into_iter()
        .filter(|b| Registry::scope_of(&b.name).is_none_or(|scope| scope == tenant))
        .collect();
    ApiJson(Breakers { instance: instance.0.to_string(), breakers })
}
