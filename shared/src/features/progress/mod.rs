//! Agent progress: batched, idempotent, durable writes and the task history, per user.

mod model;
mod records;
pub mod routes;
mod service;

use axum::routing::{get, post};

use crate::route::{Access, Feature, Method, Permission, RouteSpec};
pub use model::*;
pub use service::*;

pub const PROGRESS: RouteSpec = RouteSpec {
    binary: "progress",
    file: "api/v1/agent/progress.rs",
    path: "/api/v1/agent/progress",
    methods: &[Method::POST],
    // Receipt claim/finish (put, update, delete), task state (update), events (batch write).
    dynamodb_actions: &[
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:GetItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
    ],
    access: Access::Requires(Permission::ProgressWrite),
    perimeter: Some(crate::perimeter::layer),
    handler: || post(routes::post),
};

pub const PROGRESS_GET: RouteSpec = RouteSpec {
    binary: "progress-get",
    file: "api/v1/agent/progress/[task_id].rs",
    path: "/api/v1/agent/progress/{task_id}",
    methods: &[Method::GET],
    dynamodb_actions: &["dynamodb:GetItem", "dynamodb:Query"],
    access: Access::Requires(Permission::ProgressWrite),
    perimeter: Some(crate::perimeter::layer),
    handler: || get(routes::get),
};

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(routes::post, routes::get),
    components(schemas(
        routes::ProgressBatch,
        ProgressUpdate,
        TaskStatus,
        Receipt,
        ItemIssue,
        TaskProgress,
        ProgressEvent
    ))
)]
struct Doc;

pub const FEATURE: Feature =
    Feature { name: "progress", routes: &[PROGRESS, PROGRESS_GET], openapi: <Doc as utoipa::OpenApi>::openapi };
