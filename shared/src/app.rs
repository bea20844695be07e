//! The root: the list of features, the router of all their routes, and the OpenAPI document of all of them.
//! Only this module (and the CLI) names every feature; the features and the kernel never import it.

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header;
use once_cell::sync::Lazy;

use crate::features;
use crate::route::{Access, Feature, Method, RouteSpec};
use crate::router::{Paths, router};
use crate::state::AppState;

/// Every feature, in the order the local server mounts their routes. A new feature adds one line here; a new
/// route touches only its feature folder (and the deployment files).
/// Functions invoked by events rather than routes (see [`crate::route::EventFunction`]).
pub const EVENT_FUNCTIONS: &[crate::route::EventFunction] = &[features::tasks::WORKER];

pub const FEATURES: &[Feature] = &[
    features::health::FEATURE,
    OPENAPI_FEATURE,
    features::platform::FEATURE,
    features::tokens::FEATURE,
    features::progress::FEATURE,
    features::context::FEATURE,
    features::agent_health::FEATURE,
    features::agents::FEATURE,
    features::keys::FEATURE,
    features::audit::FEATURE,
    features::analytics::FEATURE,
    features::tasks::FEATURE,
];

/// Every route of every feature: the one list the router, the per-route binaries, template.yaml and vercel.json
/// are checked against (`tests/api/infra.rs`).
/// (once_cell: process-wide statics built on first use, shared by every request of the instance.)
#[allow(clippy::non_std_lazy_statics)]
pub static ROUTES: Lazy<Vec<RouteSpec>> = Lazy::new(|| FEATURES.iter().flat_map(|f| f.routes).copied().collect());

/// The router with every route: what `cloudagent serve` runs.
pub fn app(state: AppState) -> Router {
    router(state, &ROUTES, Paths::Public)
}

/// Serves every route on an already-bound listener until Ctrl-C or SIGTERM, then drains in-flight requests.
/// (`cloudagent serve` binds first, so anything it prints afterwards is true of a listening server.)
pub async fn serve(state: AppState, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    tracing::info!(
        addr = %listener.local_addr()?,
        environment = state.config().environment.as_str(),
        store = state.store().backend(),
        "cloudagent serving all routes"
    );
    // With the peer address: the local server's client address is the socket's (never a forwarding header).
    // Queued tasks and webhook retries run in this process when the queue is the table (no SQS locally).
    let worker = (state.config().tasks.queue == crate::config::tasks::QueueSettings::Table)
        .then(|| crate::features::tasks::worker::spawn_local(&state));
    let service = app(state.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = axum::serve(listener, service).with_graceful_shutdown(crate::runtime::shutdown_signal()).await;
    if let Some(worker) = worker {
        worker.abort();
    }
    // A local server stops when told: what it counted since its last write is written, not lost.
    state.part::<crate::perimeter::PerimeterState>().requests().flush_now(state.store()).await;
    served
}

/// The document describes every feature, so its route lives here, at the root: only the openapi function links
/// every feature's documentation.
pub const OPENAPI: RouteSpec = RouteSpec {
    binary: "openapi",
    file: "api/v1/openapi.rs",
    path: "/api/v1/openapi.json",
    methods: &[Method::GET],
    dynamodb_actions: &[],
    access: Access::Public,
    perimeter: None,
    handler: || get(openapi_json),
};

#[derive(utoipa::OpenApi)]
#[openapi(paths(openapi_json))]
struct OpenApiDoc;

const OPENAPI_FEATURE: Feature =
    Feature { name: "openapi", routes: &[OPENAPI], openapi: <OpenApiDoc as utoipa::OpenApi>::openapi };

/// The document the route serves: generated from the features' own parts, committed as `shared/openapi.json` and
/// embedded at compile time. Serving the committed text keeps every feature's documentation (and utoipa's
/// generator) out of the openapi function (see BENCHMARKS.md); `tests/api/openapi_contract.rs` fails when the committed
/// text differs from what the code generates, and `cloudagent openapi > shared/openapi.json` regenerates it.
pub fn openapi_document() -> &'static str {
    include_str!("../openapi.json")
}

/// The document as the code describes it today, with the task types `types` names, pretty-printed with a final
/// newline (the committed file's form).
pub fn generate_openapi_document(types: &cloud_agent_handlers::Registry) -> String {
    let mut doc = crate::openapi::build(FEATURES);
    crate::features::tasks::types::document(&mut doc, types);
    let mut doc = serde_json::to_value(&doc).expect("the OpenAPI document serialises");
    crate::features::tasks::types::insert_inputs(&mut doc, types);
    let mut text = serde_json::to_string_pretty(&doc).expect("the OpenAPI document serialises");
    text.push('\n');
    text
}

/// This API, described in OpenAPI 3.1.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "getOpenApiDocument",
    tag = "platform",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"))
)]
pub async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_document()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every guarded route names its perimeter, and no public one does (the router would refuse to start).
    #[test]
    fn every_route_that_needs_the_perimeter_names_it() {
        for route in ROUTES.iter() {
            assert_eq!(route.perimeter.is_some(), route.access.has_perimeter(), "{}", route.path);
        }
        assert!(ROUTES.iter().any(|r| r.perimeter.is_none()) && ROUTES.iter().any(|r| r.perimeter.is_some()));
    }
}
