//! Retrying the unprocessed part of a batch write: full-jitter exponential backoff inside a time budget.

use std::time::Duration;

use rand::Rng as _;
use tokio::time::Instant;

use super::{Store, StoreError, WriteOp};

/// How hard a batch write retries what DynamoDB left unprocessed.
#[derive(Debug, Clone, Copy)]
pub struct BatchRetry {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
    /// Give up (and report the rest unprocessed) rather than sleep past this instant.
    pub deadline: Option<Instant>,
}

impl Default for BatchRetry {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base: Duration::from_millis(25),
            cap: Duration::from_secs(1),
            deadline: None,
        }
    }
}

/// AWS's "full jitter": sleep a uniform random time in [0, min(cap, base * 2^attempt)].
pub fn full_jitter(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let ceiling = base
        .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
        .min(cap);
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=millis))
}

pub(super) async fn batch_write_with_retry<S: Store + ?Sized>(
    store: &S,
    ops: Vec<WriteOp>,
    policy: BatchRetry,
) -> Result<Vec<WriteOp>, StoreError> {
    let mut pending = store.batch_write_once(ops).await?;
    let mut attempt = 0;
    while !pending.is_empty() && attempt + 1 < policy.max_attempts {
        let pause = full_jitter(policy.base, policy.cap, attempt);
        if policy.deadline.is_some_and(|d| Instant::now() + pause >= d) {
            break;
        }
        tokio::time::sleep(pause).await;
        attempt += 1;
        pending = match store.batch_write_once(pending.clone()).await {
            Ok(rest) => rest,
            // A throttled retry leaves the same items pending; anything else is the caller's to see.
            Err(StoreError::Throttled(_)) => pending,
            Err(e) => return Err(e),
        };
    }
    Ok(pending)
}
