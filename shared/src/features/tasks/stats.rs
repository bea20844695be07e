//! Task statistics aggregated in the table, not in one instance's memory: every finished task adds to its
//! tenant's counters for its type with one `UpdateItem` (`ADD` is atomic across instances), including a count in
//! one latency bucket. Percentiles are read off the buckets: each is reported as its bucket's upper bound, so they
//! are never optimistic by more than one bucket.

use super::model::{Priority, Status};
use crate::analytics::sketch::count;
use crate::store::{DynStore, Key, Query, StoreError, Update, keys};
pub use cloud_agent_wire::tasks::{Latency, QueueStats, TaskMetrics, TypeStats};

/// Upper bounds (ms) of the latency buckets; the last bucket is everything above.
pub const BUCKETS_MS: [u64; 15] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000, 60_000];

fn bucket_attr(index: usize) -> String {
    format!("b{index:02}")
}

fn bucket_of(duration_ms: u64) -> usize {
    BUCKETS_MS.iter().position(|b| duration_ms <= *b).unwrap_or(BUCKETS_MS.len())
}

/// The write that counts one finished task (see [`record`]; the settle sends it with the hour's).
pub fn count_write(tenant: &str, kind: &str, status: Status, duration_ms: Option<u64>) -> (Key, Update) {
    let mut update = Update::new().add("total", 1).add(status.as_str(), 1);
    if let Some(d) = duration_ms {
        update = update
            .add("duration_ms_sum", i64::try_from(d).unwrap_or(i64::MAX))
            .add("timed", 1)
            .add(&bucket_attr(bucket_of(d)), 1);
    }
    (keys::job_stats(tenant, kind), update)
}

/// Counts one finished task.
pub async fn record(
    store: &DynStore,
    tenant: &str,
    kind: &str,
    status: Status,
    duration_ms: Option<u64>,
) -> Result<(), StoreError> {
    let (key, update) = count_write(tenant, kind, status, duration_ms);
    store.update(&key, update, None).await?;
    Ok(())
}

/// The bucket bound at which `share` of the timed tasks have finished.
fn percentile(buckets: &[u64], share: f64) -> Option<u64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let target = (total as f64 * share).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= target {
            // Above the last bound there is no bound: report the last one (the answer is "at least this").
            return Some(BUCKETS_MS.get(i).copied().unwrap_or(BUCKETS_MS[BUCKETS_MS.len() - 1]));
        }
    }
    None
}

/// The tenant's statistics, every type, and its queue: one query of the statistics, one read of the queued count
/// and one single-item query per priority of the table queue, all at once.
pub async fn read(store: &DynStore, tenant: &str) -> Result<TaskMetrics, StoreError> {
    let (page, queue) = tokio::join!(
        store.query(Query::partition(keys::job_stats_partition(tenant)).limit(100)),
        queue_stats(store, tenant)
    );
    let page = page?;
    let mut metrics = TaskMetrics::default();
    for item in &page.items {
        let Some(kind) = item.key().map(|k| k.sk) else { continue };
        let buckets: Vec<u64> = (0..=BUCKETS_MS.len()).map(|i| count(item, &bucket_attr(i))).collect();
        let timed = count(item, "timed");
        let stats = TypeStats {
            total: count(item, "total"),
            succeeded: count(item, "succeeded"),
            failed: count(item, "failed"),
            timed_out: count(item, "timed_out"),
            cancelled: count(item, "cancelled"),
            latency_ms: Latency {
                p50: percentile(&buckets, 0.50),
                p95: percentile(&buckets, 0.95),
                p99: percentile(&buckets, 0.99),
                mean: (timed > 0).then(|| count(item, "duration_ms_sum") as f64 / timed as f64),
            },
        };
        metrics.total += stats.total;
        metrics.succeeded += stats.succeeded;
        metrics.failed += stats.failed;
        metrics.timed_out += stats.timed_out;
        metrics.cancelled += stats.cancelled;
        metrics.by_type.insert(kind, stats);
    }
    metrics.success_rate = (metrics.total > 0).then(|| metrics.succeeded as f64 / metrics.total as f64);
    metrics.queue = queue?;
    Ok(metrics)
}

/// The tenant's queued count, and the earliest due time among its due items in the table queue (each priority's
/// partition is ordered by due time, so its first item is its oldest).
async fn queue_stats(store: &DynStore, tenant: &str) -> Result<QueueStats, StoreError> {
    let count_key = keys::queued_count(tenant);
    let count = store.get(&count_key);
    let firsts = futures_util::future::join_all(
        [Priority::High, Priority::Normal, Priority::Low]
            .map(|p| store.query(Query::partition(keys::due_partition(p.rank(), tenant)).limit(1))),
    );
    let (count, firsts) = tokio::join!(count, firsts);
    let depth = count?.as_ref().map_or(0, |item| u64::try_from(item.get_i64("n").unwrap_or(0)).unwrap_or(0));
    let mut oldest: Option<i64> = None;
    for page in firsts {
        let due =
            page?.items.first().and_then(|item| item.get_str(crate::store::SK)?.split('#').next()?.parse::<i64>().ok());
        oldest = match (oldest, due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    let oldest_due_at = oldest
        .and_then(|ms| time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok());
    Ok(QueueStats { depth, oldest_due_at })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_bucket_bounds() {
        let mut buckets = vec![0; BUCKETS_MS.len() + 1];
        buckets[bucket_of(3)] = 90; // ≤ 5 ms
        buckets[bucket_of(700)] = 9; // ≤ 1000 ms
        buckets[bucket_of(90_000)] = 1; // above every bound
        assert_eq!(percentile(&buckets, 0.5), Some(5));
        assert_eq!(percentile(&buckets, 0.95), Some(1000));
        assert_eq!(percentile(&buckets, 0.99), Some(1000));
        assert_eq!(percentile(&buckets, 1.0), Some(60_000));
        assert_eq!(percentile(&[0; 16], 0.5), None);
    }
}
