//! Analytics settings: the price table (with its date), anomaly rules, and how often an instance writes its
//! request counts.

use std::time::Duration;

use super::{ConfigError, Lookup, parse_number};
use crate::analytics::anomaly::AnomalyRules;
use crate::analytics::cost::PriceTable;
use crate::analytics::requests::FlushPolicy;

#[derive(Debug, Clone)]
pub struct AnalyticsSettings {
    pub prices: PriceTable,
    pub anomalies: AnomalyRules,
    pub flush: FlushPolicy,
}

fn price(env: Lookup<'_>, var: &'static str, default: f64) -> Result<f64, ConfigError> {
    match env(var) {
        None => Ok(default),
        Some(text) => text.trim().parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).ok_or_else(|| {
            ConfigError::Invalid { var, problem: format!("{text:?} is not a price in USD (e.g. 0.20)") }
        }),
    }
}

fn threshold(env: Lookup<'_>, var: &'static str, default: f64) -> Result<f64, ConfigError> {
    match env(var) {
        None => Ok(default),
        Some(text) => {
            text.trim().parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0).ok_or_else(|| ConfigError::Invalid {
                var,
                problem: format!("{text:?} is not a positive |z| (e.g. 2.5)"),
            })
        }
    }
}

impl AnalyticsSettings {
    pub(super) fn from_lookup(env: Lookup<'_>) -> Result<Self, ConfigError> {
        let d = PriceTable::default();
        let as_of = match env("CLOUD_AGENT_PRICES_AS_OF") {
            None => d.as_of.clone(),
            Some(date) => {
                time::Date::parse(date.trim(), &time::macros::format_description!("[year]-[month]-[day]")).map_err(
                    |_| ConfigError::Invalid {
                        var: "CLOUD_AGENT_PRICES_AS_OF",
                        problem: format!("{date:?}: the date the prices were read, YYYY-MM-DD"),
                    },
                )?;
                date.trim().to_owned()
            }
        };
        let memory = |var, default: u32| {
            parse_number(env, var, u64::from(default), 128..=10_240).map(|v| u32::try_from(v).unwrap_or(default))
        };
        let prices = PriceTable {
            as_of,
            lambda_gb_second: price(env, "CLOUD_AGENT_PRICE_LAMBDA_GB_SECOND", d.lambda_gb_second)?,
            lambda_per_million: price(env, "CLOUD_AGENT_PRICE_LAMBDA_PER_MILLION", d.lambda_per_million)?,
            lambda_memory_mb: memory("CLOUD_AGENT_PRICE_LAMBDA_MEMORY_MB", d.lambda_memory_mb)?,
            vercel_cpu_hour: price(env, "CLOUD_AGENT_PRICE_VERCEL_CPU_HOUR", d.vercel_cpu_hour)?,
            vercel_gb_hour: price(env, "CLOUD_AGENT_PRICE_VERCEL_GB_HOUR", d.vercel_gb_hour)?,
            vercel_per_million: price(env, "CLOUD_AGENT_PRICE_VERCEL_PER_MILLION", d.vercel_per_million)?,
            vercel_memory_mb: memory("CLOUD_AGENT_PRICE_VERCEL_MEMORY_MB", d.vercel_memory_mb)?,
        };
        let r = AnomalyRules::default();
        let anomalies = AnomalyRules {
            window: usize::try_from(parse_number(env, "CLOUD_AGENT_ANOMALY_WINDOW", r.window as u64, 3..=168)?)
                .unwrap_or(r.window),
            min_samples: usize::try_from(parse_number(
                env,
                "CLOUD_AGENT_ANOMALY_MIN_SAMPLES",
                r.min_samples as u64,
                2..=168,
            )?)
            .unwrap_or(r.min_samples),
            warning: threshold(env, "CLOUD_AGENT_ANOMALY_WARNING_Z", r.warning)?,
            critical: threshold(env, "CLOUD_AGENT_ANOMALY_CRITICAL_Z", r.critical)?,
        };
        if anomalies.critical < anomalies.warning {
            return Err(ConfigError::Invalid {
                var: "CLOUD_AGENT_ANOMALY_CRITICAL_Z",
                problem: "must not be below CLOUD_AGENT_ANOMALY_WARNING_Z".into(),
            });
        }
        if anomalies.min_samples > anomalies.window {
            return Err(ConfigError::Invalid {
                var: "CLOUD_AGENT_ANOMALY_MIN_SAMPLES",
                problem: "must not be above CLOUD_AGENT_ANOMALY_WINDOW".into(),
            });
        }
        let flush = FlushPolicy {
            every: Duration::from_secs(parse_number(
                env,
                "CLOUD_AGENT_REQUEST_COUNTS_FLUSH_SECS",
                FlushPolicy::default().every.as_secs(),
                0..=3600,
            )?),
        };
        Ok(Self { prices, anomalies, flush })
    }
}
