//! Cloud Agent: the control plane for fleets of software agents.
//!
//! One router ([`app`]) holds every route. The same router runs under three entry points: AWS Lambda and
//! Vercel (via [`runtime::run_function`], one thin binary per route in `api/`) and the local server
//! (`cloudagent serve`, via [`app::serve`]). State lives behind the [`store::Store`] trait, backed by
//! DynamoDB in production and an embedded redb file locally.

pub mod alerts;
pub mod analytics;
pub mod app;
pub mod audit;
pub mod auth;
pub mod aws;
pub use cloud_agent_breaker as breaker;
pub mod cache;
pub mod config;
pub mod features;
pub mod http;
pub mod ids;
pub mod metrics;
pub mod openapi;
pub mod paging;
pub mod perimeter;
pub mod problem;
pub mod rate_limit;
pub mod route;
pub mod router;
pub mod runtime;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod token;
pub mod webhook_signature;

pub use app::{FEATURES, ROUTES, app};
pub use route::{Feature, RouteSpec};
pub use state::AppState;
