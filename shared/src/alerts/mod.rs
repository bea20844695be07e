//! Alert conditions with a cooldown: while a condition holds it is raised once per cooldown on each instance, as
//! one structured log event (`alert` field), so a sustained problem does not flood the logs; raised alerts are
//! then sent once per cooldown across all instances ([`delivery`]).

pub mod delivery;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

// Alerts as the health report shows them are wire types.
pub use cloud_agent_wire::health::{Alert as Active, AlertKind};

/// Thresholds.
#[derive(Debug, Clone, Copy)]
pub struct AlertConfig {
    /// Share of 5xx answers (once at least `min_requests` were served).
    pub error_rate: f64,
    pub min_requests: u64,
    pub p95: Duration,
    pub memory_bytes: u64,
    /// Messages in the dead-letter queue at which to alert.
    pub dead_letters: u64,
    pub cooldown: Duration,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            error_rate: 0.05,
            min_requests: 20,
            p95: Duration::from_secs(1),
            memory_bytes: 200 * 1024 * 1024,
            dead_letters: 1,
            cooldown: Duration::from_mins(5),
        }
    }
}

/// The readings alerts are judged on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Readings {
    pub requests: u64,
    pub error_rate: f64,
    pub p95: Duration,
    pub open_breakers: usize,
    pub memory_bytes: Option<u64>,
    /// Messages in the dead-letter queue, where one is configured and could be read.
    pub dead_letters: Option<u64>,
}

/// What one evaluation found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// Every condition that holds now (raised or cooling down).
    pub active: Vec<Active>,
    /// The ones raised by this evaluation (not raised on this instance within the cooldown): to be sent.
    pub raised: Vec<Active>,
}

/// Per-instance alert state.
#[derive(Debug)]
pub struct Alerts {
    config: AlertConfig,
    last_raised: Mutex<BTreeMap<AlertKind, Instant>>,
}

impl Alerts {
    pub fn new(config: AlertConfig) -> Self {
        Self { config, last_raised: Mutex::new(BTreeMap::new()) }
    }

    /// Judges `readings`; logs each holding condition unless it was raised within the cooldown.
    pub fn evaluate(&self, readings: &Readings) -> Evaluation {
        let c = &self.config;
        let mut active = Vec::new();
        if readings.requests >= c.min_requests && readings.error_rate > c.error_rate {
            active.push(Active {
                kind: AlertKind::ErrorRate,
                detail: format!("{:.1} % of requests failed", readings.error_rate * 100.0),
            });
        }
        if readings.requests >= c.min_requests && readings.p95 > c.p95 {
            active.push(Active {
                kind: AlertKind::Latency,
                detail: format!("p95 latency {:?} over {:?}", readings.p95, c.p95),
            });
        }
        if readings.open_breakers > 0 {
            active.push(Active {
                kind: AlertKind::BreakerOpen,
                detail: format!("{} circuit breaker(s) open", readings.open_breakers),
            });
        }
        if readings.memory_bytes.is_some_and(|m| m > c.memory_bytes) {
            active.push(Active {
                kind: AlertKind::Memory,
                detail: format!("resident memory {} MiB", readings.memory_bytes.unwrap_or(0) >> 20),
            });
        }
        if let Some(depth) = readings.dead_letters.filter(|d| *d >= c.dead_letters) {
            active.push(Active {
                kind: AlertKind::DeadLetters,
                detail: format!("{depth} message(s) in the dead-letter queue: work that failed every attempt"),
            });
        }
        let now = Instant::now();
        let mut last = self.last_raised.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut raised = Vec::new();
        for alert in &active {
            let due = last.get(&alert.kind).is_none_or(|at| now.duration_since(*at) >= c.cooldown);
            if due {
                last.insert(alert.kind, now);
                tracing::error!(alert = ?alert.kind, detail = %alert.detail, "ALERT");
                raised.push(alert.clone());
            }
        }
        Evaluation { active, raised }
    }

    /// When each kind was last raised (for tests and diagnostics).
    pub fn raised_at(&self, kind: AlertKind) -> Option<Instant> {
        self.last_raised.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&kind).copied()
    }
}

/// Resident memory of this process, from /proc (Linux; `None` elsewhere).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_sustained_condition_is_raised_once_per_cooldown() {
        let alerts = Alerts::new(AlertConfig { cooldown: Duration::from_mins(10), ..AlertConfig::default() });
        let bad = Readings { requests: 100, error_rate: 0.5, ..Readings::default() };
        let mut raised = 0;
        // Every 15 s for 25 minutes the condition holds.
        for _ in 0..100 {
            let before = alerts.raised_at(AlertKind::ErrorRate);
            assert_eq!(alerts.evaluate(&bad).active.len(), 1);
            if alerts.raised_at(AlertKind::ErrorRate) != before {
                raised += 1;
            }
            tokio::time::advance(Duration::from_secs(15)).await;
        }
        assert_eq!(raised, 3, "at 0, 10 and 20 minutes");
    }

    #[tokio::test(start_paused = true)]
    async fn thresholds_and_minimum_traffic() {
        let alerts = Alerts::new(AlertConfig::default());
        let quiet = Readings { requests: 3, error_rate: 1.0, ..Readings::default() };
        assert!(alerts.evaluate(&quiet).active.is_empty(), "3 requests are too few to judge a rate");
        let kinds: Vec<AlertKind> = alerts
            .evaluate(&Readings {
                requests: 50,
                error_rate: 0.01,
                p95: Duration::from_secs(3),
                open_breakers: 1,
                memory_bytes: Some(500 << 20),
                dead_letters: Some(2),
            })
            .active
            .into_iter()
            .map(|a| a.kind)
            .collect();
        assert_eq!(kinds, vec![AlertKind::Latency, AlertKind::BreakerOpen, AlertKind::Memory, AlertKind::DeadLetters]);
    }

    #[test]
    fn resident_memory_is_read_from_proc() {
        assert!(resident_bytes().is_some_and(|b| b > 1 << 20));
    }
}
