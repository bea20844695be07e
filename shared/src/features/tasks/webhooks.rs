//! Completion webhooks, per Standard Webhooks (standardwebhooks.com): `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, one signature per secret in force.
//!
//! Each API key has its own `whsec_` secret, derived from its id (the table keeps nothing that signs); a task
//! created by a key that is being rotated is signed with the old and the new key's secrets, so a receiver can
//! switch secrets at its own pace. Failed deliveries are retried on Svix's schedule; `410 Gone` disables the
//! endpoint for the tenant; a `Retry-After` longer than the schedule's next wait is honoured.

use std::time::Duration;

use base64::Engine as _;
use serde_json::json;

use super::model::{DeliveryAttempt, DeliveryState, TaskRecord, Webhook};
use crate::config::{Secret, SecretString};
use cloud_agent_handlers::outbound::{Outbound, OutboundRequest};

pub use crate::webhook_signature::{SECRET_PREFIX, sign};

/// Waits before each attempt, as Svix schedules them: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
pub const SCHEDULE: [Duration; 8] = [
    Duration::ZERO,
    Duration::from_secs(5),
    Duration::from_mins(5),
    Duration::from_mins(30),
    Duration::from_hours(2),
    Duration::from_hours(5),
    Duration::from_hours(10),
    Duration::from_hours(10),
];

/// The longest `Retry-After` honoured: a receiver cannot park a delivery for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_hours(24);

/// Breakers of webhook receivers are named `webhook:{tenant}:{host}`.
pub const BREAKER_FAMILY: &str = "webhook:";
/// Receivers' breakers one instance keeps at most (idle closed ones make room for new ones).
pub const BREAKERS_PER_INSTANCE: usize = 256;

/// The breaker of `url`'s host for `tenant`: per tenant, so one tenant's failing endpoint on a shared host cannot
/// hold up another tenant's deliveries there.
pub fn breaker_name(tenant: &str, url: &str) -> String {
    let host = url.parse::<http::Uri>().ok().and_then(|u| u.host().map(str::to_ascii_lowercase)).unwrap_or_default();
    format!("{BREAKER_FAMILY}{tenant}:{host}")
}

/// Whether an attempt says the receiver is failing (no answer, a 5xx, 429), as opposed to answering.
pub fn receiver_failed(attempt: &DeliveryAttempt) -> bool {
    attempt.status.is_none_or(|s| s >= 500 || s == 429)
}

/// Derives each signer's secret.
#[derive(Clone)]
pub struct WebhookSecrets {
    root: Secret,
}

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecrets([redacted])")
    }
}

impl WebhookSecrets {
    /// One purpose per derived key: these sign webhooks and nothing else.
    pub fn derive(agent_secret: &Secret) -> Self {
        Self { root: Secret::new(agent_secret.mac(b"cloud-agent webhook signing v1").to_vec()) }
    }

    fn bytes(&self, signer: &str) -> [u8; 32] {
        self.root.mac(signer.as_bytes())
    }

    /// A signer's secret as receivers configure it: `whsec_` and the base64 of the HMAC key.
    pub fn secret(&self, signer: &str) -> SecretString {
        SecretString::new(format!(
            "{SECRET_PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(self.bytes(signer))
        ))
    }

    /// `webhook-signature`: one `v1,<sig>` per signer, space-separated.
    pub fn signature_header(&self, signers: &[String], id: &str, timestamp: i64, body: &[u8]) -> String {
        signers
            .iter()
            .map(|signer| format!("v1,{}", sign(&self.bytes(signer), id, timestamp, body)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The event a finished task sends.
pub fn payload(record: &TaskRecord, timestamp: i64) -> Vec<u8> {
    let at = time::OffsetDateTime::from_unix_timestamp(timestamp)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default();
    let body = json!({
        "type": format!("task.{}", record.status.as_str()),
        "timestamp": at,
        "data": record.view(),
    });
    body.to_string().into_bytes()
}

/// What one attempt decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Delivered,
    /// Try again at this epoch ms.
    RetryAt(i64),
    /// Out of attempts.
    GaveUp,
    /// 410 Gone: the endpoint is disabled.
    Disabled,
}

/// Makes one delivery attempt and records it in `webhook`. `now_ms` is when the attempt starts.
pub async fn attempt(
    client: &Outbound,
    secrets: &WebhookSecrets,
    record: &TaskRecord,
    webhook: &mut Webhook,
    now_ms: i64,
) -> Next {
    let timestamp = now_ms / 1000;
    let body = payload(record, timestamp);
    let signature = secrets.signature_header(&record.signers, &webhook.message_id, timestamp, &body);
    let request = OutboundRequest {
        method: http::Method::POST,
        url: webhook.url.clone(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("webhook-id".into(), webhook.message_id.clone()),
            ("webhook-timestamp".into(), timestamp.to_string()),
            ("webhook-signature".into(), signature),
        ],
        body: Some(body.into()),
        timeout: Some(Duration::from_secs(15)),
    };
    let started = std::time::Instant::now();
    let outcome = client.send(request).await;
    let duration_ms = started.elapsed().as_millis() as u64;
    let (status, error, retry_after) = match &outcome {
        Ok(response) => {
            let retry_after = response
                .headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
            (Some(response.status), None, retry_after)
        }
        Err(e) => (None, Some(e.to_string()), None),
    };
    webhook.attempts.push(DeliveryAttempt { at_ms: now_ms, status, error, duration_ms });
    let next = match status {
        Some(s) if (200..300).contains(&s) => Next::Delivered,
        Some(410) => Next::Disabled,
        _ => match SCHEDULE.get(webhook.attempts.len()) {
            Some(wait) => {
                let wait = retry_after.map_or(*wait, |r| r.max(*wait));
                Next::RetryAt(now_ms + wait.as_millis() as i64)
            }
            None => Next::GaveUp,
        },
    };
    webhook.state = match next {
        Next::Delivered => DeliveryState::Delivered,
        Next::RetryAt(_) => DeliveryState::Pending,
        Next::GaveUp => DeliveryState::Failed,
        Next::Disabled => DeliveryState::Disabled,
    };
    webhook.next_attempt_ms = match next {
        Next::RetryAt(at) => Some(at),
        _ => None,
    };
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_signature_per_signer_and_secrets_differ() {
        let secrets = WebhookSecrets::derive(&Secret::new(vec![7; 32]));
        let header = secrets.signature_header(&["a".into(), "b".into()], "msg_1", 1, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.starts_with("v1,")));
        assert_ne!(parts[0], parts[1]);
        assert!(secrets.secret("a").expose().starts_with("whsec_"));
        assert_ne!(secrets.secret("a"), secrets.secret("b"));
    }

    #[test]
    fn the_schedule_is_svixs() {
        let secs: Vec<u64> = SCHEDULE.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [0, 5, 300, 1800, 7200, 18000, 36000, 36000]);
    }
}
