//! Agent identity end to end: issue → refresh chains on both store backends, concurrent rotation, reuse
//! detection, forged and misused tokens, independent verification with PyJWT, and production start-up refusal.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;

use base64::Engine as _;
use cloud_agent::config::{Config, Secret};
use cloud_agent::features::tokens::credentials::{self, Agent, AgentId};
use cloud_agent::features::tokens::family::{self, Issued};
use cloud_agent::ids::UserId;
use cloud_agent::store::{DynStore, keys};
use cloud_agent::token::{AccessClaims, TokenError, Tokens};
use serde_json::{Value, json};

const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdef0123456789";

/// The tests' configuration with fixed secrets (PyJWT verifies with `JWT_SECRET`).
fn config_with(vars: &[(&str, &str)]) -> Config {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vars.to_vec();
    all.extend([("DEV_JWT_SECRET", JWT_SECRET), ("DEV_AGENT_SECRET", "test-agent-pepper-0123456789abcdef01234")]);
    common::test_config_with(dir.path(), &all)
}

fn tokens() -> Tokens {
    Tokens::new(&config_with(&[]))
}

/// Registers agent-7 (owner user-42) and logs it in: refresh checks the credential, so the agent must exist.
async fn agent(store: &DynStore) -> Agent {
    let pepper = config_with(&[]).secrets.agent;
    let id = AgentId::parse("agent-7").unwrap();
    let secret = credentials::generate_secret();
    credentials::register(store, &pepper, &id, &UserId::parse("user-42").unwrap(), &secret).await.unwrap();
    credentials::authenticate(store, &pepper, &id, &secret).await.unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn decode_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

async fn generation(store: &DynStore, fid: &str) -> i64 {
    store.get(&keys::refresh_family(fid)).await.unwrap().unwrap().get_i64("generation").unwrap()
}

// ------------------------------------------------------------- rotation on both backends

async fn refresh_chain_rotates_and_reuse_revokes(store: DynStore) {
    let tokens = tokens();
    let first = family::issue(&store, &tokens, &agent(&store).await).await.unwrap();
    let second = family::refresh(&store, &tokens, first.refresh_token.expose()).await.unwrap();
    let third = family::refresh(&store, &tokens, second.refresh_token.expose()).await.unwrap();
    assert_ne!(second.refresh_token, third.refresh_token);
    assert!(third.refresh_expires_in <= first.refresh_expires_in, "rotation never extends the family");
    let claims = tokens.verify_access(third.access_token.expose()).unwrap();
    assert_eq!(claims.sub, "agent-7");
    assert_eq!(claims.owner, "user-42");
    // `first` is two generations old: reuse. The family dies, the current token with it.
    assert!(matches!(
        family::refresh(&store, &tokens, first.refresh_token.expose()).await,
        Err(TokenError::ReuseDetected)
    ));
    assert!(matches!(family::refresh(&store, &tokens, third.refresh_token.expose()).await, Err(TokenError::Revoked)));
    assert!(matches!(family::refresh(&store, &tokens, second.refresh_token.expose()).await, Err(TokenError::Revoked)));
}

async fn concurrent_refreshes_make_one_generation(store: DynStore) {
    let tokens = Arc::new(tokens());
    let first = family::issue(&store, &tokens, &agent(&store).await).await.unwrap();
    let fid = tokens.verify_refresh(first.refresh_token.expose()).unwrap().fid;
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (store, tokens, presented) = (store.clone(), tokens.clone(), first.refresh_token.clone());
        tasks.push(tokio::spawn(async move { family::refresh(&store, &tokens, presented.expose()).await }));
    }
    let mut results: Vec<Issued> = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap().expect("every caller within the grace window succeeds"));
    }
    let distinct: BTreeSet<&str> = results.iter().map(|r| r.refresh_token.expose()).collect();
    assert_eq!(distinct.len(), 1, "all winners get the same successor");
    let distinct_access: BTreeSet<&str> = results.iter().map(|r| r.access_token.expose()).collect();
    assert_eq!(distinct_access.len(), 1);
    assert_eq!(generation(&store, &fid).await, 2, "exactly one new generation");
    // Rotate once more; the original token is now older than the previous one: reuse.
    let next = family::refresh(&store, &tokens, results[0].refresh_token.expose()).await.unwrap();
    assert!(matches!(
        family::refresh(&store, &tokens, first.refresh_token.expose()).await,
        Err(TokenError::ReuseDetected)
    ));
    for _ in 0..3 {
        assert!(
            family::refresh(&store, &tokens, next.refresh_token.expose()).await.is_err(),
            "every later refresh fails"
        );
    }
}

async fn zero_grace_makes_any_second_use_reuse(store: DynStore) {
    let tokens = Tokens::new(&config_with(&[("CLOUD_AGENT_REFRESH_GRACE_SECS", "0")]));
    let first = family::issue(&store, &tokens, &agent(&store).await).await.unwrap();
    // Within the same second "now <= grace_until" still holds at grace 0, so wait past it.
    family::refresh(&store, &tokens, first.refresh_token.expose()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(matches!(
        family::refresh(&store, &tokens, first.refresh_token.expose()).await,
        Err(TokenError::ReuseDetected)
    ));
}

async fn revocation_stops_refresh_at_once(store: DynStore) {
    let tokens = tokens();
    let pair = family::issue(&store, &tokens, &agent(&store).await).await.unwrap();
    family::revoke(&store, &tokens, pair.access_token.expose()).await.unwrap();
    assert!(matches!(family::refresh(&store, &tokens, pair.refresh_token.expose()).await, Err(TokenError::Revoked)));
    // Unknown and garbage tokens: nothing to do, no error (RFC 7009).
    family::revoke(&store, &tokens, "not-a-token").await.unwrap();
}

async fn credentials_verify_and_refuse(store: DynStore) {
    let pepper = Secret::new(b"pepper-0123456789abcdef0123456789ab".to_vec());
    let id = AgentId::parse("worker-1").unwrap();
    let secret = credentials::generate_secret();
    credentials::register(&store, &pepper, &id, &cloud_agent::ids::UserId::parse("user-1").unwrap(), &secret)
        .await
        .unwrap();
    let agent = credentials::authenticate(&store, &pepper, &id, &secret).await.unwrap();
    assert_eq!(agent.owner.as_str(), "user-1");
    let wrong = credentials::authenticate(&store, &pepper, &id, "cas_wrong").await;
    assert!(matches!(wrong, Err(TokenError::InvalidClient)));
    let unknown = credentials::authenticate(&store, &pepper, &AgentId::parse("ghost").unwrap(), &secret).await;
    assert!(matches!(unknown, Err(TokenError::InvalidClient)));
    let stored = store.get(&keys::agent_credential("worker-1")).await.unwrap().unwrap();
    assert!(!format!("{stored:?}").contains(&secret), "the secret itself is never stored");
    assert!(credentials::disable(&store, &id).await.unwrap());
    assert!(matches!(credentials::authenticate(&store, &pepper, &id, &secret).await, Err(TokenError::InvalidClient)));
}

/// A new secret, a new owner or disabling the agent ends every refresh family issued before — and a refresh
/// never mints a token with the owner of the past.
async fn a_changed_credential_ends_every_older_refresh_family(store: DynStore) {
    let tokens = tokens();
    let pepper = config_with(&[]).secrets.agent;
    let id = AgentId::parse("agent-9").unwrap();
    let (user_1, user_2) = (UserId::parse("user-1").unwrap(), UserId::parse("user-2").unwrap());
    let secret = credentials::generate_secret();
    credentials::register(&store, &pepper, &id, &user_1, &secret).await.unwrap();
    let login = |secret: String| {
        let (store, pepper, id) = (store.clone(), pepper.clone(), id.clone());
        async move { credentials::authenticate(&store, &pepper, &id, &secret).await }
    };
    let first = family::issue(&store, &tokens, &login(secret.clone()).await.unwrap()).await.unwrap();
    let first = family::refresh(&store, &tokens, first.refresh_token.expose()).await.unwrap();

    // 1. Rotated secret.
    let new_secret = credentials::rotate_secret(&store, &pepper, &id).await.unwrap().unwrap();
    let refused = family::refresh(&store, &tokens, first.refresh_token.expose()).await;
    assert!(matches!(refused, Err(TokenError::CredentialChanged)), "{refused:?}");
    let again = family::refresh(&store, &tokens, first.refresh_token.expose()).await;
    assert!(again.is_err(), "and the family stays dead");
    assert!(matches!(login(secret.clone()).await, Err(TokenError::InvalidClient)), "the old secret is dead too");
    let second = family::issue(&store, &tokens, &login(new_secret.clone()).await.unwrap()).await.unwrap();

    // 2. Re-owned: registered again for another user.
    credentials::register(&store, &pepper, &id, &user_2, &new_secret).await.unwrap();
    let refused = family::refresh(&store, &tokens, second.refresh_token.expose()).await;
    assert!(matches!(refused, Err(TokenError::CredentialChanged)), "no token with the stale owner user-1");
    let third = family::issue(&store, &tokens, &login(new_secret.clone()).await.unwrap()).await.unwrap();
    let third = family::refresh(&store, &tokens, third.refresh_token.expose()).await.unwrap();
    assert_eq!(tokens.verify_access(third.access_token.expose()).unwrap().owner, "user-2");

    // 3. Disabled.
    assert!(credentials::disable(&store, &id).await.unwrap());
    let refused = family::refresh(&store, &tokens, third.refresh_token.expose()).await;
    assert!(matches!(refused, Err(TokenError::CredentialChanged)), "{refused:?}");
    assert!(matches!(login(new_secret).await, Err(TokenError::InvalidClient)));
    assert!(credentials::rotate_secret(&store, &pepper, &AgentId::parse("ghost").unwrap()).await.unwrap().is_none());
}

on_both_backends!(
    a_changed_credential_ends_every_older_refresh_family,
    refresh_chain_rotates_and_reuse_revokes,
    concurrent_refreshes_make_one_generation,
    zero_grace_makes_any_second_use_reuse,
    revocation_stops_refresh_at_once,
    credentials_verify_and_refuse,
);

// ------------------------------------------------------------- forged and misused tokens

fn valid_claims(tokens: &Tokens) -> AccessClaims {
    tokens.access_claims("agent-7", "user-42", "fam", "jti-1", cloud_agent::store::now_epoch())
}

fn sign_with(header: &Value, claims: &impl serde::Serialize, key: &[u8]) -> String {
    use hmac::{Hmac, KeyInit as _, Mac as _};
    let signing_input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(&serde_json::to_vec(claims).unwrap()));
    let mut mac = <Hmac<sha2::Sha256>>::new_from_slice(key).unwrap();
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", b64(&mac.finalize().into_bytes()))
}

fn good_header(tokens: &Tokens) -> Value {
    json!({"alg": "HS256", "typ": "at+jwt", "kid": tokens.key_id()})
}

#[test]
fn a_correctly_signed_token_is_accepted() {
    // The forging helpers below produce valid tokens when nothing is wrong: the rejections are real.
    let tokens = tokens();
    let token = sign_with(&good_header(&tokens), &valid_claims(&tokens), JWT_SECRET.as_bytes());
    assert_eq!(tokens.verify_access(&token).unwrap().sub, "agent-7");
}

#[test]
fn alg_none_is_rejected() {
    let tokens = tokens();
    let header = json!({"alg": "none", "typ": "at+jwt", "kid": tokens.key_id()});
    let token = format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(&serde_json::to_vec(&valid_claims(&tokens)).unwrap())
    );
    assert!(tokens.verify_access(&token).is_err());
}

#[test]
fn rs256_header_is_rejected_hs_rs_confusion() {
    let tokens = tokens();
    // Signed with our secret but labelled RS256: the algorithm is ours to pick, never the token's.
    let header = json!({"alg": "RS256", "typ": "at+jwt", "kid": tokens.key_id()});
    let token = sign_with(&header, &valid_claims(&tokens), JWT_SECRET.as_bytes());
    assert!(matches!(tokens.verify_access(&token), Err(TokenError::Invalid(_) | TokenError::Malformed)));
    let header = json!({"alg": "HS512", "typ": "at+jwt", "kid": tokens.key_id()});
    let token = sign_with(&header, &valid_claims(&tokens), JWT_SECRET.as_bytes());
    assert!(tokens.verify_access(&token).is_err(), "only HS256 is accepted");
}

#[test]
fn wrong_kid_is_rejected() {
    let tokens = tokens();
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": "not-our-key"});
    let token = sign_with(&header, &valid_claims(&tokens), JWT_SECRET.as_bytes());
    assert!(matches!(tokens.verify_access(&token), Err(TokenError::UnknownKey)));
    let no_kid = sign_with(&json!({"alg": "HS256", "typ": "at+jwt"}), &valid_claims(&tokens), JWT_SECRET.as_bytes());
    assert!(matches!(tokens.verify_access(&no_kid), Err(TokenError::UnknownKey)));
}

#[test]
fn a_foreign_key_is_rejected() {
    let tokens = tokens();
    let token = sign_with(&good_header(&tokens), &valid_claims(&tokens), b"some-other-secret-0123456789abcdef01");
    assert!(matches!(tokens.verify_access(&token), Err(TokenError::Invalid(_))));
}

#[test]
fn wrong_audience_or_issuer_is_rejected() {
    let tokens = tokens();
    let mut claims = valid_claims(&tokens);
    claims.aud = "someone-else".into();
    let token = sign_with(&good_header(&tokens), &claims, JWT_SECRET.as_bytes());
    assert!(matches!(tokens.verify_access(&token), Err(TokenError::Invalid("wrong audience"))));
    let mut claims = valid_claims(&tokens);
    claims.iss = "evil-issuer".into();
    let token = sign_with(&good_header(&tokens), &claims, JWT_SECRET.as_bytes());
    assert!(matches!(tokens.verify_access(&token), Err(TokenError::Invalid("wrong issuer"))));
}

#[test]
fn expired_beyond_leeway_is_rejected_within_leeway_accepted() {
    let tokens = tokens();
    let now = cloud_agent::store::now_epoch();
    let mut claims = valid_claims(&tokens);
    claims.exp = now - 120;
    let token = sign_with(&good_header(&tokens), &claims, JWT_SECRET.as_bytes());
    assert!(matches!(tokens.verify_access(&token), Err(TokenError::Expired)));
    claims.exp = now - 5;
    let token = sign_with(&good_header(&tokens), &claims, JWT_SECRET.as_bytes());
    assert!(tokens.verify_access(&token).is_ok(), "30 s leeway covers clock skew");
}

#[test]
fn nbf_in_the_future_is_rejected() {
    let tokens = tokens();
    let mut claims = valid_claims(&tokens);
    claims.nbf = cloud_agent::store::now_epoch() + 600;
    let token = sign_with(&good_header(&tokens), &claims, JWT_SECRET.as_bytes());
    assert!(matches!(tokens.verify_access(&token), Err(TokenError::NotYetValid)));
}

#[test]
fn a_token_from_another_environment_is_refused_even_with_the_same_key() {
    let development = tokens();
    let staging = Tokens::new(&config_with(&[
        ("APP_ENV", "staging"),
        ("STAGING_JWT_SECRET", JWT_SECRET),
        ("STAGING_AGENT_SECRET", "staging-agent-pepper-0123456789abcdef01"),
    ]));
    assert_eq!(development.key_id(), staging.key_id(), "the very same signing key");
    let token = development.sign_access(&valid_claims(&development));
    assert!(development.verify_access(&token).is_ok());
    assert!(matches!(staging.verify_access(&token), Err(TokenError::Invalid(_))), "the env claim is checked");
    // And staging no longer starts on the generic fallback that made a shared key likely.
    let fallback = Config::from_lookup(&|name| match name {
        "APP_ENV" => Some("staging".into()),
        "CLOUD_AGENT_STORE" => Some("embedded".into()),
        "JWT_SECRET" | "AGENT_SECRET" => Some(JWT_SECRET.into()),
        _ => None,
    });
    assert!(fallback.unwrap_err().to_string().contains("STAGING_"), "fallback refused outside development");
}

#[test]
fn refresh_token_is_not_an_access_token_and_vice_versa() {
    let tokens = tokens();
    let now = cloud_agent::store::now_epoch();
    let refresh = tokens.sign_refresh(&cloud_agent::token::RefreshClaims {
        iss: "cloud-agent".into(),
        aud: "cloud-agent-api:refresh".into(),
        sub: "agent-7".into(),
        exp: now + 3600,
        nbf: now,
        iat: now,
        jti: "r1".into(),
        fid: "fam".into(),
        owner: "user-42".into(),
        cv: "v1".into(),
        env: "development".into(),
    });
    assert!(tokens.verify_refresh(&refresh).is_ok(), "a well-formed refresh token, so the refusals below are real");
    let access = tokens.sign_access(&valid_claims(&tokens));
    assert!(matches!(tokens.verify_access(&refresh), Err(TokenError::WrongType { .. })));
    assert!(matches!(tokens.verify_refresh(&access), Err(TokenError::WrongType { .. })));
    // Even relabelled `at+jwt` and re-signed, a refresh token's claims (audience, shape) give it away.
    let relabelled = sign_with(&good_header(&tokens), &decode_part(&refresh, 1), JWT_SECRET.as_bytes());
    assert!(tokens.verify_access(&relabelled).is_err());
}

#[test]
fn tampered_payload_is_rejected() {
    let tokens = tokens();
    let token = tokens.sign_access(&valid_claims(&tokens));
    let mut claims = decode_part(&token, 1);
    claims["sub"] = json!("admin");
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], b64(claims.to_string().as_bytes()), parts[2]);
    assert!(matches!(tokens.verify_access(&forged), Err(TokenError::Invalid("bad signature"))));
}

#[test]
fn previous_keys_verify_during_rotation() {
    let old = config_with(&[]);
    let old_tokens = Tokens::new(&old);
    let token = old_tokens.sign_access(&valid_claims(&old_tokens));
    let rotated = Tokens::new(&config_with(&[
        ("DEV_JWT_SECRET", "the-new-signing-secret-0123456789abcdef"),
        ("DEV_JWT_SECRET_PREVIOUS", JWT_SECRET),
    ]));
    assert_ne!(rotated.key_id(), old_tokens.key_id());
    assert_eq!(rotated.verify_access(&token).unwrap().sub, "agent-7");
    let dropped = Tokens::new(&config_with(&[("DEV_JWT_SECRET", "the-new-signing-secret-0123456789abcdef")]));
    assert!(matches!(dropped.verify_access(&token), Err(TokenError::UnknownKey)));
}

#[test]
fn tokens_verify_with_pyjwt() {
    let Some(python) = std::env::var("CLOUD_AGENT_TEST_PYTHON").ok().filter(|p| !p.is_empty()) else {
        assert!(std::env::var("CLOUD_AGENT_REQUIRE_DYNAMODB").is_err(), "infra/test.sh sets CLOUD_AGENT_TEST_PYTHON");
        eprintln!("SKIPPED: CLOUD_AGENT_TEST_PYTHON (a python with PyJWT) not set");
        return;
    };
    let tokens = tokens();
    let token = tokens.sign_access(&valid_claims(&tokens));
    let script = r#"
import json, sys, jwt
token, secret, kid = sys.argv[1], sys.argv[2], sys.argv[3]
header = jwt.get_unverified_header(token)
assert header["typ"] == "at+jwt" and header["kid"] == kid, header
claims = jwt.decode(token, secret, algorithms=["HS256"], audience="cloud-agent-api", issuer="cloud-agent",
                    options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]})
print(json.dumps(claims))
"#;
    let out =
        std::process::Command::new(python).args(["-c", script, &token, JWT_SECRET, tokens.key_id()]).output().unwrap();
    assert!(out.status.success(), "PyJWT refused our token: {}", String::from_utf8_lossy(&out.stderr));
    let claims: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(claims["sub"], "agent-7");
    // And PyJWT refuses it with the wrong secret: the check is real.
    let out = std::process::Command::new(std::env::var("CLOUD_AGENT_TEST_PYTHON").unwrap())
        .args(["-c", script, &token, "wrong-secret-0123456789abcdef012345", tokens.key_id()])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

// ------------------------------------------------------------- store calls per refresh

async fn one_store_call_per_refresh(store: DynStore) {
    let counting = Arc::new(common::Counting::new(store));
    let store: DynStore = counting.clone();
    let tokens = tokens();
    let agent = agent(&store).await;
    counting.take();
    let first = family::issue(&store, &tokens, &agent).await.unwrap();
    assert_eq!(counting.take(), 1, "issuing a family is one conditional put");
    let mut current = first.refresh_token;
    for _ in 0..5 {
        current = family::refresh(&store, &tokens, current.expose()).await.unwrap().refresh_token;
        assert_eq!(
            counting.take(),
            1,
            "a refresh is ONE store call (a TransactWriteItems of credential check + rotation)"
        );
    }
}

mod calls {
    #[tokio::test]
    async fn embedded_one_store_call_per_refresh() {
        let s = crate::common::embedded();
        super::one_store_call_per_refresh(s.store.clone()).await;
    }

    #[tokio::test]
    async fn dynamodb_one_store_call_per_refresh() {
        let Some(s) = crate::common::dynamodb().await else { return };
        super::one_store_call_per_refresh(s.store.clone()).await;
    }
}
