//! Step 2: who the credential belongs to. Four kinds of principal, each named explicitly ([`Via`]): the
//! environment's bootstrap admin key, an API key, a user of the identity provider, an agent's access token.

use std::sync::Arc;
use std::time::Duration;

use super::{PerimeterState, bounded};
use crate::auth::api_key::{self, KeyRecord};
use crate::auth::{AgentIdentity, AuthError, Operator, Presented, Principal, Role, Via};
use crate::config::secrets::constant_time_eq;
use crate::ids::{TenantId, UserId};
use crate::state::AppState;
use crate::token::TokenError;

/// How long a verified key record is reused by an instance: a revoked key stops working everywhere within this.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(10);

/// How long a key id the table did not have is remembered: repeats of a made-up key cost no store read. Key ids
/// are random, so a key created later never has an id someone guessed before.
pub const UNKNOWN_KEY_TTL: Duration = Duration::from_mins(1);

/// A failed authentication, and the tenant it concerns when that is known (a real key presented with the wrong
/// secret, revoked or expired): that tenant's audit trail records it.
#[derive(Debug)]
pub struct Failure {
    pub error: AuthError,
    pub tenant: Option<TenantId>,
}

impl From<AuthError> for Failure {
    fn from(error: AuthError) -> Self {
        Self { error, tenant: None }
    }
}

impl From<TokenError> for Failure {
    fn from(error: TokenError) -> Self {
        AuthError::from(error).into()
    }
}

/// Who the credential in `headers` belongs to.
pub async fn identify(
    state: &AppState,
    perimeter: &PerimeterState,
    headers: &http::HeaderMap,
) -> Result<Principal, Failure> {
    let presented = crate::auth::presented(headers)?;
    // The bootstrap admin key is accepted in either header.
    let (Presented::Key(text) | Presented::Bearer(text)) = presented;
    if let Some(admin) = state.config().secrets.admin.as_ref()
        && constant_time_eq(text.as_bytes(), admin.expose())
    {
        return Ok(Principal::Operator(Operator {
            tenant: TenantId::default_tenant(),
            role: Role::Admin,
            actor: "admin:bootstrap".to_owned(),
            via: Via::Bootstrap,
        }));
    }
    match presented {
        Presented::Key(text) => {
            let record = verify_key(state, perimeter, text).await?;
            Ok(Principal::Operator(Operator {
                tenant: record.tenant.clone(),
                role: record.role,
                actor: format!("key:{}", record.display),
                via: Via::Key(record),
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
                    let user = verifier.verify(text, crate::store::now_epoch()).await.map_err(AuthError::from)?;
                    return Ok(Principal::Operator(Operator {
                        tenant: user.tenant,
                        role: user.role,
                        actor: format!("user:{}", user.subject),
                        via: Via::User(user.subject),
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

/// The live record of a presented key, from this instance's cache or the table (one `GetItem`). A key id the
/// table lacked is remembered, so guessing the same made-up key again costs no read.
async fn verify_key(state: &AppState, perimeter: &PerimeterState, presented: &str) -> Result<Arc<KeyRecord>, Failure> {
    let id = perimeter.hasher.key_id(presented).ok_or(AuthError::InvalidKey)?;
    let now = crate::store::now_epoch();
    let record = if let Some(record) = perimeter.keys.get(id) {
        record
    } else if perimeter.unknown_keys.get(id).is_some() {
        return Err(AuthError::InvalidKey.into());
    } else {
        let Some(record) = bounded(state, api_key::find(state.store(), id)).await.map_err(AuthError::from)? else {
            perimeter.unknown_keys.insert(id.to_owned(), ());
            return Err(AuthError::InvalidKey.into());
        };
        let record = Arc::new(record);
        perimeter.keys.insert(id.to_owned(), record.clone());
        record
    };
    // Checked on every use (the cache may hold a record past the key's expiry).
    if !record.is_live(now) || !perimeter.hasher.matches(&record, presented) {
        return Err(Failure { error: AuthError::InvalidKey, tenant: Some(record.tenant.clone()) });
    }
    Ok(record)
}

/// Records a key's use at most once a minute per instance (and, by the write's condition, across instances).
pub async fn touch(state: &AppState, perimeter: &PerimeterState, principal: &Principal) {
    let Principal::Operator(Operator { via: Via::Key(key), .. }) = principal else { return };
    let now = crate::store::now_epoch();
    {
        let mut touched = perimeter.touched.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if touched.get(key.id.as_str()).is_some_and(|at| now - at < api_key::LAST_USED_EVERY_SECS) {
            return;
        }
        if touched.len() >= 10_000 {
            touched.retain(|_, at| now - *at < api_key::LAST_USED_EVERY_SECS);
        }
        touched.insert(key.id.as_str().to_owned(), now);
    }
    if let Err(e) = bounded(state, api_key::touch(state.store(), &key.id, now)).await {
        tracing::warn!(error = %e, key = key.display.as_str(), "could not record the key's last use");
    }
}
