//! The user context route: cache MISS then HIT, one loader for concurrent callers, STALE when the store fails.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cloud_agent::features::context::{self, UserContext};
use cloud_agent::store::DynStore;
use common::TestApp;
use serde_json::{Value, json};

const ADMIN_KEY: &str = "admin-key-0123456789abcdef0123456789";

async fn app(store: DynStore, ttl: &str) -> TestApp {
    TestApp::builder()
        .store(store)
        .env("CLOUD_AGENT_CONTEXT_TTL_SECS", ttl)
        .env("DEV_ADMIN_KEY", ADMIN_KEY)
        .spawn()
        .await
}

/// `GET /api/v1/agent/context` as agent-1 working for `owner`.
async fn get(app: &TestApp, owner: &str) -> reqwest::Response {
    app.get_as("/api/v1/agent/context", &app.access_token("agent-1", owner)).await
}

fn sample() -> UserContext {
    UserContext {
        profile: json!({"name": "Ada", "timezone": "Europe/London"}),
        preferences: json!({"verbosity": "terse"}),
        permissions: vec!["repo:read".into(), "tickets:write".into()],
    }
}

async fn served_from_cache_after_the_first_read(store: DynStore) {
    let app = app(store, "300").await;
    context::save(app.state.store(), &cloud_agent::ids::UserId::parse("user-1").unwrap(), &sample()).await.unwrap();
    let first = get(&app, "user-1").await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-cache"], "MISS");
    let body: Value = first.json().await.unwrap();
    assert_eq!(body["cached"], false);
    assert_eq!(body["user_id"], "user-1");
    assert_eq!(body["profile"]["name"], "Ada");
    assert_eq!(body["permissions"], json!(["repo:read", "tickets:write"]));
    app.store.take();
    let second = get(&app, "user-1").await;
    assert_eq!(second.headers()["x-cache"], "HIT");
    assert_eq!(second.json::<Value>().await.unwrap()["cached"], true);
    assert_eq!(app.store.take(), 0, "a hit does not touch the store");
    assert_eq!(get(&app, "user-without-context").await.status(), 404);
    let stats = app.state.part::<cloud_agent::features::context::ContextCache>().stats();
    assert_eq!((stats.hits, stats.entries), (1, 1));
}

async fn concurrent_first_reads_load_once(store: DynStore) {
    let app = Arc::new(app(store, "300").await);
    context::save(app.state.store(), &cloud_agent::ids::UserId::parse("user-2").unwrap(), &sample()).await.unwrap();
    app.store.take();
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let app = app.clone();
        tasks.push(tokio::spawn(
            async move { get(&app, "user-2").await.headers()["x-cache"].to_str().unwrap().to_owned() },
        ));
    }
    let mut misses = 0;
    for t in tasks {
        if t.await.unwrap() == "MISS" {
            misses += 1;
        }
    }
    assert_eq!(misses, 1);
    assert_eq!(app.store.take(), 1, "one store read for 30 concurrent callers");
}

async fn a_store_outage_serves_stale_or_503(store: DynStore) {
    // The perimeter's own calls (rate limit, audit) fail during the outage too; a breaker that opened on them
    // would keep serving STALE after recovery, which is the breaker's test, not this one.
    let vars = [("CLOUD_AGENT_CONTEXT_TTL_SECS", "1"), ("CLOUD_AGENT_BREAKER_MIN_CALLS", "100")];
    let app = TestApp::builder().store(store).envs(&vars).spawn().await;
    context::save(app.state.store(), &cloud_agent::ids::UserId::parse("user-3").unwrap(), &sample()).await.unwrap();
    assert_eq!(get(&app, "user-3").await.headers()["x-cache"], "MISS");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.store.down.store(true, Ordering::SeqCst);
    let stale = get(&app, "user-3").await;
    assert_eq!(stale.status(), 200);
    assert_eq!(stale.headers()["x-cache"], "STALE");
    assert_eq!(stale.json::<Value>().await.unwrap()["profile"]["name"], "Ada");
    let nothing_cached = get(&app, "user-4").await;
    assert_eq!(nothing_cached.status(), 503);
    assert_eq!(nothing_cached.headers()["content-type"], "application/problem+json");
    assert!(nothing_cached.headers().contains_key("retry-after"));
    app.store.down.store(false, Ordering::SeqCst);
    assert_eq!(get(&app, "user-3").await.headers()["x-cache"], "MISS", "back to the store once it recovers");
    assert_eq!(app.state.part::<cloud_agent::features::context::ContextCache>().stats().stale, 1);
}

async fn the_stale_fallback_has_a_maximum_age(store: DynStore) {
    // A wide maximum, so "younger than it" cannot lose a race with a slow machine; the wait past it is a sleep
    // that only ever helps.
    let vars = [("CLOUD_AGENT_CONTEXT_TTL_SECS", "0"), ("CLOUD_AGENT_CONTEXT_STALE_MAX_SECS", "3")];
    let app = TestApp::builder().store(store).envs(&vars).spawn().await;
    context::save(app.state.store(), &cloud_agent::ids::UserId::parse("user-5").unwrap(), &sample()).await.unwrap();
    assert_eq!(get(&app, "user-5").await.headers()["x-cache"], "MISS");
    app.store.down.store(true, Ordering::SeqCst);
    assert_eq!(get(&app, "user-5").await.headers()["x-cache"], "STALE", "younger than the maximum: served");
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let too_old = get(&app, "user-5").await;
    assert_eq!(too_old.status(), 503, "older than CLOUD_AGENT_CONTEXT_STALE_MAX_SECS: not served any more");
    assert_eq!(too_old.headers()["content-type"], "application/problem+json");
}

async fn oversized_contexts_and_reports_are_refused_and_nothing_is_stored(store: DynStore) {
    let key = ADMIN_KEY;
    let vars = [("DEV_ADMIN_KEY", key), ("CLOUD_AGENT_BODY_LIMIT", "2097152")];
    let app = TestApp::builder().store(store).envs(&vars).spawn().await;
    let (base, client, state) = (&app.address, &app.client, &app.state);
    let big = json!({"profile": {"notes": "x".repeat(500 * 1024)}, "preferences": {}, "permissions": []});
    let refused = client
        .put(format!("{base}/api/v1/admin/users/user-7/context"))
        .bearer_auth(key)
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 413, "a context over DynamoDB's 400 KB item limit");
    assert_eq!(refused.headers()["content-type"], "application/problem+json");
    let problem: Value = refused.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("400 KB"), "{problem}");
    let user = cloud_agent::ids::UserId::parse("user-7").unwrap();
    assert!(matches!(context::load(state.store(), &user).await, Err(context::ContextError::NotFound(_))));
    let token = app.access_token("w", "u");
    let report =
        |body: Value| client.post(format!("{base}/api/v1/agent/health")).bearer_auth(&token).json(&body).send();
    let long_detail =
        json!({"status": "healthy", "checks": {"disk": {"status": "healthy", "detail": "d".repeat(300 * 1024)}}});
    let long_name = json!({"status": "healthy", "metrics": {"m".repeat(300 * 1024): 1.0}});
    let huge_number = json!({"status": "healthy", "metrics": {"m": 1e300}});
    for body in [long_detail, long_name, huge_number] {
        let answer = report(body).await.unwrap();
        assert_eq!(answer.status(), 422);
        assert_eq!(answer.headers()["content-type"], "application/problem+json");
    }
    let list = state.store().query(cloud_agent::store::Query::partition("AGENTHEALTH")).await.unwrap();
    assert!(list.items.is_empty(), "no refused report was stored");
}

on_both_backends!(
    served_from_cache_after_the_first_read,
    concurrent_first_reads_load_once,
    a_store_outage_serves_stale_or_503,
    the_stale_fallback_has_a_maximum_age,
    oversized_contexts_and_reports_are_refused_and_nothing_is_stored,
);

#[tokio::test]
async fn the_admin_route_sets_a_context_with_the_admin_key_only() {
    let key = ADMIN_KEY;
    let app = TestApp::builder().env("DEV_ADMIN_KEY", key).spawn().await;
    let client = &app.client;
    let url = app.url("/api/v1/admin/users/user-9/context");
    let body = json!({"profile": {"name": "Grace"}, "preferences": {}, "permissions": ["deploy"]});
    assert_eq!(client.put(&url).json(&body).send().await.unwrap().status(), 401);
    assert_eq!(client.put(&url).bearer_auth("wrong-key").json(&body).send().await.unwrap().status(), 401);
    let agent_token = app.access_token("a", "user-9");
    assert_eq!(
        client.put(&url).bearer_auth(&agent_token).json(&body).send().await.unwrap().status(),
        403,
        "agents hold no operator permission"
    );
    let stored = client.put(&url).bearer_auth(key).json(&body).send().await.unwrap();
    assert_eq!(stored.status(), 200);
    let context = common::get_json(client, &app.url("/api/v1/agent/context"), Some(&agent_token)).await;
    assert_eq!(context["profile"]["name"], "Grace");
    assert_eq!(context["permissions"], json!(["deploy"]));
    let bad = client.put(&url).bearer_auth(key).json(&json!({"permissions": "all"})).send().await.unwrap();
    assert_eq!(bad.status(), 400, "malformed context is refused, naming the field");

    let without_key = TestApp::builder().spawn().await;
    let off = client
        .put(without_key.url("/api/v1/admin/users/user-9/context"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), 401, "no admin key configured: the key is nobody's");
}

#[tokio::test]
async fn a_failing_store_opens_its_breaker_and_writes_answer_503_with_retry_after() {
    let s = common::embedded();
    let app = app(s.store.clone(), "300").await;
    let breakers =
        || async { common::get_json(&app.client, &app.url("/api/v1/circuit-breakers"), Some(ADMIN_KEY)).await };
    assert_eq!(breakers().await["breakers"][0]["state"], "CLOSED");
    app.store.down.store(true, Ordering::SeqCst);
    for user in 0..5 {
        assert_eq!(get(&app, &format!("u{user}")).await.status(), 503);
    }
    let view = breakers().await;
    assert_eq!(view["breakers"][0]["name"], "store");
    assert_eq!(view["breakers"][0]["state"], "OPEN", "5 failures of 5 calls open the store breaker: {view}");
    assert_eq!(view["breakers"][0]["last_transition"]["from"], "CLOSED");
    assert_eq!(view["breakers"][0]["last_transition"]["to"], "OPEN");
    app.store.take();
    // While open, nothing reaches the store, and a write is refused rather than acknowledged.
    let write = app
        .post_progress(
            "agent-1",
            "u",
            &json!({"task_id": "t", "progress": 1, "status": "running", "timestamp": "2026-11-23T10:00:00Z"}),
        )
        .await;
    assert_eq!(write.status(), 503);
    let retry_after: u64 = write.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry_after), "Retry-After says when the breaker will try again: {retry_after}");
    assert_eq!(app.store.take(), 0, "an open breaker spares the failing store");
}

#[tokio::test]
async fn agents_report_health_and_operators_list_them() {
    let key = ADMIN_KEY;
    let app = TestApp::builder().env("DEV_ADMIN_KEY", key).spawn().await;
    let (base, client) = (&app.address, &app.client);
    let token = |agent: &str| app.access_token(agent, "u");
    let report = json!({"status": "degraded", "checks": {"disk": {"status": "degraded", "detail": "91% full"}}, "metrics": {"queue": 12.0}});
    let response = client
        .post(format!("{base}/api/v1/agent/health"))
        .bearer_auth(token("worker-1"))
        .json(&report)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "degraded", "the worse of the agent's and the service's view");
    assert_eq!(body["agent_id"], "worker-1");
    assert_eq!(body["environment"], "development");
    assert_eq!(body["health"]["overall"], "degraded");
    assert_eq!(body["health"]["checks"]["disk"]["detail"], "91% full");
    assert_eq!(body["health"]["metrics"]["queue"], 12.0);
    assert!(body["health"]["alerts"].is_array());
    for field in ["responseTime", "uptime", "requestCounts", "errorRate"] {
        assert!(!body["performance"][field].is_null(), "performance.{field}: {body}");
    }
    let healthy = json!({"status": "healthy"});
    client
        .post(format!("{base}/api/v1/agent/health"))
        .bearer_auth(token("worker-2"))
        .json(&healthy)
        .send()
        .await
        .unwrap();
    let bad = client
        .post(format!("{base}/api/v1/agent/health"))
        .bearer_auth(token("worker-3"))
        .json(&json!({"status": "fine"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400, "unknown status is refused, naming the field");
    assert_eq!(
        client
            .get(format!("{base}/api/v1/agents/health"))
            .bearer_auth(token("worker-1"))
            .send()
            .await
            .unwrap()
            .status(),
        403,
        "an agent token holds no operator permission"
    );
    let list: Value =
        client.get(format!("{base}/api/v1/agents/health")).bearer_auth(key).send().await.unwrap().json().await.unwrap();
    let agents: Vec<&str> =
        list["agents"].as_array().unwrap().iter().map(|a| a["agent_id"].as_str().unwrap()).collect();
    assert_eq!(agents, ["worker-1", "worker-2"]);
    assert_eq!(list["agents"][0]["report"]["status"], "degraded");

    // One agent's report, by id (the README's "adding a route" example).
    let get = |path: String| client.get(format!("{base}{path}")).bearer_auth(key).send();
    let one = get("/api/v1/agents/worker-1/health".into()).await.unwrap();
    assert_eq!(one.status(), 200);
    let one: Value = one.json().await.unwrap();
    assert_eq!(
        (one["agent_id"].as_str(), one["report"]["checks"]["disk"]["detail"].as_str()),
        (Some("worker-1"), Some("91% full"))
    );
    let silent = get("/api/v1/agents/worker-3/health".into()).await.unwrap();
    assert_eq!(silent.status(), 404, "worker-3's report was refused: nothing stored");
    assert_eq!(silent.headers()["content-type"], "application/problem+json");
    let bad = get("/api/v1/agents/not%20an%20id/health".into()).await.unwrap();
    assert_eq!(bad.status(), 422);
    assert_eq!(bad.json::<Value>().await.unwrap()["pointer"], "/agent_id");
    let as_agent = client.get(format!("{base}/api/v1/agents/worker-1/health")).bearer_auth(token("worker-1")).send();
    assert_eq!(as_agent.await.unwrap().status(), 403, "agents cannot read each other's reports");
}
