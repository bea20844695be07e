//! Progress over HTTP on both backends: durable batched writes, idempotent replays, monotonic state, limits.

use crate::common;

use std::sync::atomic::Ordering;

use cloud_agent::store::DynStore;
use common::TestApp;
use serde_json::{Value, json};

async fn app(store: DynStore) -> TestApp {
    app_with(store, &[]).await
}

async fn app_with(store: DynStore, vars: &[(&str, &str)]) -> TestApp {
    TestApp::builder().store(store).envs(vars).spawn().await
}

/// Agents `agent-a` and `agent-b` work for user-1; `agent-x` for user-2.
fn owner_of(agent: &str) -> &'static str {
    if agent == "agent-x" { "user-2" } else { "user-1" }
}

/// This file's calls, as an agent of [`owner_of`].
trait AgentCalls {
    async fn post(&self, agent: &str, body: &Value) -> reqwest::Response;
    async fn post_raw(&self, agent: &str, body: Vec<u8>) -> reqwest::Response;
    async fn get(&self, agent: &str, task: &str, query: &str) -> reqwest::Response;
}

impl AgentCalls for TestApp {
    async fn post(&self, agent: &str, body: &Value) -> reqwest::Response {
        self.post_progress(agent, owner_of(agent), body).await
    }

    async fn post_raw(&self, agent: &str, body: Vec<u8>) -> reqwest::Response {
        self.post_progress_raw(agent, owner_of(agent), body).await
    }

    async fn get(&self, agent: &str, task: &str, query: &str) -> reqwest::Response {
        self.get_as(&format!("/api/v1/agent/progress/{task}{query}"), &self.access_token(agent, owner_of(agent))).await
    }
}

fn update(task: &str, progress: u32, second: u32) -> Value {
    json!({"task_id": task, "progress": progress, "status": "running", "timestamp": format!("2026-11-23T10:{:02}:{:02}Z", second / 60, second % 60)})
}

async fn batches_are_durable_and_written_25_at_a_time(store: DynStore) {
    let app = app(store).await;
    // 60 updates over 6 tasks, each task's updates sent newest first to prove ordering is by timestamp.
    let updates: Vec<Value> = (0..60).map(|i| update(&format!("task-{}", i % 6), 100 - i, 1000 - i)).collect();
    app.store.batch_writes.store(0, Ordering::SeqCst);
    let response = app.post("agent-a", &json!({"batch_id": "b-1", "updates": updates})).await;
    assert_eq!(response.status(), 202);
    let receipt: Value = response.json().await.unwrap();
    assert_eq!(receipt["accepted"], 60);
    assert_eq!(receipt["rejected"], json!([]));
    assert_eq!(receipt["failed"], json!([]));
    assert_eq!(app.store.batch_writes.load(Ordering::SeqCst), 3, "ceil(60 / 25) BatchWriteItem calls");
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
    app.store.take();
    let again = app.post("agent-a", &body).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first, "identical receipt");
    assert_eq!(app.store.take(), 1, "one read-only claim attempt, no writes");
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

async fn tasks_belong_to_the_user_and_other_tenants_see_nothing(store: DynStore) {
    let app = app(store).await;
    app.post("agent-a", &update("build-42", 10, 1)).await;
    // Another user's agent: the task is as absent as one that never existed (no 403 oracle) ...
    let theirs = app.get("agent-x", "build-42", "").await;
    let missing = app.get("agent-x", "never-existed", "").await;
    assert_eq!((theirs.status(), missing.status()), (reqwest::StatusCode::NOT_FOUND, reqwest::StatusCode::NOT_FOUND));
    let (theirs, missing): (Value, Value) = (theirs.json().await.unwrap(), missing.json().await.unwrap());
    assert_eq!((&theirs["type"], &theirs["title"]), (&missing["type"], &missing["title"]));
    // ... and writing the same id creates that user's own task instead of squatting user-1's.
    let own: Value = app.post("agent-x", &update("build-42", 99, 5)).await.json().await.unwrap();
    assert_eq!((own["accepted"].as_u64(), own["rejected"].as_array().map(Vec::len)), (Some(1), Some(0)));
    let mine: Value = app.get("agent-a", "build-42", "").await.json().await.unwrap();
    assert_eq!((mine["progress"].as_f64(), mine["owner"].as_str()), (Some(10.0), Some("user-1")), "untouched");
    let x: Value = app.get("agent-x", "build-42", "").await.json().await.unwrap();
    assert_eq!((x["progress"].as_f64(), x["history"].as_array().unwrap().len()), (Some(99.0), 1));
    // Agents of the same user share its tasks: agent-b takes over the task agent-a started.
    let handoff: Value = app.post("agent-b", &update("build-42", 60, 9)).await.json().await.unwrap();
    assert_eq!(handoff["accepted"], 1);
    let shared: Value = app.get("agent-a", "build-42", "").await.json().await.unwrap();
    assert_eq!((shared["progress"].as_f64(), shared["agent_id"].as_str()), (Some(60.0), Some("agent-b")));
    assert_eq!(shared["history"][0]["agent_id"], "agent-b");
}

async fn cursors_are_tamper_proof_and_bound_to_their_task(store: DynStore) {
    use base64::Engine as _;
    let app = app(store).await;
    for (agent, task) in [("agent-a", "mine"), ("agent-a", "other"), ("agent-x", "secret")] {
        let updates: Vec<Value> = (0..3).map(|i| update(task, 10 * (i + 1), i)).collect();
        app.post(agent, &json!({"updates": updates})).await;
    }
    let page: Value = app.get("agent-a", "mine", "?limit=1").await.json().await.unwrap();
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let next = app.get("agent-a", "mine", &format!("?limit=1&cursor={cursor}")).await;
    assert_eq!(next.status(), 200, "an untouched cursor pages on");
    // Today's attack: the base64 JSON of another tenant's key, on one's own task.
    let forged = |pk: &str| {
        let position = json!({"pk": pk, "sk": "EVENT#9999999999999#z#0000"});
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&position).unwrap())
    };
    let (head, tag) = cursor.split_once('.').unwrap();
    let mut flipped = head.to_owned().into_bytes();
    flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
    let attempts = [
        ("the old unsigned format", forged("TASK#user-2#secret")),
        ("a forged position with a stolen tag", format!("{}.{tag}", forged("TASK#user-2#secret"))),
        ("one changed byte", format!("{}.{tag}", String::from_utf8(flipped).unwrap())),
        ("garbage", "not a cursor!".to_owned()),
    ];
    for (what, attempt) in attempts {
        let refused = app.get("agent-a", "mine", &format!("?cursor={attempt}")).await;
        assert_eq!(refused.status(), 422, "{what}");
        assert_eq!(refused.headers()["content-type"], "application/problem+json", "{what}");
        let problem: Value = refused.json().await.unwrap();
        assert_eq!(problem["pointer"], "/cursor", "{what}");
    }
    // A genuine cursor replayed on another task, or by another tenant on the same task id, is refused too.
    assert_eq!(app.get("agent-a", "other", &format!("?cursor={cursor}")).await.status(), 422);
    assert_eq!(app.get("agent-x", "mine", &format!("?cursor={cursor}")).await.status(), 422);
    app.post("agent-x", &update("mine", 1, 1)).await;
    assert_eq!(app.get("agent-x", "mine", &format!("?cursor={cursor}")).await.status(), 422);
}

async fn updates_dynamodb_would_refuse_are_rejected_and_their_neighbours_stored(store: DynStore) {
    let app = app_with(store, &[("CLOUD_AGENT_BODY_LIMIT", "1048576")]).await;
    let with = |task: &str, extra: Value| {
        let mut u = update(task, 50, 1);
        u.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        u
    };
    // Raw JSON: 5e-324 and 1e300 are valid JSON numbers that serde_json reads as f64.
    let huge_name = "m".repeat(300 * 1024);
    let body = format!(
        r#"{{"batch_id": "limits", "updates": [{}, {}, {}, {}, {}]}}"#,
        with("ok-1", json!({})),
        r#"{"task_id": "tiny", "progress": 5e-324, "status": "running", "timestamp": "2026-11-23T10:00:01Z"}"#,
        r#"{"task_id": "huge", "progress": 50, "status": "running", "metrics": {"m": 1e300}, "timestamp": "2026-11-23T10:00:01Z"}"#,
        with("long", json!({"metrics": {huge_name: 1.0}})),
        with("ok-2", json!({"metrics": {"edge": 9.9e125, "small": -2e-130}})),
    );
    let response = app.post_raw("agent-a", body.clone().into_bytes()).await;
    assert_eq!(response.status(), 202);
    let receipt: Value = response.json().await.unwrap();
    assert_eq!(receipt["accepted"], 2, "{receipt}");
    let rejected: Vec<(u64, &str)> = receipt["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["task_id"].as_str().unwrap()))
        .collect();
    assert_eq!(rejected, vec![(1, "tiny"), (2, "huge"), (3, "long")]);
    assert!(receipt["rejected"][1]["reason"].as_str().unwrap().contains("range"));
    assert_eq!(receipt["failed"], json!([]), "nothing failed: the batch is complete, not stuck");
    for task in ["ok-1", "ok-2"] {
        assert_eq!(app.get("agent-a", task, "").await.status(), 200);
    }
    // The receipt was stored (it stays small whatever the input): a replay gets it back.
    let replay = app.post_raw("agent-a", body.into_bytes()).await;
    assert_eq!(replay.headers()["idempotency-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap(), receipt);
}

async fn a_bare_list_is_a_batch(store: DynStore) {
    let app = app(store).await;
    let response = app.post("agent-a", &json!([update("list-1", 10, 1), update("list-2", 20, 2)])).await;
    assert_eq!(response.status(), 202);
    let receipt: Value = response.json().await.unwrap();
    assert_eq!((receipt["accepted"].as_u64(), receipt["rejected"].as_array().map(Vec::len)), (Some(2), Some(0)));
}

async fn limits_and_concurrent_duplicates(store: DynStore) {
    let app = app(store).await;
    let many: Vec<Value> = (0..101).map(|i| update("t", 1, i)).collect();
    let too_many = app.post("agent-a", &json!({"updates": many})).await;
    assert_eq!(too_many.status(), 413);
    assert_eq!(too_many.headers()["content-type"], "application/problem+json");
    // Another attempt of the same batch holds a live lease: 409 with Retry-After, nothing written.
    let body = json!({"batch_id": "b-busy", "updates": [update("t", 1, 1)]});
    let hash = cloud_agent::features::progress::body_hash(&serde_json::to_vec(&body).unwrap());
    cloud_agent::features::progress::claim(
        app.state.store(),
        "agent-a",
        &cloud_agent::ids::BatchId::parse("b-busy").unwrap(),
        &hash,
        std::time::Duration::from_secs(30),
    )
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
    tasks_belong_to_the_user_and_other_tenants_see_nothing,
    cursors_are_tamper_proof_and_bound_to_their_task,
    updates_dynamodb_would_refuse_are_rejected_and_their_neighbours_stored,
    a_bare_list_is_a_batch,
    limits_and_concurrent_duplicates,
);

/// axum's own 2 MB default must not override a larger configured limit.
#[tokio::test]
async fn a_body_limit_above_2_mib_is_honoured() {
    let app = TestApp::builder().env("CLOUD_AGENT_BODY_LIMIT", "4194304").spawn().await;
    let mut body = serde_json::to_vec(&update("big", 10, 1)).unwrap();
    body.pop();
    body.extend(std::iter::repeat_n(b' ', 3 * 1024 * 1024)); // valid JSON padded to 3 MiB
    body.push(b'}');
    let post = |body: Vec<u8>| app.post_progress_raw("agent-a", "user-1", body);
    let response = post(body).await;
    assert_eq!(response.status(), 202, "3 MiB is under the configured 4 MiB");
    let over = post(vec![b' '; 5 * 1024 * 1024]).await;
    assert_eq!(over.status(), 413, "and the configured limit still holds");
}
