//! HTTP plumbing shared by every route: errors as problem+json, request context, the JSON extractor, and the
//! layer stack every entry point (local server, Lambda, Vercel) wraps around the same router.

pub mod client;
pub mod cors;
pub mod encoding;
pub mod json;
pub mod network;
pub mod page;
pub mod path;
pub mod query;
pub mod request_id;
pub mod security_headers;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use http::StatusCode;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::metrics::Tracking;

pub use json::ApiJson;
pub use page::PageParams;
pub use path::ApiPath;
// problem+json lives in a leaf module everything may import; handlers find it here too.
pub use crate::problem::{ApiError, Problem, ToProblem};
pub use query::ApiQuery;

/// Opens an optional `cursor` query parameter sealed for `scope`; anything else is a 422 problem.
pub fn cursor_param(
    key: &crate::paging::CursorKey,
    scope: &str,
    text: Option<&str>,
) -> Result<Option<crate::store::Cursor>, ApiError> {
    text.map(|t| key.open(scope, t))
        .transpose()
        .map_err(|e| ApiError::Unprocessable { detail: e.to_string(), pointer: Some("/cursor".into()) })
}

/// Wraps `router` in the cross-cutting layers, outermost first: the request layer (ids, span, body decoding,
/// problem rendering, response compression, metrics when `tracking` is given, the access log line), panic
/// catching, the body limit (one limit, on the encoded and the decoded size), the request deadline.
pub fn layered(router: Router, body_limit: usize, timeout: Duration, tracking: Option<Tracking>) -> Router {
    // One `Router::layer` call for the whole stack: axum boxes a route again for each call and clones that box on
    // every request, so five calls cost five allocations per request where one stack costs one.
    let stack = tower::ServiceBuilder::new()
        .layer(middleware::from_fn_with_state(
            request_id::RequestLayer { tracking, body_limit },
            request_id::request_context,
        ))
        .layer(CatchPanicLayer::custom(crate::problem::panic_response))
        .layer(RequestBodyLimitLayer::new(body_limit))
        // Inside the body limit: the deadline's 503 needs a response body with a default (the route's).
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, timeout))
        // axum's extractors (`Bytes`, `String`) would apply their own 2 MB default on top; ours is the only limit.
        .layer(DefaultBodyLimit::disable());
    router.layer(stack)
}
