//! The request batcher: groups items by key and flushes a group when it holds `max_items` or its oldest item
//! is `max_delay` old, whichever comes first. Memory is bounded: at most `max_pending` items wait at once, and
//! a full batcher makes `submit` wait (back-pressure) instead of dropping anything. Every submitted item
//! resolves its own outcome exactly once — accepted (with the flush's value), rejected, or failed — including
//! on explicit `flush()`, on `shutdown()` and when the batcher is dropped.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// When groups flush and how much may wait.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    pub max_items: usize,
    pub max_delay: Duration,
    /// Items accepted but not yet resolved, across all groups; `submit` waits beyond this.
    pub max_pending: usize,
    /// Flushes running at once; further full groups wait their turn (no thundering herd on the backend).
    pub max_inflight: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self { max_items: 10, max_delay: Duration::from_secs(5), max_pending: 10_000, max_inflight: 4 }
    }
}

/// Why an item was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The flush looked at this item and refused it (bad input): retrying will not help.
    #[error("rejected: {0}")]
    Rejected(String),
    /// The flush could not complete this item, retries included.
    #[error("failed: {0}")]
    Failed(String),
    /// The batcher stopped before taking the item.
    #[error("the batcher has shut down")]
    Closed,
}

/// What a flush returns: one outcome per item, in order.
pub type Outcomes<O> = Vec<Result<O, BatchError>>;
type FlushFn<K, T, O> = Arc<dyn Fn(K, Vec<T>) -> Pin<Box<dyn Future<Output = Outcomes<O>> + Send>> + Send + Sync>;

struct Pending<T, O> {
    item: T,
    reply: oneshot::Sender<Result<O, BatchError>>,
    // Held until the item resolves: this is what bounds memory.
    permit: OwnedSemaphorePermit,
}

enum Command<K, T, O> {
    Item(K, Pending<T, O>),
    Flush(oneshot::Sender<()>),
}

/// A handle to submit items; cheap to clone. The batcher's task flushes everything and stops when the last
/// handle is dropped or [`Batcher::shutdown`] is called.
pub struct Batcher<K, T, O> {
    tx: mpsc::UnboundedSender<Command<K, T, O>>,
    permits: Arc<Semaphore>,
    done: Arc<tokio::sync::Notify>,
    finished: Arc<std::sync::atomic::AtomicBool>,
}

impl<K, T, O> Clone for Batcher<K, T, O> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            permits: self.permits.clone(),
            done: self.done.clone(),
            finished: self.finished.clone(),
        }
    }
}

impl<K, T, O> std::fmt::Debug for Batcher<K, T, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").field("free_slots", &self.permits.available_permits()).finish_non_exhaustive()
    }
}

impl<K, T, O> Batcher<K, T, O>
where
    K: Hash + Eq + Clone + Send + 'static,
    T: Send + 'static,
    O: Send + 'static,
{
    /// Starts the batcher's task on the current tokio runtime.
    pub fn new<F, Fut>(config: BatchConfig, flush: F) -> Self
    where
        F: Fn(K, Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcomes<O>> + Send + 'static,
    {
        assert!(
            config.max_items > 0 && config.max_pending > 0 && config.max_inflight > 0,
            "batch sizes must be positive"
        );
        let (tx, rx) = mpsc::unbounded_channel();
        let flush: FlushFn<K, T, O> = Arc::new(move |key, items| Box::pin(flush(key, items)));
        let done = Arc::new(tokio::sync::Notify::new());
        let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (d, f) = (done.clone(), finished.clone());
        tokio::spawn(async move {
            run(rx, config, flush).await;
            f.store(true, std::sync::atomic::Ordering::SeqCst);
            d.notify_waiters();
        });
        Self { tx, permits: Arc::new(Semaphore::new(config.max_pending)), done, finished }
    }

    /// Queues an item and returns at once with a receiver of its outcome; waits only while the batcher is full.
    pub async fn enqueue(&self, key: K, item: T) -> Result<oneshot::Receiver<Result<O, BatchError>>, BatchError> {
        let permit = self.permits.clone().acquire_owned().await.map_err(|_| BatchError::Closed)?;
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Item(key, Pending { item, reply, permit })).map_err(|_| BatchError::Closed)?;
        Ok(rx)
    }

    /// Queues an item and waits for its outcome.
    pub async fn submit(&self, key: K, item: T) -> Result<O, BatchError> {
        let rx = self.enqueue(key, item).await?;
        rx.await.unwrap_or(Err(BatchError::Closed))
    }

    /// Flushes every group now and waits until their flushes have finished.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Flushes everything and stops: items queued before this call all resolve; later ones get `Closed`.
    pub async fn shutdown(self) {
        self.flush().await;
        self.permits.close();
        let (done, finished) = (self.done.clone(), self.finished.clone());
        let notified = done.notified();
        drop(self);
        if !finished.load(std::sync::atomic::Ordering::SeqCst) {
            // Other clones may keep the task alive; what we queued is already flushed.
            let _ = tokio::time::timeout(Duration::from_millis(1), notified).await;
        }
    }
}

struct Group<T, O> {
    oldest: Instant,
    items: Vec<Pending<T, O>>,
}

async fn run<K, T, O>(mut rx: mpsc::UnboundedReceiver<Command<K, T, O>>, config: BatchConfig, flush: FlushFn<K, T, O>)
where
    K: Hash + Eq + Clone + Send + 'static,
    T: Send + 'static,
    O: Send + 'static,
{
    let mut groups: HashMap<K, Group<T, O>> = HashMap::new();
    let mut inflight: JoinSet<()> = JoinSet::new();
    loop {
        let deadline = groups.values().map(|g| g.oldest + config.max_delay).min();
        tokio::select! {
            command = rx.recv() => match command {
                Some(Command::Item(key, pending)) => {
                    let group = groups.entry(key.clone()).or_insert_with(|| Group { oldest: Instant::now(), items: Vec::new() });
                    group.items.push(pending);
                    if group.items.len() >= config.max_items
                        && let Some(group) = groups.remove(&key)
                    {
                        start(&mut inflight, &flush, key, group, config.max_inflight).await;
                    }
                }
                Some(Command::Flush(done)) => {
                    for (key, group) in groups.drain() {
                        start(&mut inflight, &flush, key, group, config.max_inflight).await;
                    }
                    while inflight.join_next().await.is_some() {}
                    let _ = done.send(());
                }
                None => {
                    // Every handle is gone: flush what is left (flush on drop) and stop.
                    for (key, group) in groups.drain() {
                        start(&mut inflight, &flush, key, group, config.max_inflight).await;
                    }
                    while inflight.join_next().await.is_some() {}
                    return;
                }
            },
            () = sleep_until(deadline), if deadline.is_some() => {
                let now = Instant::now();
                let due: Vec<K> = groups.iter().filter(|(_, g)| g.oldest + config.max_delay <= now).map(|(k, _)| k.clone()).collect();
                for key in due {
                    if let Some(group) = groups.remove(&key) {
                        start(&mut inflight, &flush, key, group, config.max_inflight).await;
                    }
                }
            }
            Some(_) = inflight.join_next(), if !inflight.is_empty() => {}
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline).await;
    }
}

async fn start<K, T, O>(
    inflight: &mut JoinSet<()>,
    flush: &FlushFn<K, T, O>,
    key: K,
    group: Group<T, O>,
    max_inflight: usize,
) where
    K: Send + 'static,
    T: Send + 'static,
    O: Send + 'static,
{
    while inflight.len() >= max_inflight {
        inflight.join_next().await;
    }
    let flush = flush.clone();
    inflight.spawn(async move {
        let (items, waiting): (Vec<T>, Vec<_>) = group.items.into_iter().map(|p| (p.item, (p.reply, p.permit))).unzip();
        let count = items.len();
        // Run the flush in its own task so a panic in it fails these items instead of the batcher.
        let failed = |why: String| (0..count).map(|_| Err(BatchError::Failed(why.clone()))).collect::<Vec<_>>();
        let outcomes = match tokio::spawn(flush(key, items)).await {
            Ok(outcomes) if outcomes.len() == count => outcomes,
            Ok(outcomes) => failed(format!("flush returned {} outcomes for {count} items", outcomes.len())),
            Err(e) => failed(format!("flush crashed: {e}")),
        };
        for ((reply, permit), outcome) in waiting.into_iter().zip(outcomes) {
            let _ = reply.send(outcome);
            drop(permit);
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    type Log = Arc<Mutex<Vec<(String, Vec<u32>)>>>;

    fn recording(config: BatchConfig) -> (Batcher<String, u32, u32>, Log) {
        let log: Log = Arc::default();
        let l = log.clone();
        let batcher = Batcher::new(config, move |key: String, items: Vec<u32>| {
            let l = l.clone();
            async move {
                l.lock().unwrap().push((key, items.clone()));
                items
                    .into_iter()
                    .map(|i| if i == 13 { Err(BatchError::Rejected("unlucky".into())) } else { Ok(i * 10) })
                    .collect()
            }
        });
        (batcher, log)
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_group_flushes_at_once() {
        let (batcher, log) = recording(BatchConfig { max_items: 3, ..BatchConfig::default() });
        let mut waits = Vec::new();
        for i in 0..3 {
            waits.push(batcher.enqueue("a".into(), i).await.unwrap());
        }
        let started = Instant::now();
        for (i, rx) in waits.into_iter().enumerate() {
            assert_eq!(rx.await.unwrap(), Ok(i as u32 * 10));
        }
        assert_eq!(started.elapsed(), Duration::ZERO, "no waiting for the timer");
        assert_eq!(log.lock().unwrap().as_slice(), &[("a".to_owned(), vec![0, 1, 2])]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_group_flushes_after_max_delay() {
        let (batcher, log) =
            recording(BatchConfig { max_items: 10, max_delay: Duration::from_secs(5), ..BatchConfig::default() });
        let started = Instant::now();
        let outcome = batcher.submit("a".into(), 7).await;
        assert_eq!(outcome, Ok(70));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(log.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_counts_from_the_oldest_item() {
        let (batcher, log) =
            recording(BatchConfig { max_items: 10, max_delay: Duration::from_secs(5), ..BatchConfig::default() });
        let first = batcher.enqueue("a".into(), 1).await.unwrap();
        tokio::time::sleep(Duration::from_secs(4)).await;
        let second = batcher.enqueue("a".into(), 2).await.unwrap();
        assert_eq!(first.await.unwrap(), Ok(10));
        assert_eq!(second.await.unwrap(), Ok(20), "the late item rides along with the group");
        assert_eq!(log.lock().unwrap().as_slice(), &[("a".to_owned(), vec![1, 2])]);
    }

    #[tokio::test(start_paused = true)]
    async fn groups_are_kept_apart_by_key() {
        let (batcher, log) = recording(BatchConfig { max_items: 2, ..BatchConfig::default() });
        let a1 = batcher.enqueue("a".into(), 1).await.unwrap();
        let b1 = batcher.enqueue("b".into(), 2).await.unwrap();
        let a2 = batcher.enqueue("a".into(), 3).await.unwrap();
        assert_eq!(a1.await.unwrap(), Ok(10));
        assert_eq!(a2.await.unwrap(), Ok(30));
        assert_eq!(log.lock().unwrap().as_slice(), &[("a".to_owned(), vec![1, 3])], "b is still waiting");
        assert_eq!(b1.await.unwrap(), Ok(20));
    }

    #[tokio::test(start_paused = true)]
    async fn each_item_gets_its_own_outcome() {
        let (batcher, _) = recording(BatchConfig { max_items: 3, ..BatchConfig::default() });
        let rxs = [
            batcher.enqueue("a".into(), 12).await.unwrap(),
            batcher.enqueue("a".into(), 13).await.unwrap(),
            batcher.enqueue("a".into(), 14).await.unwrap(),
        ];
        let mut outcomes = Vec::new();
        for rx in rxs {
            outcomes.push(rx.await.unwrap());
        }
        assert_eq!(outcomes, vec![Ok(120), Err(BatchError::Rejected("unlucky".into())), Ok(140)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batcher_makes_submitters_wait_instead_of_dropping() {
        let release = Arc::new(tokio::sync::Notify::new());
        let flushed = Arc::new(AtomicUsize::new(0));
        let (r, f) = (release.clone(), flushed.clone());
        let batcher: Batcher<(), u32, ()> = Batcher::new(
            BatchConfig { max_items: 2, max_delay: Duration::from_secs(1), max_pending: 2, max_inflight: 4 },
            move |(), items: Vec<u32>| {
                let (r, f) = (r.clone(), f.clone());
                async move {
                    r.notified().await;
                    f.fetch_add(items.len(), Ordering::SeqCst);
                    vec![Ok(()); items.len()]
                }
            },
        );
        let first = batcher.enqueue((), 1).await.unwrap();
        let second = batcher.enqueue((), 2).await.unwrap();
        let b = batcher.clone();
        let third = tokio::spawn(async move { b.enqueue((), 3).await.map(|_| ()) });
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!third.is_finished(), "the third item waits for room: back-pressure, not a drop");
        release.notify_one();
        assert_eq!(first.await.unwrap(), Ok(()));
        assert_eq!(second.await.unwrap(), Ok(()));
        third.await.unwrap().unwrap();
        release.notify_one();
        batcher.flush().await;
        assert_eq!(flushed.load(Ordering::SeqCst), 3, "all three flushed, none dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn flush_and_shutdown_resolve_everything_exactly_once() {
        let (batcher, log) =
            recording(BatchConfig { max_items: 100, max_delay: Duration::from_hours(1), ..BatchConfig::default() });
        let mut rxs = Vec::new();
        for i in 0..25u32 {
            let key = if i % 2 == 0 { "even" } else { "odd" };
            rxs.push(batcher.enqueue(key.into(), i).await.unwrap());
        }
        batcher.flush().await;
        for (i, rx) in (0..25u32).zip(rxs) {
            let expected = if i == 13 { Err(BatchError::Rejected("unlucky".into())) } else { Ok(i * 10) };
            assert_eq!(rx.await.unwrap(), expected);
        }
        let more = batcher.enqueue("x".into(), 99).await.unwrap();
        batcher.shutdown().await;
        assert_eq!(more.await.unwrap(), Ok(990), "shutdown flushes what was queued");
        let all: Vec<u32> = log.lock().unwrap().iter().flat_map(|(_, items)| items.clone()).collect();
        let mut sorted = all.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(all.len(), 26, "every item flushed once");
        assert_eq!(sorted.len(), 26, "no item flushed twice");
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_last_handle_flushes() {
        let (batcher, log) =
            recording(BatchConfig { max_items: 100, max_delay: Duration::from_hours(1), ..BatchConfig::default() });
        let rx = batcher.enqueue("a".into(), 5).await.unwrap();
        drop(batcher);
        assert_eq!(rx.await.unwrap(), Ok(50));
        assert_eq!(log.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_flush_fails_its_items_and_the_batcher_goes_on() {
        let batcher: Batcher<(), u32, u32> =
            Batcher::new(BatchConfig { max_items: 1, ..BatchConfig::default() }, |(), items: Vec<u32>| async move {
                assert!(items[0] != 0, "boom");
                items.into_iter().map(Ok).collect()
            });
        assert!(matches!(batcher.submit((), 0).await, Err(BatchError::Failed(_))));
        assert_eq!(batcher.submit((), 4).await, Ok(4));
    }
}
