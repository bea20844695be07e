//! Distributed rate limits: fixed windows counted in the table, spent from leases. Instances share no memory, so
//! the count lives in one item per subject and window. An instance does not write once per request: it *leases* a
//! block of k tokens with one conditional write — `ADD n k` only while `n + k <= limit` — spends them locally, and
//! leases again when they run out (the idea behind Envoy's rate-limit quota service). DynamoDB applies each lease
//! atomically, so across any number of instances at most `limit` requests pass per window: zero overshoot by
//! construction.
//!
//! The block size adapts: the first lease of a subject is one token, each lease that ran out within its window
//! doubles the next (up to a tenth of the quota), and a new window starts at half the last window's size. A quiet
//! subject therefore pays one write per request, exactly as before, while a busy one pays one write per k requests
//! (k up to 120 for a 1200/60 agent quota). Small quotas stay exact: a quota of 25 leases at most 2 at a time.
//! When the table holds fewer than k tokens, the lease takes what is left (the failed condition returns the
//! counter). The price: tokens leased by an instance that then freezes or dies are not spent in that window — at
//! most one block per instance and subject, never more than a tenth of the quota, and never an overshoot.
//!
//! A subject found over its limit is remembered in this instance until its window ends, so a client hammering
//! past its limit costs no further store calls here. Window items expire (TTL) a minute after their window.

use std::collections::HashMap;
use std::sync::Mutex;

use http::{HeaderMap, HeaderValue, StatusCode};

use crate::problem::{Problem, ToProblem};
use crate::store::{Condition, DynStore, EXPIRES_AT, StoreError, Update, keys};

const COUNT: &str = "n";

pub use crate::config::limits::Quota;

/// What a check decided, with what the RateLimit headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed {
        remaining: u32,
        reset_secs: u32,
    },
    /// Over the limit. `known`: this instance already knew (it made no store call for this answer).
    Limited {
        reset_secs: u32,
        known: bool,
    },
    /// The store could not be asked and the route class fails open: admitted, uncounted.
    Unchecked,
}

/// One subject's tokens in this instance.
#[derive(Debug, Clone, Copy)]
struct Lease {
    window: i64,
    /// When the window ends (epoch seconds): what eviction compares, whatever the quota's window length.
    ends_at: i64,
    /// Tokens leased and not yet spent.
    left: u32,
    /// Tokens the table had not leased to anyone when this instance last leased.
    unleased: u32,
    /// The size of the last block leased (the next one doubles it if this one runs out in its window).
    size: u32,
    /// The table had no tokens left for this subject when last asked: over its limit until the window ends.
    blocked: bool,
}

impl Lease {
    fn fresh(window: i64, quota: Quota, size: u32) -> Self {
        let ends_at = (window + 1) * i64::from(quota.window_secs);
        Self { window, ends_at, left: 0, unleased: quota.limit, size, blocked: false }
    }
}

/// What this instance can do for a request without the table.
enum Local {
    /// Spent from the lease; the tokens this instance still sees.
    Spent(u32),
    /// The subject is over its limit in this window (known here).
    Blocked,
    /// The lease is short by `need` tokens; lease `want` (≥ `need`) from the table.
    Lease { need: u32, want: u32 },
}

/// Per-instance leases and memory of subjects over their limit.
#[derive(Debug, Default)]
pub struct Limiter {
    leases: Mutex<HashMap<String, Lease>>,
    /// The latest end (epoch seconds) of a window some subject is blocked in: before it, nobody is, and
    /// [`Limiter::is_blocked`] answers without the lock.
    blocked_until: std::sync::atomic::AtomicI64,
}

/// What the limiter holds at most: past this, leases of ended windows go first.
const MAX_SUBJECTS: usize = 10_000;

impl Limiter {
    fn leases(&self) -> std::sync::MutexGuard<'_, HashMap<String, Lease>> {
        self.leases.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The subject's lease for `window`, created (or renewed for a newer window) as needed; `None` when the lease
    /// has already moved on to a later window (a slow answer about an earlier one must not roll it back).
    fn lease_for<'a>(
        leases: &'a mut HashMap<String, Lease>,
        subject: &str,
        quota: Quota,
        window: i64,
    ) -> Option<&'a mut Lease> {
        if leases.len() >= MAX_SUBJECTS && !leases.contains_key(subject) {
            let started = window * i64::from(quota.window_secs);
            leases.retain(|_, l| l.ends_at > started);
        }
        let lease = leases.entry(subject.to_owned()).or_insert_with(|| Lease::fresh(window, quota, 0));
        if lease.window < window {
            // A new window: start from half the last block (the subject's recent rate), fresh count.
            *lease = Lease::fresh(window, quota, lease.size / 2);
        }
        (lease.window == window).then_some(lease)
    }

    /// Whether this instance knows `subject` is over `quota` at `now` (no store call).
    pub fn is_blocked(&self, subject: &str, quota: Quota, now: i64) -> bool {
        if !self.blocks_any(now) {
            return false;
        }
        let window = now.div_euclid(i64::from(quota.window_secs));
        self.leases().get(subject).is_some_and(|l| l.window == window && l.blocked && l.left == 0)
    }

    /// Whether any subject may be blocked at `now` (a lock-free check, for the hot path).
    pub fn blocks_any(&self, now: i64) -> bool {
        self.blocked_until.load(std::sync::atomic::Ordering::Relaxed) > now
    }

    fn spend_local(&self, subject: &str, quota: Quota, window: i64, cost: u32) -> Local {
        let mut leases = self.leases();
        let Some(lease) = Self::lease_for(&mut leases, subject, quota, window) else {
            // A request that read the clock just before the window turned: counted in its own window, exactly.
            return Local::Lease { need: cost, want: cost };
        };
        // Tokens first: a lease that landed after the table ran dry (a concurrent request's) is still spendable.
        if lease.left >= cost {
            lease.left -= cost;
            return Local::Spent(lease.unleased + lease.left);
        }
        if lease.blocked {
            return Local::Blocked;
        }
        let need = cost - lease.left;
        let want = lease.size.saturating_mul(2).clamp(1, quota.max_lease()).max(need);
        Local::Lease { need, want }
    }

    /// Adds `granted` leased tokens and spends `cost` from the lease, if it holds that many now (a concurrent
    /// request may have spent what this one counted on); the tokens left in view, when spent.
    fn add_and_spend(
        &self,
        subject: &str,
        quota: Quota,
        window: i64,
        granted: u32,
        unleased: u32,
        cost: u32,
    ) -> Option<u32> {
        let mut leases = self.leases();
        let Some(lease) = Self::lease_for(&mut leases, subject, quota, window) else {
            // Leased in a window that has since ended here: this request was counted there; the rest lapses.
            return (granted >= cost).then_some(unleased);
        };
        lease.left += granted;
        lease.unleased = lease.unleased.min(unleased);
        lease.size = lease.size.max(granted);
        if lease.left >= cost {
            lease.left -= cost;
            Some(lease.unleased + lease.left)
        } else {
            None
        }
    }

    /// The table has too few tokens for `cost`: spends from what this instance holds (leased by a concurrent
    /// request meanwhile), or, when the table has none at all, remembers the subject as over its limit.
    fn settle_short(&self, subject: &str, quota: Quota, window: i64, cost: u32, table_left: u32) -> Option<u32> {
        let mut leases = self.leases();
        let lease = Self::lease_for(&mut leases, subject, quota, window)?;
        lease.unleased = lease.unleased.min(table_left);
        if lease.left >= cost {
            lease.left -= cost;
            return Some(lease.unleased + lease.left);
        }
        if table_left == 0 {
            lease.blocked = true;
            self.blocked_until.fetch_max(lease.ends_at, std::sync::atomic::Ordering::Relaxed);
        }
        None
    }

    /// Gives back `units` this instance counted in `window` (a request refused after it was counted, such as a
    /// batch its quota could not cover whole): spendable again here in that window, never an overshoot. Units of a
    /// window that has ended lapse.
    pub fn refund(&self, subject: &str, window: i64, units: u32) {
        let mut leases = self.leases();
        if let Some(lease) = leases.get_mut(subject).filter(|l| l.window == window) {
            lease.left += units;
        }
    }

    /// Counts one request of `subject` against `quota` at `now` (epoch seconds).
    pub async fn check(&self, store: &DynStore, subject: &str, quota: Quota, now: i64) -> Result<Decision, StoreError> {
        self.spend(store, subject, quota, now, 1).await
    }

    /// Spends `cost` requests of `subject`'s `quota` at `now`: from this instance's lease when it holds enough,
    /// otherwise by leasing a block from the table (one conditional `UpdateItem`). All or nothing: a cost the
    /// window cannot cover is refused whole, and spends nothing.
    pub async fn spend(
        &self,
        store: &DynStore,
        subject: &str,
        quota: Quota,
        now: i64,
        cost: u32,
    ) -> Result<Decision, StoreError> {
        let width = i64::from(quota.window_secs);
        let window = now.div_euclid(width);
        let end = (window + 1) * width;
        let reset_secs = u32::try_from(end - now).unwrap_or(quota.window_secs);
        if cost > quota.limit {
            return Ok(Decision::Limited { reset_secs, known: true });
        }
        let (need, mut want) = match self.spend_local(subject, quota, window, cost) {
            Local::Spent(remaining) => return Ok(Decision::Allowed { remaining, reset_secs }),
            Local::Blocked => return Ok(Decision::Limited { reset_secs, known: true }),
            Local::Lease { need, want } => (need, want),
        };
        let key = keys::rate_window(subject, window);
        let mut table_left = quota.limit;
        // At most two tries: the block wanted, then what the failed condition showed is left (if it covers the need).
        for _ in 0..2 {
            let update = Update::new().add(COUNT, i64::from(want)).set(EXPIRES_AT, end + 60);
            let room = Condition::NotExists.or(Condition::le(COUNT, i64::from(quota.limit - want)));
            match store.update(&key, update, Some(room)).await {
                Ok(item) => {
                    let used = u32::try_from(item.get_i64(COUNT).unwrap_or(i64::from(want))).unwrap_or(quota.limit);
                    let unleased = quota.limit.saturating_sub(used);
                    return Ok(match self.add_and_spend(subject, quota, window, want, unleased, cost) {
                        Some(remaining) => Decision::Allowed { remaining, reset_secs },
                        None => Decision::Limited { reset_secs, known: false },
                    });
                }
                Err(StoreError::ConditionFailed { current }) => {
                    let used = current.and_then(|item| item.get_i64(COUNT)).unwrap_or(i64::from(quota.limit));
                    table_left = u32::try_from(i64::from(quota.limit).saturating_sub(used).max(0)).unwrap_or(0);
                    if table_left < need {
                        break;
                    }
                    want = table_left.min(want).max(need);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(match self.settle_short(subject, quota, window, cost, table_left) {
            Some(remaining) => Decision::Allowed { remaining, reset_secs },
            None => Decision::Limited { reset_secs, known: false },
        })
    }
}

/// Writes the IETF draft's `RateLimit-Policy` and `RateLimit` fields for `policy` (the quota's name).
pub fn headers(headers: &mut HeaderMap, policy: &str, quota: Quota, decision: Decision) {
    let (remaining, reset) = match decision {
        Decision::Allowed { remaining, reset_secs } => (remaining, reset_secs),
        Decision::Limited { reset_secs, .. } => (0, reset_secs),
        Decision::Unchecked => return,
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
        headers(&mut map, "standard", quota, Decision::Limited { reset_secs: 5, known: false });
        assert_eq!(map["ratelimit"], "\"standard\";r=0;t=5");
    }
}
