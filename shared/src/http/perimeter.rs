//! The perimeter: one route layer in front of every route that needs a permission. In order, it
//! 1. identifies the caller (agent token, API key, bootstrap admin key) — 401 when it cannot;
//! 2. checks the permission the route's spec declares against the caller's grants — 403;
//! 3. counts the request against the caller's rate limit in the table — 429 with `Retry-After`;
//! 4. runs the handler;
//! 5. writes the audit record, before the response leaves (the instance may freeze right after it).
//!
//! Handlers never see a request that failed any step, and never repeat these checks.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::audit::{self, AuditRecord};
use crate::auth::api_key::{self, KeyHasher, KeyRecord, Signing};
use crate::auth::signing::{self, SigningError};
use crate::auth::{AgentIdentity, AuthError, Operator, Permission, Presented, Principal, Role};
use crate::cache::Cache;
use crate::config::limits::{DEFAULT_TIER, RateClass};
use crate::config::network::{Cidr, Refusal};
use crate::config::secrets::constant_time_eq;
use crate::ids::{TenantId, UserId};
use crate::rate_limit::{self, Decision, Limiter, Quota, RateLimited};
use crate::state::{AppState, Part};
use crate::store::StoreError;
use crate::token::TokenError;

use super::ApiError;

/// How long a verified key record is reused by an instance: a revoked key stops working everywhere within this.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(10);

/// Waits on one of the perimeter's store calls for at most the configured budget (`CLOUD_AGENT_PERIMETER_BUDGET_MS`,
/// 300 ms: DynamoDB answers in milliseconds). A hung store must not eat the request's whole budget before the
/// handler runs; a call cut off here counts as a store failure (for the breaker, and for the route class's
/// fail-open or fail-closed rule).
async fn bounded<T>(state: &AppState, call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    tokio::time::timeout(state.config().perimeter_budget, call)
        .await
        .unwrap_or_else(|_| Err(StoreError::Unavailable("the perimeter's store call ran out of time".into())))
}

/// The request id, put in the request by the request layer for the layers and handlers inside it.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Per-instance state of the perimeter: verified keys, subjects over their limit, last-used writes.
#[derive(Debug)]
pub struct PerimeterState {
    hasher: KeyHasher,
    keys: Arc<Cache<String, Arc<KeyRecord>>>,
    limiter: Limiter,
    /// Key id → epoch second this instance last recorded its use.
    touched: Mutex<std::collections::HashMap<String, i64>>,
    /// The identity provider's verifier, when one is configured.
    oidc: Option<crate::auth::oidc::Verifier>,
}

impl Part for PerimeterState {
    fn build(state: &AppState) -> Self {
        let config = state.config();
        let keys =
            Arc::new(Cache::new(std::num::NonZeroUsize::new(1024).expect("non-zero"), 1 << 20, KEY_CACHE_TTL, |_| 512));
        state.metrics().register_cache("api_keys", keys.clone());
        Self {
            hasher: KeyHasher::derive(&config.secrets.agent, config.environment),
            keys,
            limiter: Limiter::default(),
            touched: Mutex::default(),
            oidc: config.oidc.clone().map(crate::auth::oidc::Verifier::new),
        }
    }
}

impl PerimeterState {
    pub fn hasher(&self) -> &KeyHasher {
        &self.hasher
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
    pub access: crate::route::Access,
    /// The route template, for the audit trail.
    pub route: &'static str,
}

/// Who the credential belongs to.
async fn identify(
    state: &AppState,
    perimeter: &PerimeterState,
    headers: &http::HeaderMap,
) -> Result<Principal, AuthError> {
    let presented = crate::auth::presented(headers)?;
    // The bootstrap admin key is accepted in either header.
    let (Presented::Key(text) | Presented::Bearer(text)) = presented;
    if let Some(admin) = state.config().secrets.admin.as_ref()
        && constant_time_eq(text.as_bytes(), admin.expose())
    {
        return Ok(bootstrap_admin());
    }
    match presented {
        Presented::Key(text) => {
            let record = verify_key(state, perimeter, text).await?;
            Ok(Principal::Operator(Operator {
                tenant: record.tenant.clone(),
                role: record.role,
                actor: format!("key:{}", record.display),
                key: Some(record),
            }))
        }
        Presented::Bearer(text) => {
            if let Some(verifier) = &perimeter.oidc {
                // Our own tokens are HS256; anything else, or anything claiming the provider's issuer, is the
                // provider's to verify (so a wrong issuer or algorithm is named as such).
                let alg = crate::auth::oidc::algorithm_of(text);
                let theirs = alg.as_deref().is_some_and(|a| a != "HS256")
                    || crate::auth::oidc::issuer_of(text).as_deref() == Some(verifier.issuer());
                if theirs {
                    let user = verifier.verify(text, crate::store::now_epoch()).await?;
                    return Ok(Principal::Operator(Operator {
                        tenant: user.tenant,
                        role: user.role,
                        actor: format!("user:{}", user.subject),
                        key: None,
                    }));
                }
            }
            let claims = state.tokens().verify_access(text)?;
            let owner = UserId::parse(&claims.owner).map_err(|_| TokenError::Invalid("bad owner claim"))?;
            Ok(Principal::Agent(AgentIdentity {
                agent_id: claims.sub.clone(),
                owner,
                family: claims.fid.clone(),
                token_id: claims.jti.clone(),
                expires_at: claims.exp,
            }))
        }
    }
}

fn bootstrap_admin() -> Principal {
    Principal::Operator(Operator {
        tenant: TenantId::default_tenant(),
        role: Role::Admin,
        actor: "admin:bootstrap".to_owned(),
        key: None,
    })
}

/// The live record of a presented key, from this instance's cache or the table (one `GetItem`).
async fn verify_key(
    state: &AppState,
    perimeter: &PerimeterState,
    presented: &str,
) -> Result<Arc<KeyRecord>, AuthError> {
    let id = perimeter.hasher.key_id(presented).ok_or(AuthError::InvalidKey)?;
    let now = crate::store::now_epoch();
    let record = if let Some(record) = perimeter.keys.get(id) {
        record
    } else {
        let record = Arc::new(bounded(state, api_key::find(state.store(), id)).await?.ok_or(AuthError::InvalidKey)?);
        perimeter.keys.insert(id.to_owned(), record.clone());
        record
    };
    // Checked on every use (the cache may hold a record past the key's expiry).
    if !record.is_live(now) || !perimeter.hasher.matches(&record, presented) {
        return Err(AuthError::InvalidKey);
    }
    Ok(record)
}

/// The subject and quota a principal is counted under.
fn quota_of(state: &AppState, principal: &Principal, class: RateClass) -> (String, String, Quota) {
    let limits = &state.config().rate_limits;
    match principal {
        Principal::Agent(a) => (format!("agent:{}", a.agent_id), "agent".to_owned(), limits.agent),
        Principal::Operator(o) => {
            let tier_name = o.key.as_ref().map_or(DEFAULT_TIER, |k| k.tier.as_str());
            let tier = limits.tier(tier_name).or_else(|| limits.tier(DEFAULT_TIER)).copied();
            let quota = tier.map_or(limits.agent, |t| t.quota(class));
            let subject = match &o.key {
                Some(k) => format!("key:{}:{}", k.id, class.as_str()),
                None => format!("{}:{}", o.actor, class.as_str()),
            };
            (subject, format!("{tier_name}-{}", class.as_str()), quota)
        }
    }
}

/// Records a key's use at most once a minute per instance (and, by the write's condition, across instances).
async fn touch(state: &AppState, perimeter: &PerimeterState, principal: &Principal) {
    let Principal::Operator(Operator { key: Some(key), .. }) = principal else { return };
    let now = crate::store::now_epoch();
    {
        let mut touched = perimeter.touched.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if touched.get(key.id.as_str()).is_some_and(|at| now - at < api_key::LAST_USED_EVERY_SECS) {
            return;
        }
        touched.insert(key.id.as_str().to_owned(), now);
    }
    if let Err(e) = bounded(state, api_key::touch(state.store(), &key.id, now)).await {
        tracing::warn!(error = %e, key = key.display.as_str(), "could not record the key's last use");
    }
}

/// Checks the signature of a request made with a key whose signing is on; returns the request with its body
/// restored (it had to be read to be hashed). Keys with signing off, agents and the bootstrap key pass as they are.
async fn check_signature(
    state: &AppState,
    perimeter: &PerimeterState,
    principal: &Principal,
    request: Request,
) -> Result<Request, ApiError> {
    let Principal::Operator(Operator { key: Some(key), .. }) = principal else { return Ok(request) };
    if key.signing == Signing::Off {
        return Ok(request);
    }
    let Some(presented) = signing::Presented::from_headers(request.headers())? else {
        return if key.signing == Signing::Required { Err(SigningError::Missing.into()) } else { Ok(request) };
    };
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, state.config().body_limit).await.map_err(|_| ApiError::PayloadTooLarge)?;
    let secret = perimeter.hasher.signing_secret(&key.id);
    let verified = signing::verify(
        state.store(),
        key.id.as_str(),
        secret.expose().as_bytes(),
        &presented,
        &parts.method,
        parts.uri.path(),
        parts.uri.query(),
        &bytes,
        crate::store::now_epoch(),
    );
    match tokio::time::timeout(state.config().perimeter_budget, verified).await {
        Ok(Ok(())) => Ok(Request::from_parts(parts, axum::body::Body::from(bytes))),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(StoreError::Unavailable("the replay check ran out of time".into()).into()),
    }
}

/// The unauthenticated credential routes: counted per client address (as the platform vouches for it), so
/// secrets and refresh tokens cannot be guessed at speed.
async fn per_address(state: &AppState, perimeter: &PerimeterState, request: Request, next: Next) -> Response {
    let client = super::client::resolve(state.config().platform, request.extensions(), request.headers());
    let subject = client.ip.map_or_else(|| "ip:unknown".to_owned(), |ip| format!("ip:{ip}"));
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
    let mut response = match decision {
        Decision::Limited { reset_secs } => {
            ApiError::from(RateLimited { policy: policy.to_owned(), quota, reset_secs }).into_response()
        }
        _ => next.run(request).await,
    };
    rate_limit::headers(response.headers_mut(), policy, quota, decision);
    response
}

/// A scheduler's call: the bearer token must be the configured `CRON_SECRET` (Vercel cron sends it). Without a
/// configured secret nobody can call the route.
async fn scheduler(state: &AppState, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let expected = state.config().tasks.cron_secret.as_ref();
    match (presented, expected) {
        (Some(p), Some(e)) if constant_time_eq(p.as_bytes(), e.expose().as_bytes()) => next.run(request).await,
        _ => ApiError::from(AuthError::SchedulerOnly).into_response(),
    }
}

/// The layer's function (mounted by the router with the route's [`Gate`]).
pub async fn perimeter(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let at_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let state = &gate.state;
    let perimeter = state.part::<PerimeterState>();
    if gate.access == crate::route::Access::Credential {
        return per_address(state, &perimeter, request, next).await;
    }
    if gate.access == crate::route::Access::Scheduler {
        return scheduler(state, request, next).await;
    }
    let principal = match identify(state, &perimeter, request.headers()).await {
        Ok(principal) => principal,
        // Not authenticated: nobody to audit, and nothing was done.
        Err(e) => return ApiError::from(e).into_response(),
    };
    // A signature that fails is a failed authentication too.
    let mut request = match check_signature(state, &perimeter, &principal, request).await {
        Ok(request) => request,
        Err(e) => return e.into_response(),
    };
    let actor = principal.actor();
    if let Principal::Agent(a) = &principal {
        tracing::Span::current().record("agent", a.agent_id.as_str());
    }
    let method = request.method().as_str().to_owned();
    let client = super::client::resolve(state.config().platform, request.extensions(), request.headers());
    let request_id = request.extensions().get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
    let tenant = principal.tenant();
    let role = principal.role_name();

    // A key limited to address blocks works only from them.
    let key_blocks_client = matches!(&principal, Principal::Operator(Operator { key: Some(k), .. })
        if !k.allowed_cidrs.is_empty()
            && !client.ip.is_some_and(|ip| k.allowed_cidrs.iter().filter_map(|c| Cidr::parse(c)).any(|c| c.contains(ip))));
    // A method the route does not serve needs nothing here: the router answers it 405.
    let Some(permission) = gate.access.permission_for(request.method()) else { return next.run(request).await };
    let response = if key_blocks_client {
        ApiError::from(super::network::Refused(Refusal::Address)).into_response()
    } else if principal.allows(permission) {
        let class = if permission == Permission::TaskCreate { RateClass::Delegation } else { RateClass::General };
        let (subject, policy, quota) = quota_of(state, &principal, class);
        let now = crate::store::now_epoch();
        let decision = match bounded(state, perimeter.limiter.check(state.store(), &subject, quota, now)).await {
            Ok(decision) => Ok(decision),
            Err(e) if state.config().rate_limits.fail_open(class) => {
                tracing::warn!(error = %e, "rate limit not counted: the store failed and this class fails open");
                Ok(Decision::Unchecked)
            }
            Err(e) => Err(e),
        };
        match decision {
            Ok(Decision::Limited { reset_secs }) => {
                let mut response =
                    ApiError::from(RateLimited { policy: policy.clone(), quota, reset_secs }).into_response();
                rate_limit::headers(response.headers_mut(), &policy, quota, Decision::Limited { reset_secs });
                response
            }
            Ok(decision) => {
                touch(state, &perimeter, &principal).await;
                request.extensions_mut().insert(principal);
                let mut response = next.run(request).await;
                rate_limit::headers(response.headers_mut(), &policy, quota, decision);
                response
            }
            Err(e) => ApiError::from(e).into_response(),
        }
    } else {
        let role = principal.role_name();
        ApiError::from(AuthError::Forbidden { needed: permission, role, actor: actor.clone() }).into_response()
    };

    let record = AuditRecord {
        at_ms: i64::try_from(at_ms).unwrap_or_default(),
        request_id,
        actor,
        role: role.to_owned(),
        method,
        route: gate.route.to_owned(),
        status: response.status().as_u16(),
        duration_ms: started.elapsed().as_micros() as f64 / 1000.0,
        client_ip: client.ip.map(|ip| ip.to_string()),
        country: client.country,
        task_type: None,
    };
    if let Err(e) = bounded(state, audit::write(state.store(), &tenant, &record)).await {
        // The record must not be lost: the log line carries it whole (Lambda ships stdout before it freezes).
        tracing::error!(
            error = %e,
            audit = %serde_json::to_string(&record).unwrap_or_default(),
            "audit record not stored; kept in this log line"
        );
    }
    response
}
