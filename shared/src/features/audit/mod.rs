//! Reading the audit trail. Records are written by the perimeter layer ([`crate::audit`]); this feature only
//! serves them, to callers holding `audit:read`, and only their own tenant's.

pub mod routes;

use axum::routing::get;

use crate::route::{Access, Feature, Method, Permission, RouteSpec};

pub const AUDIT: RouteSpec = RouteSpec {
    binary: "audit",
    file: "api/v1/audit.rs",
    path: "/api/v1/audit",
    methods: &[Method::GET],
    dynamodb_actions: &["dynamodb:Query"],
    access: Access::Requires(Permission::AuditRead),
    perimeter: Some(crate::perimeter::layer),
    handler: || get(routes::list),
};

#[derive(utoipa::OpenApi)]
#[openapi(paths(routes::list), components(schemas(crate::audit::AuditRecord, routes::AuditPage)))]
struct Doc;

pub const FEATURE: Feature = Feature { name: "audit", routes: &[AUDIT], openapi: <Doc as utoipa::OpenApi>::openapi };
