//! Where raised alerts are sent — a webhook signed per Standard Webhooks, and/or an SNS topic — and the
//! dead-letter queue the health monitor watches.

use super::{ConfigError, SecretString};

/// Where alerts go (none configured: they stay log lines and health-report entries).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliverySettings {
    /// `CLOUD_AGENT_ALERT_WEBHOOK_URL` and its `whsec_` secret, `CLOUD_AGENT_ALERT_WEBHOOK_SECRET`.
    pub webhook: Option<(String, SecretString)>,
    /// `CLOUD_AGENT_ALERT_TOPIC_ARN`, and `CLOUD_AGENT_SNS_ENDPOINT` for an SNS-compatible local server.
    pub sns: Option<(String, Option<String>)>,
}

impl DeliverySettings {
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let webhook = match (env("CLOUD_AGENT_ALERT_WEBHOOK_URL"), env("CLOUD_AGENT_ALERT_WEBHOOK_SECRET")) {
            (None, None) => None,
            (Some(url), Some(secret)) => {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(ConfigError::Invalid {
                        var: "CLOUD_AGENT_ALERT_WEBHOOK_URL",
                        problem: "an http(s) URL".into(),
                    });
                }
                if crate::webhook_signature::key_of(&secret).is_none() {
                    return Err(ConfigError::Invalid {
                        var: "CLOUD_AGENT_ALERT_WEBHOOK_SECRET",
                        problem: "a Standard Webhooks secret: whsec_ and base64".into(),
                    });
                }
                Some((url, SecretString::new(secret)))
            }
            (Some(_), None) => {
                return Err(ConfigError::Invalid {
                    var: "CLOUD_AGENT_ALERT_WEBHOOK_SECRET",
                    problem: "set it with CLOUD_AGENT_ALERT_WEBHOOK_URL: receivers verify what they get".into(),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    var: "CLOUD_AGENT_ALERT_WEBHOOK_URL",
                    problem: "CLOUD_AGENT_ALERT_WEBHOOK_SECRET is set, but no URL to send alerts to".into(),
                });
            }
        };
        let sns = env("CLOUD_AGENT_ALERT_TOPIC_ARN").map(|arn| (arn, env("CLOUD_AGENT_SNS_ENDPOINT")));
        Ok(Self { webhook, sns })
    }

    pub fn is_empty(&self) -> bool {
        self.webhook.is_none() && self.sns.is_none()
    }
}

/// The tasks' dead-letter queue (SQS), whose depth the health report reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterQueue {
    pub url: String,
    /// An SQS-compatible local server (`CLOUD_AGENT_SQS_ENDPOINT`), in tests.
    pub endpoint: Option<String>,
}
