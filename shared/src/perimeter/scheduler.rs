//! The perimeter of a scheduler's route: the bearer token must be the configured `CRON_SECRET` (Vercel cron sends
//! it). Without a configured secret nobody can call the route.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

use crate::auth::AuthError;
use crate::config::secrets::constant_time_eq;
use crate::state::AppState;

pub(super) async fn check(state: &AppState, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let expected = state.config().tasks.cron_secret.as_ref();
    match (presented, expected) {
        (Some(p), Some(e)) if constant_time_eq(p.as_bytes(), e.expose().as_bytes()) => next.run(request).await,
        _ => super::refusal(AuthError::SchedulerOnly),
    }
}
