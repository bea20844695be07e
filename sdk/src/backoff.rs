//! Retry pacing.

use std::time::Duration;

use rand::Rng as _;

/// AWS's "full jitter": sleep a uniform random time in [0, min(cap, base * 2^attempt)], so retrying agents
/// spread out instead of returning in step.
pub fn full_jitter(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let ceiling = base.saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX)).min(cap);
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=millis))
}
