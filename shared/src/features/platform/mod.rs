//! The platform routes: Prometheus metrics and the circuit breakers of the instance.

pub mod breakers;
pub mod metrics;

use axum::routing::get;

use crate::route::{Access, Feature, Method, Permission, RouteSpec};

pub const BREAKERS: RouteSpec = RouteSpec {
    binary: "circuit-breakers",
    file: "api/v1/circuit-breakers.rs",
    path: "/api/v1/circuit-breakers",
    methods: &[Method::GET],
    dynamodb_actions: &[],
    access: Access::Requires(Permission::MetricsRead),
    perimeter: Some(crate::perimeter::layer),
    handler: || get(breakers::list),
};

pub const METRICS: RouteSpec = RouteSpec {
    binary: "metrics",
    file: "api/v1/metrics.rs",
    path: "/api/v1/metrics",
    methods: &[Method::GET],
    dynamodb_actions: &[],
    access: Access::Requires(Permission::MetricsRead),
    perimeter: Some(crate::perimeter::layer),
    handler: || get(metrics::prometheus),
};

#[derive(utoipa::OpenApi)]
#[openapi(paths(breakers::list, metrics::prometheus), components(schemas(breakers::Breakers)))]
struct Doc;

pub const FEATURE: Feature =
    Feature { name: "platform", routes: &[BREAKERS, METRICS], openapi: <Doc as utoipa::OpenApi>::openapi };
