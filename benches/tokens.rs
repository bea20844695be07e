//! Token costs: sign, verify, and a full issue / refresh against the embedded store.
//! Run: `cargo bench --bench tokens` (BENCHMARKS.md has the numbers).
#![allow(missing_docs)]

#[path = "../tests/api/common/mod.rs"]
mod common;

use std::hint::black_box;

use cloud_agent::features::tokens::credentials::{self, Agent, AgentId};
use cloud_agent::features::tokens::family;
use criterion::{Criterion, criterion_group, criterion_main};

/// The app of the tests' harness, without a socket: its token keys and its (embedded, fsync'd) store.
fn app(runtime: &tokio::runtime::Runtime) -> common::TestApp {
    runtime.block_on(common::TestApp::builder().in_process())
}

fn sign_and_verify(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let app = app(&runtime);
    let tokens = app.state.tokens();
    let claims = tokens.access_claims("agent-7", "user-1", "family", "jti", cloud_agent::store::now_epoch());
    let token = tokens.sign_access(&claims);
    c.bench_function("access token: sign", |b| b.iter(|| black_box(tokens.sign_access(black_box(&claims)))));
    c.bench_function("access token: verify", |b| b.iter(|| black_box(tokens.verify_access(black_box(&token)).is_ok())));
}

fn issue_and_refresh(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let app = app(&runtime);
    let (store, tokens) = (app.state.store(), app.state.tokens());
    // Refresh checks the agent's credential in the same transaction, so the agent must really exist.
    let agent: Agent = runtime.block_on(async {
        let secret = app.register_agent("agent-7", "user-1").await;
        let id = AgentId::parse("agent-7").unwrap();
        credentials::authenticate(store, &app.state.config().secrets.agent, &id, &secret).await.unwrap()
    });
    c.bench_function("issue (embedded store, fsync'd)", |b| {
        b.to_async(&runtime).iter(|| async { black_box(family::issue(store, tokens, &agent).await.unwrap()) });
    });
    let mut current = runtime.block_on(family::issue(store, tokens, &agent)).unwrap().refresh_token;
    c.bench_function("refresh (embedded store, fsync'd)", |b| {
        b.iter(|| {
            let next = runtime.block_on(family::refresh(store, tokens, current.expose())).unwrap();
            current = next.refresh_token;
        });
    });
}

criterion_group!(benches, sign_and_verify, issue_and_refresh);
criterion_main!(benches);
