//! `GET /api/v1/analytics` on both backends: percentiles over a window against a reference computed from the raw
//! durations (within the histogram's stated error), anomalies flagged on a series with a known spike and not on a
//! flat one, the cost against a hand computation, request counts written by the perimeter, tenant isolation, and
//! bad windows refused with a problem naming the parameter.

use crate::common;

use std::time::Duration;

use cloud_agent::analytics::sketch::ACCURACY;
use cloud_agent::analytics::{requests::RequestLedger, task_hours};
use cloud_agent::store::DynStore;
use common::TestApp;
use serde_json::{Value, json};
use time::macros::datetime;

const ADMIN_KEY: &str = "admin-key-0123456789abcdef0123456789";

async fn app_on(store: DynStore, flush_secs: &str) -> TestApp {
    TestApp::builder()
        .env("DEV_ADMIN_KEY", ADMIN_KEY)
        .env("CLOUD_AGENT_RATE_TIERS", "standard:100000/60:100000/60")
        .env("CLOUD_AGENT_REQUEST_COUNTS_FLUSH_SECS", flush_secs)
        .store(store)
        .spawn()
        .await
}

async fn key_for(app: &TestApp, tenant: &str) -> String {
    let body = json!({"name": "analytics", "role": "operator", "tenant": tenant});
    let response = app.client.post(app.url("/api/v1/keys")).bearer_auth(ADMIN_KEY).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_owned()
}

async fn analytics(app: &TestApp, key: &str, query: &str) -> (u16, Value) {
    let response =
        app.client.get(app.url(&format!("/api/v1/analytics?{query}"))).header("x-api-key", key).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// A deterministic spread of durations (1 ms to a few seconds, skewed low, some of 0 ms).
fn durations(n: u64, seed: u64) -> Vec<u64> {
    (0..n).map(|i| (i * 7919 + seed * 104_729) % 5003 * ((i + seed) % 7) / 3).collect()
}

fn exact(sorted: &[u64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64
}

async fn percentiles_over_a_window_match_the_raw_durations(store: DynStore) {
    let app = app_on(store.clone(), "3600").await;
    let key = key_for(&app, "acme").await;
    // Three hours of "resize" tasks (one hour outside the window) and some failures.
    let start = datetime!(2026-11-02 10:00 UTC);
    let mut inside = Vec::new();
    for (hour, n) in [(0i64, 300u64), (1, 500), (2, 200), (5, 400)] {
        let at = start + time::Duration::hours(hour);
        for (i, ms) in durations(n, hour as u64).into_iter().enumerate() {
            let outcome = if i % 10 == 0 { "failed" } else { "succeeded" };
            task_hours::record(&store, "acme", "resize", outcome, Some(ms), at).await.unwrap();
            if hour <= 2 {
                inside.push(ms);
            }
        }
    }
    let (status, body) = analytics(&app, &key, "from=2026-11-02T10:00:00Z&to=2026-11-02T12:59:59Z&bucket=hour").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["buckets"].as_array().unwrap().len(), 3);
    assert_eq!(body["accuracy"], ACCURACY);
    let series = &body["tasks"][0];
    assert_eq!(series["type"], "resize");
    let counts: Vec<u64> = series["points"].as_array().unwrap().iter().map(|p| p["total"].as_u64().unwrap()).collect();
    assert_eq!(counts, [300, 500, 200]);
    let window = &series["window"];
    assert_eq!(window["total"], 1000);
    assert_eq!(window["failed"], 30 + 50 + 20);
    assert!((window["error_rate"].as_f64().unwrap() - 0.1).abs() < 1e-9);
    inside.sort_unstable();
    for (name, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)] {
        let got = window["duration_ms"][name].as_f64().unwrap();
        let want = exact(&inside, q);
        // The stated error, plus the answer's rounding to 0.01 ms.
        assert!((got - want).abs() <= ACCURACY * want + 0.01, "{name}: {got} vs exact {want}");
    }
    let mean = inside.iter().sum::<u64>() as f64 / inside.len() as f64;
    assert!((window["duration_ms"]["mean"].as_f64().unwrap() - mean).abs() < 0.01);

    // A day bucket holds the same hours: the same window figures.
    let (_, days) = analytics(&app, &key, "from=2026-11-02T00:00:00Z&to=2026-11-02T23:00:00Z&bucket=day").await;
    assert_eq!(days["tasks"][0]["window"]["total"], 1400);
    // Another tenant sees none of it; a type filter keeps only that type.
    let theirs = key_for(&app, "globex").await;
    let (_, other) = analytics(&app, &theirs, "from=2026-11-02T00:00:00Z&to=2026-11-02T23:00:00Z").await;
    assert_eq!(other["tasks"], json!([]), "{other}");
    let (_, filtered) = analytics(&app, &key, "from=2026-11-02T00:00:00Z&to=2026-11-02T23:00:00Z&type=echo").await;
    assert_eq!(filtered["tasks"], json!([]));
}

async fn a_spike_is_an_anomaly_and_a_flat_series_is_not(store: DynStore) {
    let app = app_on(store.clone(), "3600").await;
    let key = key_for(&app, "acme").await;
    let start = datetime!(2026-11-10 00:00 UTC);
    // 40 hours: "steady" runs 20 tasks an hour throughout; "spiky" 20 an hour but 200 in hour 35.
    for hour in 0..40i64 {
        let at = start + time::Duration::hours(hour);
        let spiky = if hour == 35 { 200 } else { 20 };
        for _ in 0..20 {
            task_hours::record(&store, "acme", "steady", "succeeded", Some(50), at).await.unwrap();
        }
        for _ in 0..spiky {
            task_hours::record(&store, "acme", "spiky", "succeeded", Some(50), at).await.unwrap();
        }
    }
    // The last 12 hours answered; the 24 before them are the baseline.
    let (status, body) = analytics(&app, &key, "from=2026-11-11T04:00:00Z&to=2026-11-11T15:00:00Z").await;
    assert_eq!(status, 200, "{body}");
    let anomalies = body["anomalies"].as_array().unwrap();
    assert_eq!(anomalies.len(), 1, "{anomalies:#?}");
    let spike = &anomalies[0];
    assert_eq!(spike["series"], "task:spiky");
    assert_eq!(spike["metric"], "throughput");
    assert_eq!(spike["start"], "2026-11-11T11:00:00Z");
    assert_eq!(spike["severity"], "critical");
    assert!((spike["value"].as_f64().unwrap() - 200.0 / 3600.0).abs() < 1e-9);
    assert!((spike["mean"].as_f64().unwrap() - 20.0 / 3600.0).abs() < 1e-9);
}

async fn cost_and_request_counts_follow_what_was_served(store: DynStore) {
    // Every request's counts written as it ends.
    let app = app_on(store.clone(), "0").await;
    let key = key_for(&app, "acme").await;
    for _ in 0..5 {
        let response = app.client.get(app.url("/v3/tasks")).header("x-api-key", &key).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let refused = app.client.get(app.url("/v3/tasks?limit=0")).header("x-api-key", &key).send().await.unwrap();
    assert_eq!(refused.status(), 422);
    let (status, body) = analytics(&app, &key, "").await;
    assert_eq!(status, 200, "{body}");
    let tasks_route = body["requests"].as_array().unwrap().iter().find(|r| r["route"] == "/v3/tasks").unwrap();
    assert_eq!(tasks_route["window"]["requests"], 6, "{tasks_route}");
    assert_eq!(tasks_route["window"]["client_errors"], 1);
    assert_eq!(tasks_route["window"]["server_errors"], 0);

    // Known usage, counted by an instance's ledger and priced: a hand computation at the default prices.
    let ledger = RequestLedger::new(cloud_agent::analytics::requests::FlushPolicy { every: Duration::from_hours(1) });
    for _ in 0..1000 {
        assert!(ledger.count("pricing", "/v3/tasks", 200, Duration::from_millis(120)).is_none());
    }
    ledger.flush_now(&store).await;
    let theirs = key_for(&app, "pricing").await;
    let (_, body) = analytics(&app, &theirs, "").await;
    let cost = &body["cost"];
    assert_eq!(cost["prices_as_of"], "2026-12-01");
    assert_eq!(cost["invocations"], 1000);
    assert!((cost["busy_seconds"].as_f64().unwrap() - 120.0).abs() < 1e-9);
    // Lambda, 256 MB arm64: 0.25 GB × 120 s = 30 GB-s × $0.0000133334 + 1000 × $0.20 / 10⁶.
    let lambda = &cost["platforms"]["lambda"];
    assert!((lambda["compute_usd"].as_f64().unwrap() - 30.0 * 0.000_013_333_4).abs() < 1e-12, "{cost}");
    assert!((lambda["total_usd"].as_f64().unwrap() - (0.000_400_002 + 0.000_2)).abs() < 1e-12);
    // Vercel, 1 GB: 120 s = 1/30 h × ($0.128 CPU + $0.0106 memory) + 1000 × $0.60 / 10⁶.
    let vercel = &cost["platforms"]["vercel"];
    assert!((vercel["total_usd"].as_f64().unwrap() - ((0.128 + 0.0106) / 30.0 + 0.000_6)).abs() < 1e-12, "{cost}");
    assert_eq!(vercel["memory_mb"], 1024);
}

on_both_backends!(
    percentiles_over_a_window_match_the_raw_durations,
    a_spike_is_an_anomaly_and_a_flat_series_is_not,
    cost_and_request_counts_follow_what_was_served,
);

#[tokio::test]
async fn bad_windows_are_refused_naming_the_parameter() {
    let app = app_on(common::embedded().store.clone(), "3600").await;
    let key = key_for(&app, "acme").await;
    for (query, pointer) in [
        ("bucket=week", "/bucket"),
        ("from=yesterday", "/from"),
        ("to=2026-13-01T00:00:00Z", "/to"),
        ("from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z", "/from"),
        ("from=2026-01-01T00:00:00Z&to=2026-11-01T00:00:00Z", "/from"),
        ("type=", "/type"),
    ] {
        let (status, body) = analytics(&app, &key, query).await;
        assert_eq!((status, body["pointer"].as_str()), (422, Some(pointer)), "{query}: {body}");
    }
    let (status, body) = analytics(&app, &key, "window=3").await;
    assert_eq!(status, 400, "{body}");
    // A key without metrics:read is refused.
    let viewer = {
        let body = json!({"name": "v", "role": "viewer", "tenant": "acme"});
        let r = app.client.post(app.url("/api/v1/keys")).bearer_auth(ADMIN_KEY).json(&body).send().await.unwrap();
        r.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_owned()
    };
    let (status, body) = analytics(&app, &viewer, "").await;
    assert_eq!(status, 403, "a viewer has no metrics:read: {body}");
}
