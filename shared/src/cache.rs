//! An LRU cache with TTL, bounded by entry count and by approximate bytes, with hit/miss/eviction counters and
//! `get_or_load`, which lets only one loader run per key (the others wait for its value).
//!
//! Expired entries are not served as fresh, but they stay (until evicted) so a caller may serve them as stale
//! when the source is down — the "CACHE" fallback. The cache is per instance, like every in-memory structure
//! on serverless platforms.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lru::LruCache;
use serde::Serialize;
use tokio::time::Instant;

/// How a value was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum CacheStatus {
    Hit,
    Miss,
    /// Expired, served because the source failed.
    Stale,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
            Self::Stale => "STALE",
        }
    }
}

/// Counters for the health monitor and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub stale: u64,
    pub evictions: u64,
    pub loads: u64,
    pub entries: usize,
    pub bytes: usize,
}

#[derive(Debug, Clone)]
struct Entry<V> {
    value: V,
    stored: Instant,
    bytes: usize,
}

#[derive(Debug)]
struct Inner<K: Hash + Eq, V> {
    lru: LruCache<K, Entry<V>>,
    bytes: usize,
}

/// The cache. Values are cloned out, so keep them cheap to clone (`Arc` for big ones).
pub struct Cache<K: Hash + Eq, V> {
    inner: Mutex<Inner<K, V>>,
    loaders: Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>,
    ttl: Duration,
    max_bytes: usize,
    weigh: fn(&V) -> usize,
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
    evictions: AtomicU64,
    loads: AtomicU64,
}

impl<K: Hash + Eq, V> std::fmt::Debug for Cache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("ttl", &self.ttl).field("max_bytes", &self.max_bytes).finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Cache<K, V> {
    /// `capacity` entries and `max_bytes` (as `weigh` counts them), whichever is reached first.
    pub fn new(capacity: NonZeroUsize, max_bytes: usize, ttl: Duration, weigh: fn(&V) -> usize) -> Self {
        Self {
            inner: Mutex::new(Inner { lru: LruCache::new(capacity), bytes: 0 }),
            loaders: Mutex::new(HashMap::new()),
            ttl,
            max_bytes,
            weigh,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            loads: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K, V>> {
        // A panic while holding the lock leaves consistent data (each step is a single LRU call).
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A fresh value, counting a hit or a miss. Looked up by any borrowed form of the key (`&str` for a
    /// `String` key), so a lookup allocates nothing.
    pub fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let found = self.fresh(key);
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    fn fresh<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let mut inner = self.lock();
        let entry = inner.lru.get(key)?;
        (entry.stored.elapsed() < self.ttl).then(|| entry.value.clone())
    }

    /// The value even if expired (for the stale fallback), as long as it was loaded less than `max_age` ago;
    /// counts as stale when it is expired.
    pub fn get_stale(&self, key: &K, max_age: Duration) -> Option<V> {
        let mut inner = self.lock();
        let entry = inner.lru.get(key)?;
        if entry.stored.elapsed() >= max_age {
            return None;
        }
        if entry.stored.elapsed() >= self.ttl {
            self.stale.fetch_add(1, Ordering::Relaxed);
        }
        Some(entry.value.clone())
    }

    pub fn insert(&self, key: K, value: V) {
        let bytes = (self.weigh)(&value);
        if bytes > self.max_bytes {
            return; // Larger than the whole cache: caching it would only evict everything else.
        }
        let mut inner = self.lock();
        if let Some(old) = inner.lru.pop(&key) {
            inner.bytes -= old.bytes;
        }
        while inner.bytes + bytes > self.max_bytes {
            match inner.lru.pop_lru() {
                Some((_, evicted)) => {
                    inner.bytes -= evicted.bytes;
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                }
                None => break,
            }
        }
        if let Some((_, evicted)) = inner.lru.push(key, Entry { value, stored: Instant::now(), bytes }) {
            // `push` hands back the least recently used entry when at capacity.
            inner.bytes -= evicted.bytes;
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        inner.bytes += bytes;
    }

    pub fn remove<Q: Hash + Eq + ?Sized>(&self, key: &Q)
    where
        K: Borrow<Q>,
    {
        let mut inner = self.lock();
        if let Some(old) = inner.lru.pop(key) {
            inner.bytes -= old.bytes;
        }
    }

    /// The fresh value, or the result of `load` — run by exactly one caller per key at a time; concurrent
    /// callers for the same key wait and then get the value it stored.
    pub async fn get_or_load<E, F, Fut>(&self, key: K, load: F) -> Result<(V, CacheStatus), E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<V, E>>,
    {
        if let Some(value) = self.fresh(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok((value, CacheStatus::Hit));
        }
        let gate = {
            let mut loaders = self.loaders.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            loaders.entry(key.clone()).or_default().clone()
        };
        let turn = gate.lock().await;
        let outcome = if let Some(value) = self.fresh(&key) {
            // Another caller loaded it while we waited.
            self.hits.fetch_add(1, Ordering::Relaxed);
            Ok((value, CacheStatus::Hit))
        } else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            self.loads.fetch_add(1, Ordering::Relaxed);
            let loaded = load().await;
            if let Ok(value) = &loaded {
                self.insert(key.clone(), value.clone());
            }
            loaded.map(|value| (value, CacheStatus::Miss))
        };
        drop(turn);
        let mut loaders = self.loaders.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget the gate once no other caller holds it, so the map does not grow with every key ever seen.
        if Arc::strong_count(&gate) <= 2 {
            loaders.remove(&key);
        }
        outcome
    }

    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            loads: self.loads.load(Ordering::Relaxed),
            entries: inner.lru.len(),
            bytes: inner.bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn cache(capacity: usize, max_bytes: usize, ttl_secs: u64) -> Cache<String, String> {
        Cache::new(NonZeroUsize::new(capacity).unwrap(), max_bytes, Duration::from_secs(ttl_secs), String::len)
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_the_ttl_but_remain_for_stale_reads() {
        let c = cache(10, 1000, 300);
        c.insert("u1".into(), "ctx".into());
        assert_eq!(c.get("u1").as_deref(), Some("ctx"));
        tokio::time::advance(Duration::from_secs(301)).await;
        assert_eq!(c.get("u1"), None, "expired: not fresh");
        assert_eq!(
            c.get_stale(&"u1".into(), Duration::from_hours(1)).as_deref(),
            Some("ctx"),
            "but still there for the fallback"
        );
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.stale), (1, 1, 1));
        tokio::time::advance(Duration::from_mins(55)).await;
        assert_eq!(c.get_stale(&"u1".into(), Duration::from_hours(1)), None, "older than the stale limit: gone");
    }

    #[tokio::test(start_paused = true)]
    async fn least_recently_used_goes_first_by_count() {
        let c = cache(2, 1000, 300);
        c.insert("a".into(), "1".into());
        c.insert("b".into(), "2".into());
        c.get("a");
        c.insert("c".into(), "3".into());
        assert!(c.get("b").is_none(), "b was least recently used");
        assert!(c.get("a").is_some());
        assert_eq!(c.stats().evictions, 1);
        assert_eq!(c.stats().entries, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_byte_budget_evicts_too() {
        let c = cache(100, 10, 300);
        c.insert("a".into(), "xxxx".into());
        c.insert("b".into(), "yyyy".into());
        c.insert("c".into(), "zzzz".into());
        let s = c.stats();
        assert!(s.bytes <= 10, "{s:?}");
        assert_eq!(s.entries, 2);
        assert!(c.get("a").is_none());
        c.insert("big".into(), "x".repeat(50));
        assert!(c.get("big").is_none(), "a value larger than the cache is not cached");
        c.insert("a".into(), "12".into());
        c.insert("a".into(), "123".into());
        assert_eq!(c.stats().bytes, 3 + 4 + 4 - 4, "replacing a key re-counts its bytes");
    }

    #[tokio::test]
    async fn only_one_loader_runs_per_key() {
        let c = Arc::new(cache(10, 1000, 300));
        let loads = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (c, loads) = (c.clone(), loads.clone());
            tasks.push(tokio::spawn(async move {
                c.get_or_load("u1".to_owned(), || async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, ()>("ctx".to_owned())
                })
                .await
            }));
        }
        let mut statuses = Vec::new();
        for t in tasks {
            let (value, status) = t.await.unwrap().unwrap();
            assert_eq!(value, "ctx");
            statuses.push(status);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1, "one loader for 50 concurrent callers");
        assert_eq!(statuses.iter().filter(|s| **s == CacheStatus::Miss).count(), 1);
        assert!(c.loaders.lock().unwrap().is_empty(), "loader gates are not kept");
    }

    #[tokio::test]
    async fn a_failed_load_is_not_cached() {
        let c = cache(10, 1000, 300);
        let r: Result<_, &str> = c.get_or_load("k".to_owned(), || async { Err("down") }).await;
        assert_eq!(r, Err("down"));
        let (v, s) = c.get_or_load("k".to_owned(), || async { Ok::<_, &str>("up".to_owned()) }).await.unwrap();
        assert_eq!((v.as_str(), s), ("up", CacheStatus::Miss));
    }
}
