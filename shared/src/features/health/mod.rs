//! Service health: the IETF health document, liveness and readiness.

pub mod routes;

use axum::routing::get;

use crate::route::{Access, Feature, Method, RouteSpec};
pub use routes::{Check, HealthReport, HealthStatus, report};

/// What a function that builds the health report does in the table: it reads the probe item and claims (or
/// releases) an alert's cooldown.
pub const ALERTING_ACTIONS: &[&str] = &["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"];

/// The functions that build the health report, and so may send an alert (template.yaml lets them publish to the
/// alert topic, and only them).
pub const ALERT_SENDERS: &[&str] = &["health", "health-ready", "agent-health"];

pub const HEALTH: RouteSpec = RouteSpec {
    binary: "health",
    file: "api/health.rs",
    path: "/health",
    methods: &[Method::GET],
    // Reading the probe item; claiming and releasing an alert's cooldown across instances.
    dynamodb_actions: ALERTING_ACTIONS,
    access: Access::Public,
    perimeter: None,
    handler: || get(routes::health),
};

pub const HEALTH_LIVE: RouteSpec = RouteSpec {
    binary: "health-live",
    file: "api/health/live.rs",
    path: "/health/live",
    methods: &[Method::GET],
    dynamodb_actions: &[],
    access: Access::Public,
    perimeter: None,
    handler: || get(routes::live),
};

pub const HEALTH_READY: RouteSpec = RouteSpec {
    binary: "health-ready",
    file: "api/health/ready.rs",
    path: "/health/ready",
    methods: &[Method::GET],
    dynamodb_actions: ALERTING_ACTIONS,
    access: Access::Public,
    perimeter: None,
    handler: || get(routes::ready),
};

#[derive(utoipa::OpenApi)]
#[openapi(paths(routes::health, routes::live, routes::ready), components(schemas(HealthReport, Check, HealthStatus)))]
struct Doc;

pub const FEATURE: Feature = Feature {
    name: "health",
    routes: &[HEALTH, HEALTH_LIVE, HEALTH_READY],
    openapi: <Doc as utoipa::OpenApi>::openapi,
};
