//! Distributed rate limits, as production runs them: two `cloudagent serve` processes (two instances sharing no
//! memory) on one DynamoDB Local table, one key limited to N per window, hammered concurrently through both. At
//! most N requests pass per window across both (no overshoot); the rest are 429 with `Retry-After`, and every
//! answer carries the RateLimit fields.
//!
//! Prints the figure BENCHMARKS.md reports:
//! `CLOUD_AGENT_TEST_DYNAMODB_ENDPOINT=http://127.0.0.1:8000 cargo test --features cli --test api rate_limit -- --nocapture`

use crate::common;

use std::collections::BTreeMap;

use common::process::{self, Child};

use serde_json::{Value, json};

const ADMIN_KEY: &str = "admin-key-0123456789abcdef0123456789";
const LIMIT: u32 = 25;
const WINDOW: u32 = 60;
const REQUESTS_PER_INSTANCE: usize = 60;

/// One `cloudagent serve` on the shared table; returns once it listens.
fn serve(endpoint: &str, table: &str, dir: &std::path::Path) -> (Child, String) {
    let tiers = format!("standard:600/60:10/60,tiny:{LIMIT}/{WINDOW}:{LIMIT}/{WINDOW}");
    let mut command = process::cloudagent(dir);
    command
        .env("RUST_LOG", "warn")
        .env("CLOUD_AGENT_STORE", "dynamodb")
        .env("DYNAMODB_ENDPOINT", endpoint)
        .env("TABLE_NAME", table)
        // Both instances share the environment's secrets, as functions of one deployment do.
        .env("DEV_AGENT_SECRET", "agent-secret-0123456789abcdef0123456789")
        .env("DEV_JWT_SECRET", "jwt-secret-0123456789abcdef0123456789ab")
        .env("DEV_ADMIN_KEY", ADMIN_KEY)
        .env("CLOUD_AGENT_RATE_TIERS", tiers)
        // DynamoDB Local under 120 concurrent requests on a small machine can be slower than production's 300 ms;
        // and a count the store could not make must be a refusal here, never a silent admission.
        .env("CLOUD_AGENT_PERIMETER_BUDGET_MS", "10000")
        .env("CLOUD_AGENT_RATE_FAIL_GENERAL", "closed");
    let (server, _lines, base) = process::serve(command, &[]);
    (server, base)
}

/// `"policy";r=3;t=42` → (r, t).
fn parse_state(value: &str) -> (u32, u32) {
    let field =
        |name: &str| value.split(';').find_map(|p| p.trim().strip_prefix(name)).and_then(|v| v.parse().ok()).unwrap();
    (field("r="), field("t="))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_never_admit_more_than_the_limit_per_window() {
    let Some(store) = common::dynamodb().await else { return };
    let endpoint = common::dynamodb_endpoint().unwrap();
    let table = store.table.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_a, base_a) = serve(&endpoint, &table, dir.path());
    let (_b, base_b) = serve(&endpoint, &table, dir.path());
    let client = reqwest::Client::new();
    let created: Value = client
        .post(format!("{base_a}/api/v1/keys"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"name": "hammer", "role": "viewer", "tier": "tiny"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["key"].as_str().unwrap().to_owned();

    // Both instances at once, every request in flight together.
    let mut calls = Vec::new();
    for i in 0..REQUESTS_PER_INSTANCE * 2 {
        let url = format!("{}/api/v1/agents/health", if i % 2 == 0 { &base_a } else { &base_b });
        let (client, key) = (client.clone(), key.clone());
        calls.push(tokio::spawn(async move {
            let response = client.get(url).header("x-api-key", key).send().await.unwrap();
            let now = cloud_agent::store::now_epoch();
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body: Value = response.json().await.unwrap();
            (status, headers, body, now)
        }));
    }
    let mut admitted: BTreeMap<i64, u32> = BTreeMap::new();
    let mut limited = 0;
    for call in calls {
        let (status, headers, body, now) = call.await.unwrap();
        assert_eq!(headers["ratelimit-policy"], format!("\"tiny-general\";q={LIMIT};w={WINDOW}"));
        let (remaining, reset) = parse_state(headers["ratelimit"].to_str().unwrap());
        assert!((1..=WINDOW).contains(&reset), "t is the seconds left in the window: {reset}");
        // Which window answered: its end, as this machine's clock (the servers') sees it.
        let window = (now + i64::from(reset)).div_euclid(i64::from(WINDOW));
        match status {
            200 => {
                assert!(remaining < LIMIT);
                *admitted.entry(window).or_default() += 1;
            }
            429 => {
                limited += 1;
                assert_eq!(remaining, 0);
                assert_eq!(headers["content-type"], "application/problem+json");
                assert_eq!(body["type"], "urn:cloud-agent:problem:rate-limited");
                let retry_after: u32 = headers["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=WINDOW).contains(&retry_after), "Retry-After {retry_after}");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let total: u32 = admitted.values().sum();
    println!(
        "rate limit {LIMIT}/{WINDOW}s, 2 instances, {} concurrent requests: admitted per window {admitted:?}, \
         limited {limited}, overshoot {}",
        REQUESTS_PER_INSTANCE * 2,
        admitted.values().map(|n| n.saturating_sub(LIMIT)).sum::<u32>()
    );
    for (window, n) in &admitted {
        assert!(*n <= LIMIT, "window {window} admitted {n} > {LIMIT}: overshoot across instances");
    }
    assert!(total >= LIMIT, "the limit was reached (more requests than {LIMIT} were sent)");
    assert!(limited > 0);
    // Each instance alone would have admitted up to the limit (half the requests went to each): the count is
    // shared through the table, not per instance.
}
