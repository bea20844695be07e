//! The contract between the centre and the features. Each feature folder exports one [`Feature`]: its route
//! specs (path, methods, function binary, the DynamoDB actions its function is granted, the auth it needs) and
//! its part of the OpenAPI document. The centre ([`crate::app`]) concatenates them; `tests/infra.rs` checks
//! Cargo.toml, template.yaml and vercel.json against the same list.

use axum::routing::MethodRouter;
pub use http::Method;

use crate::state::AppState;

/// One route: its public path, methods, and the function binary that serves it when deployed.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    /// Binary name in Cargo.toml (and `Binary` in template.yaml).
    pub binary: &'static str,
    /// File under `api/` (the Vercel function).
    pub file: &'static str,
    /// Public path, in axum syntax.
    pub path: &'static str,
    pub methods: &'static [Method],
    /// The DynamoDB actions this route's function needs: template.yaml grants exactly these (least privilege).
    pub dynamodb_actions: &'static [&'static str],
    /// Who may call it; enforced by one route layer, never inside handlers.
    pub auth: Auth,
    /// The handler(s), built when the route is mounted.
    pub handler: fn() -> MethodRouter<AppState>,
}

/// Authentication a route requires; applied as a route layer, never inside handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Public,
    /// A valid agent access token (`Authorization: Bearer`).
    Agent,
    /// The environment's admin key (`Authorization: Bearer`).
    Admin,
}

impl RouteSpec {
    /// The path Vercel gives the function's file (`api/v1/openapi.rs` → `/api/v1/openapi`).
    pub fn function_path(&self) -> String {
        format!("/{}", self.file.trim_end_matches(".rs"))
    }
}

/// What a feature folder exports to the centre.
#[derive(Debug, Clone, Copy)]
pub struct Feature {
    pub name: &'static str,
    pub routes: &'static [RouteSpec],
    /// This feature's paths and schemas; the platform feature merges every feature's part into one document.
    pub openapi: fn() -> utoipa::openapi::OpenApi,
}

/// DynamoDB actions of a route that updates items: the store's update on an expired, unreaped item reads it
/// and deletes it before applying (see the store docs).
pub const UPDATE_ACTIONS: &[&str] = &["dynamodb:UpdateItem", "dynamodb:GetItem", "dynamodb:DeleteItem"];
