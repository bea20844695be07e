//! Refresh-token families and rotation.
//!
//! A family item (`FAMILY#{fid}` / `META`) holds the current refresh token id, the previous one with its grace
//! deadline, and what is needed to re-sign the current pair. Rotation is ONE store call, a two-step transaction:
//! the agent's credential is unchanged (same version: not rotated, re-owned or disabled), and the family update
//! holds only if the presented id is current, the family is not revoked, and (via the store's TTL rule) not past
//! its absolute expiry. On a failed condition the returned item decides: the immediately previous token inside the
//! grace window gets the already-issued successor (network-retry safety, no write); anything else is reuse, and
//! revokes the family. The family's `expires_at` is its absolute expiry, so DynamoDB TTL removes it afterwards.

use serde::Serialize;
use utoipa::ToSchema;

use std::time::Duration;

use super::credentials::{self, Agent};
use crate::config::SecretString;
use crate::ids::new_id;
use crate::store::{
    CancelReason, Condition, DynStore, Item, Key, StoreError, TxOp, Update, full_jitter, keys, now_epoch,
};
use crate::token::{RefreshClaims, TokenError, Tokens};

/// A token response (RFC 6749 §5.1 plus the refresh lifetime and the issuing environment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Issued {
    #[schema(value_type = String)]
    pub access_token: SecretString,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    #[schema(value_type = String)]
    pub refresh_token: SecretString,
    /// Seconds until the refresh family (and so every refresh token in it) expires.
    pub refresh_expires_in: i64,
    pub environment: &'static str,
}

fn key(fid: &str) -> Key {
    keys::refresh_family(fid)
}

/// The family item, typed: everything needed to re-sign its current pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Family {
    pub fid: String,
    pub agent_id: String,
    pub owner: String,
    /// The agent's credential version at login; refresh requires it to be unchanged.
    pub cred_version: String,
    pub current_jti: String,
    pub access_jti: String,
    pub issued_at: i64,
    /// Absolute expiry (also the item's TTL).
    pub expires_at: i64,
}

impl Family {
    fn from_item(item: &Item) -> Option<Self> {
        let text = |name: &str| item.get_str(name).map(str::to_owned);
        Some(Self {
            fid: text("fid")?,
            agent_id: text("agent_id")?,
            owner: text("owner")?,
            cred_version: text("cred_version")?,
            current_jti: text("current_jti")?,
            access_jti: text("access_jti")?,
            issued_at: item.get_i64("issued_at")?,
            expires_at: item.expires_at()?,
        })
    }

    fn to_item(&self) -> Item {
        Item::new(&key(&self.fid))
            .with("fid", self.fid.as_str())
            .with("agent_id", self.agent_id.as_str())
            .with("owner", self.owner.as_str())
            .with("cred_version", self.cred_version.as_str())
            .with("current_jti", self.current_jti.as_str())
            .with("access_jti", self.access_jti.as_str())
            .with("issued_at", self.issued_at)
            .with("created_at", self.issued_at)
            .with("generation", 1i64)
            .with("revoked", false)
            .with("expires_at", self.expires_at)
    }

    fn refresh_claims(&self, tokens: &Tokens) -> RefreshClaims {
        RefreshClaims {
            iss: tokens.settings().issuer.clone(),
            aud: tokens.refresh_audience(),
            sub: self.agent_id.clone(),
            exp: self.expires_at,
            nbf: self.issued_at,
            iat: self.issued_at,
            jti: self.current_jti.clone(),
            fid: self.fid.clone(),
            owner: self.owner.clone(),
            cv: self.cred_version.clone(),
            env: tokens.environment().to_owned(),
        }
    }

    /// Signs the pair this family describes (deterministic: the same family gives the same tokens).
    fn pair(&self, tokens: &Tokens, now: i64) -> Issued {
        let access = tokens.access_claims(&self.agent_id, &self.owner, &self.fid, &self.access_jti, self.issued_at);
        let refresh = self.refresh_claims(tokens);
        Issued {
            access_token: tokens.sign_access(&access).into(),
            token_type: "Bearer",
            expires_in: (access.exp - now).max(0),
            refresh_token: tokens.sign_refresh(&refresh).into(),
            refresh_expires_in: (self.expires_at - now).max(0),
            environment: tokens.environment(),
        }
    }
}

/// Starts a new family for an authenticated agent.
pub async fn issue(store: &DynStore, tokens: &Tokens, agent: &Agent) -> Result<Issued, TokenError> {
    let now = now_epoch();
    let ttl = i64::try_from(tokens.settings().refresh_ttl.as_secs()).unwrap_or(i64::MAX);
    let family = Family {
        fid: new_id(),
        agent_id: agent.id.to_string(),
        owner: agent.owner.to_string(),
        cred_version: agent.cred_version.clone(),
        current_jti: new_id(),
        access_jti: new_id(),
        issued_at: now,
        expires_at: now + ttl,
    };
    store.put(family.to_item(), Some(Condition::NotExists)).await?;
    Ok(family.pair(tokens, now))
}

/// Concurrent transactions on one family may be cancelled with `TransactionConflict` instead of failing their
/// condition (DynamoDB); a conflict is retried this many times (with jitter), then answered as unavailable.
const CONFLICT_RETRIES: u32 = 8;

/// Rotates: the presented refresh token for its successor.
///
/// One store call, a transaction of two steps: the agent's credential is still active under the version the
/// family was issued with (so a rotated secret, a new owner or a disabled agent ends every older family), and the
/// family's current token is the presented one (the rotation itself). The successor is signed with the owner the
/// token carries, which the credential check has just proven current.
pub async fn refresh(store: &DynStore, tokens: &Tokens, presented: &str) -> Result<Issued, TokenError> {
    let claims = tokens.verify_refresh(presented).map_err(|_| TokenError::InvalidGrant)?;
    let now = now_epoch();
    let grace = i64::try_from(tokens.settings().refresh_grace.as_secs()).unwrap_or(0);
    let successor = Family {
        fid: claims.fid.clone(),
        agent_id: claims.sub.clone(),
        owner: claims.owner.clone(),
        cred_version: claims.cv.clone(),
        current_jti: new_id(),
        access_jti: new_id(),
        issued_at: now,
        expires_at: claims.exp,
    };
    let update = Update::new()
        .set("previous_jti", claims.jti.as_str())
        .set("current_jti", successor.current_jti.as_str())
        .set("access_jti", successor.access_jti.as_str())
        .set("issued_at", now)
        .set("grace_until", now + grace)
        .add("generation", 1);
    let rotate = TxOp::Update {
        key: key(&claims.fid),
        update,
        condition: Some(Condition::eq("current_jti", claims.jti.as_str()).and(Condition::eq("revoked", false))),
    };
    let ops = vec![credentials::still_valid(&claims.sub, &claims.cv), rotate];
    let mut attempt = 0;
    let (reasons, current) = loop {
        match store.transact_write(ops.clone()).await {
            Ok(()) => return Ok(successor.pair(tokens, now)),
            Err(StoreError::TransactionCanceled { reasons, .. })
                if reasons.contains(&CancelReason::TransactionConflict) && attempt < CONFLICT_RETRIES =>
            {
                attempt += 1;
                tokio::time::sleep(full_jitter(Duration::from_millis(10), Duration::from_millis(200), attempt)).await;
            }
            Err(StoreError::TransactionCanceled { reasons, current }) => break (reasons, current),
            Err(e) => return Err(e.into()),
        }
    };
    match reasons.first() {
        Some(CancelReason::None) => {}
        Some(CancelReason::ConditionalCheckFailed) => {
            // The credential changed since this family was issued: the family is over.
            revoke_family(store, &claims.fid, "credential changed").await?;
            tracing::info!(agent = %claims.sub, "refresh refused: the agent's credential changed");
            return Err(TokenError::CredentialChanged);
        }
        _ => return Err(StoreError::Unavailable(format!("refresh transaction cancelled: {reasons:?}")).into()),
    }
    if reasons.get(1) != Some(&CancelReason::ConditionalCheckFailed) {
        return Err(StoreError::Unavailable(format!("refresh transaction cancelled: {reasons:?}")).into());
    }
    // The rotation's condition failed: the family as it is now decides (absent = unknown or expired).
    let Some(family) = current.into_iter().nth(1).flatten() else {
        return Err(TokenError::InvalidGrant);
    };
    if family.get("revoked") == Some(&true.into()) {
        return Err(TokenError::Revoked);
    }
    let previous = family.get_str("previous_jti") == Some(claims.jti.as_str());
    let in_grace = family.get_i64("grace_until").is_some_and(|until| now <= until);
    if previous && in_grace {
        // A retry of the rotation that just happened: hand back the same successor.
        return Family::from_item(&family).map(|f| f.pair(tokens, now)).ok_or(TokenError::InvalidGrant);
    }
    revoke_family(store, &claims.fid, "reuse").await?;
    tracing::warn!(family = %claims.fid, agent = %claims.sub, "refresh token reuse detected; family revoked");
    Err(TokenError::ReuseDetected)
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
