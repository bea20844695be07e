//! Alerts reach someone: each raised alert is sent to a webhook (signed per Standard Webhooks) and/or an SNS
//! topic, once per cooldown across every instance. Instances claim an alert with a conditional write on its
//! cooldown item (`ALERT#{kind}`): the one whose write lands sends it; the others see the claim and stay quiet,
//! so a fleet of 50 instances sends one alert, not 50. An instance that claimed and could send to no sink gives
//! the claim back, so the next instance to see the condition tries again.
//!
//! Sending happens inside the request that evaluated the alert (an instance may be frozen right after its
//! response), bounded by [`SEND_TIMEOUT`] per sink.

use std::time::Duration;

use serde::Serialize;

use super::Active;
pub use crate::config::alerting::DeliverySettings;
use crate::state::{AppState, Part};
use crate::store::{Condition, DynStore, Key, StoreError, Update, now_ms};
use cloud_agent_handlers::outbound::{Outbound, OutboundRequest, Policy};

/// Longest wait for one sink.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(3);

/// One alert as the webhook's body and the SNS message carry it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AlertMessage {
    /// `alert.<kind>`, as Standard Webhooks event types are named.
    #[serde(rename = "type")]
    pub kind: String,
    pub timestamp: String,
    pub data: AlertData,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AlertData {
    pub kind: super::AlertKind,
    pub detail: String,
    pub environment: String,
    /// The instance that saw it (its readings are its own).
    pub instance: String,
    /// No other message for this kind before then (RFC 3339).
    pub quiet_until: String,
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// The cooldown item of one kind of alert.
pub fn cooldown_key(kind: super::AlertKind) -> Key {
    Key::new(format!("ALERT#{}", kind.as_str()), "COOLDOWN")
}

/// Claims `kind` for `cooldown` from `now_ms`: true when this instance's write landed (nobody holds a claim, or
/// the last one ran out).
pub async fn claim(
    store: &DynStore,
    kind: super::AlertKind,
    instance: &str,
    now_ms: i64,
    cooldown: Duration,
) -> Result<bool, StoreError> {
    let until = now_ms + i64::try_from(cooldown.as_millis()).unwrap_or(i64::MAX / 2);
    let update = Update::new()
        .set("until", until)
        .set("by", instance)
        // The item outlives its cooldown by a day, then TTL removes it.
        .set(crate::store::EXPIRES_AT, until / 1000 + 86_400);
    let free = Condition::NotExists.or(Condition::lt("until", now_ms));
    match store.update(&cooldown_key(kind), update, Some(free)).await {
        Ok(_) => Ok(true),
        Err(StoreError::ConditionFailed { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives a claim back (only this instance's own).
pub async fn release(store: &DynStore, kind: super::AlertKind, instance: &str) -> Result<(), StoreError> {
    match store.delete(&cooldown_key(kind), Some(Condition::eq("by", instance))).await {
        Ok(_) | Err(StoreError::ConditionFailed { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The configured sinks of this instance: a feature part, built on first use.
#[derive(Debug)]
pub struct Delivery {
    settings: DeliverySettings,
    outbound: Outbound,
    sns: tokio::sync::OnceCell<aws_sdk_sns::Client>,
}

impl Part for Delivery {
    fn build(state: &AppState) -> Self {
        let config = state.config();
        Self {
            settings: config.alert_delivery.clone(),
            outbound: Outbound::new(Policy {
                allow_loopback: config.tasks.allow_loopback,
                timeout: SEND_TIMEOUT,
                ..Policy::default()
            }),
            sns: tokio::sync::OnceCell::new(),
        }
    }
}

/// What became of one raised alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// This instance claimed it and at least one sink took it.
    Delivered,
    /// Another instance holds the cooldown.
    CoolingDown,
    /// Claimed, but no sink took it (the claim was given back), or the claim could not be written.
    Failed,
}

impl Delivery {
    pub fn configured(&self) -> bool {
        !self.settings.is_empty()
    }

    /// Sends each raised alert that this instance claims; one outcome per alert, in order.
    pub async fn send(&self, state: &AppState, raised: &[Active]) -> Vec<Sent> {
        let cooldown = state.config().alerts.cooldown;
        let mut outcomes = Vec::with_capacity(raised.len());
        for alert in raised {
            let now = now_ms();
            let outcome = match claim(state.store(), alert.kind, state.instance_id(), now, cooldown).await {
                Ok(false) => Sent::CoolingDown,
                Err(e) => {
                    tracing::warn!(alert = ?alert.kind, error = %e, "alert cooldown could not be claimed; not sent");
                    Sent::Failed
                }
                Ok(true) => {
                    let message = AlertMessage {
                        kind: format!("alert.{}", alert.kind.as_str()),
                        timestamp: rfc3339(now),
                        data: AlertData {
                            kind: alert.kind,
                            detail: alert.detail.clone(),
                            environment: state.config().environment.as_str().into(),
                            instance: state.instance_id().into(),
                            quiet_until: rfc3339(now + i64::try_from(cooldown.as_millis()).unwrap_or(0)),
                        },
                    };
                    let id = format!("alert_{}_{}", alert.kind.as_str(), now);
                    if self.deliver(&id, &message).await {
                        Sent::Delivered
                    } else {
                        if let Err(e) = release(state.store(), alert.kind, state.instance_id()).await {
                            tracing::warn!(alert = ?alert.kind, error = %e, "alert claim not given back");
                        }
                        Sent::Failed
                    }
                }
            };
            outcomes.push(outcome);
        }
        outcomes
    }

    /// Sends to every sink at once; true when one took it.
    async fn deliver(&self, id: &str, message: &AlertMessage) -> bool {
        let body = serde_json::to_vec(message).unwrap_or_default();
        let (webhook, sns) = tokio::join!(self.to_webhook(id, &body), self.to_sns(id, message, &body));
        webhook.unwrap_or(false) || sns.unwrap_or(false)
    }

    async fn to_webhook(&self, id: &str, body: &[u8]) -> Option<bool> {
        let (url, secret) = self.settings.webhook.as_ref()?;
        let key = crate::webhook_signature::key_of(secret.expose())?;
        let timestamp = now_ms() / 1000;
        let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        headers.extend(crate::webhook_signature::headers(&key, id, timestamp, body));
        let request = OutboundRequest {
            method: http::Method::POST,
            url: url.clone(),
            headers,
            body: Some(body.to_vec().into()),
            timeout: Some(SEND_TIMEOUT),
        };
        match self.outbound.send(request).await {
            Ok(response) if (200..300).contains(&response.status) => Some(true),
            Ok(response) => {
                tracing::warn!(status = response.status, "the alert webhook refused the alert");
                Some(false)
            }
            Err(e) => {
                tracing::warn!(error = %e, "the alert webhook could not be reached");
                Some(false)
            }
        }
    }

    async fn to_sns(&self, id: &str, message: &AlertMessage, body: &[u8]) -> Option<bool> {
        let (topic, endpoint) = self.settings.sns.as_ref()?;
        let client = self.sns.get_or_init(|| sns_client(endpoint.as_deref())).await;
        let publish = client
            .publish()
            .topic_arn(topic)
            .subject(format!("Cloud Agent alert: {}", message.data.kind.as_str()))
            .message(String::from_utf8_lossy(body))
            .message_attributes(
                "alert_id",
                aws_sdk_sns::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(id)
                    .build()
                    .ok()?,
            )
            .send();
        match tokio::time::timeout(SEND_TIMEOUT, publish).await {
            Ok(Ok(_)) => Some(true),
            Ok(Err(e)) => {
                tracing::warn!(error = %aws_sdk_sns::error::DisplayErrorContext(e), "the alert topic refused the alert");
                Some(false)
            }
            Err(_) => {
                tracing::warn!("the alert topic did not answer in time");
                Some(false)
            }
        }
    }
}

/// The SNS client: one attempt may take the whole send's time.
async fn sns_client(endpoint: Option<&str>) -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::new(&crate::aws::sdk_config(None, endpoint, SEND_TIMEOUT, SEND_TIMEOUT).await)
}
