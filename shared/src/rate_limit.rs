//! Distributed rate limits: fixed windows counted in the table. Instances share no memory, so the count lives in
//! one item per subject and window, and each admitted request is one conditional write — `ADD n 1` only while
//! `n < limit` — which DynamoDB applies atomically: across any number of instances at most `limit` requests pass
//! per window (no overshoot, unlike limiters that sync counters between regions after the fact).
//!
//! A subject found over its limit is remembered in this instance until its window ends, so a client hammering
//! past its limit costs no further store calls here. Window items expire (TTL) a minute after their window.

use std::collections::HashMap;
use std::sync::Mutex;

use http::{HeaderMap, HeaderValue, StatusCode};

use crate::http::{Problem, ToProblem};
use crate::store::{Condition, DynStore, EXPIRES_AT, StoreError, Update, keys};

const COUNT: &str = "n";

/// A limit: `limit` requests per `window_secs`, windows aligned to the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u32,
    pub window_secs: u32,
}

impl Quota {
    /// `N/SECS`, e.g. `10/60`.
    pub fn parse(text: &str) -> Option<Self> {
        let (limit, window) = text.trim().split_once('/')?;
        let quota = Self { limit: limit.trim().parse().ok()?, window_secs: window.trim().parse().ok()? };
        (quota.limit >= 1 && (1..=86_400).contains(&quota.window_secs)).then_some(quota)
    }
}

/// What a check decided, with what the RateLimit headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed {
        remaining: u32,
        reset_secs: u32,
    },
    Limited {
        reset_secs: u32,
    },
    /// The store could not be asked and the route class fails open: admitted, uncounted.
    Unchecked,
}

/// Per-instance memory of subjects over their limit: subject → epoch second their window ends.
#[derive(Debug, Default)]
pub struct Limiter {
    blocked: Mutex<HashMap<String, i64>>,
}

impl Limiter {
    fn blocked_until(&self, subject: &str, now: i64) -> Option<i64> {
        let mut blocked = self.blocked.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match blocked.get(subject) {
            Some(&until) if until > now => Some(until),
            Some(_) => {
                blocked.remove(subject);
                None
            }
            None => None,
        }
    }

    fn block(&self, subject: &str, until: i64) {
        let mut blocked = self.blocked.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Bounded: expired entries go first when the map grows (a flood of distinct subjects cannot grow it
        // without bound).
        if blocked.len() >= 10_000 {
            let now = crate::store::now_epoch();
            blocked.retain(|_, until| *until > now);
        }
        blocked.insert(subject.to_owned(), until);
    }

    /// Counts one request of `subject` against `quota` at `now` (epoch seconds).
    pub async fn check(&self, store: &DynStore, subject: &str, quota: Quota, now: i64) -> Result<Decision, StoreError> {
        let width = i64::from(quota.window_secs);
        let window = now.div_euclid(width);
        let end = (window + 1) * width;
        let reset_secs = u32::try_from(end - now).unwrap_or(quota.window_secs);
        if self.blocked_until(subject, now).is_some() {
            return Ok(Decision::Limited { reset_secs });
        }
        let update = Update::new().add(COUNT, 1).set(EXPIRES_AT, end + 60);
        let under = Condition::NotExists.or(Condition::lt(COUNT, i64::from(quota.limit)));
        match store.update(&keys::rate_window(subject, window), update, Some(under)).await {
            Ok(item) => {
                let used = u32::try_from(item.get_i64(COUNT).unwrap_or(1)).unwrap_or(quota.limit);
                Ok(Decision::Allowed { remaining: quota.limit.saturating_sub(used), reset_secs })
            }
            Err(StoreError::ConditionFailed { .. }) => {
                self.block(subject, end);
                Ok(Decision::Limited { reset_secs })
            }
            Err(e) => Err(e),
        }
    }
}

/// Writes the IETF draft's `RateLimit-Policy` and `RateLimit` fields for `policy` (the quota's name).
pub fn headers(headers: &mut HeaderMap, policy: &str, quota: Quota, decision: Decision) {
    let remaining = match decision {
        Decision::Allowed { remaining, .. } => remaining,
        Decision::Limited { .. } => 0,
        Decision::Unchecked => return,
    };
    let reset = match decision {
        Decision::Allowed { reset_secs, .. } | Decision::Limited { reset_secs } => reset_secs,
        Decision::Unchecked => 0,
    };
    let policy_value = format!("\"{policy}\";q={};w={}", quota.limit, quota.window_secs);
    let state = format!("\"{policy}\";r={remaining};t={reset}");
    if let (Ok(p), Ok(s)) = (HeaderValue::from_str(&policy_value), HeaderValue::from_str(&state)) {
        headers.insert("ratelimit-policy", p);
        headers.insert("ratelimit", s);
    }
}

/// Over the limit: 429 with `Retry-After`.
#[derive(Debug, thiserror::Error)]
#[error("rate limit {policy} exceeded")]
pub struct RateLimited {
    pub policy: String,
    pub quota: Quota,
    pub reset_secs: u32,
}

impl ToProblem for RateLimited {
    fn status(&self) -> StatusCode {
        StatusCode::TOO_MANY_REQUESTS
    }

    fn problem(&self) -> Problem {
        Problem::new(self.status(), "rate-limited", "Too Many Requests").detail(format!(
            "the limit {} ({} requests per {} s) is used up; retry after {} s (see Retry-After and RateLimit)",
            self.policy, self.quota.limit, self.quota.window_secs, self.reset_secs
        ))
    }

    fn retry_after(&self) -> Option<u64> {
        Some(u64::from(self.reset_secs.max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_parse_as_count_per_seconds() {
        assert_eq!(Quota::parse("10/60"), Some(Quota { limit: 10, window_secs: 60 }));
        for bad in ["0/60", "10/0", "10", "x/60", "10/100000"] {
            assert_eq!(Quota::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn headers_follow_the_draft_syntax() {
        let mut map = HeaderMap::new();
        let quota = Quota { limit: 10, window_secs: 60 };
        headers(&mut map, "standard", quota, Decision::Allowed { remaining: 3, reset_secs: 42 });
        assert_eq!(map["ratelimit-policy"], "\"standard\";q=10;w=60");
        assert_eq!(map["ratelimit"], "\"standard\";r=3;t=42");
        headers(&mut map, "standard", quota, Decision::Limited { reset_secs: 5 });
        assert_eq!(map["ratelimit"], "\"standard\";r=0;t=5");
    }
}
