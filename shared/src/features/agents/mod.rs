//! Agents over the admin API: register, list, disable and rotate, so the CLI and operators manage agents against
//! a running server or a deployment. Credentials themselves live in the tokens feature
//! ([`crate::features::tokens::credentials`]).

pub mod routes;

use axum::routing::{get, post};

use crate::route::{Access, Feature, Method, Permission, RouteSpec};

pub const AGENTS: RouteSpec = RouteSpec {
    binary: "agents",
    file: "api/v1/agents.rs",
    path: "/api/v1/agents",
    methods: &[Method::GET, Method::POST],
    dynamodb_actions: &["dynamodb:PutItem", "dynamodb:Query"],
    access: Access::PerMethod(&[(Method::GET, Permission::AgentRead), (Method::POST, Permission::AgentManage)]),
    perimeter: Some(crate::perimeter::layer),
    handler: || get(routes::list).post(routes::create),
};

pub const AGENT_DISABLE: RouteSpec = RouteSpec {
    binary: "agents-disable",
    file: "api/v1/agents/[agent_id]/disable.rs",
    path: "/api/v1/agents/{agent_id}/disable",
    methods: &[Method::POST],
    dynamodb_actions: crate::route::UPDATE_ACTIONS,
    access: Access::Requires(Permission::AgentManage),
    perimeter: Some(crate::perimeter::layer),
    handler: || post(routes::disable),
};

pub const AGENT_ROTATE: RouteSpec = RouteSpec {
    binary: "agents-rotate",
    file: "api/v1/agents/[agent_id]/rotate.rs",
    path: "/api/v1/agents/{agent_id}/rotate",
    methods: &[Method::POST],
    dynamodb_actions: crate::route::UPDATE_ACTIONS,
    access: Access::Requires(Permission::AgentManage),
    perimeter: Some(crate::perimeter::layer),
    handler: || post(routes::rotate),
};

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(routes::list, routes::create, routes::disable, routes::rotate),
    components(schemas(
        routes::CreateAgent,
        routes::AgentSecret,
        routes::AgentList,
        crate::features::tokens::credentials::AgentSummary
    ))
)]
struct Doc;

pub const FEATURE: Feature = Feature {
    name: "agents",
    routes: &[AGENTS, AGENT_DISABLE, AGENT_ROTATE],
    openapi: <Doc as utoipa::OpenApi>::openapi,
};
