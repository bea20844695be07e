//! Finished tasks counted per tenant, task type and UTC hour, in the table: one `UpdateItem` of `ADD`s per finished
//! task (atomic across instances), outcome counts and a [`Sketch`] of durations. Hours are the unit every window is
//! built from; days and longer windows merge them.

use super::hours::{self, RETENTION_SECS, hour_of};
use super::sketch::{Sketch, count};
use crate::store::{DynStore, EXPIRES_AT, Key, StoreError, Update, keys};

/// Outcomes a finished task is counted under (the task states that are final).
pub const OUTCOMES: [&str; 4] = ["succeeded", "failed", "timed_out", "cancelled"];

/// Counts one finished task in the hour it finished.
pub async fn record(
    store: &DynStore,
    tenant: &str,
    kind: &str,
    outcome: &str,
    duration_ms: Option<u64>,
    finished: time::OffsetDateTime,
) -> Result<(), StoreError> {
    let (key, update) = count_write(tenant, kind, outcome, duration_ms, finished);
    store.update(&key, update, None).await?;
    Ok(())
}

/// The write that counts one finished task in its hour (the settle sends it with the all-time counter's).
pub fn count_write(
    tenant: &str,
    kind: &str,
    outcome: &str,
    duration_ms: Option<u64>,
    finished: time::OffsetDateTime,
) -> (Key, Update) {
    let mut update = Update::new().add("total", 1).add(outcome, 1);
    if let Some(ms) = duration_ms {
        let mut sketch = Sketch::default();
        sketch.add(ms);
        update = sketch.add_to(update.add("timed", 1).add("duration_ms_sum", i64::try_from(ms).unwrap_or(i64::MAX)));
    }
    // Kept for the retention from the hour's start: every write of the hour sets the same expiry.
    let hour_start = finished.unix_timestamp() - finished.unix_timestamp().rem_euclid(3600);
    update = update.set(EXPIRES_AT, hour_start + RETENTION_SECS);
    (keys::job_hour(tenant, &hour_of(finished), kind), update)
}

/// One hour of one task type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskHour {
    /// `YYYY-MM-DDTHH`.
    pub hour: String,
    pub kind: String,
    pub total: u64,
    /// Counts by outcome, in the order of [`OUTCOMES`].
    pub outcomes: [u64; 4],
    pub timed: u64,
    pub duration_ms_sum: u64,
    pub durations: Sketch,
}

impl TaskHour {
    pub fn failed(&self) -> u64 {
        self.outcomes[1] + self.outcomes[2]
    }
}

/// Every hour item of the tenant from hour `from` to hour `to` (both `YYYY-MM-DDTHH`, inclusive), in key order.
pub async fn read(store: &DynStore, tenant: &str, from: &str, to: &str) -> Result<Vec<TaskHour>, StoreError> {
    let items = hours::read(store, keys::job_hours_partition(tenant), from, to).await?;
    Ok(items
        .into_iter()
        .map(|(hour, kind, item)| TaskHour {
            hour,
            kind,
            total: count(&item, "total"),
            outcomes: OUTCOMES.map(|o| count(&item, o)),
            timed: count(&item, "timed"),
            duration_ms_sum: count(&item, "duration_ms_sum"),
            durations: Sketch::from_item(&item),
        })
        .collect())
}
