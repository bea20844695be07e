//! Refresh-token families and rotation.
//!
//! A family item (`FAMILY#{fid}` / `META`) holds the current refresh token id, the previous one with its grace
//! deadline, and what is needed to re-sign the current pair. Rotation is ONE conditional UpdateItem: it succeeds
//! only if the presented id is current, the family is not revoked, and (via the store's TTL rule) not past its
//! absolute expiry. On a failed condition the returned item decides: the immediately previous token inside the
//! grace window gets the already-issued successor (network-retry safety, no write); anything else is reuse, and
//! revokes the family. The family's `expires_at` is its absolute expiry, so DynamoDB TTL removes it afterwards.

use serde::Serialize;
use utoipa::ToSchema;

use super::credentials::Agent;
use super::{TokenError, Tokens, new_id};
use crate::store::{Condition, DynStore, Item, Key, StoreError, Update, now_epoch};

/// A token response (RFC 6749 §5.1 plus the refresh lifetime and the issuing environment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Issued {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    pub refresh_token: String,
    /// Seconds until the refresh family (and so every refresh token in it) expires.
    pub refresh_expires_in: i64,
    pub environment: &'static str,
}

fn key(fid: &str) -> Key {
    Key::new(format!("FAMILY#{fid}"), "META")
}

/// Signs the pair a family item describes (deterministic: the same item gives the same tokens).
fn pair(tokens: &Tokens, family: &Item, now: i64) -> Result<Issued, TokenError> {
    let field = |name: &str| family.get_str(name).map(str::to_owned).ok_or(TokenError::InvalidGrant);
    let fid = field("fid")?;
    let agent = field("agent_id")?;
    let owner = field("owner")?;
    let iat = family.get_i64("issued_at").ok_or(TokenError::InvalidGrant)?;
    let expiry = family.expires_at().ok_or(TokenError::InvalidGrant)?;
    let access = tokens.access_claims(&agent, &owner, &fid, &field("access_jti")?, iat);
    let refresh = tokens.refresh_claims(&agent, &fid, &field("current_jti")?, iat, expiry);
    Ok(Issued {
        access_token: tokens.sign_access(&access),
        token_type: "Bearer",
        expires_in: (access.exp - now).max(0),
        refresh_token: tokens.sign_refresh(&refresh),
        refresh_expires_in: (expiry - now).max(0),
        environment: tokens.environment(),
    })
}

/// Starts a new family for an authenticated agent.
pub async fn issue(store: &DynStore, tokens: &Tokens, agent: &Agent) -> Result<Issued, TokenError> {
    let now = now_epoch();
    let fid = new_id();
    let ttl = i64::try_from(tokens.settings().refresh_ttl.as_secs()).unwrap_or(i64::MAX);
    let family = Item::new(&key(&fid))
        .with("fid", fid.as_str())
        .with("agent_id", agent.id.as_str())
        .with("owner", agent.owner.as_str())
        .with("current_jti", new_id())
        .with("access_jti", new_id())
        .with("issued_at", now)
        .with("created_at", now)
        .with("generation", 1i64)
        .with("revoked", false)
        .with("expires_at", now + ttl);
    store.put(family.clone(), Some(Condition::NotExists)).await?;
    pair(tokens, &family, now)
}

/// Rotates: the presented refresh token for its successor.
pub async fn refresh(store: &DynStore, tokens: &Tokens, presented: &str) -> Result<Issued, TokenError> {
    let claims = tokens.verify_refresh(presented).map_err(|e| match e {
        TokenError::Store(e) => TokenError::Store(e),
        _ => TokenError::InvalidGrant,
    })?;
    let now = now_epoch();
    let grace = i64::try_from(tokens.settings().refresh_grace.as_secs()).unwrap_or(0);
    let update = Update::new()
        .set("previous_jti", claims.jti.as_str())
        .set("current_jti", new_id())
        .set("access_jti", new_id())
        .set("issued_at", now)
        .set("grace_until", now + grace)
        .add("generation", 1);
    let condition = Condition::eq("current_jti", claims.jti.as_str()).and(Condition::eq("revoked", false));
    match store.update(&key(&claims.fid), update, Some(condition)).await {
        Ok(family) => pair(tokens, &family, now),
        Err(StoreError::ConditionFailed { current: None }) => Err(TokenError::InvalidGrant),
        Err(StoreError::ConditionFailed { current: Some(family) }) => {
            if family.get("revoked") == Some(&true.into()) {
                return Err(TokenError::Revoked);
            }
            let previous = family.get_str("previous_jti") == Some(claims.jti.as_str());
            let in_grace = family.get_i64("grace_until").is_some_and(|until| now <= until);
            if previous && in_grace {
                // A retry of the rotation that just happened: hand back the same successor.
                return pair(tokens, &family, now);
            }
            revoke_family(store, &claims.fid, "reuse").await?;
            tracing::warn!(family = %claims.fid, agent = %claims.sub, "refresh token reuse detected; family revoked");
            Err(TokenError::ReuseDetected)
        }
        Err(e) => Err(e.into()),
    }
}

/// Marks a family revoked; its refresh tokens stop working at once. Access tokens already issued die by expiry.
pub async fn revoke_family(store: &DynStore, fid: &str, reason: &str) -> Result<(), StoreError> {
    let update = Update::new().set("revoked", true).set("revoked_reason", reason).set("revoked_at", now_epoch());
    match store.update(&key(fid), update, Some(Condition::Exists)).await {
        Ok(_) | Err(StoreError::ConditionFailed { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// RFC 7009 revocation of either token type. Unknown, expired or foreign tokens are ignored (the caller still
/// gets 200): revocation must not become an oracle for which tokens exist.
pub async fn revoke(store: &DynStore, tokens: &Tokens, token: &str) -> Result<(), TokenError> {
    let fid = match tokens.verify_refresh(token) {
        Ok(claims) => Some(claims.fid),
        Err(_) => tokens.verify_access(token).ok().map(|claims| claims.fid),
    };
    if let Some(fid) = fid {
        revoke_family(store, &fid, "revoked").await?;
    }
    Ok(())
}
