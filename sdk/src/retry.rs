//! When the operator client tries a request again, and when it stops.
//!
//! - **Which requests**: only those a second delivery cannot harm — safe methods (GET, HEAD, OPTIONS) and requests
//!   that carry an idempotency key (the client adds one to every create). A connection that was refused before
//!   anything was sent is retried whatever the method.
//! - **Which answers**: connection failures and timeouts, 409 (a concurrent request with the same idempotency
//!   key, or a write conflict: both resolve), 500, 502, 503, 504, and 429 when the server says when
//!   (`Retry-After`). Other 4xx are the caller's to fix and are never retried.
//! - **How long to wait**: `Retry-After` when the server sends it (up to [`RetryPolicy::max_retry_after`]; a
//!   longer one is returned to the caller rather than slept through), else full-jitter exponential backoff
//!   (0.5 s × 2ⁿ, capped at 5 s), as Stripe's SDKs do.
//! - **How many**: at most [`RetryPolicy::max_attempts`] per call, and only while the client's shared
//!   [`RetryBudget`] has tokens — the AWS SDKs' standard retry quota: 500 tokens, a retry costs 5 (a timeout 10),
//!   a success refunds what its retries cost (or 1 when it needed none). A service that fails every call gets
//!   at most 100 retries from one client before they stop, instead of a multiple of its load.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use crate::backoff::full_jitter;

/// Tuning of the client's retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per call, the first included (1 turns retries off).
    pub max_attempts: u32,
    /// The backoff's first ceiling; it doubles per attempt...
    pub base: Duration,
    /// ...up to this.
    pub cap: Duration,
    /// The longest `Retry-After` the client sleeps through; a longer one ends the call with the server's answer.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(5),
            max_retry_after: Duration::from_mins(1),
        }
    }
}

/// What kind of failure a retry answers: a timeout costs the budget more (the service may be overloaded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A retryable status, or a connection that failed.
    Error,
    /// No answer in time.
    Timeout,
}

/// The shared retry quota of one client (all endpoints, all calls).
#[derive(Debug)]
pub struct RetryBudget {
    tokens: AtomicU32,
    capacity: u32,
}

impl RetryBudget {
    /// The AWS SDKs' standard quota.
    pub const CAPACITY: u32 = 500;
    pub const RETRY_COST: u32 = 5;
    pub const TIMEOUT_COST: u32 = 10;
    /// What a call that succeeded at once gives back.
    pub const SUCCESS_REFUND: u32 = 1;

    pub fn new(capacity: u32) -> Self {
        Self { tokens: AtomicU32::new(capacity), capacity }
    }

    /// Tokens left.
    pub fn available(&self) -> u32 {
        self.tokens.load(Ordering::Relaxed)
    }

    fn cost(cause: Cause) -> u32 {
        match cause {
            Cause::Error => Self::RETRY_COST,
            Cause::Timeout => Self::TIMEOUT_COST,
        }
    }

    /// Takes the cost of one retry; `None` (nothing taken) when the budget cannot pay it.
    pub fn withdraw(&self, cause: Cause) -> Option<u32> {
        let cost = Self::cost(cause);
        self.tokens.fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| t.checked_sub(cost)).ok().map(|_| cost)
    }

    /// A call succeeded after retries that cost `spent` (0: none): that much comes back, or
    /// [`Self::SUCCESS_REFUND`] when it needed no retry. Never above the capacity.
    pub fn deposit(&self, spent: u32) {
        let refund = if spent == 0 { Self::SUCCESS_REFUND } else { spent };
        let _ = self
            .tokens
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| Some(t.saturating_add(refund).min(self.capacity)));
    }
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self::new(Self::CAPACITY)
    }
}

/// What one attempt came to, as the retry logic needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// An answer to keep (a success, or an error the caller must see).
    Done,
    /// The connection failed before the request was sent: safe to send again whatever the method.
    NotSent,
    /// An answer with this status (and its `Retry-After`, parsed).
    Status { status: u16, retry_after: Option<Duration> },
    /// No answer in time, or the connection broke after the request may have arrived.
    Lost { timed_out: bool },
}

/// Whether and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep this answer.
    Stop,
    /// Sleep this long, then send again.
    RetryAfter(Duration),
}

/// One call's retry state: how many attempts it made and what its retries cost the budget.
#[derive(Debug)]
pub struct Retrying<'a> {
    policy: RetryPolicy,
    budget: &'a RetryBudget,
    /// The request can be delivered twice without harm (safe method, or an idempotency key).
    replayable: bool,
    attempts: u32,
    spent: u32,
}

impl<'a> Retrying<'a> {
    pub fn new(policy: RetryPolicy, budget: &'a RetryBudget, replayable: bool) -> Self {
        Self { policy, budget, replayable, attempts: 0, spent: 0 }
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Decides after an attempt. A success (or any answer kept) must be reported with [`Self::succeeded`] or
    /// [`Self::ended`], so the budget gets its refund.
    pub fn after(&mut self, attempt: Attempt) -> Verdict {
        self.attempts += 1;
        let (cause, retry_after) = match attempt {
            Attempt::Done => return Verdict::Stop,
            Attempt::NotSent => (Cause::Error, None),
            Attempt::Lost { .. } | Attempt::Status { .. } if !self.replayable => return Verdict::Stop,
            Attempt::Lost { timed_out } => (if timed_out { Cause::Timeout } else { Cause::Error }, None),
            Attempt::Status { status, retry_after } => match status {
                409 | 500 | 502 | 503 | 504 => (Cause::Error, retry_after),
                429 if retry_after.is_some() => (Cause::Error, retry_after),
                _ => return Verdict::Stop,
            },
        };
        if self.attempts >= self.policy.max_attempts {
            return Verdict::Stop;
        }
        if retry_after.is_some_and(|after| after > self.policy.max_retry_after) {
            return Verdict::Stop;
        }
        let Some(cost) = self.budget.withdraw(cause) else {
            tracing::debug!(available = self.budget.available(), "retry budget exhausted: not retrying");
            return Verdict::Stop;
        };
        self.spent += cost;
        Verdict::RetryAfter(
            retry_after.unwrap_or_else(|| full_jitter(self.policy.base, self.policy.cap, self.attempts - 1)),
        )
    }

    /// The call ended with a success: the budget gets back what its retries cost (or the success refund).
    pub fn succeeded(self) {
        self.budget.deposit(self.spent);
    }

    /// The call ended without success: what its retries cost stays spent.
    pub fn ended(self) {}
}

/// `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date, as a wait from `now`. A date in the past is
/// no wait; a value that is neither is ignored.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> Attempt {
        Attempt::Status { status: 503, retry_after: None }
    }

    #[test]
    fn a_replayable_request_is_retried_up_to_its_attempts_with_capped_backoff() {
        let budget = RetryBudget::default();
        let mut call = Retrying::new(RetryPolicy::default(), &budget, true);
        for n in 0..2 {
            match call.after(unavailable()) {
                Verdict::RetryAfter(wait) => assert!(wait <= Duration::from_millis(500 << n), "{wait:?}"),
                Verdict::Stop => panic!("attempt {n} should be retried"),
            }
        }
        assert_eq!(call.after(unavailable()), Verdict::Stop, "three attempts in all");
        assert_eq!(budget.available(), 490);
        call.ended();
        assert_eq!(budget.available(), 490, "a failed call's retries stay spent");
    }

    #[test]
    fn only_replayable_requests_are_retried_after_they_may_have_arrived() {
        let budget = RetryBudget::default();
        for attempt in [unavailable(), Attempt::Lost { timed_out: true }, Attempt::Lost { timed_out: false }] {
            let mut call = Retrying::new(RetryPolicy::default(), &budget, false);
            assert_eq!(call.after(attempt), Verdict::Stop, "{attempt:?}");
        }
        let mut call = Retrying::new(RetryPolicy::default(), &budget, false);
        assert!(matches!(call.after(Attempt::NotSent), Verdict::RetryAfter(_)), "nothing was sent: safe");
    }

    #[test]
    fn the_callers_mistakes_are_never_retried_and_429_only_when_told_when() {
        let budget = RetryBudget::default();
        for status in [400, 401, 403, 404, 413, 422, 429] {
            let mut call = Retrying::new(RetryPolicy::default(), &budget, true);
            assert_eq!(call.after(Attempt::Status { status, retry_after: None }), Verdict::Stop, "{status}");
        }
        let mut call = Retrying::new(RetryPolicy::default(), &budget, true);
        let told = Attempt::Status { status: 429, retry_after: Some(Duration::from_secs(2)) };
        assert_eq!(call.after(told), Verdict::RetryAfter(Duration::from_secs(2)), "Retry-After, exactly");
        assert_eq!(budget.available(), 495);
    }

    #[test]
    fn a_retry_after_longer_than_the_client_waits_returns_the_answer() {
        let budget = RetryBudget::default();
        let mut call = Retrying::new(RetryPolicy::default(), &budget, true);
        let later = Attempt::Status { status: 503, retry_after: Some(Duration::from_secs(61)) };
        assert_eq!(call.after(later), Verdict::Stop);
        assert_eq!(budget.available(), RetryBudget::CAPACITY, "nothing spent on a retry not made");
    }

    #[test]
    fn the_budget_stops_retries_against_a_failing_service_and_successes_refill_it() {
        let budget = RetryBudget::default();
        let mut retries = 0;
        for _ in 0..1000 {
            let mut call = Retrying::new(RetryPolicy::default(), &budget, true);
            while let Verdict::RetryAfter(_) = call.after(unavailable()) {
                retries += 1;
            }
            call.ended();
        }
        assert_eq!(retries, 100, "500 tokens at 5 per retry, then none for 1000 failing calls");
        assert_eq!(budget.available(), 0);

        // Successes at once refund 1 each; a success after a retry refunds what that retry cost.
        for _ in 0..10 {
            Retrying::new(RetryPolicy::default(), &budget, true).succeeded();
        }
        assert_eq!(budget.available(), 10);
        let mut call = Retrying::new(RetryPolicy::default(), &budget, true);
        assert!(matches!(call.after(Attempt::Lost { timed_out: true }), Verdict::RetryAfter(_)));
        assert_eq!(budget.available(), 0, "a timeout costs 10");
        call.succeeded();
        assert_eq!(budget.available(), 10);
        for _ in 0..1000 {
            Retrying::new(RetryPolicy::default(), &budget, true).succeeded();
        }
        assert_eq!(budget.available(), RetryBudget::CAPACITY, "never above the capacity");
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = httpdate::parse_http_date("Thu, 03 Dec 2026 18:00:00 GMT").unwrap();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Thu, 03 Dec 2026 18:00:30 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Thu, 03 Dec 2026 17:59:00 GMT", now), Some(Duration::ZERO), "past: now");
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }
}
