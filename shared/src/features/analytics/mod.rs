//! Windowed analytics for operators (`metrics:read`): reads what the task engine and the perimeter count per hour
//! ([`crate::analytics`]); only the caller's own tenant's.

pub mod routes;

use axum::routing::get;

use crate::route::{Access, Feature, Method, Permission, RouteSpec};

pub const ANALYTICS: RouteSpec = RouteSpec {
    binary: "analytics",
    file: "api/v1/analytics.rs",
    path: "/api/v1/analytics",
    methods: &[Method::GET],
    dynamodb_actions: &["dynamodb:Query"],
    access: Access::Requires(Permission::MetricsRead),
    perimeter: Some(crate::perimeter::layer),
    handler: || get(routes::get),
};

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(routes::get),
    components(schemas(
        cloud_agent_wire::analytics::Analytics,
        cloud_agent_wire::analytics::Bucket,
        cloud_agent_wire::analytics::TaskSeries,
        cloud_agent_wire::analytics::TaskPoint,
        cloud_agent_wire::analytics::RouteSeries,
        cloud_agent_wire::analytics::RoutePoint,
        cloud_agent_wire::analytics::Percentiles,
        cloud_agent_wire::analytics::Anomaly,
        cloud_agent_wire::analytics::Severity,
        cloud_agent_wire::analytics::Cost,
        cloud_agent_wire::analytics::PlatformCost,
    ))
)]
struct Doc;

pub const FEATURE: Feature =
    Feature { name: "analytics", routes: &[ANALYTICS], openapi: <Doc as utoipa::OpenApi>::openapi };
