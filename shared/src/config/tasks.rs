//! Task delegation settings: where queued work goes, how long finished tasks are kept, how often a failing task
//! is tried, and the outbound-HTTP policy of the handlers that call other services.

use std::time::Duration;

use super::{ConfigError, Environment, Lookup, SecretString, parse_number};

/// Where queued work (asynchronous tasks, webhook retries) goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueSettings {
    /// Due-work items in the table, drained by a schedule (Vercel cron) or by `cloudagent serve`'s worker.
    Table,
    /// An SQS queue whose messages trigger the worker function (AWS).
    Sqs {
        url: String,
        /// A non-AWS endpoint (an SQS-compatible local server in tests).
        endpoint: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct TaskSettings {
    pub queue: QueueSettings,
    /// How long a finished task stays readable.
    pub retention: Duration,
    /// Attempts of a task that keeps failing transiently (AWS Step Functions' default: 3).
    pub max_attempts: u32,
    /// Lets outbound handlers reach loopback addresses. Only for tests and local runs: refused in production.
    pub allow_loopback: bool,
    /// The bearer token the scheduler presents to the drain route (Vercel sends `CRON_SECRET`).
    pub cron_secret: Option<SecretString>,
    /// How long one drain may run (the scheduled function's own limit, less a margin).
    pub drain_budget: Duration,
    /// On Vercel, how long a function that queued work may go on draining due work after its response
    /// (`waitUntil`), so queued tasks run without a per-minute cron (which Hobby plans refuse). Zero turns it off.
    /// Keep the request timeout plus this under the function's `maxDuration` (vercel.json gives the task-creating
    /// functions 30 s: a 10 s request and 15 s of draining, with a margin).
    pub after_response_drain: Duration,
    /// The most queued tasks one tenant may have unfinished at once; more is refused (429).
    pub queued_cap: u32,
}

impl TaskSettings {
    pub(super) fn from_lookup(env: Lookup<'_>, environment: Environment) -> Result<Self, ConfigError> {
        let queue = match env("CLOUD_AGENT_TASK_QUEUE_URL") {
            Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
                QueueSettings::Sqs { url, endpoint: env("CLOUD_AGENT_SQS_ENDPOINT") }
            }
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: "CLOUD_AGENT_TASK_QUEUE_URL",
                    problem: format!(
                        "{other:?}: an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>)"
                    ),
                });
            }
            None => QueueSettings::Table,
        };
        let allow_loopback = match env("CLOUD_AGENT_OUTBOUND_ALLOW_LOOPBACK").as_deref() {
            None | Some("0" | "false" | "off") => false,
            Some("1" | "true" | "on") if environment == Environment::Production => {
                return Err(ConfigError::Invalid {
                    var: "CLOUD_AGENT_OUTBOUND_ALLOW_LOOPBACK",
                    problem: "production never lets handlers call loopback addresses".into(),
                });
            }
            Some("1" | "true" | "on") => true,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: "CLOUD_AGENT_OUTBOUND_ALLOW_LOOPBACK",
                    problem: format!("{other:?}: use on or off"),
                });
            }
        };
        Ok(Self {
            queue,
            retention: Duration::from_secs(parse_number(
                env,
                "CLOUD_AGENT_TASK_RETENTION_SECS",
                7 * 86_400,
                60..=365 * 86_400,
            )?),
            max_attempts: parse_number(env, "CLOUD_AGENT_TASK_MAX_ATTEMPTS", 3, 1..=10)? as u32,
            queued_cap: parse_number(env, "CLOUD_AGENT_TASK_QUEUED_CAP", 1000, 1..=1_000_000)? as u32,
            allow_loopback,
            cron_secret: env("CRON_SECRET").map(SecretString::new),
            drain_budget: Duration::from_millis(parse_number(
                env,
                "CLOUD_AGENT_DRAIN_BUDGET_MS",
                50_000,
                1_000..=900_000,
            )?),
            after_response_drain: Duration::from_millis(parse_number(
                env,
                "CLOUD_AGENT_AFTER_RESPONSE_DRAIN_MS",
                15_000,
                0..=600_000,
            )?),
        })
    }
}
