//! Configuration, read once at start from the environment. Invalid values are start-up errors that name
//! the variable, so a misconfigured function fails its cold start instead of its first request.

use std::path::PathBuf;
use std::time::Duration;

pub mod alerting;
pub mod analytics;
pub mod limits;
pub mod network;
pub mod secrets;
pub mod tasks;

/// How configuration reads a variable (the process environment, or a test's map).
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub use secrets::{Secret, SecretString, Secrets};

/// Errors while reading configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var}: {problem}")]
    Invalid { var: &'static str, problem: String },
}

/// The deployment environment, detected once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    Staging,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Staging => "staging",
            Self::Production => "production",
        }
    }

    fn parse(var: &'static str, text: &str) -> Result<Self, ConfigError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "dev" | "development" | "local" => Ok(Self::Development),
            "staging" | "stage" | "preview" => Ok(Self::Staging),
            "prod" | "production" => Ok(Self::Production),
            other => Err(ConfigError::Invalid {
                var,
                problem: format!("unknown environment {other:?} (use development, staging or production)"),
            }),
        }
    }
}

/// Which platform runs this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Vercel,
    Lambda,
    Local,
}

impl Platform {
    /// Vercel first: its functions may also see AWS variables, Lambda's never see `VERCEL_IPC_PATH`. `vercel dev`
    /// starts a Rust function with `VERCEL_DEV=1` and `VERCEL_DEV_PORT` but no IPC socket: that is Vercel too (its
    /// runtime carries on without IPC).
    pub fn detect(env: &dyn Fn(&str) -> Option<String>) -> Self {
        if env("VERCEL_IPC_PATH").is_some() || env("VERCEL_DEV").as_deref() == Some("1") {
            Self::Vercel
        } else if env("AWS_LAMBDA_RUNTIME_API").is_some() {
            Self::Lambda
        } else {
            Self::Local
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vercel => "vercel",
            Self::Lambda => "lambda",
            Self::Local => "local",
        }
    }
}

/// Where and how to reach DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoConfig {
    pub table: String,
    /// Override for DynamoDB Local (`http://127.0.0.1:8000`); `None` means the regional AWS endpoint.
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

/// The configured identity provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSettings {
    /// The `iss` its tokens carry, and where its discovery document lives.
    pub issuer: String,
    pub audience: String,
    /// The claim that holds the role (a string, or a list whose first known role counts).
    pub role_claim: String,
    /// The claim that holds the tenant (required in every token when set); not set → every user is in `default`.
    pub tenant_claim: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway_secs: i64,
    /// How soon an unknown `kid` may trigger another fetch of the keys.
    pub refetch_after: Duration,
    /// How long fetched keys count as fresh (providers rotate keys); stale keys still stand in while the
    /// provider cannot be reached.
    pub keys_ttl: Duration,
}

/// Which store backend to use.
#[derive(Debug, Clone)]
pub enum StoreSettings {
    Embedded { data_dir: PathBuf },
    DynamoDb(DynamoConfig),
}

/// Everything the app reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub environment: Environment,
    pub platform: Platform,
    pub store: StoreSettings,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Budget for one request, end to end.
    pub request_timeout: Duration,
    /// The running release (`releaseId` in health output).
    pub release_id: String,
    pub secrets: Secrets,
    pub tokens: TokenSettings,
    /// How long a user context stays fresh in an instance's cache.
    pub context_ttl: Duration,
    /// The oldest cached context served as STALE while the store fails; past it the answer is 503.
    pub context_stale_max: Duration,
    /// Settings of the store's circuit breaker.
    pub breaker: crate::breaker::BreakerConfig,
    /// How long a health report is reused, so health requests cannot hammer the store.
    pub health_cache: Duration,
    pub alerts: crate::alerts::AlertConfig,
    /// Where raised alerts are sent (a signed webhook, an SNS topic).
    pub alert_delivery: alerting::DeliverySettings,
    /// The dead-letter queue whose depth the health monitor reads (`CLOUD_AGENT_TASK_DLQ_URL`, on AWS).
    pub dead_letter_queue: Option<alerting::DeadLetterQueue>,
    /// When set, each request also writes a CloudWatch EMF line under this function name (default on Lambda).
    pub emf_function: Option<String>,
    pub rate_limits: limits::RateLimits,
    /// How long a rotated API key keeps working beside its replacement.
    pub key_rotation_grace: Duration,
    /// IP and country allow and deny lists, checked on every route.
    pub network: network::NetworkRules,
    /// How the client's address and country are found here.
    pub vantage: network::Vantage,
    /// The identity provider whose users may call operator routes, if any.
    pub oidc: Option<OidcSettings>,
    /// Browser origins allowed by CORS (none: no CORS headers at all).
    pub cors_origins: Vec<String>,
    /// The longest the perimeter waits on one of its store calls (rate limit, audit, key lookup).
    pub perimeter_budget: Duration,
    /// Which requests the audit trail stores (`CLOUD_AGENT_AUDIT`).
    pub audit: AuditPolicy,
    /// Task delegation: the queue, retention, attempts, outbound policy.
    pub tasks: tasks::TaskSettings,
    /// Analytics: prices, anomaly rules, request counts' writes.
    pub analytics: analytics::AnalyticsSettings,
}

/// Which requests are stored in the audit trail (CloudTrail's model: management events always, data events
/// opt-in). Every request, stored or not, has its access log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditPolicy {
    /// Every operator request, every state-changing request and every denial; agents' reads only in the log.
    Standard,
    /// Every authenticated request, agents' reads included.
    All,
}

/// Token lifetimes and identifiers; per-environment defaults, each overridable.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub access_ttl: Duration,
    /// Absolute lifetime of a refresh family; rotation never extends it.
    pub refresh_ttl: Duration,
    /// How long the immediately previous refresh token still yields the already-issued successor.
    pub refresh_grace: Duration,
    /// Clock-skew allowance when verifying (at most 60 s).
    pub leeway: Duration,
    pub issuer: String,
    pub audience: String,
}

impl TokenSettings {
    fn from_lookup(env: &dyn Fn(&str) -> Option<String>, environment: Environment) -> Result<Self, ConfigError> {
        let (access, refresh) = match environment {
            Environment::Production | Environment::Staging => (15 * 60, 30 * 24 * 3600),
            Environment::Development => (60 * 60, 7 * 24 * 3600),
        };
        let access_ttl = parse_number(env, "CLOUD_AGENT_ACCESS_TTL_SECS", access, 1..=24 * 3600)?;
        let refresh_ttl = parse_number(env, "CLOUD_AGENT_REFRESH_TTL_SECS", refresh, 1..=365 * 24 * 3600)?;
        if refresh_ttl <= access_ttl {
            return Err(ConfigError::Invalid {
                var: "CLOUD_AGENT_REFRESH_TTL_SECS",
                problem: format!("must be longer than the access token lifetime ({access_ttl} s)"),
            });
        }
        Ok(Self {
            access_ttl: Duration::from_secs(access_ttl),
            refresh_ttl: Duration::from_secs(refresh_ttl),
            refresh_grace: Duration::from_secs(parse_number(env, "CLOUD_AGENT_REFRESH_GRACE_SECS", 10, 0..=300)?),
            leeway: Duration::from_secs(parse_number(env, "CLOUD_AGENT_TOKEN_LEEWAY_SECS", 30, 0..=60)?),
            issuer: env("CLOUD_AGENT_ISSUER").unwrap_or_else(|| "cloud-agent".to_owned()),
            audience: env("CLOUD_AGENT_AUDIENCE").unwrap_or_else(|| "cloud-agent-api".to_owned()),
        })
    }
}

/// Default data directory of the embedded store.
pub const DEFAULT_DATA_DIR: &str = ".cloudagent";
/// Default DynamoDB table name (template.yaml passes the real one in `TABLE_NAME`).
pub const DEFAULT_TABLE: &str = "cloud-agent";
const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
const DEFAULT_TIMEOUT_MS: u64 = 10_000;

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Reads configuration through `env`, so tests can supply their own variables.
    pub fn from_lookup(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let platform = Platform::detect(env);
        let environment = detect_environment(env)?;
        let store = match env("CLOUD_AGENT_STORE").as_deref() {
            Some("embedded") => StoreSettings::Embedded { data_dir: data_dir(env) },
            Some("dynamodb") => StoreSettings::DynamoDb(dynamo(env)),
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: "CLOUD_AGENT_STORE",
                    problem: format!("unknown store {other:?} (use embedded or dynamodb)"),
                });
            }
            // Functions default to the shared table; only a local process may default to a private file.
            None if platform == Platform::Local => StoreSettings::Embedded { data_dir: data_dir(env) },
            None => StoreSettings::DynamoDb(dynamo(env)),
        };
        if environment == Environment::Production && matches!(store, StoreSettings::Embedded { .. }) {
            return Err(ConfigError::Invalid {
                var: "CLOUD_AGENT_STORE",
                problem: "production needs the shared DynamoDB table; the embedded store is per instance".into(),
            });
        }
        let body_limit = parse_number(env, "CLOUD_AGENT_BODY_LIMIT", DEFAULT_BODY_LIMIT as u64, 1..=6 * 1024 * 1024)?;
        let timeout_ms = parse_number(env, "CLOUD_AGENT_REQUEST_TIMEOUT_MS", DEFAULT_TIMEOUT_MS, 100..=900_000)?;
        let release_id = env("CLOUD_AGENT_RELEASE")
            .or_else(|| env("VERCEL_GIT_COMMIT_SHA").map(|s| s.chars().take(12).collect()))
            .or_else(|| env("AWS_LAMBDA_FUNCTION_VERSION").filter(|v| v != "$LATEST"))
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned());
        let keep_dir = match &store {
            StoreSettings::Embedded { data_dir } => Some(data_dir.as_path()),
            StoreSettings::DynamoDb(_) => None,
        };
        let secrets = Secrets::from_lookup(env, environment, keep_dir)?;
        let tokens = TokenSettings::from_lookup(env, environment)?;
        let context_ttl = Duration::from_secs(parse_number(env, "CLOUD_AGENT_CONTEXT_TTL_SECS", 300, 0..=86_400)?);
        let context_stale_max =
            Duration::from_secs(parse_number(env, "CLOUD_AGENT_CONTEXT_STALE_MAX_SECS", 3600, 0..=7 * 86_400)?);
        let defaults = crate::breaker::BreakerConfig::default();
        let breaker = crate::breaker::BreakerConfig {
            window: crate::breaker::Window::Time(Duration::from_secs(parse_number(
                env,
                "CLOUD_AGENT_BREAKER_WINDOW_SECS",
                30,
                1..=3600,
            )?)),
            minimum_calls: usize::try_from(parse_number(env, "CLOUD_AGENT_BREAKER_MIN_CALLS", 5, 1..=10_000)?)
                .unwrap_or(5),
            failure_rate: parse_number(env, "CLOUD_AGENT_BREAKER_FAILURE_RATE_PCT", 50, 1..=100)? as f64 / 100.0,
            open_duration: Duration::from_secs(parse_number(env, "CLOUD_AGENT_BREAKER_OPEN_SECS", 10, 1..=3600)?),
            ..defaults
        };
        let health_cache = Duration::from_millis(parse_number(env, "CLOUD_AGENT_HEALTH_CACHE_MS", 2000, 0..=60_000)?);
        // Memory alert at 80 % of the Lambda memory size when known, else 200 MiB.
        let memory_mb =
            env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").and_then(|m| m.parse::<u64>().ok()).map_or(200, |m| m * 8 / 10);
        let alerts = crate::alerts::AlertConfig {
            error_rate: parse_number(env, "CLOUD_AGENT_ALERT_ERROR_RATE_PCT", 5, 1..=100)? as f64 / 100.0,
            p95: Duration::from_millis(parse_number(env, "CLOUD_AGENT_ALERT_P95_MS", 1000, 1..=60_000)?),
            memory_bytes: parse_number(env, "CLOUD_AGENT_ALERT_MEMORY_MB", memory_mb, 1..=100_000)? << 20,
            dead_letters: parse_number(env, "CLOUD_AGENT_ALERT_DEAD_LETTERS", 1, 1..=1_000_000)?,
            cooldown: Duration::from_secs(parse_number(env, "CLOUD_AGENT_ALERT_COOLDOWN_SECS", 300, 1..=86_400)?),
            ..crate::alerts::AlertConfig::default()
        };
        let alert_delivery = alerting::DeliverySettings::from_env(env)?;
        let dead_letter_queue = env("CLOUD_AGENT_TASK_DLQ_URL")
            .map(|url| alerting::DeadLetterQueue { url, endpoint: env("CLOUD_AGENT_SQS_ENDPOINT") });
        let emf_default = platform == Platform::Lambda;
        let emf = match env("CLOUD_AGENT_EMF").as_deref() {
            None => emf_default,
            Some("1" | "true" | "on") => true,
            Some("0" | "false" | "off") => false,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: "CLOUD_AGENT_EMF",
                    problem: format!("{other:?}: use on or off"),
                });
            }
        };
        let emf_function = emf.then(|| env("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|| "local".to_owned()));
        let rate_limits = limits::RateLimits::from_lookup(env)?;
        let key_rotation_grace =
            Duration::from_secs(parse_number(env, "CLOUD_AGENT_KEY_GRACE_SECS", 86_400, 0..=30 * 86_400)?);
        let network = network::NetworkRules::from_lookup(env)?;
        let behind_cloudfront = match env("CLOUD_AGENT_BEHIND_CLOUDFRONT").as_deref() {
            None | Some("false" | "0" | "off") => false,
            Some("true" | "1" | "on") => true,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: "CLOUD_AGENT_BEHIND_CLOUDFRONT",
                    problem: format!("{other:?}: use true only when CloudFront is in front of the API, else false"),
                });
            }
        };
        let vantage = network::Vantage { platform, behind_cloudfront };
        network.check_trust(vantage)?;
        let oidc = oidc_settings(env)?;
        let cors_origins = network::cors_origins(env)?;
        let perimeter_budget =
            Duration::from_millis(parse_number(env, "CLOUD_AGENT_PERIMETER_BUDGET_MS", 300, 10..=10_000)?);
        let tasks = tasks::TaskSettings::from_lookup(env, environment)?;
        let analytics = analytics::AnalyticsSettings::from_lookup(env)?;
        let audit = match env("CLOUD_AGENT_AUDIT").as_deref() {
            None | Some("standard") => AuditPolicy::Standard,
            Some("all") => AuditPolicy::All,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    var: "CLOUD_AGENT_AUDIT",
                    problem: format!("{other:?}: use standard (agents' reads go to the log) or all"),
                });
            }
        };
        Ok(Self {
            vantage,
            audit,
            tasks,
            analytics,
            perimeter_budget,
            cors_origins,
            oidc,
            network,
            rate_limits,
            key_rotation_grace,
            emf_function,
            health_cache,
            alerts,
            alert_delivery,
            dead_letter_queue,
            breaker,
            context_ttl,
            context_stale_max,
            secrets,
            tokens,
            environment,
            platform,
            store,
            body_limit: usize::try_from(body_limit).unwrap_or(DEFAULT_BODY_LIMIT),
            request_timeout: Duration::from_millis(timeout_ms),
            release_id,
        })
    }
}

/// `CLOUD_AGENT_OIDC_ISSUER` (HTTPS) and `CLOUD_AGENT_OIDC_AUDIENCE` turn identity-provider sign-in on.
fn oidc_settings(env: Lookup<'_>) -> Result<Option<OidcSettings>, ConfigError> {
    let Some(issuer) = env("CLOUD_AGENT_OIDC_ISSUER") else { return Ok(None) };
    let local = ["http://127.0.0.1", "http://localhost", "http://[::1]"].iter().any(|p| issuer.starts_with(p));
    if !issuer.starts_with("https://") && !local {
        return Err(ConfigError::Invalid {
            var: "CLOUD_AGENT_OIDC_ISSUER",
            problem: format!("{issuer:?}: the issuer must be an https:// URL"),
        });
    }
    let audience = env("CLOUD_AGENT_OIDC_AUDIENCE").ok_or_else(|| ConfigError::Invalid {
        var: "CLOUD_AGENT_OIDC_AUDIENCE",
        problem: "required with CLOUD_AGENT_OIDC_ISSUER (the aud this API accepts)".into(),
    })?;
    Ok(Some(OidcSettings {
        issuer,
        audience,
        role_claim: env("CLOUD_AGENT_OIDC_ROLE_CLAIM").unwrap_or_else(|| "role".to_owned()),
        tenant_claim: env("CLOUD_AGENT_OIDC_TENANT_CLAIM"),
        leeway_secs: 30,
        refetch_after: Duration::from_secs(parse_number(env, "CLOUD_AGENT_OIDC_REFETCH_SECS", 30, 0..=3600)?),
        keys_ttl: Duration::from_secs(parse_number(env, "CLOUD_AGENT_OIDC_KEYS_TTL_SECS", 3600, 0..=86_400)?),
    }))
}

/// `APP_ENV` wins; then Vercel's `VERCEL_ENV`; then a Lambda stage variable; else development.
fn detect_environment(env: &dyn Fn(&str) -> Option<String>) -> Result<Environment, ConfigError> {
    if let Some(explicit) = env("APP_ENV") {
        return Environment::parse("APP_ENV", &explicit);
    }
    if let Some(vercel) = env("VERCEL_ENV") {
        return Environment::parse("VERCEL_ENV", &vercel);
    }
    if let (Some(_), Some(stage)) = (env("AWS_LAMBDA_FUNCTION_NAME"), env("STAGE")) {
        return Environment::parse("STAGE", &stage);
    }
    Ok(Environment::Development)
}

fn data_dir(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    env("CLOUD_AGENT_DATA_DIR").map_or_else(|| PathBuf::from(DEFAULT_DATA_DIR), PathBuf::from)
}

fn dynamo(env: &dyn Fn(&str) -> Option<String>) -> DynamoConfig {
    DynamoConfig {
        table: env("TABLE_NAME").unwrap_or_else(|| DEFAULT_TABLE.to_owned()),
        endpoint: env("DYNAMODB_ENDPOINT"),
        region: env("AWS_REGION"),
    }
}

fn parse_number(
    env: &dyn Fn(&str) -> Option<String>,
    var: &'static str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let Some(text) = env(var) else {
        return Ok(default);
    };
    let value: u64 = text
        .trim()
        .parse()
        .map_err(|_| ConfigError::Invalid { var, problem: format!("{text:?} is not a whole number") })?;
    if !range.contains(&value) {
        return Err(ConfigError::Invalid {
            var,
            problem: format!("{value} is outside {}..={}", range.start(), range.end()),
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().to_string_lossy().into_owned();
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Config::from_lookup(&move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).or_else(|| match name {
                "CLOUD_AGENT_DATA_DIR" => Some(dir.clone()),
                "DEV_AGENT_SECRET" => Some("agent-secret-0123456789abcdef0123456789".into()),
                "DEV_JWT_SECRET" => Some("jwt-secret-0123456789abcdef0123456789ab".into()),
                _ => None,
            })
        })
    }

    #[test]
    fn country_rules_refuse_to_start_without_a_country_the_platform_vouches_for() {
        let lambda = ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001");
        for (vars, refused) in [
            (vec![("CLOUD_AGENT_COUNTRY_DENY", "KP")], true),
            (vec![("CLOUD_AGENT_COUNTRY_ALLOW", "DE"), lambda], true),
            (vec![("CLOUD_AGENT_COUNTRY_DENY", "KP"), lambda, ("CLOUD_AGENT_BEHIND_CLOUDFRONT", "true")], false),
            (vec![("CLOUD_AGENT_COUNTRY_DENY", "KP"), ("VERCEL_IPC_PATH", "/tmp/ipc")], false),
            (vec![("CLOUD_AGENT_IP_DENY", "192.0.2.0/24"), lambda], false),
        ] {
            match config(&vars) {
                Err(ConfigError::Invalid { var, problem }) if refused => {
                    assert!(var.starts_with("CLOUD_AGENT_COUNTRY_"), "{var}");
                    assert!(problem.contains("CLOUD_AGENT_BEHIND_CLOUDFRONT"), "the fix is named: {problem}");
                }
                Ok(_) if !refused => {}
                other => panic!("{vars:?}: expected refused={refused}, got {:?}", other.err()),
            }
        }
        let bad = config(&[("CLOUD_AGENT_BEHIND_CLOUDFRONT", "maybe")]).err().unwrap().to_string();
        assert!(bad.contains("CLOUD_AGENT_BEHIND_CLOUDFRONT"), "{bad}");
    }

    #[test]
    fn the_audit_policy_is_standard_unless_set() {
        assert_eq!(config(&[]).unwrap().audit, AuditPolicy::Standard);
        assert_eq!(config(&[("CLOUD_AGENT_AUDIT", "all")]).unwrap().audit, AuditPolicy::All);
        assert!(config(&[("CLOUD_AGENT_AUDIT", "most")]).is_err());
    }
}
