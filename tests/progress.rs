//! Progress over HTTP on both backends: durable batched writes, idempotent replays, monotonic state, limits.

#[macro_use]
mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use cloud_agent::AppState;
use cloud_agent::store::DynStore;
use common::{Counting, serve_router};
use serde_json::{Value, json};

struct App {
    base: String,
    state: AppState,
    counting: Arc<Counting>,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn app(store: DynStore) -> App {
    let dir = tempfile::tempdir().unwrap();
    let counting = Arc::new(Counting::new(store));
    let state = AppState::new(common::test_config(dir.path()), counting.clone());
    let base = serve_router(cloud_agent::app(state.clone())).await;
    App { base, state, counting, client: reqwest::Client::new(), _dir: dir }
}

impl App {
    fn token(&self, agent: &str) -> String {
        let tokens = self.state.tokens();
        tokens.sign_access(&tokens.access_claims(agent, "user-1", "fam", "jti", cloud_agent::store::now_epoch()))
    }

    async fn post(&self, agent: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}/api/v1/agent/progress", self.base))
            .bearer_auth(self.token(agent))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, agent: &str, task: &str, query: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/api/v1/agent/progress/{task}{query}", self.base))
            .bearer_auth(self.token(agent))
            .send()
            .await
            .unwrap()
    }
}

fn update(task: &str, progress: u32, second: u32) -> Value {
    json!({"task_id": task, "progress": progress, "status": "running", "timestamp": format!("2026-11-23T10:{:02}:{:02}Z", second / 60, second % 60)})
}

async fn batches_are_durable_and_written_25_at_a_time(store: DynStore) {
    let app = app(store).await;
    // 60 updates over 6 tasks, each task's updates sent newest first to prove ordering is by timestamp.
    let updates: Vec<Value> = (0..60).map(|i| update(&format!("task-{}", i % 6), 100 - i, 1000 - i)).collect();
    app.counting.batch_writes.store(0, Ordering::SeqCst);
    let response = app.post("agent-a", &json!({"batch_id": "b-1", "updates": updates})).await;
    assert_eq!(response.status(), 202);
    let receipt: Value = response.json().await.unwrap();
    assert_eq!(receipt["accepted"], 60);
    assert_eq!(receipt["rejected"], json!([]));
    assert_eq!(receipt["failed"], json!([]));
    assert_eq!(app.counting.batch_writes.load(Ordering::SeqCst), 3, "ceil(60 / 25) BatchWriteItem calls");
    let task: Value = app.get("agent-a", "task-0", "?limit=100").await.json().await.unwrap();
    assert_eq!(task["progress"], 100.0, "the newest update wins, whatever the order in the batch");
    assert_eq!(task["history"].as_array().unwrap().len(), 10);
    let page: Value = app.get("agent-a", "task-1", "?limit=4").await.json().await.unwrap();
    assert_eq!(page["history"].as_array().unwrap().len(), 4);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest: Value = app.get("agent-a", "task-1", &format!("?limit=100&cursor={cursor}")).await.json().await.unwrap();
    assert_eq!(rest["history"].as_array().unwrap().len(), 6, "paging continues where it stopped");
}

async fn a_retried_batch_returns_the_same_receipt_and_writes_nothing(store: DynStore) {
    let app = app(store).await;
    let body = json!({"batch_id": "b-2", "updates": [update("t", 10, 1), update("t", 20, 2), {"task_id": "t", "progress": 500}]});
    let first = app.post("agent-a", &body).await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["accepted"], 2);
    assert_eq!(first["rejected"][0]["index"], 2);
    app.counting.take();
    let again = app.post("agent-a", &body).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first, "identical receipt");
    assert_eq!(app.counting.take(), 1, "one read-only claim attempt, no writes");
    let history: Value = app.get("agent-a", "t", "").await.json().await.unwrap();
    assert_eq!(history["history"].as_array().unwrap().len(), 2, "no duplicated events");
    // The Idempotency-Key header works the same; a reused id with another body is refused.
    let other = json!({"batch_id": "b-2", "updates": [update("t", 30, 3)]});
    let refused = app.post("agent-a", &other).await;
    assert_eq!(refused.status(), 422);
}

async fn late_updates_never_overwrite_newer_state(store: DynStore) {
    let app = app(store).await;
    app.post("agent-a", &update("t", 80, 50)).await;
    let late = app.post("agent-a", &update("t", 30, 10)).await;
    assert_eq!(late.json::<Value>().await.unwrap()["accepted"], 1, "kept in history");
    let task: Value = app.get("agent-a", "t", "").await.json().await.unwrap();
    assert_eq!(task["progress"], 80.0);
    assert_eq!(task["history"].as_array().unwrap().len(), 2);
}

async fn agents_only_touch_their_own_tasks(store: DynStore) {
    let app = app(store).await;
    app.post("agent-a", &update("mine", 10, 1)).await;
    let theirs = app.post("agent-b", &json!({"updates": [update("mine", 90, 2), update("own", 5, 2)]})).await;
    let receipt: Value = theirs.json().await.unwrap();
    assert_eq!(receipt["accepted"], 1);
    assert_eq!(receipt["rejected"][0]["reason"], "task belongs to another agent");
    assert_eq!(app.get("agent-b", "mine", "").await.status(), 403);
    assert_eq!(app.get("agent-a", "nothing-here", "").await.status(), 404);
}

async fn limits_and_concurrent_duplicates(store: DynStore) {
    let app = app(store).await;
    let many: Vec<Value> = (0..101).map(|i| update("t", 1, i)).collect();
    let too_many = app.post("agent-a", &json!({"updates": many})).await;
    assert_eq!(too_many.status(), 413);
    assert_eq!(too_many.headers()["content-type"], "application/problem+json");
    // Another attempt of the same batch holds a live lease: 409 with Retry-After, nothing written.
    let body = json!({"batch_id": "b-busy", "updates": [update("t", 1, 1)]});
    let hash = cloud_agent::progress::body_hash(&serde_json::to_vec(&body).unwrap());
    cloud_agent::progress::claim(app.state.store(), "agent-a", "b-busy", &hash, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let busy = app.post("agent-a", &body).await;
    assert_eq!(busy.status(), 409);
    let retry_after: u64 = busy.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry_after));
    assert_eq!(app.get("agent-a", "t", "").await.status(), 404, "nothing was written");
}

on_both_backends!(
    batches_are_durable_and_written_25_at_a_time,
    a_retried_batch_returns_the_same_receipt_and_writes_nothing,
    late_updates_never_overwrite_newer_state,
    agents_only_touch_their_own_tasks,
    limits_and_concurrent_duplicates,
);
