//! Circuit breakers: CLOSED → OPEN → HALF_OPEN, after resilience4j and Polly.
//!
//! - Failure rate over a sliding window, count-based (last N calls) or time-based (calls in the last T), counted
//!   only once `minimum_calls` have been seen; slow calls (over `slow_call_duration`) count towards their own
//!   rate. A simple mode — open after N consecutive failures — is also available.
//! - OPEN rejects at once with `retry_after`; after `open_duration` (optionally growing on each re-open, capped)
//!   the breaker goes HALF_OPEN and lets `half_open_calls` trial calls through; their success closes it, a
//!   failure re-opens it, extra calls are rejected.
//! - Which errors count is a predicate: a caller's 4xx is not the dependency's failure; throttling is.
//! - Every admitted call reports exactly once, through a [`Permit`] that reports on drop: a call whose future is
//!   dropped before it finished (the request budget ran out, the client went away, a health probe's own bound)
//!   counts as a **failure**. A caller gives up only when the dependency took longer than it could wait, which is
//!   what a hang looks like from here; counting it as a failure is what lets a breaker open during a hang, and a
//!   cancelled HALF_OPEN trial re-opens the breaker instead of holding its trial permit forever.
//!
//! Defaults suit short-lived serverless instances: a 30 s time window with a minimum of 5 calls (an instance
//! may live minutes and see few calls, so a count window of 100 would never fill), 50 % failure rate, 10 s open.
//! State is per instance.
//!
//! What a caller does while its breaker is open is decided where the call is made, since only the caller knows
//! what stands in: queued work goes to the table queue instead of SQS, a webhook delivery is put off without
//! spending an attempt, the identity provider's cached keys keep verifying tokens, a model's cached answer
//! stands in for a new one.

use std::borrow::Borrow;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// The sliding window the failure rate is computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last N calls.
    Count(usize),
    /// The calls of the last duration.
    Time(Duration),
}

/// Tuning of one breaker.
#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    pub window: Window,
    /// Failure rate (0–1) at or above which the breaker opens.
    pub failure_rate: f64,
    /// Calls the window must hold before the rates count.
    pub minimum_calls: usize,
    /// Calls slower than this are slow.
    pub slow_call_duration: Duration,
    /// Slow-call rate (0–1) at or above which the breaker opens.
    pub slow_call_rate: f64,
    /// Simple mode: open after this many consecutive failures, whatever the rate.
    pub consecutive_failures: Option<usize>,
    pub open_duration: Duration,
    /// Each re-open without a close in between multiplies the open duration by this (1 = constant)...
    pub open_backoff: f64,
    /// ...up to this.
    pub max_open_duration: Duration,
    /// Trial calls allowed in HALF_OPEN.
    pub half_open_calls: usize,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: Window::Time(Duration::from_secs(30)),
            failure_rate: 0.5,
            minimum_calls: 5,
            slow_call_duration: Duration::from_secs(2),
            slow_call_rate: 1.0,
            consecutive_failures: None,
            open_duration: Duration::from_secs(10),
            open_backoff: 2.0,
            max_open_duration: Duration::from_mins(1),
            half_open_calls: 2,
        }
    }
}

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    Closed,
    Open,
    HalfOpen,
    /// Held open by an operator until reset.
    ForcedOpen,
}

/// A call that did not run, or ran and failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BreakerError<E> {
    #[error("circuit open; retry after {retry_after:?}")]
    Open { retry_after: Duration },
    #[error(transparent)]
    Inner(E),
}

/// Calls aggregated over a slot: one call (count window) or one second (time window). Running totals keep
/// each call O(1) and memory bounded by N calls or by the window's seconds, however busy the instance is.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    start: Instant,
    calls: usize,
    failures: usize,
    slows: usize,
}

#[derive(Debug, Default)]
struct Tally {
    buckets: VecDeque<Bucket>,
    calls: usize,
    failures: usize,
    slows: usize,
}

impl Tally {
    fn clear(&mut self) {
        *self = Self::default();
    }

    fn pop_front(&mut self) {
        if let Some(b) = self.buckets.pop_front() {
            self.calls -= b.calls;
            self.failures -= b.failures;
            self.slows -= b.slows;
        }
    }

    fn record(&mut self, window: Window, now: Instant, failed: bool, slow: bool) {
        let (f, s) = (usize::from(failed), usize::from(slow));
        match window {
            Window::Count(n) => {
                self.buckets.push_back(Bucket { start: now, calls: 1, failures: f, slows: s });
                while self.buckets.len() > n.max(1) {
                    self.pop_front();
                }
            }
            Window::Time(span) => {
                match self.buckets.back_mut() {
                    Some(last) if now.duration_since(last.start) < Duration::from_secs(1) => {
                        last.calls += 1;
                        last.failures += f;
                        last.slows += s;
                    }
                    _ => self.buckets.push_back(Bucket { start: now, calls: 1, failures: f, slows: s }),
                }
                self.calls += 1;
                self.failures += f;
                self.slows += s;
                self.expire(span, now);
                return;
            }
        }
        self.calls += 1;
        self.failures += f;
        self.slows += s;
    }

    fn expire(&mut self, span: Duration, now: Instant) {
        while self.buckets.front().is_some_and(|b| now.duration_since(b.start) > span) {
            self.pop_front();
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: State,
    outcomes: Tally,
    consecutive: usize,
    open_until: Instant,
    opens_in_a_row: u32,
    trial_permits: usize,
    trial_successes: usize,
    last_transition: Option<(Instant, State, State)>,
    transitions: u64,
    /// Bumped on every state change: an outcome admitted under an older state is stale and ignored (a call let
    /// through while CLOSED must not count as a HALF_OPEN trial when it finishes late).
    epoch: u64,
    /// Calls whose future was dropped before they finished (counted as failures), since start.
    cancelled: u64,
}

/// One circuit breaker. Share it with `Arc`.
#[derive(Debug)]
pub struct Breaker {
    name: String,
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

/// A point-in-time view, for health and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub name: String,
    pub state: State,
    pub calls_in_window: usize,
    pub failure_rate: f64,
    pub slow_call_rate: f64,
    /// Seconds until a HALF_OPEN trial is allowed (when open).
    pub retry_after_secs: Option<f64>,
    pub transitions: u64,
    /// Admitted calls that were cancelled before they finished (each counted as a failure), since start.
    pub cancelled_calls: u64,
    /// The latest state change: from, to, and how long ago (seconds).
    pub last_transition: Option<Transition>,
}

/// One state change.
#[derive(Debug, Clone, Serialize)]
pub struct Transition {
    pub from: State,
    pub to: State,
    pub seconds_ago: f64,
}

impl Breaker {
    pub fn new(name: impl Into<String>, config: BreakerConfig) -> Self {
        let now = Instant::now();
        Self {
            name: name.into(),
            config,
            inner: Mutex::new(Inner {
                state: State::Closed,
                outcomes: Tally::default(),
                consecutive: 0,
                open_until: now,
                opens_in_a_row: 0,
                trial_permits: 0,
                trial_successes: 0,
                last_transition: None,
                transitions: 0,
                epoch: 0,
                cancelled: 0,
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn transition(&self, inner: &mut Inner, to: State) {
        let from = inner.state;
        if from == to {
            return;
        }
        inner.state = to;
        inner.transitions += 1;
        inner.epoch += 1;
        inner.last_transition = Some((Instant::now(), from, to));
        tracing::warn!(breaker = %self.name, ?from, ?to, "circuit breaker state change");
    }

    /// How long the breaker stays open after `opens_in_a_row` re-opens: grows by `open_backoff` each time, capped.
    /// Computed in float seconds and capped *before* it becomes a `Duration`, so an outage of any length (hundreds
    /// of re-opens) cannot overflow.
    fn open_time(&self, opens_in_a_row: u32) -> Duration {
        let base = self.config.open_duration;
        let cap = self.config.max_open_duration.max(base);
        let exponent = i32::try_from(opens_in_a_row.min(1024)).unwrap_or(1024);
        let secs = base.as_secs_f64() * self.config.open_backoff.max(1.0).powi(exponent);
        if secs.is_finite() && secs < cap.as_secs_f64() { Duration::from_secs_f64(secs) } else { cap }
    }

    fn open(&self, inner: &mut Inner) {
        let duration = self.open_time(inner.opens_in_a_row);
        inner.opens_in_a_row = inner.opens_in_a_row.saturating_add(1);
        inner.open_until = Instant::now() + duration;
        inner.outcomes.clear();
        inner.consecutive = 0;
        self.transition(inner, State::Open);
    }

    /// Asks to make a call: `Ok` is the permit (report the outcome through it), `Err` gives the wait.
    pub fn try_acquire<B: Borrow<Self>>(breaker: B) -> Result<Permit<B>, Duration> {
        let epoch = breaker.borrow().admit()?;
        Ok(Permit { breaker: Some(breaker), epoch, started: Instant::now() })
    }

    /// Admits a call or says how long to wait; the epoch ties the outcome to the state that admitted it.
    fn admit(&self) -> Result<u64, Duration> {
        let mut inner = self.lock();
        let now = Instant::now();
        match inner.state {
            State::Closed => {}
            State::ForcedOpen => return Err(self.config.open_duration),
            State::Open if now < inner.open_until => return Err(inner.open_until - now),
            State::Open => {
                inner.trial_permits = self.config.half_open_calls.max(1) - 1;
                inner.trial_successes = 0;
                self.transition(&mut inner, State::HalfOpen);
            }
            State::HalfOpen if inner.trial_permits > 0 => inner.trial_permits -= 1,
            // Trials are out; the quota is spent until they report (every permit reports, even when cancelled).
            State::HalfOpen => return Err(Duration::from_secs(1)),
        }
        Ok(inner.epoch)
    }

    fn record(&self, epoch: u64, outcome: Outcome, elapsed: Duration) {
        let mut inner = self.lock();
        if outcome == Outcome::Cancelled {
            inner.cancelled += 1;
        }
        if inner.epoch != epoch {
            // Admitted under an earlier state (e.g. CLOSED, finishing after the breaker opened): not evidence
            // about the current state.
            return;
        }
        let failed = outcome != Outcome::Success;
        let now = Instant::now();
        let slow = elapsed >= self.config.slow_call_duration;
        match inner.state {
            State::HalfOpen => {
                if failed || slow {
                    self.open(&mut inner);
                } else {
                    inner.trial_successes += 1;
                    if inner.trial_successes >= self.config.half_open_calls.max(1) {
                        inner.opens_in_a_row = 0;
                        inner.outcomes.clear();
                        self.transition(&mut inner, State::Closed);
                    }
                }
            }
            State::Closed => {
                inner.outcomes.record(self.config.window, now, failed, slow);
                inner.consecutive = if failed { inner.consecutive + 1 } else { 0 };
                let (calls, failures, slows) = (inner.outcomes.calls, inner.outcomes.failures, inner.outcomes.slows);
                let by_rate = calls >= self.config.minimum_calls
                    && (failures as f64 / calls as f64 >= self.config.failure_rate
                        || slows as f64 / calls as f64 >= self.config.slow_call_rate);
                let by_streak = self.config.consecutive_failures.is_some_and(|n| inner.consecutive >= n);
                if by_rate || by_streak {
                    self.open(&mut inner);
                }
            }
            // Outcomes of calls admitted before an operator opened it, or late reports: ignored.
            State::Open | State::ForcedOpen => {}
        }
    }

    /// Runs `call` through the breaker; `counts` decides whether an error is the dependency's failure. If the
    /// returned future is dropped before `call` finishes, the call counts as a failure (see the module docs).
    pub async fn call<T, E, F, Fut>(&self, counts: impl Fn(&E) -> bool, call: F) -> Result<T, BreakerError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let permit = Self::try_acquire(self).map_err(|retry_after| BreakerError::Open { retry_after })?;
        let result = call().await;
        permit.report(result.as_ref().err().is_some_and(&counts));
        result.map_err(BreakerError::Inner)
    }

    /// Holds the breaker open until [`Breaker::reset`] (an operator isolating a dependency).
    pub fn isolate(&self) {
        let mut inner = self.lock();
        self.transition(&mut inner, State::ForcedOpen);
    }

    /// Back to CLOSED with an empty window.
    pub fn reset(&self) {
        let mut inner = self.lock();
        inner.outcomes.clear();
        inner.consecutive = 0;
        inner.opens_in_a_row = 0;
        self.transition(&mut inner, State::Closed);
    }

    pub fn state(&self) -> State {
        let inner = self.lock();
        // An OPEN breaker past its deadline reports HALF_OPEN-to-be as OPEN until a call arrives.
        inner.state
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut inner = self.lock();
        let now = Instant::now();
        if let Window::Time(span) = self.config.window {
            inner.outcomes.expire(span, now);
        }
        let (calls, failures, slows) = (inner.outcomes.calls, inner.outcomes.failures, inner.outcomes.slows);
        let rate = |n: usize| if calls == 0 { 0.0 } else { n as f64 / calls as f64 };
        Snapshot {
            name: self.name.clone(),
            state: inner.state,
            calls_in_window: calls,
            failure_rate: rate(failures),
            slow_call_rate: rate(slows),
            retry_after_secs: (inner.state == State::Open)
                .then(|| inner.open_until.saturating_duration_since(now).as_secs_f64()),
            transitions: inner.transitions,
            cancelled_calls: inner.cancelled,
            last_transition: inner.last_transition.map(|(at, from, to)| Transition {
                from,
                to,
                seconds_ago: now.duration_since(at).as_secs_f64(),
            }),
        }
    }
}

/// How an admitted call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    /// Its future was dropped before it finished.
    Cancelled,
}

/// One admitted call. Report its outcome with [`Permit::report`]; a permit dropped without a report (the
/// caller's future was cancelled) reports the call as cancelled, which counts as a failure. So every admitted
/// call reports exactly once, whatever happens to the future that holds it.
#[derive(Debug)]
pub struct Permit<B: Borrow<Breaker>> {
    /// `None` once reported.
    breaker: Option<B>,
    epoch: u64,
    started: Instant,
}

impl<B: Borrow<Breaker>> Permit<B> {
    /// Reports the call's outcome: `failed` when the error counts against the dependency.
    pub fn report(mut self, failed: bool) {
        if let Some(breaker) = self.breaker.take() {
            let outcome = if failed { Outcome::Failure } else { Outcome::Success };
            breaker.borrow().record(self.epoch, outcome, self.started.elapsed());
        }
    }
}

impl<B: Borrow<Breaker>> Drop for Permit<B> {
    fn drop(&mut self) {
        if let Some(breaker) = self.breaker.take() {
            breaker.borrow().record(self.epoch, Outcome::Cancelled, self.started.elapsed());
        }
    }
}

#[cfg(feature = "tower")]
mod layer;
#[cfg(feature = "tower")]
pub use layer::{BreakerLayer, BreakerService, OpenError};

/// Named breakers of this instance: one per dependency (the store, each outbound host, ...).
#[derive(Debug, Default)]
pub struct Registry {
    breakers: Mutex<std::collections::BTreeMap<String, std::sync::Arc<Breaker>>>,
}

impl Registry {
    /// The breaker called `name`, created with `config` on first use.
    pub fn breaker(&self, name: &str, config: BreakerConfig) -> std::sync::Arc<Breaker> {
        let mut map = self.breakers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(name.to_owned()).or_insert_with(|| std::sync::Arc::new(Breaker::new(name, config))).clone()
    }

    /// Adds a breaker its owner built (a task handler guarding its own endpoint), so it is listed with the rest.
    /// A breaker of the same name already registered is kept.
    pub fn register(&self, breaker: std::sync::Arc<Breaker>) {
        let mut map = self.breakers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(breaker.name().to_owned()).or_insert(breaker);
    }

    /// The breaker called `name`, one of a family whose names start with `family` (one per destination host):
    /// such names come from callers' data, so the family is bounded. Past `cap` members, a new one first evicts
    /// the family's closed breakers that saw no call in their window (they hold nothing worth keeping); open
    /// ones stay, since forgetting them would send traffic to a dead destination again.
    pub fn breaker_in(&self, family: &str, name: &str, cap: usize, config: BreakerConfig) -> std::sync::Arc<Breaker> {
        let mut map = self.breakers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(found) = map.get(name) {
            return found.clone();
        }
        if map.keys().filter(|k| k.starts_with(family)).count() >= cap {
            map.retain(|k, b| !k.starts_with(family) || b.state() != State::Closed || b.snapshot().calls_in_window > 0);
        }
        map.entry(name.to_owned()).or_insert_with(|| std::sync::Arc::new(Breaker::new(name, config))).clone()
    }

    pub fn get(&self, name: &str) -> Option<std::sync::Arc<Breaker>> {
        self.breakers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(name).cloned()
    }

    /// The tenant a breaker is scoped to: names of the form `{family}:{tenant}:{destination}` are (a tenant's
    /// webhook receiver); names without two colons (`store`, `sqs`) serve everyone.
    pub fn scope_of(name: &str) -> Option<&str> {
        let mut parts = name.splitn(3, ':');
        let (_, tenant, rest) = (parts.next()?, parts.next()?, parts.next()?);
        (!rest.is_empty()).then_some(tenant)
    }

    pub fn snapshots(&self) -> Vec<Snapshot> {
        let map = self.breakers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.values().map(|b| b.snapshot()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Debug, PartialEq)]
    enum Dep {
        Down,
        BadRequest,
    }

    fn counts(e: &Dep) -> bool {
        *e == Dep::Down
    }

    async fn fail(b: &Breaker) -> Result<(), BreakerError<Dep>> {
        b.call(counts, || async { Err::<(), _>(Dep::Down) }).await
    }

    async fn succeed(b: &Breaker) -> Result<(), BreakerError<Dep>> {
        b.call(counts, || async { Ok::<(), Dep>(()) }).await
    }

    fn config() -> BreakerConfig {
        BreakerConfig {
            window: Window::Count(10),
            minimum_calls: 4,
            open_duration: Duration::from_secs(10),
            open_backoff: 1.0,
            ..BreakerConfig::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_at_the_failure_rate_only_after_minimum_calls() {
        let b = Breaker::new("store", config());
        for _ in 0..3 {
            assert_eq!(fail(&b).await, Err(BreakerError::Inner(Dep::Down)));
        }
        assert_eq!(b.state(), State::Closed, "3 calls < minimum 4: the rate does not count yet");
        assert!(fail(&b).await.is_err());
        assert_eq!(b.state(), State::Open);
        assert!(
            matches!(succeed(&b).await, Err(BreakerError::Open { retry_after }) if retry_after == Duration::from_secs(10))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stays_closed_under_the_threshold() {
        let b = Breaker::new("store", config());
        for i in 0..10 {
            let _ = if i % 3 == 2 { fail(&b).await } else { succeed(&b).await };
        }
        assert_eq!(b.state(), State::Closed, "3 of 10 failed, never 50 % at any point: stays closed");
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_admits_a_quota_then_closes_on_success() {
        let b = Breaker::new("store", BreakerConfig { half_open_calls: 2, ..config() });
        for _ in 0..4 {
            let _ = fail(&b).await;
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        let gate = std::sync::Arc::new(tokio::sync::Notify::new());
        let b = std::sync::Arc::new(b);
        let mut trials = Vec::new();
        for _ in 0..2 {
            let (b, gate) = (b.clone(), gate.clone());
            trials.push(tokio::spawn(async move {
                b.call(counts, || async move {
                    gate.notified().await;
                    Ok::<(), Dep>(())
                })
                .await
            }));
        }
        tokio::task::yield_now().await;
        assert_eq!(b.state(), State::HalfOpen);
        assert!(matches!(succeed(&b).await, Err(BreakerError::Open { .. })), "a third trial is rejected");
        gate.notify_waiters();
        for t in trials {
            t.await.unwrap().unwrap();
        }
        assert_eq!(b.state(), State::Closed);
        assert!(succeed(&b).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_trial_reopens_for_longer() {
        let b = Breaker::new("store", BreakerConfig { open_backoff: 2.0, ..config() });
        for _ in 0..4 {
            let _ = fail(&b).await;
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(fail(&b).await, Err(BreakerError::Inner(Dep::Down)));
        assert_eq!(b.state(), State::Open);
        assert!(
            matches!(succeed(&b).await, Err(BreakerError::Open { retry_after }) if retry_after == Duration::from_secs(20)),
            "the open duration grows"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn slow_calls_open_it_too() {
        let b = Breaker::new(
            "store",
            BreakerConfig { slow_call_duration: Duration::from_secs(1), slow_call_rate: 0.5, ..config() },
        );
        for _ in 0..4 {
            b.call(counts, || async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                Ok::<(), Dep>(())
            })
            .await
            .unwrap();
        }
        assert_eq!(b.state(), State::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn the_predicate_decides_what_counts() {
        let b = Breaker::new("store", config());
        for _ in 0..10 {
            let r = b.call(counts, || async { Err::<(), _>(Dep::BadRequest) }).await;
            assert_eq!(r, Err(BreakerError::Inner(Dep::BadRequest)));
        }
        assert_eq!(b.state(), State::Closed, "a caller's 4xx is not the dependency's failure");
    }

    #[tokio::test(start_paused = true)]
    async fn the_time_window_forgets_old_failures() {
        let b = Breaker::new("store", BreakerConfig { window: Window::Time(Duration::from_secs(30)), ..config() });
        for _ in 0..3 {
            let _ = fail(&b).await;
        }
        tokio::time::advance(Duration::from_secs(31)).await;
        for _ in 0..3 {
            succeed(&b).await.unwrap();
        }
        let _ = fail(&b).await;
        assert_eq!(b.state(), State::Closed, "old failures left the window");
        assert_eq!(b.snapshot().calls_in_window, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_mode() {
        let b = Breaker::new("seed", BreakerConfig { consecutive_failures: Some(3), minimum_calls: 100, ..config() });
        let _ = fail(&b).await;
        let _ = fail(&b).await;
        succeed(&b).await.unwrap();
        let _ = fail(&b).await;
        let _ = fail(&b).await;
        assert_eq!(b.state(), State::Closed, "the streak was broken");
        let _ = fail(&b).await;
        assert_eq!(b.state(), State::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn isolate_and_reset() {
        let b = Breaker::new("host", config());
        b.isolate();
        assert!(matches!(succeed(&b).await, Err(BreakerError::Open { .. })));
        tokio::time::advance(Duration::from_hours(1)).await;
        assert_eq!(b.state(), State::ForcedOpen, "an isolated breaker stays open");
        b.reset();
        assert!(succeed(&b).await.is_ok());
        let snapshot = b.snapshot();
        assert_eq!(snapshot.transitions, 2);
        let last = snapshot.last_transition.unwrap();
        assert_eq!((last.from, last.to), (State::ForcedOpen, State::Closed));
    }

    #[cfg(feature = "tower")]
    #[tokio::test(start_paused = true)]
    async fn the_tower_layer_opens_and_rejects() {
        use tower::{Layer as _, ServiceExt as _};
        let breaker = std::sync::Arc::new(Breaker::new("host", config()));
        let layer = BreakerLayer::new(breaker.clone(), |e| e.to_string() != "bad request");
        let failing = tower::service_fn(|fail: &'static str| async move {
            if fail.is_empty() { Ok("ok") } else { Err::<&str, layer::BoxError>(fail.into()) }
        });
        let service = layer.layer(failing);
        for _ in 0..10 {
            assert!(service.clone().oneshot("bad request").await.is_err());
        }
        assert_eq!(breaker.state(), State::Closed, "the predicate spares the caller's own errors");
        // The window (last 10) still holds the 4xx answers as successes: 5 failures make 50 %.
        for _ in 0..5 {
            assert!(service.clone().oneshot("connection refused").await.is_err());
        }
        assert_eq!(breaker.state(), State::Open);
        let rejected = service.clone().oneshot("").await.unwrap_err();
        assert!(rejected.downcast_ref::<OpenError>().is_some_and(|e| e.retry_after == Duration::from_secs(10)));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(service.clone().oneshot("").await.unwrap(), "ok");
    }

    /// A dependency that never answers: the call only ends when the caller gives up.
    async fn hang(b: &Breaker, budget: Duration) {
        let call = b.call(counts, std::future::pending::<Result<(), Dep>>);
        assert!(tokio::time::timeout(budget, call).await.is_err(), "a hang only ends by the caller's timeout");
    }

    #[tokio::test(start_paused = true)]
    async fn calls_cut_off_by_a_timeout_during_a_hang_open_the_breaker() {
        let b = Breaker::new("store", config());
        for _ in 0..4 {
            hang(&b, Duration::from_secs(2)).await;
        }
        assert_eq!(b.state(), State::Open, "4 cancelled calls of a minimum 4: the hang opened the breaker");
        let snapshot = b.snapshot();
        assert_eq!(snapshot.cancelled_calls, 4);
        assert!(matches!(succeed(&b).await, Err(BreakerError::Open { .. })), "no further call reaches the hang");
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_half_open_trials_reopen_and_the_breaker_recovers_on_its_own() {
        let b = Breaker::new("store", BreakerConfig { half_open_calls: 2, ..config() });
        for _ in 0..4 {
            let _ = fail(&b).await;
        }
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(10)).await;
            // Both trials are cut off by the caller's budget: they must give their permits back.
            hang(&b, Duration::from_millis(500)).await;
            assert_eq!(b.state(), State::Open, "a cancelled trial is a failed trial: OPEN again, not stuck");
        }
        // The dependency answers again: after the open time, trials succeed and close the breaker.
        tokio::time::advance(Duration::from_secs(10)).await;
        succeed(&b).await.unwrap();
        succeed(&b).await.unwrap();
        assert_eq!(b.state(), State::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_outcome_from_an_earlier_state_is_not_a_trial() {
        let b = std::sync::Arc::new(Breaker::new("store", BreakerConfig { half_open_calls: 1, ..config() }));
        let gate = std::sync::Arc::new(tokio::sync::Notify::new());
        let slow = {
            let (b, gate) = (b.clone(), gate.clone());
            tokio::spawn(async move {
                b.call(counts, || async move {
                    gate.notified().await;
                    Ok::<(), Dep>(())
                })
                .await
            })
        };
        tokio::task::yield_now().await;
        for _ in 0..4 {
            let _ = fail(&b).await;
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        let trial = Breaker::try_acquire(b.clone()).expect("the trial is admitted");
        assert_eq!(b.state(), State::HalfOpen);
        gate.notify_waiters();
        slow.await.unwrap().unwrap();
        assert_eq!(b.state(), State::HalfOpen, "the call admitted while CLOSED does not close the breaker");
        trial.report(false);
        assert_eq!(b.state(), State::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn hundreds_of_reopens_stay_at_the_cap_without_overflow() {
        let b = Breaker::new(
            "store",
            BreakerConfig { open_backoff: 2.0, max_open_duration: Duration::from_mins(1), ..config() },
        );
        for _ in 0..4 {
            let _ = fail(&b).await;
        }
        for _ in 0..200 {
            tokio::time::advance(Duration::from_mins(1)).await;
            let _ = fail(&b).await;
            assert_eq!(b.state(), State::Open);
        }
        assert!(
            matches!(succeed(&b).await, Err(BreakerError::Open { retry_after }) if retry_after == Duration::from_mins(1)),
            "capped at max_open_duration"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_family_is_bounded_and_keeps_its_open_breakers() {
        let registry = Registry::default();
        let dead = registry.breaker_in("webhook:", "webhook:t:dead.example", 3, config());
        dead.isolate();
        for host in ["a", "b", "c", "d", "e"] {
            registry.breaker_in("webhook:", &format!("webhook:t:{host}.example"), 3, config());
        }
        registry.breaker("store", config());
        let names: Vec<String> = registry.snapshots().into_iter().map(|s| s.name).collect();
        assert!(names.contains(&"webhook:t:dead.example".to_owned()), "an open breaker is never evicted: {names:?}");
        assert!(names.contains(&"store".to_owned()), "other families are untouched: {names:?}");
        assert!(names.iter().filter(|n| n.starts_with("webhook:")).count() <= 3, "{names:?}");
        assert!(Arc::ptr_eq(&dead, &registry.breaker_in("webhook:", "webhook:t:dead.example", 3, config())));
        assert_eq!(Registry::scope_of("webhook:t:dead.example"), Some("t"));
        assert_eq!(Registry::scope_of("store"), None);
        assert_eq!(Registry::scope_of("idp-keys"), None);
    }
}
