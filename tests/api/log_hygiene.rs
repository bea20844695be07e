//! No secret reaches a log line. A real `cloudagent serve` (staging configuration, JSON logs at debug level) goes
//! through everything that handles a credential — keys created, used, rotated, revoked and forged; an agent logging
//! in, refreshing, replaying a refresh token, presenting tampered and wrong tokens, posting progress — and then
//! every line it wrote is searched for every secret and token it saw.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::process;

use serde_json::{Value, json};

const ADMIN_KEY: &str = "staging-admin-key-0123456789abcdef01234567";
const AGENT_PEPPER: &str = "staging-agent-secret-0123456789abcdef0123";
const JWT_SECRET: &str = "staging-jwt-secret-0123456789abcdef012345";

fn cloudagent(dir: &std::path::Path) -> Command {
    let mut cmd = process::cloudagent(dir);
    cmd.env("APP_ENV", "staging")
        .env("STAGING_AGENT_SECRET", AGENT_PEPPER)
        .env("STAGING_JWT_SECRET", JWT_SECRET)
        .env("STAGING_ADMIN_KEY", ADMIN_KEY)
        .env("CLOUD_AGENT_STORE", "embedded")
        .env("CLOUD_AGENT_DATA_DIR", "data")
        .env("CLOUD_AGENT_PERIMETER_BUDGET_MS", "5000");
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_key_or_token_appears_in_any_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let created = cloudagent(dir.path()).args(["agent", "create", "--id", "worker-1", "--owner", "u-1"]).output();
    let created = String::from_utf8(created.unwrap().stdout).unwrap();
    let agent_secret = created.lines().find_map(|l| l.strip_prefix("agent_secret: ")).unwrap().to_owned();

    let mut serve = cloudagent(dir.path());
    serve.env("LOG_FORMAT", "json").env("RUST_LOG", "debug");
    let (server, lines, base) = process::serve(serve, &[]);
    let client = reqwest::Client::new();
    let mut secrets: Vec<String> = vec![ADMIN_KEY.into(), AGENT_PEPPER.into(), JWT_SECRET.into(), agent_secret.clone()];

    // Keys: created, used in both headers, rotated, revoked, forged.
    let post_key = |body: Value| client.post(format!("{base}/api/v1/keys")).bearer_auth(ADMIN_KEY).json(&body).send();
    let created: Value = post_key(json!({"name": "ops", "role": "admin"})).await.unwrap().json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    client.get(format!("{base}/api/v1/keys")).header("x-api-key", &key).send().await.unwrap();
    client.get(format!("{base}/api/v1/audit")).bearer_auth(&key).send().await.unwrap();
    let rotated: Value = client
        .post(format!("{base}/api/v1/keys/{id}/rotate"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    let new_id = rotated["id"].as_str().unwrap();
    client.delete(format!("{base}/api/v1/keys/{new_id}")).bearer_auth(&key).send().await.unwrap();
    client.get(format!("{base}/api/v1/keys")).bearer_auth(&new_key).send().await.unwrap();
    let forged = format!("{}x", &key[..key.len() - 1]);
    client.get(format!("{base}/api/v1/keys")).bearer_auth(&forged).send().await.unwrap();
    client.get(format!("{base}/api/v1/keys")).bearer_auth("not-a-key-at-all-but-long-and-secret").send().await.unwrap();
    secrets.extend([key.clone(), new_key.clone(), forged.clone(), "not-a-key-at-all-but-long-and-secret".into()]);

    // Agent tokens: login, wrong secret, use, refresh, replay, tampered.
    let login = |secret: String| {
        client
            .post(format!("{base}/api/v1/agent/token"))
            .json(&json!({"agent_id": "worker-1", "agent_secret": secret}))
            .send()
    };
    let wrong = format!("{agent_secret}x");
    login(wrong.clone()).await.unwrap();
    let tokens: Value = login(agent_secret.clone()).await.unwrap().json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    client.get(format!("{base}/api/v1/agent/me")).bearer_auth(&access).send().await.unwrap();
    client
        .post(format!("{base}/api/v1/agent/progress"))
        .bearer_auth(&access)
        .json(&json!({"task_id": "t1", "progress": 5, "status": "running", "timestamp": "2026-11-23T10:00:00Z"}))
        .send()
        .await
        .unwrap();
    let refresh_once =
        || client.post(format!("{base}/api/v1/agent/token/refresh")).json(&json!({"refresh_token": refresh})).send();
    let next: Value = refresh_once().await.unwrap().json().await.unwrap();
    // Past the reuse grace or not, a replay is refused and logged as reuse: the log must still not carry it.
    tokio::time::sleep(Duration::from_millis(50)).await;
    refresh_once().await.unwrap();
    let tampered = format!("{}A", &access[..access.len() - 1]);
    client.get(format!("{base}/api/v1/agent/me")).bearer_auth(&tampered).send().await.unwrap();
    secrets.extend([wrong, access.clone(), refresh.clone(), tampered]);
    for name in ["access_token", "refresh_token"] {
        if let Some(t) = next[name].as_str() {
            secrets.push(t.to_owned());
        }
    }
    // A JWT's signature is the part that must never leak, even if the rest of the token did.
    for token in [&access, &refresh] {
        if let Some(signature) = token.rsplit('.').next().filter(|s| s.len() > 20) {
            secrets.push(signature.to_owned());
        }
    }
    // The secret half of each key, alone.
    for k in [&key, &new_key] {
        secrets.push(k.rsplit_once('_').unwrap().1.to_owned());
    }

    server.stop();
    let lines = lines.all();
    assert!(lines.len() > 20, "the server logged the requests: {}", lines.len());
    assert!(lines.iter().any(|l| l.contains("request served")), "JSON access lines were captured");
    let mut leaks = Vec::new();
    for line in &lines {
        for secret in &secrets {
            if line.contains(secret.as_str()) {
                leaks.push(format!("{secret:.12}… in {line}"));
            }
        }
    }
    assert!(leaks.is_empty(), "secrets in the log:\n{}", leaks.join("\n"));
}
