//! Verifying completion webhooks (Standard Webhooks): the body is signed as `{webhook-id}.{webhook-timestamp}.{body}`
//! with HMAC-SHA256 under the key's `whsec_` secret, each signature sent as `v1,<base64>` in `webhook-signature`
//! (several, space-separated, while a key is being rotated). A receiver checks the signature over the raw body
//! before parsing it, and refuses a timestamp outside its tolerance (a replay).

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How far a webhook's timestamp may be from the receiver's clock (the Standard Webhooks default).
pub const TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("the secret is not a whsec_ secret (base64 after the prefix)")]
    BadSecret,
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    #[error("webhook-timestamp {0:?} is not a number of seconds")]
    BadTimestamp(String),
    #[error("webhook-timestamp is {0} s from this clock (more than {TOLERANCE_SECS} s): a replay or a wrong clock")]
    Stale(i64),
    #[error("no signature matches: the body changed, or the secret is not this key's")]
    NoMatch,
}

/// Checks a delivery: `id`, `timestamp` and `signatures` are the `webhook-id`, `webhook-timestamp` and
/// `webhook-signature` headers, `body` the raw bytes received, `now` the receiver's clock in Unix seconds.
pub fn verify(
    secret: &str,
    id: Option<&str>,
    timestamp: Option<&str>,
    signatures: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), WebhookError> {
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .ok_or(WebhookError::BadSecret)?;
    let id = id.ok_or(WebhookError::MissingHeader("webhook-id"))?;
    let timestamp = timestamp.ok_or(WebhookError::MissingHeader("webhook-timestamp"))?;
    let signatures = signatures.ok_or(WebhookError::MissingHeader("webhook-signature"))?;
    let seconds: i64 = timestamp.trim().parse().map_err(|_| WebhookError::BadTimestamp(timestamp.to_owned()))?;
    if (now - seconds).abs() > TOLERANCE_SECS {
        return Err(WebhookError::Stale(now - seconds));
    }
    for signature in signatures.split_whitespace() {
        let Some(encoded) = signature.strip_prefix("v1,") else { continue };
        let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(encoded) else { continue };
        let mut mac = <Hmac<Sha256>>::new_from_slice(&key).map_err(|_| WebhookError::BadSecret)?;
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        // Constant-time comparison.
        if mac.verify_slice(&expected).is_ok() {
            return Ok(());
        }
    }
    Err(WebhookError::NoMatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's worked example.
    #[test]
    fn verifies_the_specification_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = br#"{"test": 2432232314}"#;
        let signature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(verify(secret, Some(id), Some("1614265330"), Some(signature), body, 1_614_265_330), Ok(()));
        let rotated = format!("v1,bm9wZQ== {signature}");
        assert_eq!(verify(secret, Some(id), Some("1614265330"), Some(&rotated), body, 1_614_265_400), Ok(()));
        assert_eq!(
            verify(secret, Some(id), Some("1614265330"), Some(signature), b"{}", 1_614_265_330),
            Err(WebhookError::NoMatch)
        );
        assert!(matches!(
            verify(secret, Some(id), Some("1614265330"), Some(signature), body, 1_614_266_000),
            Err(WebhookError::Stale(_))
        ));
        assert_eq!(
            verify(secret, None, Some("1"), Some(signature), body, 1),
            Err(WebhookError::MissingHeader("webhook-id"))
        );
    }
}
