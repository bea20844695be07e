//! `GET /api/v1/circuit-breakers`: state, counts and transitions of this instance's breakers.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::ApiJson;
use crate::state::AppState;

/// The breakers of the instance that answered (breaker state is per instance).
#[derive(Debug, Serialize, ToSchema)]
pub struct Breakers {
    pub instance: String,
    #[schema(value_type = Vec<Object>)]
    pub breakers: Vec<crate::breaker::Snapshot>,
}

/// Circuit breakers of this instance.
#[utoipa::path(get, path = "/api/v1/circuit-breakers", tag = "platform", responses((status = 200, body = Breakers)))]
pub async fn list(State(state): State<AppState>) -> ApiJson<Breakers> {
    ApiJson(Breakers { instance: state.instance_id().to_owned(), breakers: state.breakers().snapshots() })
}
