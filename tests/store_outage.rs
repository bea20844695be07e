//! The real stack through a DynamoDB outage: `cloudagent`'s router on DynamoDB Local, with a TCP proxy in between
//! that can cut every connection. The store breaker opens within its window, health fails with 503, context is
//! served STALE, writes answer 503 + Retry-After (nothing acknowledged); when DynamoDB is back, HALF_OPEN trial
//! calls close the breaker and health passes again.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cloud_agent::AppState;
use cloud_agent::context::{self, UserContext};
use cloud_agent::store::dynamo::{DynamoConfig, DynamoStore};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

/// Forwards TCP to `upstream`; while `cut` is set, accepted connections are closed at once.
async fn proxy(upstream: String, cut: Arc<AtomicBool>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else { return };
            if cut.load(Ordering::SeqCst) {
                drop(client);
                continue;
            }
            let upstream = upstream.clone();
            let cut = cut.clone();
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(&upstream).await else { return };
                // A connection opened before the outage dies with it, like a pooled socket to a dead host.
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    () = async { while !cut.load(Ordering::SeqCst) { tokio::time::sleep(Duration::from_millis(20)).await } } => {}
                }
            });
        }
    });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_breaker_rides_out_a_dynamodb_outage() {
    let Some(endpoint) = common::dynamodb_endpoint() else { return };
    let cut = Arc::new(AtomicBool::new(false));
    let via_proxy = proxy(endpoint.trim_start_matches("http://").to_owned(), cut.clone()).await;
    let table = format!("outage-{}", uuid::Uuid::new_v4().simple());
    let direct =
        DynamoStore::connect(&DynamoConfig { table: table.clone(), endpoint: Some(endpoint), region: None }).await;
    direct.create_table().await.unwrap();
    let store = Arc::new(DynamoStore::connect(&DynamoConfig { table, endpoint: Some(via_proxy), region: None }).await);
    let dir = tempfile::tempdir().unwrap();
    let config = common::test_config_with(
        dir.path(),
        &[
            ("CLOUD_AGENT_CONTEXT_TTL_SECS", "1"),
            ("CLOUD_AGENT_BREAKER_OPEN_SECS", "3"),
            ("CLOUD_AGENT_BREAKER_MIN_CALLS", "4"),
            ("CLOUD_AGENT_HEALTH_CACHE_MS", "0"),
        ],
    );
    let state = AppState::new(config, store);
    let base = common::serve_router(cloud_agent::app(state.clone())).await;
    let client = reqwest::Client::new();
    let tokens = state.tokens();
    let token =
        tokens.sign_access(&tokens.access_claims("agent-1", "user-1", "f", "j", cloud_agent::store::now_epoch()));
    let health = || async { client.get(format!("{base}/health")).send().await.unwrap() };
    let breaker_state = || async {
        let v: Value =
            client.get(format!("{base}/api/v1/circuit-breakers")).send().await.unwrap().json().await.unwrap();
        v["breakers"][0]["state"].as_str().unwrap().to_owned()
    };
    let ctx = || async { client.get(format!("{base}/api/v1/agent/context")).bearer_auth(&token).send().await.unwrap() };
    let write = || async {
        client
            .post(format!("{base}/api/v1/agent/progress"))
            .bearer_auth(&token)
            .json(&json!({"task_id": "t1", "progress": 5, "status": "running", "timestamp": "2026-11-23T10:00:00Z"}))
            .send()
            .await
            .unwrap()
    };

    let sample = UserContext { profile: json!({"name": "Ada"}), preferences: json!({}), permissions: vec![] };
    context::save(state.store(), &cloud_agent::ids::UserId::parse("user-1").unwrap(), &sample).await.unwrap();
    assert_eq!(health().await.status(), 200);
    assert_eq!(ctx().await.headers()["x-cache"], "MISS");
    tokio::time::sleep(Duration::from_millis(1100)).await; // the cached context is now stale

    // DynamoDB goes away.
    cut.store(true, Ordering::SeqCst);
    let mut opened = false;
    for _ in 0..10 {
        let _ = health().await;
        if breaker_state().await == "OPEN" {
            opened = true;
            break;
        }
    }
    assert!(opened, "the store breaker opens within its window");
    let failing = health().await;
    assert_eq!(failing.status(), 503);
    let body: Value = failing.json().await.unwrap();
    assert_eq!(body["status"], "fail");
    let stale = ctx().await;
    assert_eq!(stale.status(), 200);
    assert_eq!(stale.headers()["x-cache"], "STALE");
    let refused = write().await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(refused.headers()["content-type"], "application/problem+json");

    // DynamoDB is back: after the open time, trial calls close the breaker.
    cut.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut recovered = false;
    for _ in 0..10 {
        if health().await.status() == 200 && breaker_state().await == "CLOSED" {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(recovered, "HALF_OPEN trials close the breaker and health passes again");
    assert_eq!(write().await.status(), 202, "writes work again");
    let written: Value = client
        .get(format!("{base}/api/v1/agent/progress/t1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(written["history"].as_array().unwrap().len(), 1, "the refused write was never half-stored");
}
