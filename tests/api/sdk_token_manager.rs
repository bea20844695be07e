//! The SDK's token manager against a real local server with lifetimes shortened to seconds.

use crate::common;

use common::TestApp;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use cloud_agent::features::tokens::credentials::{self, AgentId};
use cloud_agent_sdk::{AgentSecret, SdkError, TokenManager, TokenManagerOptions};

const ACCESS_TTL: u64 = 3;

/// The server with lifetimes shortened to seconds (and no leeway), so the SDK really refreshes.
async fn server() -> TestApp {
    TestApp::builder()
        .env("CLOUD_AGENT_ACCESS_TTL_SECS", &ACCESS_TTL.to_string())
        .env("CLOUD_AGENT_REFRESH_TTL_SECS", "600")
        .env("CLOUD_AGENT_TOKEN_LEEWAY_SECS", "0")
        .spawn()
        .await
}

fn exp_of(token: &str) -> f64 {
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["exp"].as_f64().unwrap()
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

fn options() -> TokenManagerOptions {
    TokenManagerOptions { refresh_margin: Duration::from_mins(5), ..TokenManagerOptions::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_callers_never_get_an_expired_token_and_refreshes_match_expiries() {
    let app = server().await;
    let address = app.address.clone();
    let secret = app.register_agent("sdk-agent", "user-1").await;
    let manager = TokenManager::login(&address, "sdk-agent", AgentSecret::new(secret), options()).await.unwrap();
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let started = Instant::now();
    let run_for = Duration::from_secs(9);
    let mut callers = Vec::new();
    for _ in 0..50 {
        let (manager, seen) = (manager.clone(), seen.clone());
        callers.push(tokio::spawn(async move {
            let mut calls = 0u32;
            while started.elapsed() < run_for {
                let token = manager.token().await.expect("a token");
                let left = exp_of(&token) - now();
                assert!(left > 0.0, "a caller received a token that expired {:.3} s ago", -left);
                seen.lock().unwrap().insert(token);
                calls += 1;
                tokio::time::sleep(Duration::from_millis(37)).await;
            }
            calls
        }));
    }
    let mut calls = 0;
    for caller in callers {
        calls += caller.await.unwrap();
    }
    let distinct = seen.lock().unwrap().len() as u64;
    let refreshes = manager.refresh_count();
    assert!(calls > 1000, "the callers really ran ({calls} calls)");
    assert_eq!(refreshes, distinct - 1, "one refresh per token generation, not per caller");
    // The SDK counts a 3 s token as 2 s (whole-second safety) and refreshes a third of that early, so each token
    // serves 1.3–2 s: 9 s hold 4–7 expiries — and never one refresh per caller (50 ×).
    assert!((3..=8).contains(&refreshes), "refreshes = expiries: got {refreshes} over {run_for:?}");
    assert_eq!(manager.login_count(), 1);
    // The token the manager hands out works on an agent route.
    let token = manager.token().await.unwrap();
    let me = reqwest::Client::new().get(format!("{address}/api/v1/agent/me")).bearer_auth(token).send().await.unwrap();
    assert_eq!(me.status(), 200);
    assert_eq!(me.json::<serde_json::Value>().await.unwrap()["agent_id"], "sdk-agent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_session_logs_in_again_once() {
    let app = server().await;
    let address = app.address.clone();
    let secret = app.register_agent("sdk-agent-2", "user-1").await;
    let manager = TokenManager::login(&address, "sdk-agent-2", AgentSecret::new(secret), options()).await.unwrap();
    let refresh = manager.refresh_token().await;
    let revoked = reqwest::Client::new()
        .post(format!("{address}/api/v1/agent/token/revoke"))
        .json(&serde_json::json!({ "token": refresh }))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    tokio::time::sleep(Duration::from_secs(ACCESS_TTL)).await;
    let token = manager.token().await.expect("re-authenticated with the agent credential");
    assert!(exp_of(&token) > now());
    assert_eq!(manager.login_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_credential_is_a_typed_error() {
    let app = server().await;
    let address = app.address.clone();
    app.register_agent("sdk-agent-3", "user-1").await;
    let result = TokenManager::login(&address, "sdk-agent-3", AgentSecret::new("cas_wrong"), options()).await;
    assert!(matches!(result, Err(SdkError::Unauthorized(_))), "{result:?}");
}

/// Nothing that holds a token or a secret prints it: the SDK's manager, and the server's token response.
#[tokio::test]
async fn tokens_and_secrets_never_print_with_debug() {
    let app = server().await;
    let (address, state) = (app.address.clone(), &app.state);
    let secret = app.register_agent("quiet-agent", "user-1").await;
    let manager =
        TokenManager::login(&address, "quiet-agent", AgentSecret::new(secret.clone()), options()).await.unwrap();
    let (access, refresh) = (manager.token().await.unwrap(), manager.refresh_token().await);
    let printed = format!("{manager:?}");
    for (what, value) in [("access token", &access), ("refresh token", &refresh), ("agent secret", &secret)] {
        assert!(!printed.contains(value.as_str()), "the manager's Debug prints the {what}: {printed}");
    }
    let agent = credentials::authenticate(
        state.store(),
        &state.config().secrets.agent,
        &AgentId::parse("quiet-agent").unwrap(),
        &secret,
    )
    .await
    .unwrap();
    let issued = cloud_agent::features::tokens::family::issue(state.store(), state.tokens(), &agent).await.unwrap();
    let printed = format!("{issued:?}");
    assert!(!printed.contains(issued.access_token.expose()) && !printed.contains(issued.refresh_token.expose()));
    assert!(serde_json::to_string(&issued).unwrap().contains(issued.refresh_token.expose()), "the body keeps them");
}
