//! The contract between the centre and the features. Each feature folder exports one [`Feature`]: its route
//! specs (path, methods, function binary, the DynamoDB actions its function is granted, the auth it needs) and
//! its part of the OpenAPI document. The centre ([`crate::app`]) concatenates them; `tests/api/infra.rs` checks
//! Cargo.toml, template.yaml and vercel.json against the same list.

use axum::routing::MethodRouter;
pub use http::Method;

pub use crate::auth::Permission;

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
    /// Who may call it: enforced by the perimeter layer ([`crate::perimeter`]), never inside handlers.
    pub access: Access,
    /// The perimeter layer, for every access but [`Access::Public`] (`Some(crate::perimeter::layer)`); the router
    /// refuses to start when this and `access` disagree. A field rather than a call the router makes, so a function
    /// whose routes are all public links no perimeter code at all.
    pub perimeter: Option<Layer>,
    /// The handler(s), built when the route is mounted.
    pub handler: fn() -> MethodRouter<AppState>,
}

/// Wraps a route's handler in the layer that enforces its [`Access`].
pub type Layer = fn(MethodRouter<AppState>, &AppState, &RouteSpec) -> MethodRouter<AppState>;

/// What a route requires of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health, the OpenAPI document).
    Public,
    /// Anyone, rate limited per client address (the unauthenticated credential routes: token issue, refresh,
    /// revoke), so credentials cannot be guessed at speed. Not audited: there is no principal.
    Credential,
    /// A caller holding this permission: agent tokens hold the agent-only ones, operators their role's
    /// ([`crate::auth::permissions`]). Every such request is rate limited and audited.
    Requires(Permission),
    /// A permission per method, where a path's methods differ (listing needs less than creating).
    PerMethod(&'static [(Method, Permission)]),
    /// The platform's scheduler (Vercel cron), presenting the configured `CRON_SECRET` as a bearer token. No
    /// operator or agent credential opens it.
    Scheduler,
}

impl Access {
    /// The permission a request with `method` needs, if any.
    pub fn permission_for(self, method: &Method) -> Option<Permission> {
        match self {
            Self::Public | Self::Credential | Self::Scheduler => None,
            Self::Requires(p) => Some(p),
            Self::PerMethod(list) => list.iter().find(|(m, _)| m == method).map(|(_, p)| *p),
        }
    }

    /// Whether any method needs a permission.
    pub fn is_guarded(self) -> bool {
        matches!(self, Self::Requires(_) | Self::PerMethod(_))
    }

    /// Whether the route is behind the perimeter layer at all (permission or per-address limit).
    pub fn has_perimeter(self) -> bool {
        !matches!(self, Self::Public)
    }
}

/// What the perimeter itself does in the table on a route that needs a permission: read an API key
/// (`GetItem`), count the rate-limit window and record a key's last use (`UpdateItem`, which on an expired window
/// reads and deletes it first), write the audit record (`PutItem`).
pub const PERIMETER_ACTIONS: &[&str] =
    &["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"];

/// What the per-address limit of a credential route does in the table: the window's conditional `UpdateItem`
/// (which on an expired window reads and deletes it first).
pub const CREDENTIAL_ACTIONS: &[&str] = &["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"];

impl RouteSpec {
    /// Every DynamoDB action the route's function needs: its handler's, and the perimeter's when it has one.
    /// template.yaml grants exactly these (`tests/api/infra.rs`).
    pub fn granted_actions(&self) -> std::collections::BTreeSet<&'static str> {
        let perimeter = match self.access {
            Access::Public | Access::Scheduler => &[][..],
            Access::Credential => CREDENTIAL_ACTIONS,
            Access::Requires(_) | Access::PerMethod(_) => PERIMETER_ACTIONS,
        };
        self.dynamodb_actions.iter().chain(perimeter).copied().collect()
    }

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

/// A function that no HTTP route reaches: a queue or schedule invokes it (the task worker). Deployed by
/// template.yaml like a route's function; `tests/api/infra.rs` checks it against this spec.
#[derive(Debug, Clone, Copy)]
pub struct EventFunction {
    pub binary: &'static str,
    /// Under `api/_…`: Vercel ignores such files (it has no queue triggers; a cron route does the work there).
    pub file: &'static str,
    /// The SAM event types that invoke it (`SQS`, `Schedule`).
    pub triggers: &'static [&'static str],
    pub dynamodb_actions: &'static [&'static str],
}
