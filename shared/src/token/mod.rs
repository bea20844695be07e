//! The token manager: signs and verifies short-lived access JWTs and rotating refresh JWTs. The auth layer
//! verifies with it; the tokens feature issues and rotates with it.
//!
//! Practice followed (RFC 8725, RFC 9700): HS256 pinned, a `kid` on every token, distinct `typ` headers
//! (`at+jwt` for access, `rt+jwt` for refresh) and audiences so neither is accepted as the other, required
//! `iss`/`aud`/`sub`/`exp`/`nbf`/`iat`/`jti`, leeway at most 60 s. Refresh tokens rotate on every use within a
//! family whose absolute lifetime never grows; reuse of a rotated token revokes the family (see
//! `features::tokens::family`).

mod hs256;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::cache::Cache;
use crate::config::{Config, TokenSettings};
use crate::store::StoreError;

/// `typ` of access tokens (RFC 9068).
pub const ACCESS_TYP: &str = "at+jwt";
/// `typ` of refresh tokens: ours, and never accepted where an access token is expected.
pub const REFRESH_TYP: &str = "rt+jwt";

/// Errors of issuing, verifying and rotating tokens.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("token signed with an unknown key")]
    UnknownKey,
    #[error("wrong token type (expected {expected})")]
    WrongType { expected: &'static str },
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    #[error("invalid agent credentials")]
    InvalidClient,
    #[error("refresh token unknown, expired or from a closed family")]
    InvalidGrant,
    #[error("refresh token family revoked")]
    Revoked,
    #[error("refresh token reuse detected; the whole token family is revoked")]
    ReuseDetected,
    #[error("the agent's credential changed (new secret, new owner or disabled); log in again")]
    CredentialChanged,
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Token failures: one problem type each, with the OAuth error code clients already understand.
impl crate::problem::ToProblem for TokenError {
    fn status(&self) -> http::StatusCode {
        match self {
            Self::Store(e) => e.status(),
            Self::InvalidRequest(_) => http::StatusCode::BAD_REQUEST,
            _ => http::StatusCode::UNAUTHORIZED,
        }
    }

    fn problem(&self) -> crate::problem::Problem {
        use crate::problem::Problem;
        let status = self.status();
        let (slug, title, oauth, detail) = match self {
            Self::Store(e) => return e.problem(),
            Self::InvalidClient => ("invalid-client", "Invalid agent credentials", "invalid_client", self.to_string()),
            Self::InvalidGrant => ("invalid-grant", "Invalid refresh token", "invalid_grant", self.to_string()),
            Self::Revoked => ("refresh-token-revoked", "Refresh token revoked", "invalid_grant", self.to_string()),
            Self::ReuseDetected => (
                "refresh-token-reused",
                "Refresh token reuse detected",
                "invalid_grant",
                "this refresh token was already rotated; the whole token family is now revoked — log in again".into(),
            ),
            Self::CredentialChanged => {
                ("credential-changed", "Agent credential changed", "invalid_grant", self.to_string())
            }
            Self::InvalidRequest(d) => ("invalid-request", "Invalid token request", "invalid_request", d.clone()),
            other => ("invalid-token", "Invalid access token", "invalid_token", other.to_string()),
        };
        Problem { error: Some(oauth.into()), ..Problem::new(status, slug, title).detail(detail) }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Store(e) => e.retry_after(),
            _ => None,
        }
    }

    fn www_authenticate(&self) -> Option<&'static str> {
        match self {
            Self::InvalidClient => Some(r#"Basic realm="cloud-agent""#),
            Self::Malformed
            | Self::UnknownKey
            | Self::WrongType { .. }
            | Self::Expired
            | Self::NotYetValid
            | Self::Invalid(_) => Some(r#"Bearer realm="cloud-agent", error="invalid_token""#),
            _ => None,
        }
    }
}

/// Claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// The agent.
    pub sub: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    /// The refresh family this token was issued with (revoking either revokes the family).
    pub fid: String,
    /// The user the agent works for.
    pub owner: String,
    /// Environment that issued it.
    pub env: String,
}

/// Claims of a refresh token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    /// The family's absolute expiry: rotation never extends it.
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    /// This token's id within its family.
    pub jti: String,
    pub fid: String,
    /// The user the agent worked for at login; a refresh proves it current by checking `cv`.
    pub owner: String,
    /// The agent's credential version at login: a new secret, a new owner or disabling changes it.
    pub cv: String,
    /// Environment that issued it.
    pub env: String,
}

/// Claims every token type carries, checked after the signature.
trait Common {
    fn env(&self) -> &str;
}

impl Common for AccessClaims {
    fn env(&self) -> &str {
        &self.env
    }
}

impl Common for RefreshClaims {
    fn env(&self) -> &str {
        &self.env
    }
}

/// Signs and verifies tokens with the environment's keys. Built once per process.
#[derive(Clone)]
pub struct Tokens {
    kid: String,
    signing: EncodingKey,
    verifying: HashMap<String, DecodingKey>,
    settings: TokenSettings,
    environment: &'static str,
    /// What a token must satisfy besides its signature, built once (jsonwebtoken's `Validation` allocates).
    access_rules: Validation,
    refresh_rules: Validation,
    /// Access tokens this instance already verified, with their claims. An agent presents the same token on
    /// every request until it refreshes, and a token's signature and claims never change, so a later request
    /// only re-checks its times. Safe because access tokens are never revoked one by one (they expire) and the
    /// keys are read once per process.
    verified: Arc<Cache<String, Arc<AccessClaims>>>,
}

/// The audience of refresh tokens: the access audience with a suffix.
fn refresh_audience(settings: &TokenSettings) -> String {
    format!("{}:refresh", settings.audience)
}

/// Whether claims verified earlier are still within their times at `now` (jsonwebtoken's rules: `exp` and
/// `nbf`, each with the leeway).
fn current(claims: &AccessClaims, now: i64, leeway: i64) -> bool {
    claims.exp >= now - leeway && claims.nbf <= now + leeway
}

/// Verified access tokens kept per instance: enough for thousands of agents, a few MB at most.
const VERIFIED_CAPACITY: usize = 4096;
const VERIFIED_MAX_BYTES: usize = 4 << 20;
/// Entries are re-verified from scratch at least this often (their `exp` is checked on every hit).
const VERIFIED_TTL: Duration = Duration::from_mins(5);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("kid", &self.kid).field("keys", &self.verifying.len()).finish_non_exhaustive()
    }
}

impl Tokens {
    pub fn new(config: &Config) -> Self {
        hs256::install();
        let secrets = &config.secrets;
        let mut verifying = HashMap::new();
        for secret in std::iter::once(&secrets.jwt).chain(&secrets.jwt_previous) {
            verifying.insert(secret.key_id(), DecodingKey::from_secret(secret.expose()));
        }
        let settings = config.tokens.clone();
        let rules = |audience: &str| {
            let mut validation = Validation::new(Algorithm::HS256);
            validation.leeway = settings.leeway.as_secs().min(60);
            validation.validate_nbf = true;
            validation.set_issuer(&[&settings.issuer]);
            validation.set_audience(&[audience]);
            validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub", "jti"]);
            validation
        };
        let (access_rules, refresh_rules) = (rules(&settings.audience), rules(&refresh_audience(&settings)));
        let capacity = NonZeroUsize::new(VERIFIED_CAPACITY).expect("non-zero");
        let weigh: fn(&Arc<AccessClaims>) -> usize = |c| 256 + c.sub.len() + c.owner.len() + c.jti.len() + c.fid.len();
        Self {
            kid: secrets.jwt.key_id(),
            signing: EncodingKey::from_secret(secrets.jwt.expose()),
            verifying,
            settings,
            environment: config.environment.as_str(),
            access_rules,
            refresh_rules,
            verified: Arc::new(Cache::new(capacity, VERIFIED_MAX_BYTES, VERIFIED_TTL, weigh)),
        }
    }

    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    pub fn environment(&self) -> &'static str {
        self.environment
    }

    /// The id of the signing key (reported by health).
    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// The cache of verified access tokens, for the metrics (`cache="verified_tokens"`).
    pub fn verified_cache(&self) -> Arc<dyn crate::metrics::CacheSource> {
        self.verified.clone()
    }

    /// Number of keys accepted for verification (current + previous).
    pub fn verification_keys(&self) -> usize {
        self.verifying.len()
    }

    fn header(&self, typ: &str) -> Header {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(typ.to_owned());
        header.kid = Some(self.kid.clone());
        header
    }

    /// Refresh tokens are addressed to their own audience, so they are never accepted as access tokens.
    pub fn refresh_audience(&self) -> String {
        refresh_audience(&self.settings)
    }

    /// Signing is deterministic: the same claims give the same token, which lets a retried refresh inside the
    /// grace window receive exactly the successor that was already issued.
    pub fn sign_access(&self, claims: &AccessClaims) -> String {
        jsonwebtoken::encode(&self.header(ACCESS_TYP), claims, &self.signing).expect("HS256 signing cannot fail")
    }

    pub fn sign_refresh(&self, claims: &RefreshClaims) -> String {
        jsonwebtoken::encode(&self.header(REFRESH_TYP), claims, &self.signing).expect("HS256 signing cannot fail")
    }

    /// Claims for a new access token.
    pub fn access_claims(&self, agent: &str, owner: &str, fid: &str, jti: &str, iat: i64) -> AccessClaims {
        let ttl = i64::try_from(self.settings.access_ttl.as_secs()).unwrap_or(i64::MAX);
        AccessClaims {
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            sub: agent.to_owned(),
            exp: iat + ttl,
            nbf: iat,
            iat,
            jti: jti.to_owned(),
            fid: fid.to_owned(),
            owner: owner.to_owned(),
            env: self.environment.to_owned(),
        }
    }

    /// An access token's claims if it is valid now. A token this instance verified before only has its times
    /// checked again; any other goes through the full verification.
    pub fn verify_access(&self, token: &str) -> Result<AccessClaims, TokenError> {
        if let Some(claims) = self.verified.get(token) {
            let leeway = i64::try_from(self.access_rules.leeway).unwrap_or(60);
            if current(&claims, crate::store::now_epoch(), leeway) {
                return Ok(AccessClaims::clone(&claims));
            }
            // Expired since: the full verification answers why.
            self.verified.remove(token);
        }
        let claims: AccessClaims = self.verify(token, ACCESS_TYP, &self.access_rules)?;
        self.verified.insert(token.to_owned(), Arc::new(claims.clone()));
        Ok(claims)
    }

    pub fn verify_refresh(&self, token: &str) -> Result<RefreshClaims, TokenError> {
        self.verify(token, REFRESH_TYP, &self.refresh_rules)
    }

    fn verify<T: DeserializeOwned + Common>(
        &self,
        token: &str,
        typ: &'static str,
        validation: &Validation,
    ) -> Result<T, TokenError> {
        // The header is checked before any signature work: type, algorithm and key are ours to choose, never
        // the token's (`alg: none`, RS/HS confusion and foreign keys all stop here).
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::HS256 {
            return Err(TokenError::Invalid("algorithm not allowed"));
        }
        if header.typ.as_deref() != Some(typ) {
            return Err(TokenError::WrongType { expected: typ });
        }
        let key = header.kid.as_ref().and_then(|kid| self.verifying.get(kid)).ok_or(TokenError::UnknownKey)?;
        let claims =
            jsonwebtoken::decode::<T>(token, key, validation).map(|data| data.claims).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidSignature => TokenError::Invalid("bad signature"),
                ErrorKind::InvalidAudience => TokenError::Invalid("wrong audience"),
                ErrorKind::InvalidIssuer => TokenError::Invalid("wrong issuer"),
                ErrorKind::InvalidAlgorithm => TokenError::Invalid("algorithm not allowed"),
                ErrorKind::MissingRequiredClaim(_) => TokenError::Invalid("missing claim"),
                _ => TokenError::Malformed,
            })?;
        // Environments never accept each other's tokens, even if they were (mis)configured with one key.
        if claims.env() != self.environment {
            return Err(TokenError::Invalid("token issued for another environment"));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(nbf: i64, exp: i64) -> AccessClaims {
        AccessClaims {
            iss: "i".into(),
            aud: "a".into(),
            sub: "s".into(),
            exp,
            nbf,
            iat: nbf,
            jti: "j".into(),
            fid: "f".into(),
            owner: "o".into(),
            env: "development".into(),
        }
    }

    #[test]
    fn a_verified_token_stays_usable_only_within_its_times() {
        let c = claims(1000, 2000);
        assert!(current(&c, 1500, 0));
        assert!(current(&c, 2000, 0), "exp itself is still valid, as jsonwebtoken has it");
        assert!(!current(&c, 2001, 0), "expired since it was verified");
        assert!(current(&c, 2030, 30), "within the leeway");
        assert!(!current(&c, 2031, 30));
        assert!(!current(&c, 999, 0), "not yet valid");
        assert!(current(&c, 970, 30));
    }
}
