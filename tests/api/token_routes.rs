//! The token routes over HTTP: JSON and OAuth form bodies, HTTP Basic, and every failure as problem+json with
//! the OAuth error code and the right `WWW-Authenticate` challenge.

use crate::common;

use base64::Engine as _;
use cloud_agent::features::tokens::credentials::{self, AgentId};
use common::TestApp;
use serde_json::{Value, json};

async fn app_with_agent() -> (TestApp, String) {
    let app = TestApp::builder().spawn().await;
    let secret = app.register_agent("agent-1", "user-9").await;
    (app, secret)
}

/// The problem (with the token routes' slug), and its headers for the challenge.
async fn problem(response: reqwest::Response, status: u16, slug: &str) -> (Value, reqwest::header::HeaderMap) {
    let headers = response.headers().clone();
    (common::assert_problem(response, status, Some(slug)).await, headers)
}

async fn login(app: &TestApp, secret: &str) -> Value {
    let response = app
        .client
        .post(app.url("/api/v1/agent/token"))
        .json(&json!({"agent_id": "agent-1", "agent_secret": secret}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["pragma"], "no-cache");
    response.json().await.unwrap()
}

#[tokio::test]
async fn json_login_returns_a_bearer_pair_for_the_environment() {
    let (app, secret) = app_with_agent().await;
    let body = login(&app, &secret).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["environment"], "development");
    assert!(body["expires_in"].as_i64().unwrap() > 0);
    assert!(body["refresh_expires_in"].as_i64().unwrap() > body["expires_in"].as_i64().unwrap());
    let me = app.get_as("/api/v1/agent/me", body["access_token"].as_str().unwrap()).await;
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["agent_id"], "agent-1");
    assert_eq!(me["owner"], "user-9");
}

#[tokio::test]
async fn oauth_form_with_basic_or_body_credentials() {
    let (app, secret) = app_with_agent().await;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("agent-1:{secret}"));
    let response = app
        .client
        .post(app.url("/api/v1/agent/token"))
        .header("authorization", format!("Basic {basic}"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let pair: Value = response.json().await.unwrap();
    let response = app
        .client
        .post(app.url("/api/v1/agent/token"))
        .form(&[("grant_type", "client_credentials"), ("client_id", "agent-1"), ("client_secret", secret.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Refresh with the OAuth form too.
    let response = app
        .client
        .post(app.url("/api/v1/agent/token/refresh"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", pair["refresh_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let wrong_grant =
        app.client.post(app.url("/api/v1/agent/token")).form(&[("grant_type", "password")]).send().await.unwrap();
    let (body, _) = problem(wrong_grant, 400, "invalid-request").await;
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn bad_credentials_are_401_invalid_client_alike() {
    let (app, _secret) = app_with_agent().await;
    let mut bodies = Vec::new();
    for (id, secret) in [("agent-1", "cas_wrong"), ("nobody", "cas_wrong"), ("bad id!", "x")] {
        let response = app
            .client
            .post(app.url("/api/v1/agent/token"))
            .json(&json!({"agent_id": id, "agent_secret": secret}))
            .send()
            .await
            .unwrap();
        let (mut body, headers) = problem(response, 401, "invalid-client").await;
        assert_eq!(headers["www-authenticate"], r#"Basic realm="cloud-agent""#);
        assert_eq!(body["error"], "invalid_client");
        body["request_id"] = Value::Null;
        bodies.push(body);
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "unknown agent and wrong secret look the same: {bodies:?}");
    let missing_field =
        app.client.post(app.url("/api/v1/agent/token")).json(&json!({"agent_id": "agent-1"})).send().await.unwrap();
    let (body, _) = problem(missing_field, 400, "invalid-json").await;
    assert!(body["detail"].as_str().unwrap().contains("agent_secret"));
}

#[tokio::test]
async fn reuse_is_reported_and_kills_the_family() {
    let (app, secret) = app_with_agent().await;
    let first = login(&app, &secret).await;
    let refresh = |token: Value| {
        let client = app.client.clone();
        let url = app.url("/api/v1/agent/token/refresh");
        async move { client.post(url).json(&json!({"refresh_token": token})).send().await.unwrap() }
    };
    let second: Value = refresh(first["refresh_token"].clone()).await.json().await.unwrap();
    let third: Value = refresh(second["refresh_token"].clone()).await.json().await.unwrap();
    let (body, _) = problem(refresh(first["refresh_token"].clone()).await, 401, "refresh-token-reused").await;
    assert_eq!(body["error"], "invalid_grant");
    problem(refresh(third["refresh_token"].clone()).await, 401, "refresh-token-revoked").await;
    problem(refresh(json!("garbage")).await, 401, "invalid-grant").await;
}

#[tokio::test]
async fn agent_routes_demand_a_valid_access_token() {
    let (app, secret) = app_with_agent().await;
    let pair = login(&app, &secret).await;
    let missing = app.client.get(app.url("/api/v1/agent/me")).send().await.unwrap();
    let (_, headers) = problem(missing, 401, "missing-token").await;
    assert_eq!(headers["www-authenticate"], r#"Bearer realm="cloud-agent""#);
    for token in ["forged", pair["refresh_token"].as_str().unwrap()] {
        let response = app.client.get(app.url("/api/v1/agent/me")).bearer_auth(token).send().await.unwrap();
        let (body, headers) = problem(response, 401, "invalid-token").await;
        assert!(headers["www-authenticate"].to_str().unwrap().contains(r#"error="invalid_token""#));
        assert_eq!(body["error"], "invalid_token");
    }
}

#[tokio::test]
async fn revoke_answers_200_and_stops_refresh() {
    let (app, secret) = app_with_agent().await;
    let pair = login(&app, &secret).await;
    for token in [json!("unknown-token"), pair["refresh_token"].clone()] {
        let response =
            app.client.post(app.url("/api/v1/agent/token/revoke")).json(&json!({"token": token})).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let response = app.post_json("/api/v1/agent/token/refresh", &json!({"refresh_token": pair["refresh_token"]})).await;
    problem(response, 401, "refresh-token-revoked").await;
    // The access token lives on until it expires (documented): revocation is for refresh.
    let me = app.get_as("/api/v1/agent/me", pair["access_token"].as_str().unwrap()).await;
    assert_eq!(me.status(), 200);
}

#[tokio::test]
async fn a_refresh_after_the_secret_was_rotated_is_401_credential_changed() {
    let (app, secret) = app_with_agent().await;
    let state = &app.state;
    let pair = login(&app, &secret).await;
    let id = AgentId::parse("agent-1").unwrap();
    credentials::rotate_secret(state.store(), &state.config().secrets.agent, &id).await.unwrap().unwrap();
    let refused = app.post_json("/api/v1/agent/token/refresh", &json!({"refresh_token": pair["refresh_token"]})).await;
    let (body, _) = problem(refused, 401, "credential-changed").await;
    assert_eq!(body["error"], "invalid_grant");
    assert!(body["detail"].as_str().unwrap().contains("log in again"), "{body}");
}

/// An instance verifies an access token once and re-checks only its times afterwards; an expired token is
/// refused whether or not it was seen before.
#[tokio::test]
async fn access_tokens_are_verified_once_per_instance_and_expiry_still_holds() {
    const ADMIN_KEY: &str = "admin-key-0123456789abcdef0123456789";
    let app = TestApp::builder().env("DEV_ADMIN_KEY", ADMIN_KEY).spawn().await;
    let token = app.access_token("agent-1", "user-9");
    for _ in 0..3 {
        let me = app.get_as("/api/v1/agent/me", &token).await;
        assert_eq!(me.status(), 200);
        assert_eq!(me.json::<Value>().await.unwrap()["agent_id"], "agent-1");
    }
    let metrics = common::get_text(&app.client, &app.url("/api/v1/metrics"), ADMIN_KEY).await;
    assert!(metrics.contains(r#"cloud_agent_cache_events_total{cache="verified_tokens",kind="miss"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"cloud_agent_cache_events_total{cache="verified_tokens",kind="hit"} 2"#), "{metrics}");
    // Issued two hours ago: past any access lifetime and leeway.
    let expired = app.access_token_at("agent-1", "user-9", cloud_agent::store::now_epoch() - 7200);
    let (body, _) = problem(app.get_as("/api/v1/agent/me", &expired).await, 401, "invalid-token").await;
    assert!(body["detail"].as_str().unwrap().contains("expired"), "{body}");
}
