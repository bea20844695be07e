//! Progress ingestion on the local server (the same router `cloudagent serve` runs, on the embedded store):
//! throughput in updates/s for batches of 10 and 100 from 4 concurrent agents, and per-request overhead
//! (median latency of a one-update POST next to `GET /health`). Run: `cargo bench --bench progress_ingest`.
#![allow(missing_docs)]

#[path = "../tests/api/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use serde_json::json;

const RUN: Duration = Duration::from_secs(5);
const CLIENTS: usize = 4;

fn update(task: usize, n: usize) -> serde_json::Value {
    json!({"task_id": format!("bench-{task}"), "progress": (n % 100) as f64, "status": "running",
           "timestamp": format!("2026-11-23T10:{:02}:{:02}.{:03}Z", (n / 60_000) % 60, (n / 1000) % 60, n % 1000), "seq": n})
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return; // `cargo test --all-targets` builds benches too; nothing to measure there.
    }
    // The tests' harness: the whole router on the embedded store, on a random port.
    let app = common::TestApp::builder().env("RUST_LOG", "error").spawn().await;
    let base = app.address.clone();
    let client = reqwest::Client::new();

    println!("| load | updates/s | requests/s | median request |");
    println!("|---|---|---|---|");
    for batch in [10usize, 100] {
        let started = Instant::now();
        let mut workers = Vec::new();
        for c in 0..CLIENTS {
            let (client, base) = (client.clone(), base.clone());
            let token = app.access_token(&format!("agent-{c}"), "u");
            workers.push(tokio::spawn(async move {
                let (mut updates, mut latencies, mut n) = (0usize, Vec::new(), 0usize);
                while started.elapsed() < RUN {
                    let items: Vec<_> = (0..batch)
                        .map(|i| {
                            update(c * 1000 + i % 50, {
                                n += 1;
                                n
                            })
                        })
                        .collect();
                    let t = Instant::now();
                    let r = client
                        .post(format!("{base}/api/v1/agent/progress"))
                        .bearer_auth(&token)
                        .json(&json!({"updates": items}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 202);
                    let receipt: serde_json::Value = r.json().await.unwrap();
                    latencies.push(t.elapsed());
                    updates += receipt["accepted"].as_u64().unwrap() as usize;
                }
                (updates, latencies)
            }));
        }
        let (mut updates, mut latencies) = (0, Vec::new());
        for w in workers {
            let (u, l) = w.await.unwrap();
            updates += u;
            latencies.extend(l);
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "| {CLIENTS} agents, batches of {batch} | {:.0} | {:.0} | {:.2} ms |",
            updates as f64 / secs,
            latencies.len() as f64 / secs,
            median(latencies).as_secs_f64() * 1000.0
        );
    }
    // Per-request overhead: one update per request, one client, against a request that does no write.
    let token = app.access_token("solo", "u");
    let (mut post, mut health) = (Vec::new(), Vec::new());
    for n in 0..500 {
        let t = Instant::now();
        client
            .post(format!("{base}/api/v1/agent/progress"))
            .bearer_auth(&token)
            .json(&update(0, 100_000 + n))
            .send()
            .await
            .unwrap();
        post.push(t.elapsed());
        let t = Instant::now();
        client.get(format!("{base}/health")).send().await.unwrap();
        health.push(t.elapsed());
    }
    println!("| 1 agent, one update per request | — | — | {:.2} ms |", median(post).as_secs_f64() * 1000.0);
    println!("| GET /health (one store read, no write) | — | — | {:.2} ms |", median(health).as_secs_f64() * 1000.0);
}
