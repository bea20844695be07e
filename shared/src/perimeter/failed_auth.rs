//! Step 1, and the price of failing step 2 or 3: failed authentications (unknown, revoked or wrong keys, bad
//! tokens, failed signatures) count against the client address — IPv6 by its /64 — in the table, like any
//! rate limit (`CLOUD_AGENT_AUTH_FAILURES`, 30 per 60 s by default). Past the quota the address is answered 429;
//! an instance that has seen it go over refuses it before looking at any credential, so a flood of guesses
//! costs no store read or write there until the window ends.

use axum::response::{IntoResponse, Response};
use http::StatusCode;

use super::{PerimeterState, Seen, bounded};
use crate::auth::AuthError;
use crate::auth::oidc::OidcError;
use crate::problem::{ApiError, Problem, ToProblem};
use crate::rate_limit::{Decision, Quota};
use crate::state::AppState;
use crate::token::TokenError;

/// The address went over its quota of failed authentications.
#[derive(Debug, thiserror::Error)]
#[error("too many failed authentications from this address")]
pub struct TooManyFailures {
    pub quota: Quota,
    pub reset_secs: u32,
}

impl ToProblem for TooManyFailures {
    fn status(&self) -> StatusCode {
        StatusCode::TOO_MANY_REQUESTS
    }

    fn problem(&self) -> Problem {
        Problem::new(self.status(), "too-many-failed-attempts", "Too Many Failed Attempts").detail(format!(
            "more than {} failed authentications from this address in {} s; check the credential, and retry \
             after {} s (Retry-After)",
            self.quota.limit, self.quota.window_secs, self.reset_secs
        ))
    }

    fn retry_after(&self) -> Option<u64> {
        Some(u64::from(self.reset_secs.max(1)))
    }
}

fn subject(seen: &Seen) -> String {
    format!("authfail:{}", seen.client.limit_key())
}

fn window_reset(quota: Quota, now: i64) -> u32 {
    let width = i64::from(quota.window_secs);
    u32::try_from(width - now.rem_euclid(width)).unwrap_or(quota.window_secs)
}

/// The refusal of an address this instance knows is over its quota (no store call), if it is.
pub fn refuse_blocked(state: &AppState, perimeter: &PerimeterState, seen: &Seen) -> Option<Response> {
    let now = crate::store::now_epoch();
    if !perimeter.failures.blocks_any(now) {
        return None;
    }
    let quota = state.config().rate_limits.auth_failures;
    perimeter
        .failures
        .is_blocked(&subject(seen), quota, now)
        .then(|| ApiError::from(TooManyFailures { quota, reset_secs: window_reset(quota, now) }).into_response())
}

/// Whether a failure is the caller's (it counts against the address), not ours (the store or the identity
/// provider could not be asked).
pub fn is_the_callers(error: &AuthError) -> bool {
    match error {
        AuthError::Store(_) => false,
        AuthError::Token(e) => !matches!(e, TokenError::Store(_)),
        AuthError::Oidc(e) => !matches!(e, OidcError::Unavailable(_)),
        _ => true,
    }
}

/// Counts one failed authentication from the request's address: the failure's own answer while the address is
/// within its quota, 429 past it. A store that cannot count leaves the failure's own answer.
pub async fn count(state: &AppState, perimeter: &PerimeterState, seen: &Seen, failure: ApiError) -> Response {
    let quota = state.config().rate_limits.auth_failures;
    let now = crate::store::now_epoch();
    match bounded(state, perimeter.failures.check(state.store(), &subject(seen), quota, now)).await {
        Ok(Decision::Limited { reset_secs, .. }) => {
            tracing::warn!(client = %seen.client.limit_key(), "failed authentications over the quota: refusing");
            ApiError::from(TooManyFailures { quota, reset_secs }).into_response()
        }
        Ok(_) => failure.into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "failed authentication not counted: the store failed");
            failure.into_response()
        }
    }
}
