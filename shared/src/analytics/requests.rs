//! Requests counted per tenant, route and UTC hour — invocations and their durations, what a platform bills.
//! Counting each request in the table would add a store call to every request; instead each instance adds up its
//! own in memory and writes its sums (one `UpdateItem` of `ADD`s per tenant, route and hour) when a request ends
//! at least [`FlushPolicy::every`] after the last write. The write happens in that request, before its response
//! (an instance may freeze right after answering); an instance that dies takes at most that interval's counts
//! with it, so the figures are a floor, never inflated.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::hours::{self, RETENTION_SECS, hour_of};
use super::sketch::{Sketch, count};
use crate::store::{DynStore, EXPIRES_AT, StoreError, Update, keys};

/// When an instance writes what it counted.
#[derive(Debug, Clone, Copy)]
pub struct FlushPolicy {
    pub every: Duration,
}

impl Default for FlushPolicy {
    fn default() -> Self {
        Self { every: Duration::from_secs(30) }
    }
}

#[derive(Debug, Default, Clone)]
struct Sums {
    total: u64,
    server_errors: u64,
    client_errors: u64,
    duration_ms_sum: u64,
    durations: Sketch,
}

/// Counts of one tenant, route and hour not yet written.
#[derive(Debug)]
pub struct Pending {
    tenant: String,
    route: &'static str,
    /// Hours since the epoch (formatted only when written).
    hour: i64,
    sums: Sums,
}

/// This instance's unwritten counts.
#[derive(Debug)]
pub struct RequestLedger {
    policy: FlushPolicy,
    state: Mutex<LedgerState>,
}

#[derive(Debug)]
struct LedgerState {
    pending: Vec<Pending>,
    last_flush: Instant,
    flushing: bool,
}

impl RequestLedger {
    pub fn new(policy: FlushPolicy) -> Self {
        Self {
            policy,
            state: Mutex::new(LedgerState { pending: Vec::new(), last_flush: Instant::now(), flushing: false }),
        }
    }

    /// Counts one request; when a write is due, returns what to write (the caller writes it with [`flush`]).
    pub fn count(&self, tenant: &str, route: &'static str, status: u16, took: Duration) -> Option<Vec<Pending>> {
        let hour = time::OffsetDateTime::now_utc().unix_timestamp().div_euclid(3600);
        let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // A short list (an instance serves a few tenants and routes): a scan, and no allocation for a known one.
        let at = state.pending.iter().position(|p| p.route == route && p.tenant == tenant && p.hour == hour);
        let i = at.unwrap_or_else(|| {
            state.pending.push(Pending { tenant: tenant.to_owned(), route, hour, sums: Sums::default() });
            state.pending.len() - 1
        });
        let sums = &mut state.pending[i].sums;
        sums.total += 1;
        sums.server_errors += u64::from(status >= 500);
        sums.client_errors += u64::from((400..500).contains(&status));
        sums.duration_ms_sum += ms;
        sums.durations.add(ms);
        if state.flushing || state.last_flush.elapsed() < self.policy.every {
            return None;
        }
        state.flushing = true;
        Some(std::mem::take(&mut state.pending))
    }

    /// Writes `pending` (taken by [`RequestLedger::count`]); what could not be written is kept for the next time.
    pub async fn flush(&self, store: &DynStore, pending: Vec<Pending>) {
        let writes = pending.iter().map(|p| write(store, p));
        let outcomes = futures_util::future::join_all(writes).await;
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (p, outcome) in pending.into_iter().zip(outcomes) {
            if let Err(e) = outcome {
                tracing::warn!(error = %e, route = p.route, "request counts not written; kept for the next write");
                match state.pending.iter_mut().find(|q| q.route == p.route && q.tenant == p.tenant && q.hour == p.hour)
                {
                    Some(q) => {
                        q.sums.total += p.sums.total;
                        q.sums.server_errors += p.sums.server_errors;
                        q.sums.client_errors += p.sums.client_errors;
                        q.sums.duration_ms_sum += p.sums.duration_ms_sum;
                        q.sums.durations.merge(&p.sums.durations);
                    }
                    None => state.pending.push(p),
                }
            }
        }
        state.last_flush = Instant::now();
        state.flushing = false;
    }

    /// Writes everything counted now, due or not (a local server's shutdown, tests).
    pub async fn flush_now(&self, store: &DynStore) {
        let pending = {
            let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if state.flushing {
                return;
            }
            state.flushing = true;
            std::mem::take(&mut state.pending)
        };
        self.flush(store, pending).await;
    }
}

async fn write(store: &DynStore, p: &Pending) -> Result<(), StoreError> {
    let s = &p.sums;
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let mut update = Update::new()
        .add("total", n(s.total))
        .add("server_errors", n(s.server_errors))
        .add("client_errors", n(s.client_errors))
        .add("duration_ms_sum", n(s.duration_ms_sum));
    update = s.durations.add_to(update);
    let start = p.hour * 3600;
    update = update.set(EXPIRES_AT, start + RETENTION_SECS);
    let hour = hour_of(time::OffsetDateTime::from_unix_timestamp(start).unwrap_or(time::OffsetDateTime::UNIX_EPOCH));
    store.update(&keys::request_hour(&p.tenant, &hour, p.route), update, None).await?;
    Ok(())
}

/// One hour of one route's requests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestHour {
    pub hour: String,
    pub route: String,
    pub total: u64,
    pub server_errors: u64,
    pub client_errors: u64,
    pub duration_ms_sum: u64,
    pub durations: Sketch,
}

/// Every request hour item of the tenant from hour `from` to hour `to` (inclusive).
pub async fn read(store: &DynStore, tenant: &str, from: &str, to: &str) -> Result<Vec<RequestHour>, StoreError> {
    let items = hours::read(store, keys::request_hours_partition(tenant), from, to).await?;
    Ok(items
        .into_iter()
        .map(|(hour, route, item)| RequestHour {
            hour,
            route,
            total: count(&item, "total"),
            server_errors: count(&item, "server_errors"),
            client_errors: count(&item, "client_errors"),
            duration_ms_sum: count(&item, "duration_ms_sum"),
            durations: Sketch::from_item(&item),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn counts_add_up_in_memory_until_a_write_is_due() {
        let ledger = RequestLedger::new(FlushPolicy { every: Duration::from_secs(30) });
        for status in [200, 200, 404, 503] {
            assert!(ledger.count("acme", "/v3/tasks", status, Duration::from_millis(12)).is_none(), "not due yet");
        }
        assert!(ledger.count("globex", "/v3/tasks", 200, Duration::from_millis(3)).is_none());
        tokio::time::advance(Duration::from_secs(30)).await;
        let due = ledger.count("acme", "/v3/tasks", 200, Duration::from_millis(20)).expect("due after 30 s");
        assert_eq!(due.len(), 2, "one entry per tenant and route: {due:?}");
        let acme = due.iter().find(|p| p.tenant == "acme").unwrap();
        assert_eq!((acme.sums.total, acme.sums.server_errors, acme.sums.client_errors), (5, 1, 1));
        assert_eq!(acme.sums.duration_ms_sum, 4 * 12 + 20);
        assert_eq!(acme.sums.durations.count(), 5);
        // While one request writes, the others only count.
        tokio::time::advance(Duration::from_mins(1)).await;
        assert!(ledger.count("acme", "/v3/tasks", 200, Duration::from_millis(1)).is_none(), "a write is under way");
    }
}
