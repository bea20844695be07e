//! Several endpoints of one deployment (a Lambda and a Vercel deployment of one table, or two regions): which one
//! a call goes to, and what the client knows of each.
//!
//! Each endpoint has its own circuit breaker, a count of calls in flight, a peak-EWMA of its latency, and a health
//! state from the outcomes of calls: `Unknown` until the first, `Healthy`, `Degraded` after a failure, `Unhealthy`
//! after [`FAILOVER_AFTER`] failures in a row (it gets no calls while another endpoint can take them), and
//! `Healthy` again after [`RECOVER_AFTER`] successes in a row; probes of `/health/ready` (when the client runs
//! them, [`super::ClientBuilder::health_checks`]) count like calls. A retry goes to another endpoint than the one
//! that just failed, when there is one.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use cloud_agent_breaker::{Breaker, BreakerConfig, State};
use rand::Rng as _;
use serde::Serialize;
use tokio::time::Instant;

/// Failures in a row that make an endpoint unhealthy.
pub const FAILOVER_AFTER: u32 = 3;
/// Successes in a row that make it healthy again.
pub const RECOVER_AFTER: u32 = 2;
/// How fast the latency average forgets (the decay time of peak-EWMA, as in tower's `balance`).
const DECAY: Duration = Duration::from_secs(10);

/// How calls are spread over the endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Balance {
    /// In turn.
    #[default]
    RoundRobin,
    /// To the endpoint with the fewest calls in flight.
    LeastOutstanding,
    /// In proportion to each endpoint's weight (smooth weighted round-robin: no bursts).
    Weighted,
    /// Power of two choices over latency × load (peak-EWMA, as tower's `balance::p2c`): two endpoints drawn at
    /// random, the one with the lower expected wait taken.
    PeakEwma,
    /// The endpoints of this region while one of them can take calls, in turn; the others only then.
    Region(String),
}

/// What the client knows of an endpoint's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Health {
    Unknown,
    Healthy,
    Degraded,
    Unhealthy,
}

/// One endpoint as configured.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    pub url: String,
    /// Its share under [`Balance::Weighted`] (at least 1).
    pub weight: u32,
    /// Its region, for [`Balance::Region`].
    pub region: Option<String>,
}

impl EndpointConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), weight: 1, region: None }
    }

    #[must_use]
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight.max(1);
        self
    }

    #[must_use]
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }
}

#[derive(Debug)]
struct HealthState {
    health: Health,
    failures: u32,
    successes: u32,
}

#[derive(Debug)]
struct Ewma {
    /// Milliseconds; 0 before the first call.
    value: f64,
    at: Instant,
}

/// An endpoint and what the client knows of it.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) base: reqwest::Url,
    weight: u32,
    region: Option<String>,
    pub(crate) breaker: Breaker,
    outstanding: AtomicUsize,
    ewma: Mutex<Ewma>,
    health: Mutex<HealthState>,
    /// Smooth weighted round-robin's running weight.
    current: Mutex<i64>,
    calls: AtomicU64,
}

/// An endpoint as a status screen shows it.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointSnapshot {
    pub url: String,
    pub health: Health,
    pub breaker: State,
    pub outstanding: usize,
    /// Peak-EWMA latency, milliseconds.
    pub latency_ms: f64,
    pub weight: u32,
    pub region: Option<String>,
    /// Calls sent to it by this client.
    pub calls: u64,
}

/// Counts a call in flight until dropped.
pub(crate) struct InFlight<'a>(&'a Endpoint);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Endpoint {
    pub(crate) fn new(base: reqwest::Url, config: &EndpointConfig, breaker: BreakerConfig) -> Self {
        Self {
            breaker: Breaker::new(base.to_string(), breaker),
            base,
            weight: config.weight.max(1),
            region: config.region.clone(),
            outstanding: AtomicUsize::new(0),
            ewma: Mutex::new(Ewma { value: 0.0, at: Instant::now() }),
            health: Mutex::new(HealthState { health: Health::Unknown, failures: 0, successes: 0 }),
            current: Mutex::new(0),
            calls: AtomicU64::new(0),
        }
    }

    pub(crate) fn start(&self) -> InFlight<'_> {
        self.outstanding.fetch_add(1, Ordering::AcqRel);
        self.calls.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Records a call's outcome: its latency (peak-EWMA: a slower call counts at once, a faster one decays in)
    /// and whether the endpoint failed it.
    pub(crate) fn record(&self, took: Duration, failed: bool) {
        {
            let mut ewma = lock(&self.ewma);
            let sample = took.as_secs_f64() * 1000.0;
            let elapsed = ewma.at.elapsed().as_secs_f64();
            ewma.at = Instant::now();
            ewma.value = if sample > ewma.value {
                sample
            } else {
                let keep = (-elapsed / DECAY.as_secs_f64()).exp();
                ewma.value * keep + sample * (1.0 - keep)
            };
        }
        self.observe(failed);
    }

    /// Moves the health state on one outcome: a call's, or a `/health/ready` probe's.
    pub(crate) fn observe(&self, failed: bool) {
        let mut state = lock(&self.health);
        if failed {
            state.successes = 0;
            state.failures += 1;
            state.health = if state.failures >= FAILOVER_AFTER { Health::Unhealthy } else { Health::Degraded };
        } else {
            state.failures = 0;
            state.successes += 1;
            if state.health == Health::Unknown || state.successes >= RECOVER_AFTER {
                state.health = Health::Healthy;
            }
        }
    }

    pub(crate) fn health(&self) -> Health {
        lock(&self.health).health
    }

    /// The expected wait of a call sent now: latency × (calls in flight + 1).
    fn cost(&self) -> f64 {
        let latency = lock(&self.ewma).value.max(0.001);
        latency * (self.outstanding.load(Ordering::Acquire) + 1) as f64
    }

    pub(crate) fn snapshot(&self) -> EndpointSnapshot {
        EndpointSnapshot {
            url: self.base.to_string(),
            health: self.health(),
            breaker: self.breaker.state(),
            outstanding: self.outstanding.load(Ordering::Acquire),
            latency_ms: lock(&self.ewma).value,
            weight: self.weight,
            region: self.region.clone(),
            calls: self.calls.load(Ordering::Relaxed),
        }
    }
}

/// Chooses endpoints.
#[derive(Debug)]
pub(crate) struct Balancer {
    pub(crate) endpoints: Vec<Endpoint>,
    balance: Balance,
    next: AtomicUsize,
}

impl Balancer {
    pub(crate) fn new(endpoints: Vec<Endpoint>, balance: Balance) -> Self {
        Self { endpoints, balance, next: AtomicUsize::new(0) }
    }

    /// The endpoint for the next attempt (an index), avoiding `avoid` (the one that just failed) and unhealthy
    /// ones while another can take the call. `None` only when there are no endpoints.
    pub(crate) fn pick(&self, avoid: Option<usize>) -> Option<usize> {
        let all: Vec<usize> = (0..self.endpoints.len()).collect();
        let usable = |i: &usize| self.endpoints[*i].health() != Health::Unhealthy && Some(*i) != avoid;
        let mut candidates: Vec<usize> = all.iter().copied().filter(usable).collect();
        if candidates.is_empty() {
            // Nothing healthy besides the one that failed: any but it, else any.
            candidates = all.iter().copied().filter(|i| Some(*i) != avoid).collect();
        }
        if candidates.is_empty() {
            candidates = all;
        }
        if let Balance::Region(region) = &self.balance {
            let local: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|i| self.endpoints[*i].region.as_deref() == Some(region.as_str()))
                .collect();
            if !local.is_empty() {
                candidates = local;
            }
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        match self.balance {
            Balance::RoundRobin | Balance::Region(_) => candidates.get(turn % candidates.len().max(1)).copied(),
            Balance::LeastOutstanding => {
                // Ties go in turn, so an idle set of endpoints is still shared.
                let offset = turn % candidates.len().max(1);
                candidates.rotate_left(offset);
                candidates.into_iter().min_by_key(|i| self.endpoints[*i].outstanding.load(Ordering::Acquire))
            }
            Balance::Weighted => {
                let total: i64 = candidates.iter().map(|i| i64::from(self.endpoints[*i].weight)).sum();
                let mut best: Option<(usize, i64)> = None;
                for &i in &candidates {
                    let mut current = lock(&self.endpoints[i].current);
                    *current += i64::from(self.endpoints[i].weight);
                    if best.is_none_or(|(_, b)| *current > b) {
                        best = Some((i, *current));
                    }
                }
                let (chosen, _) = best?;
                *lock(&self.endpoints[chosen].current) -= total;
                Some(chosen)
            }
            Balance::PeakEwma => {
                if candidates.len() == 1 {
                    return candidates.first().copied();
                }
                let mut rng = rand::rng();
                let a = candidates[rng.random_range(0..candidates.len())];
                let mut b = candidates[rng.random_range(0..candidates.len() - 1)];
                if b == a {
                    b = candidates[candidates.len() - 1];
                }
                let (ca, cb) = (self.endpoints[a].cost(), self.endpoints[b].cost());
                Some(if ca <= cb { a } else { b })
            }
        }
    }
}
