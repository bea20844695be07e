//! The context of the user an agent works for: stored, cached per instance, set by operators.

pub mod admin;
pub mod routes;
mod service;

use axum::routing::{get, put};

use crate::route::{Access, Feature, Method, Permission, RouteSpec};
pub use service::*;

pub const CONTEXT: RouteSpec = RouteSpec {
    binary: "context",
    file: "api/v1/agent/context.rs",
    path: "/api/v1/agent/context",
    methods: &[Method::GET],
    dynamodb_actions: &["dynamodb:GetItem"],
    access: Access::Requires(Permission::ContextRead),
    perimeter: Some(crate::perimeter::layer),
    handler: || get(routes::get),
};

pub const ADMIN_CONTEXT: RouteSpec = RouteSpec {
    binary: "admin-context",
    file: "api/v1/admin/users/[user_id]/context.rs",
    path: "/api/v1/admin/users/{user_id}/context",
    methods: &[Method::PUT],
    dynamodb_actions: &["dynamodb:PutItem"],
    access: Access::Requires(Permission::ContextWrite),
    perimeter: Some(crate::perimeter::layer),
    handler: || put(admin::put_context),
};

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(routes::get, admin::put_context),
    components(schemas(
        routes::ContextResponse,
        StoredContext,
        UserContext,
        crate::cache::CacheStatus,
        admin::ContextStored
    ))
)]
struct Doc;

pub const FEATURE: Feature =
    Feature { name: "context", routes: &[CONTEXT, ADMIN_CONTEXT], openapi: <Doc as utoipa::OpenApi>::openapi };
