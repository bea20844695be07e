//! The centre: the list of features and the router built from their route specs.

use axum::Router;
use axum::middleware;
use once_cell::sync::Lazy;

use crate::features;
use crate::http::{ApiError, auth, layered};
use crate::route::{Auth, Feature, RouteSpec};
use crate::state::AppState;

/// Every feature, in the order the local server mounts their routes. A new feature adds one line here; a new
/// route touches only its feature folder (and the deployment files).
pub const FEATURES: &[Feature] = &[
    features::health::FEATURE,
    features::platform::FEATURE,
    features::tokens::FEATURE,
    features::progress::FEATURE,
    features::context::FEATURE,
    features::agent_health::FEATURE,
];

/// Every route of every feature: the one list the router, the per-route binaries, template.yaml and vercel.json
/// are checked against (`tests/infra.rs`).
/// (once_cell is the design card's choice for process-wide statics.)
#[allow(clippy::non_std_lazy_statics)]
pub static ROUTES: Lazy<Vec<RouteSpec>> = Lazy::new(|| FEATURES.iter().flat_map(|f| f.routes).copied().collect());

/// The router with every route: what `cloudagent serve` runs.
pub fn app(state: AppState) -> Router {
    app_for(state, &ROUTES)
}

/// The router with only `routes` mounted, wrapped in the same layers: what a per-route function runs.
/// Paths outside `routes` answer 404 problem+json, exactly like an unknown path on the local server.
/// A function also answers on its Vercel file path, so it works whether Vercel's rewrite hands it the
/// public path or the destination.
pub fn app_for(state: AppState, routes: &[RouteSpec]) -> Router {
    let mut router: Router<AppState> = Router::new();
    let mount = |route: &RouteSpec| {
        let handler = (route.handler)();
        match route.auth {
            Auth::Public => handler,
            Auth::Agent => handler.route_layer(middleware::from_fn_with_state(state.clone(), auth::require_agent)),
            Auth::Admin => handler.route_layer(middleware::from_fn_with_state(state.clone(), auth::require_admin)),
        }
    };
    let all = routes.len() >= ROUTES.len();
    for route in routes {
        router = router.route(route.path, mount(route));
        let alias = route.function_path();
        if !all && alias != route.path {
            router = router.route(&alias, mount(route));
        }
    }
    let config = state.config();
    let (limit, timeout) = (config.body_limit, config.request_timeout);
    let track = middleware::from_fn_with_state(state.clone(), crate::metrics::track);
    let router = router.fallback(not_found).with_state(state);
    layered(router, limit, timeout).layer(track)
}

async fn not_found(uri: http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}
