//! Operators' API keys over the admin API: create (shown once), list, rotate, revoke. The records, hashing and
//! verification live in the kernel ([`crate::auth::api_key`]), which the perimeter layer uses on every request.

pub mod routes;

use axum::routing::{delete, get, post};

use crate::route::{Access, Feature, Method, Permission, RouteSpec};

pub const KEYS: RouteSpec = RouteSpec {
    binary: "keys",
    file: "api/v1/keys.rs",
    path: "/api/v1/keys",
    methods: &[Method::GET, Method::POST],
    dynamodb_actions: &["dynamodb:PutItem", "dynamodb:Query"],
    access: Access::Requires(Permission::KeyManage),
    perimeter: Some(crate::perimeter::layer),
    handler: || get(routes::list).post(routes::create),
};

pub const KEY_REVOKE: RouteSpec = RouteSpec {
    binary: "keys-revoke",
    file: "api/v1/keys/[key_id].rs",
    path: "/api/v1/keys/{key_id}",
    methods: &[Method::DELETE],
    dynamodb_actions: &["dynamodb:DeleteItem"],
    access: Access::Requires(Permission::KeyManage),
    perimeter: Some(crate::perimeter::layer),
    handler: || delete(routes::revoke),
};

pub const KEY_ROTATE: RouteSpec = RouteSpec {
    binary: "keys-rotate",
    file: "api/v1/keys/[key_id]/rotate.rs",
    path: "/api/v1/keys/{key_id}/rotate",
    methods: &[Method::POST],
    // A read of the old key, then one TransactWriteItems: the new key's put and the old key's update.
    dynamodb_actions: &["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
    access: Access::Requires(Permission::KeyManage),
    perimeter: Some(crate::perimeter::layer),
    handler: || post(routes::rotate),
};

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(routes::create, routes::list, routes::revoke, routes::rotate),
    components(schemas(
        routes::CreateKey,
        routes::KeyInfo,
        routes::CreatedKey,
        routes::KeyList,
        crate::auth::Role,
        crate::auth::api_key::Signing
    ))
)]
struct Doc;

pub const FEATURE: Feature =
    Feature { name: "keys", routes: &[KEYS, KEY_REVOKE, KEY_ROTATE], openapi: <Doc as utoipa::OpenApi>::openapi };
