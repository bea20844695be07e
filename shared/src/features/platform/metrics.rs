//! `GET /api/v1/metrics`: this instance's metrics in Prometheus text format.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header;

use crate::state::AppState;

/// Prometheus exposition of this instance's metrics (per instance: scrape or aggregate accordingly).
#[utoipa::path(
    get,
    path = "/api/v1/metrics",
    tag = "platform",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain"))
)]
pub async fn prometheus(State(state): State<AppState>) -> Response {
    let text = state.metrics().prometheus(&state);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], text)
        .into_response()
}
