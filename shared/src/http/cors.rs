//! CORS for browser clients (a dashboard on another origin), from an allowlist of exact origins in config. Only
//! listed origins get `Access-Control-Allow-Origin`; preflights are answered before routing, and the headers a
//! client needs to read (request id, rate-limit state, `Retry-After`) are exposed. Credentials travel in headers
//! (`Authorization`, `X-API-Key`), never cookies, so `Allow-Credentials` stays off.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

pub fn layer(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    let name = HeaderName::from_static;
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            name("x-api-key"),
            name("x-timestamp"),
            name("x-signature"),
            name("x-content-sha256"),
            name("x-request-id"),
            name("x-correlation-id"),
            name("idempotency-key"),
        ])
        .expose_headers([
            name("x-request-id"),
            name("x-correlation-id"),
            name("ratelimit"),
            name("ratelimit-policy"),
            header::RETRY_AFTER,
            name("x-cache"),
        ])
        .max_age(Duration::from_mins(10))
}
