//! Task delegation through the whole app, on both backends: v3 and v2 over one engine, idempotency,
//! cancellation, priority, tenant isolation, metrics aggregated in the table, a concurrent batch, deadlines, input
//! problems, the table queue's drain, and webhooks verified by the reference Standard Webhooks library.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloud_agent::features::tasks::engine::Engine;
use cloud_agent::features::tasks::worker;
use cloud_agent::store::DynStore;
use common::{TestApp, assert_problem};
use serde_json::{Value, json};

const ADMIN_KEY: &str = "admin-key-0123456789abcdef0123456789";

const ROOMY: [(&str, &str); 4] = [
    ("DEV_ADMIN_KEY", ADMIN_KEY),
    ("CLOUD_AGENT_RATE_TIERS", "standard:100000/60:100000/60"),
    ("CLOUD_AGENT_RATE_AGENT", "100000/60"),
    // The webhook receivers of these tests listen on loopback; production never allows it.
    ("CLOUD_AGENT_OUTBOUND_ALLOW_LOOPBACK", "on"),
];

async fn app_on(store: DynStore) -> TestApp {
    TestApp::builder().envs(&ROOMY).store(store).spawn().await
}

/// A key of `tenant` with the operator role: (key, webhook secret).
async fn operator_key(app: &TestApp, tenant: &str) -> (String, String) {
    let body = json!({"name": "tasks", "role": "operator", "tenant": tenant});
    let response = app.client.post(app.url("/api/v1/keys")).bearer_auth(ADMIN_KEY).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    (created["key"].as_str().unwrap().to_owned(), created["webhook_secret"].as_str().unwrap().to_owned())
}

async fn post(app: &TestApp, key: &str, path: &str, body: &Value) -> reqwest::Response {
    app.client.post(app.url(path)).header("x-api-key", key).json(body).send().await.unwrap()
}

async fn get(app: &TestApp, key: &str, path: &str) -> reqwest::Response {
    app.client.get(app.url(path)).header("x-api-key", key).send().await.unwrap()
}

async fn drain(app: &TestApp) -> worker::DrainReport {
    worker::drain(&app.state.part::<Engine>(), Duration::from_mins(1)).await
}

const PASSAGE: &str = "The cat sat on the mat.";

async fn both_versions_run_a_task_and_show_the_same_record(store: DynStore) {
    let app = app_on(store).await;
    let (key, _) = operator_key(&app, "acme").await;
    let created = post(&app, &key, "/v3/tasks", &json!({"type": "text-analysis", "payload": {"text": PASSAGE}})).await;
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let task: Value = created.json().await.unwrap();
    assert_eq!(task["status"], "succeeded");
    assert_eq!(task["mode"], "sync");
    assert_eq!(task["result"]["words"], 6);
    assert_eq!(task["result"]["flesch_reading_ease"], 116.15);
    assert_eq!(location, format!("/v3/tasks/{}", task["id"].as_str().unwrap()));
    let read: Value = get(&app, &key, &location).await.json().await.unwrap();
    assert_eq!(read, task, "the stored record is what the creation answered");
    // The one wire type (the SDK reads the same) holds every field the server sends, and nothing else.
    let typed: cloud_agent::features::tasks::model::Task = serde_json::from_value(task.clone()).unwrap();
    assert_eq!(serde_json::to_value(&typed).unwrap(), task);

    // v2: the flat shape over the same engine, marked deprecated with a link to v3.
    let v2 = post(&app, &key, "/api/delegate", &json!({"task_type": "echo", "task_data": {"message": "hi"}})).await;
    assert_eq!(v2.status(), 200);
    assert!(v2.headers()["deprecation"].to_str().unwrap().starts_with('@'));
    assert!(v2.headers()["sunset"].to_str().unwrap().ends_with("GMT"));
    let link = v2.headers()["link"].to_str().unwrap().to_owned();
    let body: Value = v2.json().await.unwrap();
    assert_eq!(body["success"], true);
    assert_eq!(body["result"]["message"], "hi");
    let id = body["task_id"].as_str().unwrap();
    assert_eq!(link, format!("</v3/tasks/{id}>; rel=\"successor-version\""));
    let status: Value = get(&app, &key, &format!("/api/status?task_id={id}")).await.json().await.unwrap();
    assert_eq!(status["status"], "succeeded");
    let v3: Value = get(&app, &key, &format!("/v3/tasks/{id}")).await.json().await.unwrap();
    assert_eq!(v3["result"], body["result"]);

    let caps = get(&app, &key, "/api/capabilities").await;
    assert!(caps.headers().contains_key("deprecation"));
    let caps: Value = caps.json().await.unwrap();
    let names: Vec<&str> = caps["handlers"].as_array().unwrap().iter().map(|h| h["name"].as_str().unwrap()).collect();
    for name in [
        "echo",
        "data-transform",
        "json-validator",
        "text-analysis",
        "smart-routing",
        "image-metadata",
        "file-processing",
        "health-check",
        "api-tester",
        "webhook",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    assert!(caps["handlers"].as_array().unwrap().iter().all(|h| h["input_schema"]["type"] == "object"));
}

async fn bad_input_is_a_422_naming_the_field(store: DynStore) {
    let app = app_on(store).await;
    let (key, _) = operator_key(&app, "acme").await;
    let cases = [
        ("/v3/tasks", json!({"type": "nope", "payload": {}}), "/type"),
        ("/v3/tasks", json!({"type": "text-analysis", "payload": {"text": 5}}), "/payload/text"),
        ("/v3/tasks", json!({"type": "text-analysis", "payload": {"txt": "a"}}), "/payload"),
        (
            "/v3/tasks",
            json!({"type": "echo", "payload": {}, "options": {"timeout_ms": 999_999}}),
            "/options/timeout_ms",
        ),
        ("/v3/tasks", json!({"type": "echo", "payload": {}, "options": {"webhook": "ftp://x"}}), "/options/webhook"),
        (
            "/api/delegate",
            json!({"task_type": "json-validator", "task_data": {"schema": 3, "instance": 1}}),
            "/task_data/schema",
        ),
        (
            "/api/delegate",
            json!({"task_type": "data-transform", "task_data": {"data": [], "operations": [{"op": "explode"}]}}),
            "/task_data/operations/0",
        ),
    ];
    for (path, body, pointer) in cases {
        let problem = assert_problem(post(&app, &key, path, &body).await, 422, None).await;
        assert!(problem["pointer"].as_str().unwrap().starts_with(pointer), "{body}: {problem}");
    }
    // A batch reports each task's own problem, pointing into the whole request.
    let batch = json!({"tasks": [
        {"task_type": "echo", "task_data": {"message": 1}},
        {"task_type": "text-analysis", "task_data": {"text": ""}},
    ]});
    let answer: Value = post(&app, &key, "/api/batch", &batch).await.json().await.unwrap();
    assert_eq!(answer["succeeded"], 1);
    assert!(answer["results"][1]["error"]["pointer"].as_str().unwrap().starts_with("/tasks/1/task_data/text"));
    let too_many = json!({"tasks": vec![json!({"task_type": "echo", "task_data": {}}); 11]});
    let problem = assert_problem(post(&app, &key, "/api/batch", &too_many).await, 422, None).await;
    assert_eq!(problem["pointer"], "/tasks");
}

async fn a_task_past_its_deadline_times_out_with_a_problem(store: DynStore) {
    let app = app_on(store).await;
    let (key, _) = operator_key(&app, "acme").await;
    // The handler would wait a minute, 200 times the deadline: the deadline is what ends it.
    let body = json!({"type": "echo", "payload": {"delay_ms": 60000}, "options": {"timeout_ms": 300}});
    let problem = assert_problem(post(&app, &key, "/v3/tasks", &body).await, 504, Some("task-timed-out")).await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("300 ms"), "{detail}");
    let id = detail.split_whitespace().find(|w| w.starts_with("t_")).unwrap().trim_end_matches(':');
    let task: Value = get(&app, &key, &format!("/v3/tasks/{id}")).await.json().await.unwrap();
    assert_eq!(task["status"], "timed_out");
    assert!(task.get("result").is_none(), "nothing partial is kept");
}

async fn idempotency_keys_return_the_same_task_or_refuse_another_input(store: DynStore) {
    let app = app_on(store).await;
    let (key, _) = operator_key(&app, "acme").await;
    let body = json!({"type": "echo", "payload": {"message": 1}, "options": {"idempotency_key": "order-42"}});
    let first = post(&app, &key, "/v3/tasks", &body).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = post(&app, &key, "/v3/tasks", &body).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    let other = json!({"type": "echo", "payload": {"message": 2}, "options": {"idempotency_key": "order-42"}});
    assert_problem(post(&app, &key, "/v3/tasks", &other).await, 422, Some("idempotency-key-reused")).await;
    // Another tenant's identical key is its own.
    let (other_key, _) = operator_key(&app, "globex").await;
    let theirs: Value = post(&app, &other_key, "/v3/tasks", &body).await.json().await.unwrap();
    assert_ne!(theirs["id"], first["id"]);
    // Exactly one task per key, whatever came after.
    let listed: Value = get(&app, &key, "/v3/tasks").await.json().await.unwrap();
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 1);
}

/// Concurrent creates with one idempotency key (20 at once, three keys in turn): one task each; every other
/// answer is a replay of it or 409 `idempotency-in-progress` with `Retry-After` — a transaction conflict is
/// contention, never a 5xx, and never counts against the store's breaker.
async fn concurrent_creates_with_one_idempotency_key_make_one_task(store: DynStore) {
    let app = app_on(store).await;
    let (key, _) = operator_key(&app, "acme").await;
    let mut tasks = std::collections::BTreeSet::new();
    for round in 0..3 {
        let body = json!({"type": "echo", "payload": {"message": round},
                          "options": {"async": true, "idempotency_key": format!("race-{round}")}});
        let mut calls = Vec::new();
        for _ in 0..20 {
            let request = app.client.post(app.url("/v3/tasks")).header("x-api-key", &key).json(&body);
            calls.push(tokio::spawn(request.send()));
        }
        let mut created = 0;
        let mut tally = std::collections::BTreeMap::new();
        for call in calls {
            let response = call.await.unwrap().unwrap();
            let status = response.status().as_u16();
            *tally.entry(status).or_insert(0) += 1;
            match status {
                202 => created += 1,
                200 => assert_eq!(response.headers()["idempotent-replayed"], "true"),
                409 => {
                    assert!(response.headers().contains_key("retry-after"));
                    assert_problem(response, 409, Some("idempotency-in-progress")).await;
                }
                other => panic!("round {round}: {other}: {}", response.text().await.unwrap_or_default()),
            }
        }
        println!("idempotency race, round {round}: statuses {tally:?}");
        assert_eq!(created, 1, "round {round}: exactly one request created the task");
        let replay: Value = post(&app, &key, "/v3/tasks", &body).await.json().await.unwrap();
        tasks.insert(replay["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(tasks.len(), 3);
    // Conflicts as DynamoDB reports them (another transaction held one of the items at that moment): a few are
    // retried inside the request; one that outlasts the retries is 409 with Retry-After, and the client's retry
    // creates the task.
    let body =
        json!({"type": "echo", "payload": {"message": "c"}, "options": {"async": true, "idempotency_key": "conflict"}});
    app.store.conflicts.store(2, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(post(&app, &key, "/v3/tasks", &body).await.status(), 202, "two conflicts, retried inside");
    let body = json!({"type": "echo", "payload": {"message": "d"}, "options": {"async": true, "idempotency_key": "conflict-2"}});
    app.store.conflicts.store(100, std::sync::atomic::Ordering::SeqCst);
    let conflicted = post(&app, &key, "/v3/tasks", &body).await;
    app.store.conflicts.store(0, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(conflicted.headers()["retry-after"], "1");
    assert_problem(conflicted, 409, Some("idempotency-in-progress")).await;
    assert_eq!(post(&app, &key, "/v3/tasks", &body).await.status(), 202);
    let listed: Value = get(&app, &key, "/v3/tasks").await.json().await.unwrap();
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 5, "one task per key");
    let view = common::get_json(&app.client, &app.url("/api/v1/circuit-breakers"), Some(ADMIN_KEY)).await;
    let store = view["breakers"].as_array().unwrap().iter().find(|b| b["name"] == "store").unwrap().clone();
    assert_eq!(store["state"], "CLOSED", "{view}");
    assert_eq!(store["failure_rate"], 0.0, "conflicts are not failures of the store: {view}");
}

/// The delegation quota is charged per task: a batch of n costs n, all or nothing.
async fn a_batch_costs_one_delegation_per_task(store: DynStore) {
    // ROOMY but its tiers: the first value a test sets for a variable wins.
    let app = TestApp::builder()
        .envs(&[ROOMY[0], ROOMY[2], ROOMY[3]])
        .env("CLOUD_AGENT_RATE_TIERS", "standard:100000/3600:10/3600")
        .store(store)
        .spawn()
        .await;
    let (key, _) = operator_key(&app, "acme").await;
    let batch = |n: usize| {
        let tasks: Vec<Value> = (0..n).map(|i| json!({"task_type": "echo", "task_data": {"message": i}})).collect();
        json!({"tasks": tasks})
    };
    let first = post(&app, &key, "/api/batch", &batch(6)).await;
    assert_eq!(first.status(), 200);
    // Four delegations left: a batch of six is refused whole, and creates nothing.
    let over = post(&app, &key, "/api/batch", &batch(6)).await;
    assert!(over.headers().contains_key("retry-after"), "{:?}", over.headers());
    assert_problem(over, 429, Some("rate-limited")).await;
    let listed: Value = get(&app, &key, "/v3/tasks").await.json().await.unwrap();
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 6, "the refused batch created nothing");
    assert_eq!(post(&app, &key, "/api/batch", &batch(4)).await.status(), 200, "exactly the four left");
    let one = post(&app, &key, "/v3/tasks", &json!({"type": "echo", "payload": {"message": 1}})).await;
    assert_problem(one, 429, Some("rate-limited")).await;
}

/// What one creation costs the store, besides the perimeter (BENCHMARKS.md "Store calls per task creation"): a
/// task run in the request is four calls — the transaction that stores it, the conditional write that settles
/// it, the all-time statistics counter and the hour's analytics counter (those two side by side, so the request
/// waits for one round trip, not two) — and a queued one a single transaction (the task, the tenant's queued count and
/// the queue's item together); an idempotency key rides in the same transaction and costs nothing more.
async fn a_task_creation_costs_four_store_calls_and_a_queued_one_one(store: DynStore) {
    let app = app_on(store).await;
    let (key, _) = operator_key(&app, "acme").await;
    let mut counts = Vec::new();
    for (i, options) in [json!({}), json!({"idempotency_key": "k-1"}), json!({"async": true})].iter().enumerate() {
        app.store.take();
        let body = json!({"type": "echo", "payload": {"message": i}, "options": options});
        let created = post(&app, &key, "/v3/tasks", &body).await;
        assert!(created.status().is_success(), "{}", created.text().await.unwrap());
        counts.push(app.store.take());
    }
    app.store.take();
    let v2 = post(&app, &key, "/api/delegate", &json!({"task_type": "echo", "task_data": {"message": "v2"}})).await;
    assert_eq!(v2.status(), 200);
    counts.push(app.store.take());
    println!("store calls per creation (sync, sync with idempotency key, queued, v2 sync): {counts:?}");
    assert_eq!(counts, [4, 4, 1, 4]);
}

/// Each tenant may have a capped number of queued tasks unfinished; past it, 429 `queue-full`. A cancelled or
/// finished task gives its place back; another tenant is not affected.
async fn a_tenant_past_its_queued_cap_is_refused(store: DynStore) {
    let app = TestApp::builder().envs(&ROOMY).env("CLOUD_AGENT_TASK_QUEUED_CAP", "3").store(store).spawn().await;
    let (key, _) = operator_key(&app, "acme").await;
    let (other, _) = operator_key(&app, "globex").await;
    let queue = |key: &str, i: usize| {
        let body = json!({"type": "echo", "payload": {"message": i}, "options": {"async": true}});
        let (app, key) = (&app, key.to_owned());
        async move { post(app, &key, "/v3/tasks", &body).await }
    };
    let mut ids = Vec::new();
    for i in 0..3 {
        let answer = queue(&key, i).await;
        assert_eq!(answer.status(), 202);
        ids.push(answer.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    let full = queue(&key, 3).await;
    assert!(full.headers().contains_key("retry-after"));
    assert_problem(full, 429, Some("queue-full")).await;
    assert_eq!(queue(&other, 0).await.status(), 202, "another tenant has its own cap");
    let cancelled = app.client.delete(app.url(&format!("/v3/tasks/{}", ids[0]))).header("x-api-key", &key).send();
    assert_eq!(cancelled.await.unwrap().status(), 200);
    assert_eq!(queue(&key, 4).await.status(), 202, "the cancelled task gave its place back");
    assert_problem(queue(&key, 5).await, 429, Some("queue-full")).await;
    let report = drain(&app).await;
    assert_eq!(report.done, 5, "acme's three, the cancelled one's work (nothing to run), globex's one: {report:?}");
    for i in 6..9 {
        assert_eq!(queue(&key, i).await.status(), 202, "finished tasks gave their places back");
    }
}

/// Fair queues: tenant A queues 50 slow tasks, then tenant B one; B's task starts in the drain's first round,
/// before any of A's tasks has finished (a global queue would run it after all 50).
async fn one_tenants_backlog_does_not_hold_up_another(store: DynStore) {
    let app = app_on(store).await;
    let (a, _) = operator_key(&app, "tenant-a").await;
    let (b, _) = operator_key(&app, "tenant-b").await;
    let mut calls = Vec::new();
    for i in 0..50 {
        let body = json!({"type": "echo", "payload": {"message": i, "delay_ms": 300}, "options": {"async": true}});
        let request = app.client.post(app.url("/v3/tasks")).header("x-api-key", &a).json(&body);
        calls.push(tokio::spawn(request.send()));
    }
    let mut a_ids = Vec::new();
    for call in calls {
        let answer = call.await.unwrap().unwrap();
        assert_eq!(answer.status(), 202);
        a_ids.push(answer.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    let body = json!({"type": "echo", "payload": {"message": "b"}, "options": {"async": true}});
    let b_task: Value = post(&app, &b, "/v3/tasks", &body).await.json().await.unwrap();
    let report = drain(&app).await;
    assert_eq!(report.done, 51, "{report:?}");
    let b_task: Value =
        get(&app, &b, &format!("/v3/tasks/{}", b_task["id"].as_str().unwrap())).await.json().await.unwrap();
    assert_eq!(b_task["status"], "succeeded");
    let b_started = b_task["started_ms"].as_i64().unwrap();
    let mut finished_before = 0;
    for id in &a_ids {
        let task: Value = get(&app, &a, &format!("/v3/tasks/{id}")).await.json().await.unwrap();
        assert_eq!(task["status"], "succeeded");
        if task["finished_ms"].as_i64().unwrap() <= b_started {
            finished_before += 1;
        }
    }
    assert_eq!(finished_before, 0, "B's task waited for {finished_before} of A's tasks");
}

async fn queued_tasks_run_high_priority_first_and_cancel(store: DynStore) {
    let app = app_on(store).await;
    let (key, _) = operator_key(&app, "acme").await;
    let mut ids = Vec::new();
    for priority in ["low", "normal", "high", "low"] {
        let body =
            json!({"type": "echo", "payload": {"message": priority}, "options": {"async": true, "priority": priority}});
        let answer = post(&app, &key, "/v3/tasks", &body).await;
        assert_eq!(answer.status(), 202);
        assert!(answer.headers()["location"].to_str().unwrap().starts_with("/v3/tasks/t_"));
        let task: Value = answer.json().await.unwrap();
        assert_eq!(task["status"], "queued");
        ids.push(task["id"].as_str().unwrap().to_owned());
    }
    // Cancel the second low one while it waits.
    let cancelled: Value = app
        .client
        .delete(app.url(&format!("/v3/tasks/{}", ids[3])))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    let again =
        app.client.delete(app.url(&format!("/v3/tasks/{}", ids[3]))).header("x-api-key", &key).send().await.unwrap();
    assert_problem(again, 409, Some("task-finished")).await;

    // The tenant's queue as operators see it: three waiting (the cancelled one gave its place back), the oldest
    // due first; read with five store calls (statistics, the queued count, one first item per priority).
    app.store.take();
    let metrics: Value = get(&app, &key, "/api/metrics").await.json().await.unwrap();
    assert_eq!(app.store.take(), 5, "store calls of /api/metrics");
    assert_eq!(metrics["queue"]["depth"], 3, "{metrics}");
    let oldest = metrics["queue"]["oldest_due_at"].as_str().expect("work waits in the table queue");
    let oldest = time::OffsetDateTime::parse(oldest, &time::format_description::well_known::Rfc3339).unwrap();
    let age = time::OffsetDateTime::now_utc() - oldest;
    assert!(age >= time::Duration::ZERO && age < time::Duration::minutes(5), "{metrics}");

    let report = drain(&app).await;
    assert_eq!(report.done, 4, "{report:?}");
    let mut started = Vec::new();
    for id in &ids[..3] {
        let task: Value = get(&app, &key, &format!("/v3/tasks/{id}")).await.json().await.unwrap();
        assert_eq!(task["status"], "succeeded", "{task}");
        started.push(task["started_ms"].as_i64().unwrap());
    }
    // high (index 2) before normal (1) before low (0).
    assert!(started[2] <= started[1] && started[1] <= started[0], "{started:?}");
    let metrics: Value = get(&app, &key, "/api/metrics").await.json().await.unwrap();
    assert_eq!(metrics["queue"], json!({"depth": 0, "oldest_due_at": null}), "{metrics}");
    let still: Value = get(&app, &key, &format!("/v3/tasks/{}", ids[3])).await.json().await.unwrap();
    assert_eq!(still["status"], "cancelled", "a cancelled task never runs");
    assert_eq!(drain(&app).await, worker::DrainReport::default(), "nothing is left on the queue");

    // The listing filters by status and type, newest first, with cursors bound to the filters.
    let page: Value = get(&app, &key, "/v3/tasks?status=succeeded&limit=2").await.json().await.unwrap();
    let listed: Vec<&str> = page["tasks"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(listed, [ids[2].as_str(), ids[1].as_str()]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let next: Value =
        get(&app, &key, &format!("/v3/tasks?status=succeeded&limit=2&cursor={cursor}")).await.json().await.unwrap();
    assert_eq!(next["tasks"][0]["id"], ids[0].as_str());
    assert!(next.get("next_cursor").is_none());
    let moved = get(&app, &key, &format!("/v3/tasks?status=failed&cursor={cursor}")).await;
    assert_problem(moved, 422, None).await;
}

async fn tenants_see_only_their_own_tasks(store: DynStore) {
    let app = app_on(store).await;
    let (acme, _) = operator_key(&app, "acme").await;
    let (globex, _) = operator_key(&app, "globex").await;
    let task: Value =
        post(&app, &acme, "/v3/tasks", &json!({"type": "echo", "payload": {}})).await.json().await.unwrap();
    let id = task["id"].as_str().unwrap();
    assert_problem(get(&app, &globex, &format!("/v3/tasks/{id}")).await, 404, Some("not-found")).await;
    assert_problem(get(&app, &globex, &format!("/api/status?task_id={id}")).await, 404, Some("not-found")).await;
    let cancel =
        app.client.delete(app.url(&format!("/v3/tasks/{id}"))).header("x-api-key", &globex).send().await.unwrap();
    assert_problem(cancel, 404, Some("not-found")).await;
    let theirs: Value = get(&app, &globex, "/v3/tasks").await.json().await.unwrap();
    assert_eq!(theirs["tasks"], json!([]));
    // A cursor of one tenant's listing cannot page another's.
    for _ in 0..2 {
        post(&app, &acme, "/v3/tasks", &json!({"type": "echo", "payload": {}})).await;
    }
    let page: Value = get(&app, &acme, "/v3/tasks?limit=1").await.json().await.unwrap();
    let cursor = page["next_cursor"].as_str().unwrap();
    assert_problem(get(&app, &globex, &format!("/v3/tasks?limit=1&cursor={cursor}")).await, 422, None).await;
    let metrics: Value = get(&app, &globex, "/api/metrics").await.json().await.unwrap();
    assert_eq!(metrics["total"], 0, "another tenant's tasks are not in its metrics");
}

async fn metrics_add_up_across_instances(store: DynStore) {
    // Two instances on one table (sharing the deployment's secrets): the metrics either answers count both.
    let secrets = [
        ("DEV_AGENT_SECRET", "agent-secret-0123456789abcdef0123456789"),
        ("DEV_JWT_SECRET", "jwt-secret-0123456789abcdef0123456789ab"),
    ];
    let one = TestApp::builder().envs(&ROOMY).envs(&secrets).store(store.clone()).spawn().await;
    let two = TestApp::builder().envs(&ROOMY).envs(&secrets).store(store).spawn().await;
    let (key, _) = operator_key(&one, "acme").await;
    for (app, body) in [
        (&one, json!({"type": "echo", "payload": {}})),
        (&two, json!({"type": "echo", "payload": {}})),
        (&two, json!({"type": "echo", "payload": {"delay_ms": 60000}, "options": {"timeout_ms": 100}})),
        (&one, json!({"type": "text-analysis", "payload": {"text": PASSAGE}})),
    ] {
        post(app, &key, "/v3/tasks", &body).await;
    }
    for app in [&one, &two] {
        let m: Value = get(app, &key, "/api/metrics").await.json().await.unwrap();
        assert_eq!(m["total"], 4, "{m}");
        assert_eq!(m["succeeded"], 3);
        assert_eq!(m["timed_out"], 1);
        assert_eq!(m["success_rate"], 0.75);
        assert_eq!(m["by_type"]["echo"]["total"], 3);
        assert_eq!(m["by_type"]["text-analysis"]["succeeded"], 1);
        assert!(m["by_type"]["echo"]["latency_ms"]["p50"].as_u64().is_some());
        assert!(m["by_type"]["echo"]["latency_ms"]["p99"].as_u64().unwrap() >= 100);
    }
}

async fn a_batch_of_ten_runs_concurrently(store: DynStore) {
    let app = app_on(store).await;
    let (key, _) = operator_key(&app, "acme").await;
    // Ten controlled tasks of 2 s each: one after another they would take 20 s.
    let tasks: Vec<Value> =
        (0..10).map(|i| json!({"task_type": "echo", "task_data": {"message": i, "delay_ms": 2000}})).collect();
    let started = Instant::now();
    let answer: Value = post(&app, &key, "/api/batch", &json!({"tasks": tasks})).await.json().await.unwrap();
    let wall = started.elapsed();
    assert_eq!(answer["succeeded"], 10, "{answer}");
    for (i, result) in answer["results"].as_array().unwrap().iter().enumerate() {
        assert_eq!(result["index"], i);
        assert_eq!(result["task"]["result"]["message"], i, "one result per task, in request order");
    }
    // About the slowest task, not the sum: generous against a loaded machine, far from 20 s.
    assert!(wall < Duration::from_secs(8), "the batch took {wall:?}");
    assert!(answer["duration_ms"].as_u64().unwrap() >= 2000);
}

/// A local webhook receiver: it answers each delivery with the next planned status (then 200).
/// One delivery as received: its headers and body.
type Delivery = (Vec<(String, String)>, String);
/// A planned answer: status and `Retry-After`.
type Planned = (u16, Option<&'static str>);

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Delivery>>>,
    plan: Arc<Mutex<Vec<Planned>>>,
}

async fn receive(
    axum::extract::State(r): axum::extract::State<Receiver>,
    headers: http::HeaderMap,
    body: String,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned())).collect();
    r.got.lock().unwrap().push((headers, body));
    let next = {
        let mut plan = r.plan.lock().unwrap();
        if plan.is_empty() { (200, None) } else { plan.remove(0) }
    };
    let mut response = http::StatusCode::from_u16(next.0).unwrap().into_response();
    if let Some(retry_after) = next.1 {
        response.headers_mut().insert("retry-after", retry_after.parse().unwrap());
    }
    response
}

async fn start_receiver(plan: Vec<(u16, Option<&'static str>)>) -> (Receiver, String) {
    let receiver = Receiver { plan: Arc::new(Mutex::new(plan)), ..Receiver::default() };
    let router = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (receiver, url)
}

/// Verifies one delivery with the reference implementation (PyPI `standardwebhooks`).
pub(crate) fn verify_with_reference(secret: &str, headers: &[(String, String)], body: &str) -> Result<Value, String> {
    let Some(python) = std::env::var("CLOUD_AGENT_TEST_PYTHON").ok() else {
        assert!(std::env::var("CLOUD_AGENT_REQUIRE_DYNAMODB").is_err(), "CLOUD_AGENT_TEST_PYTHON is required");
        return Err("SKIPPED".into());
    };
    let pick = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
secret, wid, ts, sig, body = sys.argv[1:6]
print(json.dumps(Webhook(secret).verify(body, {"webhook-id": wid, "webhook-timestamp": ts, "webhook-signature": sig})))
"#;
    let out = std::process::Command::new(python)
        .args(["-c", script, secret, &pick("webhook-id"), &pick("webhook-timestamp"), &pick("webhook-signature"), body])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

async fn webhooks_are_signed_retried_and_recorded(store: DynStore) {
    let app = app_on(store).await;
    let (key, secret) = operator_key(&app, "acme").await;
    // First attempt: 503 asking for a 1 s pause; the second is due on the schedule (5 s), which is longer.
    let (receiver, url) = start_receiver(vec![(503, Some("1"))]).await;
    let body = json!({"type": "echo", "payload": {"message": "done"}, "options": {"webhook": url}});
    let task: Value = post(&app, &key, "/v3/tasks", &body).await.json().await.unwrap();
    let id = task["id"].as_str().unwrap();
    assert_eq!(task["webhook"]["state"], "pending");

    // The delivery is queued durably before the answer; the drain makes the first attempt.
    drain(&app).await;
    let after_one: Value = get(&app, &key, &format!("/v3/tasks/{id}")).await.json().await.unwrap();
    let hook = &after_one["webhook"];
    assert_eq!(hook["attempts"].as_array().unwrap().len(), 1, "{hook}");
    assert_eq!(hook["attempts"][0]["status"], 503);
    assert_eq!(hook["state"], "pending");
    let first_at = hook["attempts"][0]["at_ms"].as_i64().unwrap();
    let next_at = hook["next_attempt_ms"].as_i64().unwrap();
    assert!(next_at - first_at >= 5000, "the schedule's 5 s wait: {hook}");

    // Wait for the retry to come due (a condition with a generous deadline, not a race), then drain again.
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        drain(&app).await;
        let now: Value = get(&app, &key, &format!("/v3/tasks/{id}")).await.json().await.unwrap();
        if now["webhook"]["state"] == "delivered" {
            assert_eq!(now["webhook"]["attempts"].as_array().unwrap().len(), 2);
            assert_eq!(now["webhook"]["attempts"][1]["status"], 200);
            break;
        }
        assert!(Instant::now() < deadline, "the retry was never delivered: {now}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let got = receiver.got.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    let ids: Vec<String> =
        got.iter().map(|(h, _)| h.iter().find(|(k, _)| k == "webhook-id").unwrap().1.clone()).collect();
    assert_eq!(ids[0], ids[1], "every attempt carries the same webhook-id");
    for (headers, body) in &got {
        match verify_with_reference(&secret, headers, body) {
            Ok(payload) => {
                assert_eq!(payload["type"], "task.succeeded");
                assert_eq!(payload["data"]["id"], id);
                assert_eq!(payload["data"]["result"]["message"], "done");
            }
            Err(skip) if skip == "SKIPPED" => {}
            Err(e) => panic!("the reference library refused our signature: {e}"),
        }
        // A wrong secret is refused by the same library.
        let wrong = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        if let Err(e) = verify_with_reference(wrong, headers, body) {
            assert!(e == "SKIPPED" || e.contains("Verification"), "{e}");
        } else {
            panic!("a wrong secret verified");
        }
    }
}

async fn gone_disables_the_endpoint(store: DynStore) {
    let app = app_on(store).await;
    let (key, _) = operator_key(&app, "acme").await;
    let (receiver, url) = start_receiver(vec![(410, None)]).await;
    let body = json!({"type": "echo", "payload": {}, "options": {"webhook": url}});
    let first: Value = post(&app, &key, "/v3/tasks", &body).await.json().await.unwrap();
    drain(&app).await;
    let first: Value =
        get(&app, &key, &format!("/v3/tasks/{}", first["id"].as_str().unwrap())).await.json().await.unwrap();
    assert_eq!(first["webhook"]["state"], "disabled");
    // The next task to the same endpoint is not delivered at all.
    let second: Value = post(&app, &key, "/v3/tasks", &body).await.json().await.unwrap();
    drain(&app).await;
    let second: Value =
        get(&app, &key, &format!("/v3/tasks/{}", second["id"].as_str().unwrap())).await.json().await.unwrap();
    assert_eq!(second["webhook"]["state"], "disabled");
    assert_eq!(second["webhook"]["attempts"], json!([]));
    assert_eq!(receiver.got.lock().unwrap().len(), 1);
}

async fn a_rotating_key_signs_with_both_secrets(store: DynStore) {
    let app = app_on(store).await;
    let body = json!({"name": "rotating", "role": "operator", "tenant": "acme"});
    let created: Value = app
        .client
        .post(app.url("/api/v1/keys"))
        .bearer_auth(ADMIN_KEY)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (old_key, old_secret) = (created["key"].as_str().unwrap(), created["webhook_secret"].as_str().unwrap());
    let rotate = format!("/api/v1/keys/{}/rotate", created["id"].as_str().unwrap());
    // Keys are rotated within their tenant, by one of its admins.
    let admin = json!({"name": "acme admin", "role": "admin", "tenant": "acme"});
    let admin: Value = app
        .client
        .post(app.url("/api/v1/keys"))
        .bearer_auth(ADMIN_KEY)
        .json(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rotated =
        app.client.post(app.url(&rotate)).header("x-api-key", admin["key"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(rotated.status(), 201);
    let rotated: Value = rotated.json().await.unwrap();
    let new_secret = rotated["webhook_secret"].as_str().unwrap();
    assert_ne!(old_secret, new_secret, "a rotated key gets its own webhook secret");
    // During the grace period the old key still works; its tasks are signed with both secrets, so a receiver
    // verifies whichever it has configured.
    let (receiver, url) = start_receiver(vec![]).await;
    post(&app, old_key, "/v3/tasks", &json!({"type": "echo", "payload": {}, "options": {"webhook": url}})).await;
    drain(&app).await;
    let got = receiver.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (headers, body) = &got[0];
    let signature = &headers.iter().find(|(k, _)| k == "webhook-signature").unwrap().1;
    assert_eq!(signature.split(' ').count(), 2, "{signature}");
    for secret in [old_secret, new_secret] {
        match verify_with_reference(secret, headers, body) {
            Ok(payload) => assert_eq!(payload["type"], "task.succeeded"),
            Err(skip) if skip == "SKIPPED" => {}
            Err(e) => panic!("the reference library refused a rotation signature: {e}"),
        }
    }
}

/// A function that does not link a type's code (its registry only describes it) still accepts its tasks: it
/// validates them and queues them, even when the caller asked for a synchronous run; the worker, which links
/// every type, runs them.
async fn a_type_this_function_does_not_run_is_queued_for_the_worker(store: DynStore) {
    let described = cloud_agent_handlers::builtin::describe(cloud_agent_handlers::Registry::builder()).build().unwrap();
    let route = TestApp::builder().envs(&ROOMY).store(store.clone()).types(described).spawn().await;
    let (key, _) = operator_key(&route, "acme").await;
    let bad = post(&route, &key, "/v3/tasks", &json!({"type": "text-analysis", "payload": {"txt": PASSAGE}})).await;
    assert_problem(bad, 422, Some("validation")).await;
    let created =
        post(&route, &key, "/v3/tasks", &json!({"type": "text-analysis", "payload": {"text": PASSAGE}})).await;
    assert_eq!(created.status(), 202, "queued, not run here");
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    // A drain after a response in this function leaves it alone (neither claimed nor counted) ...
    let here = worker::drain_here(&route.state.part::<Engine>(), Duration::from_secs(30)).await;
    assert_eq!((here.done, here.retried, here.errors), (0, 0, 0), "{here:?}");
    let waiting: Value = get(&route, &key, &location).await.json().await.unwrap();
    assert_eq!(waiting["status"], "queued", "{waiting}");
    // ... nor a run whose deadline is longer than the time left (the platform would cut it off) ...
    let long = json!({"type": "echo", "payload": {"message": 1}, "options": {"async": true, "timeout_ms": 30_000}});
    let long = post(&route, &key, "/v3/tasks", &long).await;
    let long_at = long.headers()["location"].to_str().unwrap().to_owned();
    let short = worker::drain_here(&route.state.part::<Engine>(), Duration::from_secs(5)).await;
    assert_eq!(short.done, 0, "{short:?}");
    let roomy = worker::drain_here(&route.state.part::<Engine>(), Duration::from_mins(1)).await;
    assert_eq!(roomy.done, 0, "echo is described only in this function: {roomy:?}");
    let waiting: Value = get(&route, &key, &long_at).await.json().await.unwrap();
    assert_eq!(waiting["status"], "queued", "{waiting}");
    // ... for the worker, which links every type.
    let everything = app_on(store).await;
    let engine = everything.state.part::<Engine>();
    let cut_short = worker::drain_here(&engine, Duration::from_secs(10)).await;
    assert_eq!(cut_short.done, 1, "the text-analysis task fits in 10 s; the 30 s echo does not: {cut_short:?}");
    assert_eq!(drain(&everything).await.done, 1, "the echo, by a drain with its full budget");
    let ran: Value = get(&route, &key, &location).await.json().await.unwrap();
    assert_eq!(ran["status"], "succeeded", "{ran}");
    assert_eq!(ran["result"]["words"], 6, "{ran}");
}

/// A port with nothing listening: a dependency that is down.
fn dead_address() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

async fn breaker_named(app: &TestApp, key: &str, name: &str) -> Option<Value> {
    let listing: Value = get(app, key, "/api/v1/circuit-breakers").await.json().await.unwrap();
    listing["breakers"].as_array().unwrap().iter().find(|b| b["name"] == name).cloned()
}

/// A dead receiver opens its host's breaker (per tenant): later deliveries to it are put off without spending an
/// attempt, while another receiver still gets its deliveries at once. The breaker is listed to its tenant only,
/// and the public health report counts it without naming the host.
async fn a_dead_receiver_opens_its_breaker_and_others_are_still_delivered(store: DynStore) {
    let app = app_on(store).await;
    let (key, _) = operator_key(&app, "acme").await;
    let (other_tenant, _) = operator_key(&app, "globex").await;
    // The dead receiver is named `localhost`, the live one `127.0.0.1`: two hosts, two breakers.
    let dead = format!("http://localhost:{}/hook", dead_address().port());
    let (receiver, live) = start_receiver(Vec::new()).await;
    let create = |url: String| {
        let body = json!({"type": "echo", "payload": {"message": "done"}, "options": {"webhook": url}});
        let (app, key) = (&app, &key);
        async move {
            post(app, key, "/v3/tasks", &body).await.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
        }
    };
    for _ in 0..6 {
        create(dead.clone()).await;
    }
    drain(&app).await;
    let name = "webhook:acme:localhost";
    let breaker = breaker_named(&app, &key, name).await.expect("the receiver's breaker is listed to its tenant");
    assert_eq!(breaker["state"], "OPEN", "{breaker}");
    assert!(breaker_named(&app, &other_tenant, name).await.is_none(), "another tenant does not see it");

    let put_off = create(dead.clone()).await;
    let delivered = create(live.clone()).await;
    drain(&app).await;
    let task: Value = get(&app, &key, &format!("/v3/tasks/{put_off}")).await.json().await.unwrap();
    assert_eq!(task["webhook"]["state"], "pending", "{task}");
    assert!(task["webhook"]["attempts"].as_array().unwrap().is_empty(), "no attempt spent while open: {task}");
    let task: Value = get(&app, &key, &format!("/v3/tasks/{delivered}")).await.json().await.unwrap();
    assert_eq!(task["webhook"]["state"], "delivered", "the live receiver is not held up: {task}");
    assert_eq!(receiver.got.lock().unwrap().len(), 1);

    let health: Value = app.client.get(app.url("/health")).send().await.unwrap().json().await.unwrap();
    let text = health.to_string();
    assert!(!text.contains("localhost"), "the public report names no tenant's receiver: {text}");
    let receivers = health["checks"]["circuitBreaker:state"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["componentId"] == "webhook receivers")
        .cloned()
        .expect("receivers are counted");
    assert_eq!(receivers["status"], "warn", "{receivers}");
    assert_eq!(receivers["observedValue"], 1.0, "{receivers}");
}

/// SQS is down: queued tasks are still accepted (202) — their work waits in the table queue — the `sqs` breaker
/// opens, and the drain runs every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sqs_down_queued_work_waits_in_the_table_and_runs() {
    let dead = dead_address();
    let app = TestApp::builder()
        .envs(&ROOMY)
        .env("CLOUD_AGENT_TASK_QUEUE_URL", &format!("http://{dead}/000000000000/tasks"))
        .env("CLOUD_AGENT_SQS_ENDPOINT", &format!("http://{dead}"))
        .spawn()
        .await;
    let (key, _) = operator_key(&app, "acme").await;
    let mut ids = Vec::new();
    for n in 0..7 {
        let response = post(
            &app,
            &key,
            "/v3/tasks",
            &json!({"type": "echo", "payload": {"message": format!("task {n}")}, "options": {"async": true}}),
        )
        .await;
        assert_eq!(response.status(), 202, "task {n} is accepted while SQS is down");
        ids.push(response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    let breaker = breaker_named(&app, &key, "sqs").await.expect("the queue's breaker is listed");
    assert_eq!(breaker["state"], "OPEN", "{breaker}");
    // Degraded, not down: the table stands in for SQS, so the instance warns and stays ready.
    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["status"], "warn", "{health}");
    assert!(health["alerts"].to_string().contains("breaker_open"), "an open breaker is alerted: {health}");
    assert_eq!(app.client.get(app.url("/health/ready")).send().await.unwrap().status(), 200);
    let report = drain(&app).await;
    assert_eq!(report.done, 7, "{report:?}");
    for id in ids {
        let task: Value = get(&app, &key, &format!("/v3/tasks/{id}")).await.json().await.unwrap();
        assert_eq!(task["status"], "succeeded", "{task}");
    }
}

on_both_backends!(
    a_dead_receiver_opens_its_breaker_and_others_are_still_delivered,
    inference_answers_and_falls_back_when_the_model_fails,
    a_type_this_function_does_not_run_is_queued_for_the_worker,
    a_rotating_key_signs_with_both_secrets,
    both_versions_run_a_task_and_show_the_same_record,
    bad_input_is_a_422_naming_the_field,
    a_task_past_its_deadline_times_out_with_a_problem,
    idempotency_keys_return_the_same_task_or_refuse_another_input,
    concurrent_creates_with_one_idempotency_key_make_one_task,
    a_batch_costs_one_delegation_per_task,
    a_task_creation_costs_four_store_calls_and_a_queued_one_one,
    a_tenant_past_its_queued_cap_is_refused,
    one_tenants_backlog_does_not_hold_up_another,
    queued_tasks_run_high_priority_first_and_cancel,
    tenants_see_only_their_own_tasks,
    metrics_add_up_across_instances,
    a_batch_of_ten_runs_concurrently,
    webhooks_are_signed_retried_and_recorded,
    gone_disables_the_endpoint,
);

/// Outbound handlers refuse private, loopback and metadata targets when loopback is not allowed (production).
#[tokio::test]
async fn outbound_handlers_refuse_internal_addresses() {
    let app = TestApp::builder().envs(&ROOMY[..3]).spawn().await;
    let (key, _) = operator_key(&app, "acme").await;
    for (kind, payload, pointer) in [
        ("webhook", json!({"url": app.url("/health")}), "/payload/url"),
        ("webhook", json!({"url": "http://169.254.169.254/latest/meta-data/"}), "/payload/url"),
        ("webhook", json!({"url": "http://[::ffff:10.0.0.1]/"}), "/payload/url"),
        ("webhook", json!({"url": "http://localhost:9/"}), "/payload/url"),
        ("health-check", json!({"endpoints": [{"url": "http://192.168.1.1/"}]}), "/payload/endpoints/0/url"),
    ] {
        let problem =
            assert_problem(post(&app, &key, "/v3/tasks", &json!({"type": kind, "payload": payload})).await, 422, None)
                .await;
        assert_eq!(problem["pointer"], pointer, "{kind} {payload}: {problem}");
    }
}

/// The example plugin (examples/csv-parser), registered the way a user registers theirs: its task type runs through
/// both API versions, sync and queued, and its hook refuses an oversized payload with the plugin's own problem.
#[cfg(feature = "example-plugin")]
mod plugin {
    use cloud_agent::store::DynStore;
    use cloud_agent_example_csv::PAYLOAD_PROBLEM;
    use serde_json::{Value, json};

    use super::{app_on, drain, get, operator_key, post};

    const TABLE: &str = "city,population,capital\r\n\"Bern, BE\",134000,true\r\nZurich,421000,false\r\n";

    async fn a_plugin_task_type_runs_everywhere_and_its_hook_refuses(store: DynStore) {
        let app = app_on(store).await;
        let (key, _) = operator_key(&app, "acme").await;

        let caps: Value = get(&app, &key, "/api/capabilities").await.json().await.unwrap();
        let listed = caps["handlers"].as_array().unwrap().iter().find(|h| h["name"] == "csv-parser").cloned();
        let listed = listed.expect("the plugin is listed");
        assert_eq!(listed["hooks"], json!(["payload-limit"]));
        assert_eq!(listed["input_schema"]["required"], json!(["csv"]));

        let v3 = post(&app, &key, "/v3/tasks", &json!({"type": "csv-parser", "payload": {"csv": TABLE}})).await;
        assert_eq!(v3.status(), 201);
        let task: Value = v3.json().await.unwrap();
        assert_eq!(task["status"], "succeeded", "{task}");
        assert_eq!(task["result"]["columns"][1], json!({"name": "population", "type": "integer"}));
        assert_eq!(task["result"]["rows"][0], json!({"city": "Bern, BE", "population": 134_000, "capital": true}));

        let v2 =
            post(&app, &key, "/api/delegate", &json!({"task_type": "csv-parser", "task_data": {"csv": TABLE}})).await;
        assert_eq!(v2.status(), 200);
        let delegated: Value = v2.json().await.unwrap();
        assert_eq!(delegated["success"], true, "{delegated}");
        assert_eq!(delegated["result"]["row_count"], 2);

        // Queued, it runs in the worker (here the drain) with the same code and hooks.
        let queued = json!({"type": "csv-parser", "payload": {"csv": TABLE}, "options": {"async": true}});
        let queued = post(&app, &key, "/v3/tasks", &queued).await;
        assert_eq!(queued.status(), 202);
        let location = queued.headers()["location"].to_str().unwrap().to_owned();
        assert_eq!(drain(&app).await.done, 1);
        let finished: Value = get(&app, &key, &location).await.json().await.unwrap();
        assert_eq!(
            (finished["status"].as_str(), finished["result"]["row_count"].as_u64()),
            (Some("succeeded"), Some(2))
        );

        // The handler's own input refusal points into the request.
        let broken =
            post(&app, &key, "/v3/tasks", &json!({"type": "csv-parser", "payload": {"csv": "a,b\n1,\"x"}})).await;
        let problem = super::assert_problem(broken, 422, Some("invalid-task-input")).await;
        assert_eq!(problem["pointer"], "/payload/csv", "{problem}");
        assert!(problem["detail"].as_str().unwrap().contains("never closed"), "{problem}");

        // The hook refuses an oversized payload with the plugin's problem type, on both versions, before anything
        // is stored.
        let big = "name\n".to_owned() + &"xxxxxxx\n".repeat(5_000);
        for (path, body) in [
            ("/v3/tasks", json!({"type": "csv-parser", "payload": {"csv": big}})),
            ("/api/delegate", json!({"task_type": "csv-parser", "task_data": {"csv": big}, "async": true})),
        ] {
            let refused = post(&app, &key, path, &body).await;
            assert_eq!(refused.status(), 413, "{path}");
            assert_eq!(refused.headers()["content-type"], "application/problem+json");
            let problem: Value = refused.json().await.unwrap();
            assert_eq!(problem["type"], PAYLOAD_PROBLEM, "{problem}");
            assert!(problem["detail"].as_str().unwrap().contains("at most 32768 bytes"), "{problem}");
        }
        let mine: Value = get(&app, &key, "/v3/tasks?type=csv-parser").await.json().await.unwrap();
        // Three that succeeded and the one the handler refused while it ran; none of the refused payloads.
        assert_eq!(mine["tasks"].as_array().unwrap().len(), 4, "only the accepted tasks exist: {mine}");
        // Other types are not under the plugin's hook.
        let echo = post(&app, &key, "/v3/tasks", &json!({"type": "echo", "payload": {"message": big}})).await;
        assert_eq!(echo.status(), 201);
    }

    on_both_backends!(a_plugin_task_type_runs_everywhere_and_its_hook_refuses);
}

/// The inference handler against a local stand-in that speaks the OpenAI chat-completions protocol: answers come
/// through both API versions; when the model fails, a cached answer to the same prompt stands in, and once its
/// breaker is open a new prompt fails at once with 503 `model-unavailable`.
async fn inference_answers_and_falls_back_when_the_model_fails(store: DynStore) {
    use std::sync::atomic::{AtomicU16, Ordering};

    use cloud_agent_handlers::builtin::{self, inference::Settings};

    let status = Arc::new(AtomicU16::new(200));
    let calls = Arc::new(Mutex::new(0_u32));
    let model = {
        let (status, calls) = (status.clone(), calls.clone());
        axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let (status, calls) = (status.clone(), calls.clone());
                async move {
                    *calls.lock().unwrap() += 1;
                    let code = status.load(Ordering::SeqCst);
                    let prompt = body["messages"].as_array().and_then(|m| m.last()).cloned().unwrap_or_default();
                    let answer = json!({
                        "model": body["model"],
                        "choices": [{"message": {"role": "assistant", "content": format!("re: {}", prompt["content"].as_str().unwrap_or(""))}, "finish_reason": "stop"}],
                        "usage": {"total_tokens": 3}
                    });
                    (http::StatusCode::from_u16(code).unwrap(), axum::Json(answer))
                }
            }),
        )
    };
    let base = common::serve_router(model).await;
    let settings = Settings { url: Some(format!("{base}/v1")), model: "stand-in".into(), api_key: Some("sk-x".into()) };
    let types = cloud_agent_handlers::Registry::builder().handler(builtin::inference(settings)).build().unwrap();
    // The model's default deadline (20 s) queues a task; these ask for one that runs in the request.
    let app = TestApp::builder().envs(&ROOMY).store(store).types(types).spawn().await;
    let (key, _) = operator_key(&app, "acme").await;

    let v3 = post(
        &app,
        &key,
        "/v3/tasks",
        &json!({"type": "inference", "payload": {"prompt": "hello"}, "options": {"timeout_ms": 6000}}),
    )
    .await;
    assert_eq!(v3.status(), 201);
    let task: Value = v3.json().await.unwrap();
    assert_eq!(
        (task["result"]["text"].as_str(), task["result"]["source"].as_str()),
        (Some("re: hello"), Some("model"))
    );
    let v2 = post(
        &app,
        &key,
        "/api/delegate",
        &json!({"task_type": "inference", "task_data": {"prompt": "hi"}, "timeout_ms": 6000}),
    )
    .await;
    let delegated: Value = v2.json().await.unwrap();
    assert_eq!(delegated["result"]["text"], "re: hi", "{delegated}");

    status.store(502, Ordering::SeqCst);
    let cached = post(
        &app,
        &key,
        "/v3/tasks",
        &json!({"type": "inference", "payload": {"prompt": "hello"}, "options": {"timeout_ms": 6000}}),
    )
    .await;
    let cached: Value = cached.json().await.unwrap();
    assert_eq!(
        (cached["result"]["text"].as_str(), cached["result"]["source"].as_str()),
        (Some("re: hello"), Some("cache"))
    );
    // A new prompt: retried while the breaker is closed, then refused once it opens.
    let failed = post(
        &app,
        &key,
        "/v3/tasks",
        &json!({"type": "inference", "payload": {"prompt": "new"}, "options": {"timeout_ms": 6000}}),
    )
    .await;
    let problem = assert_problem(failed, 503, Some("model-unavailable")).await;
    assert!(problem["detail"].as_str().unwrap().contains("circuit breaker is now open"), "{problem}");
    let before = *calls.lock().unwrap();
    let refused = post(
        &app,
        &key,
        "/v3/tasks",
        &json!({"type": "inference", "payload": {"prompt": "newer"}, "options": {"timeout_ms": 6000}}),
    )
    .await;
    assert_problem(refused, 503, Some("model-unavailable")).await;
    assert_eq!(*calls.lock().unwrap(), before, "an open breaker makes no call");
    let breaker = breaker_named(&app, &key, "inference").await.expect("the handler's breaker is listed");
    assert_eq!(breaker["state"], "OPEN", "{breaker}");
}
