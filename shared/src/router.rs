//! The router of a set of routes: each spec's handler behind the perimeter its spec declares, every route wrapped in
//! the same layers. `cloudagent serve` mounts every route ([`crate::app::app`]); a function mounts its own.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use axum::middleware;

use crate::http::network::{self, Rules};
use crate::http::{ApiError, layered};
use crate::metrics::{Metrics, Tracking};
use crate::route::RouteSpec;
use crate::state::AppState;

/// Paths a router answers on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paths {
    /// Only the public paths: the local server.
    Public,
    /// The public paths and each route's function file path, so a function works whether Vercel's rewrite hands
    /// it the public path or the destination.
    WithFunctionPaths,
}

/// The router with `routes` mounted, wrapped in the cross-cutting layers. Paths outside `routes` answer 404
/// problem+json, exactly like an unknown path on the local server.
pub fn router(state: AppState, routes: &[RouteSpec], paths: Paths) -> Router {
    let mut router: Router<AppState> = Router::new();
    let mut labels = HashMap::new();
    let mount = |route: &RouteSpec| {
        let handler = (route.handler)();
        match (route.perimeter, route.access.has_perimeter()) {
            (Some(layer), true) => layer(handler, &state, route),
            (None, false) => handler,
            // Fail closed: a guarded route mounted without its perimeter would be open to anyone.
            _ => panic!("route {}: its access ({:?}) and its perimeter layer disagree", route.path, route.access),
        }
    };
    for route in routes {
        router = router.route(route.path, mount(route));
        labels.insert(route.path.to_owned(), route.path);
        let alias = route.function_path();
        if paths == Paths::WithFunctionPaths && alias != route.path {
            router = router.route(&alias, mount(route));
            labels.insert(alias, route.path);
        }
    }
    let config = state.config();
    let (limit, timeout) = (config.body_limit, config.request_timeout);
    let tracking = Tracking::new(Arc::<Metrics>::from_ref(&state), labels, config.emf_function.as_deref());
    let cors_origins = config.cors_origins.clone();
    let network = (!config.network.is_empty())
        .then(|| Rules { rules: Arc::new(config.network.clone()), vantage: config.vantage });
    let mut router = router.fallback(not_found).with_state(state);
    if let Some(rules) = network {
        // Only when rules are configured: a deployment without them pays for no extra layer.
        router = router.layer(middleware::from_fn_with_state(rules, network::enforce));
    }
    if !cors_origins.is_empty() {
        router = router.layer(crate::http::cors::layer(&cors_origins));
    }
    layered(router, limit, timeout, Some(tracking))
}

async fn not_found(uri: http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}
