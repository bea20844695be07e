//! The perimeter: one route layer in front of every route that is not public. For a route that needs a
//! permission it runs these steps, each in its own file, in order:
//! 1. [`failed_auth`]: an address past its quota of failed authentications is refused (429) before any check;
//! 2. [`authenticate`]: who the credential belongs to (bootstrap key, API key, identity-provider user, agent) —
//!    401 when it cannot tell, counted against the client address;
//! 3. [`signature`]: the request signature of a key that signs — a failure is a failed authentication;
//! 4. [`authorize`]: the method's permission (HEAD needs GET's; a method without one is 405 with `Allow`), the
//!    key's address blocks, the principal's grants — 403;
//! 5. [`rate_limit`]: the principal's quota, spent from leases of the table's count — 429 with `Retry-After`;
//! 6. the handler;
//! 7. [`audit`]: the record, stored before the response leaves when the audit policy says so (an instance may
//!    freeze right after it answers), otherwise carried by the access log line;
//! 8. the request counted for the tenant's analytics ([`crate::analytics::requests`]): in memory, written to
//!    the table by the request that ends at least 30 s after the instance's last write.
//!
//! Handlers never see a request that failed a step, and never repeat these checks. The credential routes
//! (per-address limit) and the scheduler's route have their own one-step perimeters.

pub mod audit;
pub mod authenticate;
pub mod authorize;
pub mod failed_auth;
pub mod rate_limit;
mod scheduler;
pub mod signature;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;

use crate::analytics::requests::RequestLedger;
use crate::auth::api_key::{KeyHasher, KeyRecord};
use crate::auth::{AuthError, Principal};
use crate::cache::Cache;
use crate::http::client::{self, Client};
use crate::http::request_id::RequestId;
use crate::problem::ApiError;
use crate::route::{Access, RouteSpec};
use crate::state::{AppState, Part};
use crate::store::StoreError;

pub use authenticate::KEY_CACHE_TTL;

/// Waits on one of the perimeter's store calls for at most the configured budget (`CLOUD_AGENT_PERIMETER_BUDGET_MS`,
/// 300 ms: DynamoDB answers in milliseconds). A hung store must not eat the request's whole budget before the
/// handler runs; a call cut off here counts as a store failure (for the breaker, and for the route class's
/// fail-open or fail-closed rule).
async fn bounded<T>(state: &AppState, call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    tokio::time::timeout(state.config().perimeter_budget, call)
        .await
        .unwrap_or_else(|_| Err(StoreError::Unavailable("the perimeter's store call ran out of time".into())))
}

/// Per-instance state of the perimeter: verified and unknown keys, quota leases, last-used writes.
#[derive(Debug)]
pub struct PerimeterState {
    hasher: KeyHasher,
    keys: Arc<Cache<String, Arc<KeyRecord>>>,
    /// Key ids the table did not have: a repeated guess costs no store read for a while.
    unknown_keys: Arc<Cache<String, ()>>,
    limiter: crate::rate_limit::Limiter,
    /// Failed authentications per client address (apart, so its lock-free "anyone blocked?" check stays cheap).
    failures: crate::rate_limit::Limiter,
    /// Key id → epoch second this instance last recorded its use.
    touched: Mutex<std::collections::HashMap<String, i64>>,
    /// The identity provider's verifier, when one is configured.
    oidc: Option<crate::auth::oidc::Verifier>,
    /// This instance's request counts for analytics, not yet written.
    requests: RequestLedger,
}

impl Part for PerimeterState {
    fn build(state: &AppState) -> Self {
        let config = state.config();
        let non_zero = |n| std::num::NonZeroUsize::new(n).expect("non-zero");
        let keys = Arc::new(Cache::new(non_zero(1024), 1 << 20, KEY_CACHE_TTL, |_| 512));
        let unknown_keys = Arc::new(Cache::new(non_zero(4096), 1 << 19, authenticate::UNKNOWN_KEY_TTL, |()| 96));
        state.metrics().register_cache("api_keys", keys.clone());
        state.metrics().register_cache("unknown_api_keys", unknown_keys.clone());
        Self {
            hasher: KeyHasher::derive(&config.secrets.agent, config.environment),
            keys,
            unknown_keys,
            limiter: crate::rate_limit::Limiter::default(),
            failures: crate::rate_limit::Limiter::default(),
            touched: Mutex::default(),
            oidc: config.oidc.clone().map(|settings| {
                let breaker = state.breakers().breaker(crate::auth::oidc::BREAKER, config.breaker);
                crate::auth::oidc::Verifier::new(settings, breaker)
            }),
            requests: RequestLedger::new(config.analytics.flush),
        }
    }
}

impl PerimeterState {
    pub fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    /// This instance's request counts (written when due; [`RequestLedger::flush_now`] on shutdown).
    pub fn requests(&self) -> &RequestLedger {
        &self.requests
    }

    /// Forgets a key this instance verified (after revoking or rotating it here).
    pub fn forget(&self, id: &str) {
        self.keys.remove(id);
    }
}

/// What one route's perimeter needs to know: set when the route is mounted.
#[derive(Debug, Clone)]
pub struct Gate {
    pub state: AppState,
    pub access: Access,
    /// The route template, for the audit trail.
    pub route: &'static str,
    /// The methods the route serves, for `Allow`.
    pub methods: &'static [http::Method],
}

/// The perimeter around one route's handler: what its spec names in [`RouteSpec::perimeter`].
pub fn layer(handler: MethodRouter<AppState>, state: &AppState, route: &RouteSpec) -> MethodRouter<AppState> {
    let gate = Gate { state: state.clone(), access: route.access, route: route.path, methods: route.methods };
    handler.route_layer(axum::middleware::from_fn_with_state(gate, perimeter))
}

/// What every step knows of the request.
#[derive(Debug)]
pub struct Seen {
    pub started: Instant,
    pub at_ms: i64,
    pub method: http::Method,
    pub client: Client,
    pub request_id: String,
}

/// The layer's function (mounted by the router with the route's [`Gate`]).
pub async fn perimeter(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let state = &gate.state;
    let perimeter = state.part::<PerimeterState>();
    match gate.access {
        Access::Credential => return rate_limit::per_address(state, &perimeter, request, next).await,
        Access::Scheduler => return scheduler::check(state, request, next).await,
        Access::Public | Access::Requires(_) | Access::PerMethod(_) => {}
    }
    let seen = Seen {
        started: Instant::now(),
        at_ms: i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or_default(),
        method: request.method().clone(),
        client: client::resolve(state.config().vantage, request.extensions(), request.headers()),
        request_id: request.extensions().get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default(),
    };

    // 1–3: a principal, or a refusal that counts against the client address.
    if let Some(refused) = failed_auth::refuse_blocked(state, &perimeter, &seen) {
        return audit::denied_unauthenticated(state, &gate, &seen, None, refused, audit::Store::No).await;
    }
    // Shared with the handler's extractors through the request (one allocation, not a copy of every field).
    let principal = match authenticate::identify(state, &perimeter, request.headers()).await {
        Ok(principal) => Arc::new(principal),
        // No credential at all: nothing was attempted, so nothing is counted or stored (anonymous traffic must
        // not buy writes); the access log line has it.
        Err(failure) if matches!(failure.error, AuthError::Missing) => return refusal(failure.error),
        Err(failure) => {
            let response = if failed_auth::is_the_callers(&failure.error) {
                failed_auth::count(state, &perimeter, &seen, ApiError::from(failure.error)).await
            } else {
                refusal(failure.error)
            };
            return audit::denied_unauthenticated(state, &gate, &seen, failure.tenant, response, audit::Store::Yes)
                .await;
        }
    };
    let mut request = match signature::check(state, &perimeter, &principal, request).await {
        Ok(request) => request,
        Err(e) => {
            let response = if e.status() == http::StatusCode::UNAUTHORIZED {
                failed_auth::count(state, &perimeter, &seen, e).await
            } else {
                e.into_response()
            };
            return audit::record(state, &gate, &seen, &principal, response).await;
        }
    };
    if let Principal::Agent(a) = principal.as_ref() {
        tracing::Span::current().record("agent", a.agent_id.as_str());
    }

    // 4–6: what the principal may do here.
    let response = match authorize::decide(&gate, &principal, &seen) {
        Err(refusal) => *refusal,
        Ok(permission) => match rate_limit::spend(state, &perimeter, &principal, permission).await {
            Err(refusal) => *refusal,
            Ok(admitted) => {
                authenticate::touch(state, &perimeter, &principal).await;
                if permission == crate::auth::Permission::TaskCreate {
                    // Only delegation routes charge more than one unit per request (a batch is one per task).
                    request.extensions_mut().insert(admitted.charge(state));
                }
                request.extensions_mut().insert(principal.clone());
                let mut response = next.run(request).await;
                admitted.write_headers(response.headers_mut());
                response
            }
        },
    };

    // 7: the audit record, before the response leaves.
    let response = audit::record(state, &gate, &seen, &principal, response).await;
    // 8: the request counted for the tenant's analytics; this instance's counts written when due.
    let due = perimeter.requests.count(
        principal.tenant_str(),
        gate.route,
        response.status().as_u16(),
        seen.started.elapsed(),
    );
    if let Some(due) = due {
        // A task of its own, awaited here: a request cut off by its deadline or its client (which drops this
        // future) must not drop the counts it took with it or leave the ledger marked as writing.
        let (perimeter, store) = (perimeter.clone(), state.store().clone());
        let written = tokio::spawn(async move { perimeter.requests.flush(&store, due).await });
        let _ = written.await;
    }
    response
}

/// A refusal as a response.
fn refusal(error: impl Into<ApiError>) -> Response {
    error.into().into_response()
}
