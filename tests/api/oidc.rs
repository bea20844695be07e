//! Operators signed in with an identity provider. The test is the provider: it serves a discovery document and a
//! JWKS on loopback (an RSA key from the fixtures and a fresh P-256 key) and signs tokens with them.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::TestApp;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use serde_json::{Value, json};

const AUDIENCE: &str = "cloud-agent-operators";

/// The provider: its keys, the JWKS it publishes (which a test may extend), and how often it was asked.
struct Provider {
    base: String,
    rsa: RsaKeyPair,
    ec: EcdsaKeyPair,
    published: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
    /// While set, the JWKS answers 503 (the provider is down).
    down: Arc<std::sync::atomic::AtomicBool>,
}

/// The JWKS route's state: the published keys, the fetch counter, the outage switch.
type Shared = (Arc<Mutex<Vec<Value>>>, Arc<AtomicUsize>, Arc<std::sync::atomic::AtomicBool>);

fn jwk_rsa(key: &RsaKeyPair, kid: &str) -> Value {
    let components: signature::RsaPublicKeyComponents<Vec<u8>> = key.public().into();
    json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
           "n": URL_SAFE_NO_PAD.encode(&components.n), "e": URL_SAFE_NO_PAD.encode(&components.e)})
}

fn jwk_ec(key: &EcdsaKeyPair, kid: &str) -> Value {
    let point = key.public_key().as_ref();
    json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
           "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])})
}

async fn provider() -> Provider {
    let der = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/oidc/test-rsa-2048.der")).unwrap();
    let rsa = RsaKeyPair::from_der(&der).unwrap();
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let ec = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let published = Arc::new(Mutex::new(vec![jwk_rsa(&rsa, "rsa-1"), jwk_ec(&ec, "ec-1")]));
    let fetches = Arc::new(AtomicUsize::new(0));
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let discovery = json!({"issuer": base, "jwks_uri": format!("{base}/jwks")});
    let router = Router::new()
        .route("/.well-known/openid-configuration", get(move || async move { axum::Json(discovery) }))
        .route(
            "/jwks",
            get(|State((keys, fetches, down)): State<Shared>| async move {
                use axum::response::IntoResponse as _;
                fetches.fetch_add(1, Ordering::SeqCst);
                if down.load(Ordering::SeqCst) {
                    return http::StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
                axum::Json(json!({"keys": *keys.lock().unwrap()})).into_response()
            }),
        )
        .with_state((published.clone(), fetches.clone(), down.clone()));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Provider { base, rsa, ec, published, fetches, down }
}

fn segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// Which key signs, and what the header says.
enum Signer<'a> {
    Rsa(&'a RsaKeyPair),
    Ec(&'a EcdsaKeyPair),
}

fn token(signer: &Signer<'_>, header: &Value, claims: &Value) -> String {
    let signed = format!("{}.{}", segment(header), segment(claims));
    let rng = SystemRandom::new();
    let signature = match signer {
        Signer::Rsa(key) => {
            let mut out = vec![0u8; key.public().modulus_len()];
            key.sign(&signature::RSA_PKCS1_SHA256, &rng, signed.as_bytes(), &mut out).unwrap();
            out
        }
        Signer::Ec(key) => key.sign(&rng, signed.as_bytes()).unwrap().as_ref().to_vec(),
    };
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn claims(p: &Provider, sub: &str, role: &str) -> Value {
    let now = cloud_agent::store::now_epoch();
    json!({"iss": p.base, "aud": [AUDIENCE, "other-api"], "sub": sub, "iat": now, "exp": now + 300, "role": role})
}

async fn app_for(p: &Provider) -> TestApp {
    TestApp::builder()
        .env("CLOUD_AGENT_OIDC_ISSUER", &p.base)
        .env("CLOUD_AGENT_OIDC_AUDIENCE", AUDIENCE)
        .env("CLOUD_AGENT_OIDC_REFETCH_SECS", "0")
        .spawn()
        .await
}

async fn status_of(app: &TestApp, path: &str, bearer: &str) -> reqwest::Response {
    app.client.get(app.url(path)).bearer_auth(bearer).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_providers_tokens_are_accepted_with_their_mapped_role() {
    let p = provider().await;
    let app = app_for(&p).await;
    let rs = token(
        &Signer::Rsa(&p.rsa),
        &json!({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}),
        &claims(&p, "alice", "operator"),
    );
    assert_eq!(status_of(&app, "/api/v1/agents/health", &rs).await.status(), 200, "an operator reads agents");
    let denied = status_of(&app, "/api/v1/keys", &rs).await;
    common::assert_problem(denied, 403, Some("forbidden")).await;
    let es = token(&Signer::Ec(&p.ec), &json!({"alg": "ES256", "kid": "ec-1"}), &claims(&p, "bob", "admin"));
    assert_eq!(status_of(&app, "/api/v1/keys", &es).await.status(), 200, "an admin manages keys");
    // A role list: the first known role counts.
    let mut c = claims(&p, "carol", "viewer");
    c["role"] = json!(["unknown-role", "analyst"]);
    let analyst = token(&Signer::Rsa(&p.rsa), &json!({"alg": "RS256", "kid": "rsa-1"}), &c);
    assert_eq!(status_of(&app, "/api/v1/audit", &analyst).await.status(), 200, "analysts read the audit trail");
    // The keys were fetched once and cached.
    assert_eq!(p.fetches.load(Ordering::SeqCst), 1);
    // The audit trail names the user.
    let trail = common::get_json(&app.client, &app.url("/api/v1/audit?actor=user:alice"), Some(&analyst)).await;
    let records = trail["records"].as_array().unwrap();
    assert!(!records.is_empty() && records.iter().all(|r| r["role"] == "operator"), "{trail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_issuer_audience_algorithm_kid_and_expired_tokens_are_refused() {
    let p = provider().await;
    let app = app_for(&p).await;
    let rs_header = json!({"alg": "RS256", "kid": "rsa-1"});
    let rsa = Signer::Rsa(&p.rsa);
    let refused = |token: String, slug: &'static str| {
        let app = &app;
        async move { common::assert_problem(status_of(app, "/api/v1/agents/health", &token).await, 401, Some(slug)).await }
    };

    let mut c = claims(&p, "mallory", "admin");
    c["iss"] = json!("https://evil.example");
    refused(token(&rsa, &rs_header, &c), "oidc-wrong-issuer").await;

    let mut c = claims(&p, "mallory", "admin");
    c["aud"] = json!("another-api");
    refused(token(&rsa, &rs_header, &c), "oidc-wrong-audience").await;

    // Algorithm pinned per key: the EC key named with RS256, the RSA key named with ES256, and none at all.
    let c = claims(&p, "mallory", "admin");
    refused(token(&Signer::Ec(&p.ec), &json!({"alg": "RS256", "kid": "ec-1"}), &c), "oidc-wrong-algorithm").await;
    refused(token(&rsa, &json!({"alg": "ES256", "kid": "rsa-1"}), &c), "oidc-wrong-algorithm").await;
    let none = format!("{}.{}.", segment(&json!({"alg": "none", "kid": "rsa-1"})), segment(&c));
    refused(none, "oidc-wrong-algorithm").await;
    // An HS256 token claiming the provider's issuer (e.g. signed with the public key as an HMAC secret).
    let hs = format!("{}.{}.{}", segment(&json!({"alg": "HS256", "kid": "rsa-1"})), segment(&c), "c2ln");
    refused(hs, "oidc-wrong-algorithm").await;

    refused(token(&rsa, &json!({"alg": "RS256", "kid": "rsa-9"}), &c), "oidc-unknown-key").await;

    let mut c = claims(&p, "mallory", "admin");
    c["exp"] = json!(cloud_agent::store::now_epoch() - 3600);
    refused(token(&rsa, &rs_header, &c), "oidc-expired").await;

    // A valid token with its payload changed: the signature no longer verifies.
    let good = token(&rsa, &rs_header, &claims(&p, "mallory", "viewer"));
    let parts: Vec<&str> = good.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], segment(&claims(&p, "mallory", "admin")), parts[2]);
    refused(forged, "oidc-bad-signature").await;

    // No known role: authenticated, but nothing granted.
    let no_role = token(&rsa, &rs_header, &claims(&p, "mallory", "superuser"));
    common::assert_problem(status_of(&app, "/api/v1/agents/health", &no_role).await, 403, Some("oidc-no-role")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_fetches_the_keys_again() {
    let p = provider().await;
    let app = app_for(&p).await;
    let first = token(&Signer::Rsa(&p.rsa), &json!({"alg": "RS256", "kid": "rsa-1"}), &claims(&p, "dan", "viewer"));
    assert_eq!(status_of(&app, "/api/v1/agents/health", &first).await.status(), 200);
    assert_eq!(p.fetches.load(Ordering::SeqCst), 1);
    // The provider rotates: the same RSA key now also published under a new kid.
    p.published.lock().unwrap().push(jwk_rsa(&p.rsa, "rsa-2"));
    let rotated = token(&Signer::Rsa(&p.rsa), &json!({"alg": "RS256", "kid": "rsa-2"}), &claims(&p, "dan", "viewer"));
    assert_eq!(status_of(&app, "/api/v1/agents/health", &rotated).await.status(), 200);
    assert_eq!(p.fetches.load(Ordering::SeqCst), 2, "the unknown kid made the instance fetch the keys again");
}

/// The provider goes down after its keys were fetched: the cached keys keep verifying tokens (past their
/// freshness), the key fetch's breaker opens and stops asking the provider, a kid the cache lacks is refused
/// (401, not a 503), and the breaker shows in the listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_provider_is_down_cached_keys_verify_and_unknown_kids_are_refused() {
    let p = provider().await;
    let app = TestApp::builder()
        .env("CLOUD_AGENT_OIDC_ISSUER", &p.base)
        .env("CLOUD_AGENT_OIDC_AUDIENCE", AUDIENCE)
        .env("CLOUD_AGENT_OIDC_REFETCH_SECS", "0")
        // Every key is stale at once: each request would fetch again, which is what the breaker bounds.
        .env("CLOUD_AGENT_OIDC_KEYS_TTL_SECS", "0")
        .spawn()
        .await;
    let known = token(&Signer::Rsa(&p.rsa), &json!({"alg": "RS256", "kid": "rsa-1"}), &claims(&p, "eve", "admin"));
    assert_eq!(status_of(&app, "/api/v1/agents/health", &known).await.status(), 200);
    p.down.store(true, Ordering::SeqCst);
    for attempt in 0..12 {
        let response = status_of(&app, "/api/v1/agents/health", &known).await;
        assert_eq!(response.status(), 200, "request {attempt} while the provider is down: the cached key verifies");
    }
    let asked = p.fetches.load(Ordering::SeqCst);
    assert!(asked < 12, "the breaker opened and stopped the fetches ({asked} in all)");
    let breakers = common::get_json(&app.client, &app.url("/api/v1/circuit-breakers"), Some(&known)).await;
    let idp = breakers["breakers"].as_array().unwrap().iter().find(|b| b["name"] == "idp-keys").cloned();
    assert_eq!(idp.as_ref().map(|b| b["state"].clone()), Some(json!("OPEN")), "{breakers}");
    let unknown = token(&Signer::Rsa(&p.rsa), &json!({"alg": "RS256", "kid": "rsa-9"}), &claims(&p, "eve", "admin"));
    let refused = status_of(&app, "/api/v1/agents/health", &unknown).await;
    common::assert_problem(refused, 401, Some("oidc-unknown-key")).await;
    assert_eq!(p.fetches.load(Ordering::SeqCst), asked, "an open breaker asks the provider nothing");
}

const ADMIN_KEY: &str = "admin-key-0123456789abcdef0123456789";

/// The provider with a tenant claim configured, and the bootstrap key set.
async fn tenant_app_for(p: &Provider) -> TestApp {
    TestApp::builder()
        .env("CLOUD_AGENT_OIDC_ISSUER", &p.base)
        .env("CLOUD_AGENT_OIDC_AUDIENCE", AUDIENCE)
        .env("CLOUD_AGENT_OIDC_REFETCH_SECS", "0")
        .env("CLOUD_AGENT_OIDC_TENANT_CLAIM", "org")
        .env("DEV_ADMIN_KEY", ADMIN_KEY)
        .spawn()
        .await
}

fn user_of(p: &Provider, sub: &str, role: &str, tenant: &Value) -> String {
    let mut c = claims(p, sub, role);
    c["org"] = tenant.clone();
    token(&Signer::Rsa(&p.rsa), &json!({"alg": "RS256", "kid": "rsa-1"}), &c)
}

/// An identity-provider admin has no API key and is not the bootstrap admin: it acts in its own tenant only. It
/// cannot create a key in another tenant (nor, through one, read that tenant's agents).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_provider_admin_stays_in_its_tenant() {
    let p = provider().await;
    let app = tenant_app_for(&p).await;
    let acme_admin = user_of(&p, "eve", "admin", &json!("acme"));
    let create = |tenant: Option<&str>| {
        let mut body = json!({"name": "escape", "role": "admin"});
        if let Some(t) = tenant {
            body["tenant"] = json!(t);
        }
        app.client.post(app.url("/api/v1/keys")).bearer_auth(&acme_admin).json(&body).send()
    };
    let escaped = create(Some("default")).await.unwrap();
    let problem = common::assert_problem(escaped, 422, Some("validation")).await;
    assert_eq!(problem["pointer"], "/tenant");
    let own: Value = create(None).await.unwrap().json().await.unwrap();
    assert!(own["key"].as_str().is_some(), "{own}");
    let listed = common::get_json(&app.client, &app.url("/api/v1/keys"), Some(ADMIN_KEY)).await;
    assert!(
        listed["keys"].as_array().unwrap().iter().all(|k| k["name"] != "escape"),
        "no key named escape in the default tenant: {listed}"
    );
    // The key it made is acme's: it sees none of the default tenant's agents.
    let agents = common::get_json(&app.client, &app.url("/api/v1/agents"), Some(own["key"].as_str().unwrap())).await;
    assert_eq!(agents["agents"], json!([]));
    // The bootstrap admin may name another tenant.
    let by_bootstrap = app
        .client
        .post(app.url("/api/v1/keys"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"name": "for acme", "role": "viewer", "tenant": "acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(by_bootstrap.status(), 201);
}

/// With a tenant claim configured, a token must carry exactly one tenant id there: a missing claim, a list or a
/// number is refused (401, naming the claim), never placed in `default`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_one_tenant_is_refused() {
    let p = provider().await;
    let app = tenant_app_for(&p).await;
    let missing = token(&Signer::Rsa(&p.rsa), &json!({"alg": "RS256", "kid": "rsa-1"}), &claims(&p, "x", "admin"));
    for bad in [missing, user_of(&p, "x", "admin", &json!(["default"])), user_of(&p, "x", "admin", &json!(7))] {
        let problem =
            common::assert_problem(status_of(&app, "/api/v1/agents", &bad).await, 401, Some("oidc-tenant-claim")).await;
        assert!(problem["detail"].as_str().unwrap().contains("\"org\""), "{problem}");
    }
    let good = user_of(&p, "x", "viewer", &json!("acme"));
    assert_eq!(status_of(&app, "/api/v1/agents", &good).await.status(), 200);
}

/// An identity-provider user of another tenant, on every route with every method: nothing is a 5xx, a method a
/// route does not serve is 405 with `Allow`, and HEAD behaves as GET.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_provider_users_meet_every_method_of_every_route() {
    let p = provider().await;
    let app = tenant_app_for(&p).await;
    let mut wrong = Vec::new();
    for role in ["admin", "viewer"] {
        let user = user_of(&p, "walker", role, &json!("acme"));
        for route in cloud_agent::ROUTES.iter() {
            let url = app.url(
                &route
                    .path
                    .replace("{task_id}", "t-1")
                    .replace("{user_id}", "u-1")
                    .replace("{agent_id}", "a-1")
                    .replace("{key_id}", "aaaaaaaaaaaaaaaa"),
            );
            for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
                let method = http::Method::from_bytes(method.as_bytes()).unwrap();
                let mut request = app.client.request(method.clone(), &url).bearer_auth(&user);
                if !["GET", "HEAD", "DELETE", "OPTIONS"].contains(&method.as_str()) {
                    request = request.json(&json!({}));
                }
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                let declared = route.methods.contains(&method)
                    || (method == http::Method::HEAD && route.methods.contains(&http::Method::GET));
                if status >= 500 || (!declared && (status != 405 || !response.headers().contains_key("allow"))) {
                    wrong.push(format!("{role} {method} {}: {status}", route.path));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
