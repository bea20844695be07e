//! `GET /api/v1/circuit-breakers`: state, counts and transitions of this instance's breakers.

use std::sync::Arc;

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

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
pub async fn list(State(instance): State<InstanceId>, State(breakers): State<Arc<Registry>>) -> ApiJson<Breakers> {
    ApiJson(Breakers { instance: instance.0.to_string(), breakers: breakers.snapshots() })
}
