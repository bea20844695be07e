//! Agents report their own health; operators list the latest report of every agent.

pub mod records;
pub mod report;
pub mod routes;

use axum::routing::{get, post};

use crate::route::{Access, Feature, Method, Permission, RouteSpec};

pub const AGENT_HEALTH: RouteSpec = RouteSpec {
    binary: "agent-health",
    file: "api/v1/agent/health.rs",
    path: "/api/v1/agent/health",
    methods: &[Method::POST],
    dynamodb_actions: &["dynamodb:PutItem", "dynamodb:GetItem"],
    access: Access::Requires(Permission::HealthReport),
    perimeter: Some(crate::perimeter::layer),
    handler: || post(routes::post),
};

pub const AGENTS_HEALTH: RouteSpec = RouteSpec {
    binary: "agents-health",
    file: "api/v1/agents/health.rs",
    path: "/api/v1/agents/health",
    methods: &[Method::GET],
    dynamodb_actions: &["dynamodb:Query"],
    access: Access::Requires(Permission::AgentRead),
    perimeter: Some(crate::perimeter::layer),
    handler: || get(routes::list),
};

pub const AGENT_HEALTH_ONE: RouteSpec = RouteSpec {
    binary: "agents-health-get",
    file: "api/v1/agents/[agent_id]/health.rs",
    path: "/api/v1/agents/{agent_id}/health",
    methods: &[Method::GET],
    dynamodb_actions: &["dynamodb:GetItem"],
    access: Access::Requires(Permission::AgentRead),
    perimeter: Some(crate::perimeter::layer),
    handler: || get(routes::get),
};

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(routes::post, routes::list, routes::get),
    components(schemas(
        report::AgentStatus,
        report::AgentCheck,
        report::AgentReport,
        routes::AgentHealth,
        routes::HealthSection,
        routes::Performance,
        routes::Reported,
        routes::AgentHealthList
    ))
)]
struct Doc;

pub const FEATURE: Feature = Feature {
    name: "agent_health",
    routes: &[AGENT_HEALTH, AGENTS_HEALTH, AGENT_HEALTH_ONE],
    openapi: <Doc as utoipa::OpenApi>::openapi,
};
