//! The overhead of a breaker-wrapped call over a bare call (an async call that returns at once).
//! Run: `cargo bench --bench breaker` (BENCHMARKS.md has the numbers).
#![allow(missing_docs)]

use std::hint::black_box;

use cloud_agent::breaker::{Breaker, BreakerConfig};
use criterion::{Criterion, criterion_group, criterion_main};

#[allow(clippy::unused_async)] // stands for an async dependency call
async fn dependency(x: u64) -> Result<u64, ()> {
    Ok(black_box(x) + 1)
}

fn breaker_overhead(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let breaker = runtime.block_on(async { Breaker::new("bench", BreakerConfig::default()) });
    c.bench_function("bare call", |b| b.to_async(&runtime).iter(|| async { black_box(dependency(7).await) }));
    c.bench_function("breaker-wrapped call (closed, time window)", |b| {
        b.to_async(&runtime).iter(|| async { black_box(breaker.call(|(): &()| true, || dependency(7)).await) });
    });
    let open = runtime.block_on(async {
        let b = Breaker::new("open", BreakerConfig::default());
        b.isolate();
        b
    });
    c.bench_function("breaker-wrapped call (open: rejected)", |b| {
        b.to_async(&runtime).iter(|| async { black_box(open.call(|(): &()| true, || dependency(7)).await.is_err()) });
    });
}

criterion_group!(benches, breaker_overhead);
criterion_main!(benches);
