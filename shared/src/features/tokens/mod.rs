//! Agent identity: credentials, and the routes that issue, rotate and revoke tokens (signed by the token
//! manager, [`crate::token`]).

pub mod credentials;
pub mod family;
pub mod routes;

use axum::routing::{get, post};

use crate::route::{Access, Feature, Method, Permission, RouteSpec, UPDATE_ACTIONS};

pub const TOKEN: RouteSpec = RouteSpec {
    binary: "token",
    file: "api/v1/agent/token.rs",
    path: "/api/v1/agent/token",
    methods: &[Method::POST],
    dynamodb_actions: &["dynamodb:GetItem", "dynamodb:PutItem"],
    access: Access::Credential,
    perimeter: Some(crate::perimeter::layer),
    handler: || post(routes::token),
};

pub const TOKEN_REFRESH: RouteSpec = RouteSpec {
    binary: "token-refresh",
    file: "api/v1/agent/token/refresh.rs",
    path: "/api/v1/agent/token/refresh",
    methods: &[Method::POST],
    // One TransactWriteItems (credential check + rotation); revoking a family on reuse is an update.
    dynamodb_actions: &[
        "dynamodb:UpdateItem",
        "dynamodb:GetItem",
        "dynamodb:DeleteItem",
        "dynamodb:ConditionCheckItem",
    ],
    access: Access::Credential,
    perimeter: Some(crate::perimeter::layer),
    handler: || post(routes::refresh),
};

pub const TOKEN_REVOKE: RouteSpec = RouteSpec {
    binary: "token-revoke",
    file: "api/v1/agent/token/revoke.rs",
    path: "/api/v1/agent/token/revoke",
    methods: &[Method::POST],
    dynamodb_actions: UPDATE_ACTIONS,
    access: Access::Credential,
    perimeter: Some(crate::perimeter::layer),
    handler: || post(routes::revoke),
};

pub const AGENT_ME: RouteSpec = RouteSpec {
    binary: "agent-me",
    file: "api/v1/agent/me.rs",
    path: "/api/v1/agent/me",
    methods: &[Method::GET],
    dynamodb_actions: &[],
    access: Access::Requires(Permission::AgentSelf),
    perimeter: Some(crate::perimeter::layer),
    handler: || get(routes::me),
};

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(routes::token, routes::refresh, routes::revoke, routes::me),
    components(schemas(
        family::Issued,
        routes::TokenRequest,
        routes::RefreshRequest,
        routes::RevokeRequest,
        routes::Me
    ))
)]
struct Doc;

pub const FEATURE: Feature = Feature {
    name: "tokens",
    routes: &[TOKEN, TOKEN_REFRESH, TOKEN_REVOKE, AGENT_ME],
    openapi: <Doc as utoipa::OpenApi>::openapi,
};
