//! Step 5: the principal's quota ([`crate::rate_limit`]: counted in the table, spent from this instance's
//! leases), and the per-address limit that is the whole perimeter of the unauthenticated credential routes.

use std::borrow::Cow;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;

use super::{PerimeterState, bounded};
use crate::auth::{Permission, Principal, Via};
use crate::config::limits::{DEFAULT_TIER, RateClass};
use crate::http::client;
use crate::problem::ApiError;
use crate::rate_limit::{self, Decision, Quota, RateLimited};
use crate::state::AppState;

/// A refusal this instance answered from memory, without asking the table: the audit trail logs it instead of
/// storing it (the first refusal of the subject in its window was stored), so hammering past a limit costs no
/// writes.
#[derive(Debug, Clone, Copy)]
pub struct Repeated;

/// An admitted request's quota, for the RateLimit headers of its response.
#[derive(Debug)]
pub struct Admitted {
    policy: Cow<'static, str>,
    quota: Quota,
    decision: Decision,
    subject: String,
    /// The window the decision counted in.
    window: i64,
    fail_open: bool,
}

impl Admitted {
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        rate_limit::headers(headers, &self.policy, self.quota, self.decision);
    }

    /// The handle a handler charges further units of this request with.
    pub fn charge(&self, state: &AppState) -> Charge {
        Charge {
            state: state.clone(),
            subject: self.subject.clone(),
            policy: self.policy.to_string(),
            quota: self.quota,
            counted_in: matches!(self.decision, Decision::Allowed { .. }).then_some(self.window),
            fail_open: self.fail_open,
        }
    }
}

/// The quota an admitted request was counted under, for a handler whose one request is several units of it: a
/// batch of n tasks costs n delegations, so the batch handler charges the n − 1 the perimeter did not. Charged
/// all or nothing before any task is created; over the quota it is the perimeter's 429.
#[derive(Debug, Clone)]
pub struct Charge {
    state: AppState,
    subject: String,
    policy: String,
    quota: Quota,
    /// The window the perimeter counted this request's first unit in (`None`: admitted uncounted, store down).
    counted_in: Option<i64>,
    /// What the class does when the store cannot count.
    fail_open: bool,
}

impl Charge {
    /// Charges `units` more, or refuses (429 with `Retry-After`, nothing spent).
    pub async fn more(&self, units: u32) -> Result<(), ApiError> {
        if units == 0 {
            return Ok(());
        }
        let perimeter = self.state.part::<PerimeterState>();
        let now = crate::store::now_epoch();
        let spent = perimeter.limiter.spend(self.state.store(), &self.subject, self.quota, now, units);
        match bounded(&self.state, spent).await {
            Ok(Decision::Limited { reset_secs, .. }) => {
                // All or nothing: the unit the perimeter counted for this request goes back too.
                if let Some(window) = self.counted_in {
                    perimeter.limiter.refund(&self.subject, window, 1);
                }
                Err(RateLimited { policy: self.policy.clone(), quota: self.quota, reset_secs }.into())
            }
            Ok(Decision::Allowed { .. } | Decision::Unchecked) => Ok(()),
            Err(e) if self.fail_open => {
                tracing::warn!(error = %e, "units not counted: the store failed and this class fails open");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Charge {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut http::request::Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("a route charging its quota without a perimeter".into()))
    }
}

/// The subject and quota a principal is counted under.
fn quota_of(state: &AppState, principal: &Principal, class: RateClass) -> (String, Cow<'static, str>, Quota) {
    let limits = &state.config().rate_limits;
    match principal {
        Principal::Agent(a) => (format!("agent:{}", a.agent_id), Cow::Borrowed("agent"), limits.agent),
        Principal::Operator(o) => {
            let key = match &o.via {
                Via::Key(k) => Some(k),
                Via::Bootstrap | Via::User(_) => None,
            };
            let tier_name = key.map_or(DEFAULT_TIER, |k| k.tier.as_str());
            let tier = limits.tier(tier_name).or_else(|| limits.tier(DEFAULT_TIER)).copied();
            let quota = tier.map_or(limits.agent, |t| t.quota(class));
            let subject = match key {
                Some(k) => format!("key:{}:{}", k.id, class.as_str()),
                None => format!("{}:{}:{}", o.tenant, o.actor, class.as_str()),
            };
            (subject, Cow::Owned(format!("{tier_name}-{}", class.as_str())), quota)
        }
    }
}

fn limited(policy: &str, quota: Quota, reset_secs: u32, known: bool) -> Response {
    let mut response = ApiError::from(RateLimited { policy: policy.to_owned(), quota, reset_secs }).into_response();
    rate_limit::headers(response.headers_mut(), policy, quota, Decision::Limited { reset_secs, known });
    if known {
        response.extensions_mut().insert(Repeated);
    }
    response
}

/// Spends one request of the principal's quota for `permission`'s class, or refuses it.
pub async fn spend(
    state: &AppState,
    perimeter: &PerimeterState,
    principal: &Principal,
    permission: Permission,
) -> Result<Admitted, Box<Response>> {
    let class = if permission == Permission::TaskCreate { RateClass::Delegation } else { RateClass::General };
    let (subject, policy, quota) = quota_of(state, principal, class);
    let now = crate::store::now_epoch();
    let decision = match bounded(state, perimeter.limiter.check(state.store(), &subject, quota, now)).await {
        Ok(decision) => decision,
        Err(e) if state.config().rate_limits.fail_open(class) => {
            tracing::warn!(error = %e, "rate limit not counted: the store failed and this class fails open");
            Decision::Unchecked
        }
        Err(e) => return Err(Box::new(ApiError::from(e).into_response())),
    };
    match decision {
        Decision::Limited { reset_secs, known } => Err(Box::new(limited(&policy, quota, reset_secs, known))),
        decision => Ok(Admitted {
            policy,
            quota,
            decision,
            subject,
            window: now.div_euclid(i64::from(quota.window_secs)),
            fail_open: state.config().rate_limits.fail_open(class),
        }),
    }
}

/// The unauthenticated credential routes: counted per client address (as the platform vouches for it; IPv6 by
/// /64), so secrets and refresh tokens cannot be guessed at speed.
pub async fn per_address(state: &AppState, perimeter: &PerimeterState, request: Request, next: Next) -> Response {
    let client = client::resolve(state.config().vantage, request.extensions(), request.headers());
    let subject = format!("ip:{}", client.limit_key());
    let quota = state.config().rate_limits.credential;
    let policy = "credential";
    let now = crate::store::now_epoch();
    let decision = match bounded(state, perimeter.limiter.check(state.store(), &subject, quota, now)).await {
        Ok(decision) => decision,
        Err(e) => {
            // Issuing a token needs the store anyway; not counting is the lesser harm.
            tracing::warn!(error = %e, "credential route not counted: the store failed");
            Decision::Unchecked
        }
    };
    if let Decision::Limited { reset_secs, known } = decision {
        return limited(policy, quota, reset_secs, known);
    }
    let mut response = next.run(request).await;
    rate_limit::headers(response.headers_mut(), policy, quota, decision);
    response
}
