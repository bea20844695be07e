//! Operators signed in with an identity provider: a JWT from the OIDC issuer set in config. Its keys come from the
//! issuer's JWKS (found through its discovery document, fetched over HTTPS — plain HTTP only to a loopback
//! address, for tests and local issuers), cached per instance and fetched again when a token names an unknown
//! `kid` (at most every 30 s, so a flood of made-up kids cannot hammer the issuer). Each key pins its algorithm —
//! RS256 for RSA keys, ES256 for P-256 keys — and a token whose `alg` differs is refused. The role comes from a
//! configured claim, the tenant from another: when that claim is configured, a token without it (or with anything
//! but a tenant id string in it) is refused — it never falls back to `default`, the tenant that sees the agent
//! plane. Without a configured tenant claim every user of the provider belongs to `default`.
//!
//! The key fetch is behind the `idp-keys` circuit breaker. While fetching fails, or the breaker is open, the
//! cached keys keep verifying tokens past their hour (a provider's outage does not sign everybody out), and a
//! token naming a `kid` the cache lacks is refused as unknown (401): no key, no trust.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::http::HttpConnector as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use http_body_util::BodyExt as _;
use serde::Deserialize;

use super::Role;
use crate::ids::TenantId;
use crate::problem::{Problem, ToProblem};

pub use crate::config::OidcSettings;

/// Why an identity provider's token was refused.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("token from another issuer")]
    WrongIssuer,
    #[error("token for another audience")]
    WrongAudience,
    #[error("algorithm {0} is not the one pinned for this key")]
    WrongAlgorithm(String),
    #[error("no key {0} at the issuer")]
    UnknownKey(String),
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("no known role in the token")]
    NoRole,
    #[error("the tenant claim {0} is missing or not a tenant id")]
    TenantClaim(String),
    #[error("the issuer's keys cannot be fetched: {0}")]
    Unavailable(String),
}

impl ToProblem for OidcError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::NoRole => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    fn problem(&self) -> Problem {
        let status = self.status();
        let (slug, title, detail) = match self {
            Self::Malformed(what) => ("oidc-malformed", "Malformed token", (*what).to_owned()),
            Self::WrongIssuer => (
                "oidc-wrong-issuer",
                "Wrong issuer",
                "the token's iss is not this deployment's identity provider".to_owned(),
            ),
            Self::WrongAudience => {
                ("oidc-wrong-audience", "Wrong audience", "the token's aud does not name this API".to_owned())
            }
            Self::WrongAlgorithm(alg) => (
                "oidc-wrong-algorithm",
                "Wrong algorithm",
                format!(
                    "{alg} is not the algorithm pinned for the key the token names (RS256 for RSA keys, ES256 for P-256)"
                ),
            ),
            Self::UnknownKey(kid) => {
                ("oidc-unknown-key", "Unknown signing key", format!("the issuer publishes no key {kid:?}"))
            }
            Self::BadSignature => {
                ("oidc-bad-signature", "Bad signature", "the token's signature does not verify".to_owned())
            }
            Self::Expired => ("oidc-expired", "Token expired", "sign in again at the identity provider".to_owned()),
            Self::NotYetValid => ("oidc-not-yet-valid", "Token not valid yet", "check the clocks".to_owned()),
            Self::NoRole => (
                "oidc-no-role",
                "No role",
                "the token carries no known role (admin, operator, analyst, viewer) in the configured claim".to_owned(),
            ),
            Self::TenantClaim(claim) => (
                "oidc-tenant-claim",
                "No tenant",
                format!(
                    "the token's {claim:?} claim must be one tenant id (a string of 1-64 letters, digits, '.', '_' or '-'); \
                     ask the identity provider's administrator to map every user to a tenant"
                ),
            ),
            Self::Unavailable(_) => (
                "unavailable",
                "Service Unavailable",
                "the identity provider's keys cannot be fetched right now; retry later".to_owned(),
            ),
        };
        Problem { error: Some("invalid_token".into()), ..Problem::new(status, slug, title).detail(detail) }
    }

    fn retry_after(&self) -> Option<u64> {
        matches!(self, Self::Unavailable(_)).then_some(5)
    }

    fn www_authenticate(&self) -> Option<&'static str> {
        (self.status() == StatusCode::UNAUTHORIZED).then_some(r#"Bearer realm="cloud-agent", error="invalid_token""#)
    }
}

/// A verification key and the one algorithm it accepts.
#[derive(Debug, Clone)]
enum VerifyingKey {
    Rs256 { n: Vec<u8>, e: Vec<u8> },
    Es256 { point: Vec<u8> },
}

impl VerifyingKey {
    fn algorithm(&self) -> &'static str {
        match self {
            Self::Rs256 { .. } => "RS256",
            Self::Es256 { .. } => "ES256",
        }
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        use ring::signature as sig;
        match self {
            Self::Rs256 { n, e } => sig::RsaPublicKeyComponents { n, e }
                .verify(&sig::RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
            Self::Es256 { point } => {
                sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point).verify(message, signature).is_ok()
            }
        }
    }
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    usage: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

fn b64(text: Option<&String>) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text?.trim_end_matches('=')).ok()
}

/// The keys of a JWKS that we can use, by kid. Keys for encryption, of other types or curves, or whose declared
/// `alg` contradicts their type are skipped.
fn usable_keys(set: JwkSet) -> HashMap<String, VerifyingKey> {
    let mut keys = HashMap::new();
    for jwk in set.keys {
        if jwk.usage.as_deref().is_some_and(|u| u != "sig") {
            continue;
        }
        let key = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("RSA", _) => b64(jwk.n.as_ref()).zip(b64(jwk.e.as_ref())).map(|(n, e)| VerifyingKey::Rs256 { n, e }),
            ("EC", Some("P-256")) => b64(jwk.x.as_ref()).zip(b64(jwk.y.as_ref())).and_then(|(x, y)| {
                (x.len() == 32 && y.len() == 32).then(|| VerifyingKey::Es256 { point: [&[4u8][..], &x, &y].concat() })
            }),
            _ => None,
        };
        let Some(key) = key else { continue };
        if jwk.alg.as_deref().is_some_and(|alg| alg != key.algorithm()) {
            continue;
        }
        keys.insert(jwk.kid.unwrap_or_default(), key);
    }
    keys
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<serde_json::Value>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(flatten)]
    other: HashMap<String, serde_json::Value>,
}

/// Who an identity provider's token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub subject: String,
    pub role: Role,
    pub tenant: TenantId,
}

/// The token's header, if it is a JWT at all (used to tell identity-provider tokens from our own HS256 tokens).
pub fn algorithm_of(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let header: Header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    Some(header.alg)
}

/// The unverified `iss` of a JWT (only to route it to the right verifier; never trusted).
pub fn issuer_of(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    claims.iss
}

/// The name of the key fetch's breaker.
pub const BREAKER: &str = "idp-keys";

/// The DynamoDB client's own connector type (hyper-util's pooled client on rustls with ring, over `SdkBody`): the
/// key fetcher reuses that code instead of linking a second instance of the client generic over another body.
type HttpsClient = std::sync::Arc<aws_smithy_http_client::Connector>;

/// One instance's verifier: settings, the cached keys, the HTTPS client.
pub struct Verifier {
    settings: OidcSettings,
    keys: RwLock<Option<(HashMap<String, VerifyingKey>, Instant)>>,
    /// Held while fetching (one fetch at a time); holds the client and the JWKS URL once known, so a refresh
    /// neither reloads the trust roots nor reads the discovery document again.
    fetching: tokio::sync::Mutex<Fetcher>,
    breaker: std::sync::Arc<crate::breaker::Breaker>,
}

#[derive(Default)]
struct Fetcher {
    client: Option<HttpsClient>,
    jwks_uri: Option<String>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("issuer", &self.settings.issuer).finish_non_exhaustive()
    }
}

impl Verifier {
    pub fn new(settings: OidcSettings, breaker: std::sync::Arc<crate::breaker::Breaker>) -> Self {
        Self { settings, keys: RwLock::new(None), fetching: tokio::sync::Mutex::new(Fetcher::default()), breaker }
    }

    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    fn cached(&self, kid: &str) -> (Option<VerifyingKey>, Option<Instant>) {
        let keys = self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        match keys.as_ref() {
            Some((map, at)) => (map.get(kid).cloned(), Some(*at)),
            None => (None, None),
        }
    }

    /// The key `kid`, fetching the JWKS when it is unknown (or the cache is old), at most every 30 s.
    async fn key(&self, kid: &str) -> Result<VerifyingKey, OidcError> {
        match self.cached(kid) {
            (Some(key), Some(at)) if at.elapsed() < self.settings.keys_ttl => return Ok(key),
            // Fetched a moment ago: no new fetch yet, whatever the kid.
            (key, Some(at)) if at.elapsed() < self.settings.refetch_after => {
                return key.ok_or_else(|| OidcError::UnknownKey(kid.to_owned()));
            }
            _ => {}
        }
        let mut fetcher = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        if let (Some(key), Some(at)) = self.cached(kid)
            && at.elapsed() < self.settings.refetch_after
        {
            return Ok(key);
        }
        let stale = self.cached(kid);
        let fetched = match crate::breaker::Breaker::try_acquire(&*self.breaker) {
            Err(_) => None,
            Ok(permit) => {
                let outcome = fetcher.keys(&self.settings.issuer).await;
                permit.report(outcome.is_err());
                match outcome {
                    Ok(keys) => Some(keys),
                    Err(e) if stale.1.is_some() => {
                        tracing::warn!(error = %e, "the identity provider's keys cannot be fetched; using cached keys");
                        None
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let Some(fetched) = fetched else {
            // The fetch failed or its breaker is open: the cached keys stand in; a kid they lack is unknown.
            return match stale {
                (Some(key), _) => Ok(key),
                (None, Some(_)) => Err(OidcError::UnknownKey(kid.to_owned())),
                (None, None) => Err(OidcError::Unavailable("the key fetch's circuit breaker is open".into())),
            };
        };
        let key = fetched.get(kid).cloned();
        *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((fetched, Instant::now()));
        key.ok_or_else(|| OidcError::UnknownKey(kid.to_owned()))
    }

    /// Verifies a token from the identity provider at `now` (epoch seconds).
    pub async fn verify(&self, token: &str, now: i64) -> Result<User, OidcError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(OidcError::Malformed("a JWT has three parts"));
        };
        let header: Header = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(OidcError::Malformed("header"))?;
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(OidcError::Malformed("payload"))?;
        let signature = URL_SAFE_NO_PAD.decode(s).map_err(|_| OidcError::Malformed("signature"))?;
        // Cheap checks first: a token for someone else costs no key fetch.
        if claims.iss.as_deref() != Some(self.settings.issuer.as_str()) {
            return Err(OidcError::WrongIssuer);
        }
        if header.alg != "RS256" && header.alg != "ES256" {
            return Err(OidcError::WrongAlgorithm(header.alg));
        }
        let kid = header.kid.unwrap_or_default();
        let key = self.key(&kid).await?;
        if key.algorithm() != header.alg {
            return Err(OidcError::WrongAlgorithm(header.alg));
        }
        let signed = &token[..h.len() + 1 + p.len()];
        if !key.verify(signed.as_bytes(), &signature) {
            return Err(OidcError::BadSignature);
        }
        let audience = &self.settings.audience;
        let aud_ok = match &claims.aud {
            Some(serde_json::Value::String(a)) => a == audience,
            Some(serde_json::Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
            _ => false,
        };
        if !aud_ok {
            return Err(OidcError::WrongAudience);
        }
        let leeway = self.settings.leeway_secs;
        if claims.exp.is_none_or(|exp| exp + leeway <= now) {
            return Err(OidcError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf - leeway > now) {
            return Err(OidcError::NotYetValid);
        }
        let role = match claims.other.get(&self.settings.role_claim) {
            Some(serde_json::Value::String(r)) => Role::parse(r),
            Some(serde_json::Value::Array(list)) => list.iter().filter_map(|r| r.as_str()).find_map(Role::parse),
            _ => None,
        }
        .ok_or(OidcError::NoRole)?;
        let tenant = match &self.settings.tenant_claim {
            Some(claim) => match claims.other.get(claim) {
                Some(serde_json::Value::String(t)) => {
                    TenantId::parse(t).map_err(|_| OidcError::TenantClaim(claim.clone()))?
                }
                _ => return Err(OidcError::TenantClaim(claim.clone())),
            },
            None => TenantId::default_tenant(),
        };
        let subject = claims.sub.filter(|s| !s.is_empty() && s.len() <= 256).ok_or(OidcError::Malformed("sub"))?;
        Ok(User { subject, role, tenant })
    }
}

/// HTTPS, or plain HTTP to a loopback address only.
fn allowed_url(url: &str) -> bool {
    if url.starts_with("https://") {
        return true;
    }
    let Some(rest) = url.strip_prefix("http://") else { return false };
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    host == "localhost" || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl Fetcher {
    /// The HTTPS client, built on first use (it loads the system's trust roots).
    fn client(&mut self) -> HttpsClient {
        use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
        self.client
            .get_or_insert_with(|| {
                std::sync::Arc::new(
                    aws_smithy_http_client::Connector::builder()
                        .tls_provider(Provider::Rustls(CryptoMode::Ring))
                        .build(),
                )
            })
            .clone()
    }

    async fn get_json(&mut self, url: &str) -> Result<serde_json::Value, OidcError> {
        if !allowed_url(url) {
            return Err(OidcError::Unavailable(format!("{url} is not HTTPS")));
        }
        let unavailable = |e: &dyn std::fmt::Display| OidcError::Unavailable(format!("{url}: {e}"));
        let client = self.client();
        let request = http::Request::get(url)
            .body(aws_smithy_types::body::SdkBody::empty())
            .map_err(|e| unavailable(&e))
            .and_then(|r| aws_smithy_runtime_api::http::Request::try_from(r).map_err(|e| unavailable(&e)))?;
        let fetch = async {
            let response = client.call(request).await.map_err(|e| unavailable(&e))?;
            if !response.status().is_success() {
                return Err(unavailable(&response.status().as_u16()));
            }
            // Key sets are small: refuse anything past 256 KiB.
            let body = http_body_util::Limited::new(response.into_body(), 256 * 1024);
            let bytes = body.collect().await.map_err(|e| unavailable(&e))?.to_bytes();
            serde_json::from_slice(&bytes).map_err(|e| unavailable(&e))
        };
        tokio::time::timeout(Duration::from_secs(3), fetch).await.map_err(|_| unavailable(&"timed out"))?
    }

    /// The issuer's keys: its discovery document (read once) names the JWKS.
    async fn keys(&mut self, issuer: &str) -> Result<HashMap<String, VerifyingKey>, OidcError> {
        let jwks_uri = if let Some(uri) = &self.jwks_uri {
            uri.clone()
        } else {
            let discovery =
                self.get_json(&format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'))).await?;
            let uri = discovery["jwks_uri"]
                .as_str()
                .ok_or_else(|| OidcError::Unavailable("the discovery document names no jwks_uri".into()))?;
            self.jwks_uri.insert(uri.to_owned()).clone()
        };
        let set: JwkSet = serde_json::from_value(self.get_json(&jwks_uri).await?)
            .map_err(|e| OidcError::Unavailable(format!("the JWKS does not parse: {e}")))?;
        Ok(usable_keys(set))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fetched_over_https_or_from_loopback_only() {
        assert!(allowed_url("https://login.example.com/.well-known/openid-configuration"));
        assert!(allowed_url("http://127.0.0.1:8080/jwks"));
        assert!(allowed_url("http://[::1]:8080/jwks"));
        assert!(allowed_url("http://localhost/jwks"));
        assert!(!allowed_url("http://login.example.com/jwks"));
        assert!(!allowed_url("http://127.0.0.1.evil.example/jwks"));
        assert!(!allowed_url("ftp://127.0.0.1/jwks"));
    }
}
