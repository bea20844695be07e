//! Cache costs: a hit, a miss, and an insert (with eviction once full).
//! Run: `cargo bench --bench cache` (BENCHMARKS.md has the numbers).
#![allow(missing_docs)]

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::time::Duration;

use cloud_agent::cache::Cache;
use criterion::{Criterion, criterion_group, criterion_main};

fn cache_costs(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let _guard = runtime.enter();
    let cache: Cache<String, String> =
        Cache::new(NonZeroUsize::new(10_000).unwrap(), 64 * 1024 * 1024, Duration::from_mins(5), String::len);
    for i in 0..10_000 {
        cache.insert(format!("user-{i}"), "x".repeat(512));
    }
    let hit = "user-5000".to_owned();
    let miss = "nobody".to_owned();
    c.bench_function("cache: get (hit, 10k entries)", |b| b.iter(|| black_box(cache.get(black_box(&hit)))));
    c.bench_function("cache: get (miss)", |b| b.iter(|| black_box(cache.get(black_box(&miss)))));
    let mut n = 0u64;
    c.bench_function("cache: insert 512 B (evicts, full cache)", |b| {
        b.iter(|| {
            n += 1;
            cache.insert(format!("new-{n}"), "y".repeat(512));
        });
    });
}

criterion_group!(benches, cache_costs);
criterion_main!(benches);
