//! Every route, once. [`ROUTES`] is the single list the router, the per-route binaries, template.yaml and
//! vercel.json are checked against (`tests/infra.rs`).

pub mod admin;
pub mod agent_health;
pub mod breakers;
pub mod context;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod progress;
pub mod token;

use axum::Router;
use axum::middleware;
use axum::routing::{MethodRouter, get, post, put};
pub use http::Method;

use crate::http::{ApiError, auth, layered};
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
    /// Who may call it.
    pub auth: Auth,
    handler: fn() -> MethodRouter<AppState>,
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

pub const HEALTH: RouteSpec = RouteSpec {
    binary: "health",
    file: "api/health.rs",
    path: "/health",
    methods: &[Method::GET],
    dynamodb_actions: &["dynamodb:GetItem"],
    auth: Auth::Public,
    handler: || get(health::health),
};

pub const OPENAPI: RouteSpec = RouteSpec {
    binary: "openapi",
    file: "api/v1/openapi.rs",
    path: "/api/v1/openapi.json",
    methods: &[Method::GET],
    dynamodb_actions: &[],
    auth: Auth::Public,
    handler: || get(openapi::spec),
};

/// The store's update on an expired, unreaped item reads it and deletes it before applying (see store docs).
const UPDATE_ACTIONS: &[&str] = &["dynamodb:UpdateItem", "dynamodb:GetItem", "dynamodb:DeleteItem"];

pub const TOKEN: RouteSpec = RouteSpec {
    binary: "token",
    file: "api/v1/agent/token.rs",
    path: "/api/v1/agent/token",
    methods: &[Method::POST],
    dynamodb_actions: &["dynamodb:GetItem", "dynamodb:PutItem"],
    auth: Auth::Public,
    handler: || post(token::token),
};

pub const TOKEN_REFRESH: RouteSpec = RouteSpec {
    binary: "token-refresh",
    file: "api/v1/agent/token/refresh.rs",
    path: "/api/v1/agent/token/refresh",
    methods: &[Method::POST],
    dynamodb_actions: UPDATE_ACTIONS,
    auth: Auth::Public,
    handler: || post(token::refresh),
};

pub const TOKEN_REVOKE: RouteSpec = RouteSpec {
    binary: "token-revoke",
    file: "api/v1/agent/token/revoke.rs",
    path: "/api/v1/agent/token/revoke",
    methods: &[Method::POST],
    dynamodb_actions: UPDATE_ACTIONS,
    auth: Auth::Public,
    handler: || post(token::revoke),
};

pub const AGENT_ME: RouteSpec = RouteSpec {
    binary: "agent-me",
    file: "api/v1/agent/me.rs",
    path: "/api/v1/agent/me",
    methods: &[Method::GET],
    dynamodb_actions: &[],
    auth: Auth::Agent,
    handler: || get(token::me),
};

/// All routes, in the order the local server mounts them.
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
    auth: Auth::Agent,
    handler: || post(progress::post),
};

pub const PROGRESS_GET: RouteSpec = RouteSpec {
    binary: "progress-get",
    file: "api/v1/agent/progress/[task_id].rs",
    path: "/api/v1/agent/progress/{task_id}",
    methods: &[Method::GET],
    dynamodb_actions: &["dynamodb:GetItem", "dynamodb:Query"],
    auth: Auth::Agent,
    handler: || get(progress::get),
};

pub const CONTEXT: RouteSpec = RouteSpec {
    binary: "context",
    file: "api/v1/agent/context.rs",
    path: "/api/v1/agent/context",
    methods: &[Method::GET],
    dynamodb_actions: &["dynamodb:GetItem"],
    auth: Auth::Agent,
    handler: || get(context::get),
};

pub const ADMIN_CONTEXT: RouteSpec = RouteSpec {
    binary: "admin-context",
    file: "api/v1/admin/users/[user_id]/context.rs",
    path: "/api/v1/admin/users/{user_id}/context",
    methods: &[Method::PUT],
    dynamodb_actions: &["dynamodb:PutItem"],
    auth: Auth::Admin,
    handler: || put(admin::put_context),
};

pub const BREAKERS: RouteSpec = RouteSpec {
    binary: "circuit-breakers",
    file: "api/v1/circuit-breakers.rs",
    path: "/api/v1/circuit-breakers",
    methods: &[Method::GET],
    dynamodb_actions: &[],
    auth: Auth::Public,
    handler: || get(breakers::list),
};

pub const METRICS: RouteSpec = RouteSpec {
    binary: "metrics",
    file: "api/v1/metrics.rs",
    path: "/api/v1/metrics",
    methods: &[Method::GET],
    dynamodb_actions: &[],
    auth: Auth::Public,
    handler: || get(metrics::prometheus),
};

pub const HEALTH_LIVE: RouteSpec = RouteSpec {
    binary: "health-live",
    file: "api/health/live.rs",
    path: "/health/live",
    methods: &[Method::GET],
    dynamodb_actions: &[],
    auth: Auth::Public,
    handler: || get(health::live),
};

pub const HEALTH_READY: RouteSpec = RouteSpec {
    binary: "health-ready",
    file: "api/health/ready.rs",
    path: "/health/ready",
    methods: &[Method::GET],
    dynamodb_actions: &["dynamodb:GetItem"],
    auth: Auth::Public,
    handler: || get(health::ready),
};

pub const AGENT_HEALTH: RouteSpec = RouteSpec {
    binary: "agent-health",
    file: "api/v1/agent/health.rs",
    path: "/api/v1/agent/health",
    methods: &[Method::POST],
    dynamodb_actions: &["dynamodb:PutItem", "dynamodb:GetItem"],
    auth: Auth::Agent,
    handler: || post(agent_health::post),
};

pub const AGENTS_HEALTH: RouteSpec = RouteSpec {
    binary: "agents-health",
    file: "api/v1/agents/health.rs",
    path: "/api/v1/agents/health",
    methods: &[Method::GET],
    dynamodb_actions: &["dynamodb:Query"],
    auth: Auth::Admin,
    handler: || get(agent_health::list),
};

pub const ROUTES: &[RouteSpec] = &[
    HEALTH,
    OPENAPI,
    TOKEN,
    TOKEN_REFRESH,
    TOKEN_REVOKE,
    AGENT_ME,
    PROGRESS,
    PROGRESS_GET,
    CONTEXT,
    ADMIN_CONTEXT,
    BREAKERS,
    METRICS,
    HEALTH_LIVE,
    HEALTH_READY,
    AGENT_HEALTH,
    AGENTS_HEALTH,
];

/// The router with every route: what `cloudagent serve` runs.
pub fn app(state: AppState) -> Router {
    app_for(state, ROUTES)
}

/// The router with only `routes` mounted, wrapped in the same layers: what a per-route function runs.
/// Paths outside `routes` answer 404 problem+json, exactly like an unknown path on the local server.
/// A function also answers on its Vercel file path, so it works whether Vercel's rewrite hands it the
/// public path or the destination.
pub fn app_for(state: AppState, routes: &[RouteSpec]) -> Router {
    let mut router: Router<AppState> = Router::new();
    let mount = |route: &RouteSpec| {
        let handler = (route.handler)();
        match route.auth {
            Auth::Public => handler,
            Auth::Agent => handler.route_layer(middleware::from_fn_with_state(state.clone(), auth::require_agent)),
            Auth::Admin => handler.route_layer(middleware::from_fn_with_state(state.clone(), auth::require_admin)),
        }
    };
    for route in routes {
        router = router.route(route.path, mount(route));
        let alias = route.function_path();
        if routes.len() < ROUTES.len() && alias != route.path {
            router = router.route(&alias, mount(route));
        }
    }
    let config = state.config();
    let (limit, timeout) = (config.body_limit, config.request_timeout);
    let track = middleware::from_fn_with_state(state.clone(), crate::metrics::track);
    let router = router.fallback(not_found).with_state(state);
    layered(router, limit, timeout).layer(track)
}

async fn not_found(uri: http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}
