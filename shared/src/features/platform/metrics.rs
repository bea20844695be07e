//! `GET /api/v1/metrics`: this instance's metrics in Prometheus text format.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header;

use crate::breaker::Registry;
use crate::metrics::Metrics;
use crate::state::InstanceId;

/// Prometheus exposition of this instance's metrics (per instance: scrape or aggregate accordingly).
#[utoipa::path(
    get,
    path = "/api/v1/metrics",
    operation_id = "getPrometheusMetrics",
    tag = "platform",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain"))
)]
pub async fn prometheus(
    State(metrics): State<Arc<Metrics>>,
    State(instance): State<InstanceId>,
    State(breakers): State<Arc<Registry>>,
) -> Response {
    let text = metrics.prometheus(&instance.0, &breakers);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], text)
        .into_response()
}
