//! Token costs: sign, verify, and a full issue / refresh against the embedded store.
//! Run: `cargo bench --bench tokens` (BENCHMARKS.md has the numbers).
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use cloud_agent::config::Config;
use cloud_agent::features::tokens::credentials::{self, Agent, AgentId};
use cloud_agent::features::tokens::family;
use cloud_agent::store::DynStore;
use cloud_agent::store::embedded::EmbeddedStore;
use cloud_agent::token::Tokens;
use criterion::{Criterion, criterion_group, criterion_main};

fn tokens() -> Tokens {
    let config = Config::from_lookup(&|name| match name {
        "CLOUD_AGENT_STORE" => Some("embedded".into()),
        "DEV_JWT_SECRET" => Some("bench-jwt-secret-0123456789abcdef0123456789".into()),
        "DEV_AGENT_SECRET" => Some("bench-agent-pepper-0123456789abcdef012345".into()),
        _ => None,
    })
    .expect("bench config");
    Tokens::new(&config)
}

fn sign_and_verify(c: &mut Criterion) {
    let tokens = tokens();
    let claims = tokens.access_claims("agent-7", "user-1", "family", "jti", cloud_agent::store::now_epoch());
    let token = tokens.sign_access(&claims);
    c.bench_function("access token: sign", |b| b.iter(|| black_box(tokens.sign_access(black_box(&claims)))));
    c.bench_function("access token: verify", |b| b.iter(|| black_box(tokens.verify_access(black_box(&token)).is_ok())));
}

fn issue_and_refresh(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let tokens = tokens();
    // Refresh checks the agent's credential in the same transaction, so the agent must really exist.
    let pepper = cloud_agent::config::Secret::new(b"bench-pepper-0123456789abcdef012345".to_vec());
    let id = AgentId::parse("agent-7").unwrap();
    let owner = cloud_agent::ids::UserId::parse("user-1").unwrap();
    let secret = credentials::generate_secret();
    let agent: Agent = runtime.block_on(async {
        credentials::register(&store, &pepper, &id, &owner, &secret).await.unwrap();
        credentials::authenticate(&store, &pepper, &id, &secret).await.unwrap()
    });
    c.bench_function("issue (embedded store, fsync'd)", |b| {
        b.to_async(&runtime).iter(|| async { black_box(family::issue(&store, &tokens, &agent).await.unwrap()) });
    });
    let mut current = runtime.block_on(family::issue(&store, &tokens, &agent)).unwrap().refresh_token;
    c.bench_function("refresh (embedded store, fsync'd)", |b| {
        b.iter(|| {
            let next = runtime.block_on(family::refresh(&store, &tokens, current.expose())).unwrap();
            current = next.refresh_token;
        });
    });
}

criterion_group!(benches, sign_and_verify, issue_and_refresh);
criterion_main!(benches);
