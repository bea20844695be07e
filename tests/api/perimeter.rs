//! The operator perimeter: API keys (create, use, list, rotate, revoke), roles enforced on every route from the
//! one permission table, and the audit trail every authenticated request leaves.

use crate::common;

use std::collections::BTreeMap;

use cloud_agent::auth::{Permission, Role};
use cloud_agent::route::Method;
use cloud_agent::store::DynStore;
use common::TestApp;
use serde_json::{Value, json};

const ADMIN_KEY: &str = "admin-key-0123456789abcdef0123456789";

/// Limits far above what a test sends, so only the rate-limit tests ever see a 429.
const ROOMY: [(&str, &str); 3] = [
    ("DEV_ADMIN_KEY", ADMIN_KEY),
    ("CLOUD_AGENT_RATE_TIERS", "standard:100000/60:100000/60"),
    ("CLOUD_AGENT_RATE_AGENT", "100000/60"),
];

async fn app_on(store: Option<DynStore>) -> TestApp {
    let builder = TestApp::builder().envs(&ROOMY);
    match store {
        Some(store) => builder.store(store).spawn().await,
        None => builder.spawn().await,
    }
}

/// Creates a key over the API with the bootstrap admin key; returns (key text, the answer's body).
async fn create_key(app: &TestApp, body: Value) -> (String, Value) {
    let response = app.client.post(app.url("/api/v1/keys")).bearer_auth(ADMIN_KEY).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    let created: Value = response.json().await.unwrap();
    (created["key"].as_str().unwrap().to_owned(), created)
}

async fn key_of_role(app: &TestApp, role: Role) -> String {
    create_key(app, json!({"name": format!("{role} key"), "role": role})).await.0
}

fn concrete(path: &str) -> String {
    path.replace("{task_id}", "t-1")
        .replace("{user_id}", "u-1")
        .replace("{agent_id}", "a-1")
        .replace("{key_id}", "aaaaaaaaaaaaaaaa")
}

/// Who calls, in the RBAC table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Caller {
    Nobody,
    Agent,
    Key(Role),
    Bootstrap,
    /// An admin key of another tenant.
    OtherTenant,
}

/// Every method a client can send; routes declare a few.
const ALL_METHODS: [Method; 7] =
    [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS];

impl Caller {
    fn holds(self, permission: Permission) -> bool {
        match self {
            Self::Nobody => false,
            Self::Agent => permission.is_agent_only(),
            Self::Key(role) => role.allows(permission),
            Self::Bootstrap | Self::OtherTenant => Role::Admin.allows(permission),
        }
    }
}

/// Every route × every HTTP method × every principal (no credential, an agent, each role's key, the bootstrap
/// key, another tenant's admin): a caller holding the permission of the method (HEAD: GET's) gets past the
/// perimeter (neither 401 nor 403), one without it gets 403, no credential 401; on a public route the credential
/// changes nothing; a method the route does not serve is 405 with `Allow` for everyone; nothing is ever a 5xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_admits_exactly_the_roles_its_permission_allows() {
    let app = app_on(None).await;
    let mut credentials: BTreeMap<Caller, Option<String>> = BTreeMap::new();
    credentials.insert(Caller::Nobody, None);
    credentials.insert(Caller::Agent, Some(app.access_token("agent-1", "u-1")));
    credentials.insert(Caller::Bootstrap, Some(ADMIN_KEY.to_owned()));
    for role in Role::ALL {
        credentials.insert(Caller::Key(role), Some(key_of_role(&app, role).await));
    }
    // A second tenant's admin: everything it may do, it does in its own tenant.
    credentials.insert(
        Caller::OtherTenant,
        Some(create_key(&app, json!({"name": "acme", "role": "admin", "tenant": "acme"})).await.0),
    );
    let mut checked = 0;
    let mut wrong = Vec::new();
    for route in cloud_agent::ROUTES.iter() {
        // Every method, not only the declared ones: each is decided before any handler runs.
        for method in &ALL_METHODS {
            let declared =
                route.methods.contains(method) || (*method == Method::HEAD && route.methods.contains(&Method::GET));
            let url = app.url(&concrete(route.path));
            let mut statuses = BTreeMap::new();
            for (caller, credential) in &credentials {
                let mut request = app.client.request(method.clone(), &url);
                if ![Method::GET, Method::HEAD, Method::DELETE, Method::OPTIONS].contains(method) {
                    request = request.json(&json!({}));
                }
                if let Some(credential) = credential {
                    // API keys go in X-API-Key half of the time: both headers are the same credential.
                    request = match caller {
                        Caller::Key(Role::Analyst | Role::Viewer) => request.header("x-api-key", credential),
                        _ => request.bearer_auth(credential),
                    };
                }
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                if status >= 500 {
                    wrong.push(format!("{method} {}: {caller:?} got {status}", route.path));
                }
                if !declared {
                    let allow = response.headers().get("allow").and_then(|v| v.to_str().ok()).unwrap_or_default();
                    if status != 405 || !route.methods.iter().all(|m| allow.contains(m.as_str())) {
                        wrong.push(format!(
                            "{method} {} (undeclared): {caller:?} got {status}, Allow {allow:?}",
                            route.path
                        ));
                    }
                }
                statuses.insert(*caller, status);
                checked += 1;
            }
            if !declared {
                continue;
            }
            let needed = route.access.permission_for(if *method == Method::HEAD { &Method::GET } else { method });
            for (caller, status) in &statuses {
                let expected_ok = match needed {
                    None => {
                        if *status != statuses[&Caller::Nobody] {
                            wrong.push(format!(
                                "{method} {}: {caller:?} got {status}, nobody got {}",
                                route.path,
                                statuses[&Caller::Nobody]
                            ));
                        }
                        continue;
                    }
                    Some(p) => caller.holds(p),
                };
                let verdict_ok = match (expected_ok, caller, status) {
                    (true, _, s) => *s != 401 && *s != 403,
                    (false, Caller::Nobody, s) => *s == 401,
                    (false, _, s) => *s == 403,
                };
                if !verdict_ok {
                    wrong.push(format!("{method} {}: {caller:?} got {status}", route.path));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "the perimeter disagrees with the permission table:\n{}", wrong.join("\n"));
    assert!(checked >= cloud_agent::ROUTES.len() * credentials.len() * ALL_METHODS.len());
}

#[tokio::test]
async fn the_readme_prints_the_permission_table() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for permission in Permission::ALL {
        let row = readme
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("| `{permission}` |")))
            .unwrap_or_else(|| panic!("the README's permission table has no row for {permission}"));
        let cells: Vec<&str> = row.trim().split('|').map(str::trim).collect();
        // | `perm` | admin | operator | analyst | viewer | agent |
        let holders = [
            Role::Admin.allows(permission),
            Role::Operator.allows(permission),
            Role::Analyst.allows(permission),
            Role::Viewer.allows(permission),
            permission.is_agent_only(),
        ];
        for (i, holds) in holders.iter().enumerate() {
            assert_eq!(cells[2 + i] == "✓", *holds, "README row {row:?}, column {}", i + 1);
        }
    }
}

async fn keys_are_shown_once_listed_rotated_and_revoked(store: DynStore) {
    let app = app_on(Some(store)).await;
    let (key, created) = create_key(&app, json!({"name": "ci deploys", "role": "operator"})).await;
    assert!(key.starts_with("ca_test_"), "outside production keys are test keys: {key}");
    assert!(key.starts_with(created["prefix"].as_str().unwrap()));
    let id = created["id"].as_str().unwrap().to_owned();
    // The key works, in either header.
    let me = app.client.get(app.url("/api/v1/agents/health")).header("x-api-key", &key).send().await.unwrap();
    assert_eq!(me.status(), 200);
    assert_eq!(app.client.get(app.url("/api/v1/agents/health")).bearer_auth(&key).send().await.unwrap().status(), 200);
    // Listed without its text; its last use is recorded.
    let list = common::get_json(&app.client, &app.url("/api/v1/keys"), Some(ADMIN_KEY)).await;
    let listed = list["keys"].as_array().unwrap().iter().find(|k| k["id"] == id.as_str()).unwrap().clone();
    assert_eq!((listed["name"].as_str(), listed["role"].as_str()), (Some("ci deploys"), Some("operator")));
    assert!(listed["last_used_at"].as_i64().is_some(), "{listed}");
    assert!(!list.to_string().contains(&key), "a listing never carries a key");
    // Nobody can read a key back: the store holds a hash.
    let record = app.state.store().get(&cloud_agent::store::keys::api_key(&id)).await.unwrap().unwrap();
    assert!(!format!("{record:?}").contains(&key[created["prefix"].as_str().unwrap().len() + 1..]));

    // Rotation: a new key; the old one still works during the grace period, then carries its expiry.
    let rotated =
        app.client.post(app.url(&format!("/api/v1/keys/{id}/rotate"))).bearer_auth(ADMIN_KEY).send().await.unwrap();
    assert_eq!(rotated.status(), 201);
    assert_eq!(rotated.headers()["cache-control"], "no-store");
    let rotated: Value = rotated.json().await.unwrap();
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    assert_eq!(rotated["role"], "operator");
    for k in [&key, &new_key] {
        let status = app.client.get(app.url("/api/v1/agents/health")).bearer_auth(k).send().await.unwrap().status();
        assert_eq!(status, 200);
    }
    let again = app.client.post(app.url(&format!("/api/v1/keys/{id}/rotate"))).bearer_auth(ADMIN_KEY).send();
    common::assert_problem(again.await.unwrap(), 409, Some("already-rotated")).await;
    let list = common::get_json(&app.client, &app.url("/api/v1/keys"), Some(ADMIN_KEY)).await;
    let old = list["keys"].as_array().unwrap().iter().find(|k| k["id"] == id.as_str()).unwrap().clone();
    assert_eq!(old["replaced_by"], rotated["id"]);
    assert!(old["expires_at"].as_i64().unwrap() > cloud_agent::store::now_epoch());

    // Revocation: at once, on this instance.
    let new_id = rotated["id"].as_str().unwrap();
    let revoked = app.client.delete(app.url(&format!("/api/v1/keys/{new_id}"))).bearer_auth(ADMIN_KEY).send();
    assert_eq!(revoked.await.unwrap().status(), 204);
    let refused = app.client.get(app.url("/api/v1/agents/health")).bearer_auth(&new_key).send().await.unwrap();
    common::assert_problem(refused, 401, Some("invalid-key")).await;
    let twice = app.client.delete(app.url(&format!("/api/v1/keys/{new_id}"))).bearer_auth(ADMIN_KEY).send();
    common::assert_problem(twice.await.unwrap(), 404, Some("not-found")).await;
    // A key with one byte changed is no key.
    let mut forged = key.clone();
    forged.pop();
    forged.push(if key.ends_with('A') { 'B' } else { 'A' });
    let status = app.client.get(app.url("/api/v1/agents/health")).bearer_auth(&forged).send().await.unwrap().status();
    assert_eq!(status, 401);
}

async fn a_key_limited_to_address_blocks_works_only_from_them(store: DynStore) {
    let app = app_on(Some(store)).await;
    let (local, _) =
        create_key(&app, json!({"name": "here", "role": "viewer", "allowed_cidrs": ["127.0.0.0/8", "::1"]})).await;
    let (elsewhere, created) =
        create_key(&app, json!({"name": "there", "role": "viewer", "allowed_cidrs": ["203.0.113.0/24"]})).await;
    assert_eq!(created["allowed_cidrs"], json!(["203.0.113.0/24"]));
    let get = |key: &str| app.client.get(app.url("/api/v1/agents/health")).header("x-api-key", key).send();
    assert_eq!(get(&local).await.unwrap().status(), 200, "the test connects from 127.0.0.1");
    // The refusal is about the key, not the deployment: audited, and a spoofed header does not help.
    let refused = app
        .client
        .get(app.url("/api/v1/agents/health"))
        .header("x-api-key", &elsewhere)
        .header("x-forwarded-for", "203.0.113.5")
        .send()
        .await
        .unwrap();
    common::assert_problem(refused, 403, Some("ip-denied")).await;
    let bad = app
        .client
        .post(app.url("/api/v1/keys"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"name": "x", "role": "viewer", "allowed_cidrs": ["10.0.0.0/8", "not-a-block"]}))
        .send()
        .await
        .unwrap();
    let body = common::assert_problem(bad, 422, Some("validation")).await;
    assert_eq!(body["pointer"], "/allowed_cidrs/1");
}

async fn another_tenants_keys_are_absent(store: DynStore) {
    let app = app_on(Some(store)).await;
    let (theirs, _) = create_key(&app, json!({"name": "acme admin", "role": "admin", "tenant": "acme"})).await;
    let (ours, mine) = create_key(&app, json!({"name": "ours", "role": "admin"})).await;
    let my_id = mine["id"].as_str().unwrap();
    // acme's admin sees only acme's keys, cannot rotate or revoke ours (404, as if absent) ...
    let list = common::get_json(&app.client, &app.url("/api/v1/keys"), Some(&theirs)).await;
    let tenants: Vec<&str> = list["keys"].as_array().unwrap().iter().map(|k| k["tenant"].as_str().unwrap()).collect();
    assert_eq!(tenants, ["acme"]);
    for (method, path) in
        [(Method::DELETE, format!("/api/v1/keys/{my_id}")), (Method::POST, format!("/api/v1/keys/{my_id}/rotate"))]
    {
        let response = app.client.request(method, app.url(&path)).bearer_auth(&theirs).send().await.unwrap();
        common::assert_problem(response, 404, Some("not-found")).await;
    }
    // ... and cannot make keys for another tenant.
    let response = app
        .client
        .post(app.url("/api/v1/keys"))
        .bearer_auth(&theirs)
        .json(&json!({"name": "x", "role": "viewer", "tenant": "default"}))
        .send()
        .await
        .unwrap();
    let body = common::assert_problem(response, 422, Some("validation")).await;
    assert_eq!(body["pointer"], "/tenant");
    // Our key still works: nothing above touched it.
    assert_eq!(app.client.get(app.url("/api/v1/keys")).bearer_auth(&ours).send().await.unwrap().status(), 200);
}

async fn bad_key_requests_name_the_field(store: DynStore) {
    let app = app_on(Some(store)).await;
    let post = |body: Value| app.client.post(app.url("/api/v1/keys")).bearer_auth(ADMIN_KEY).json(&body).send();
    for (body, pointer) in [
        (json!({"name": "", "role": "viewer"}), "/name"),
        (json!({"name": "x", "role": "viewer", "tier": "platinum"}), "/tier"),
        (json!({"name": "x", "role": "viewer", "expires_at": "2001-01-01T00:00:00Z"}), "/expires_at"),
        (json!({"name": "x", "role": "viewer", "expires_at": "tomorrow"}), "/expires_at"),
    ] {
        let problem = common::assert_problem(post(body.clone()).await.unwrap(), 422, Some("validation")).await;
        assert_eq!(problem["pointer"], pointer, "{body}");
    }
    let problem =
        common::assert_problem(post(json!({"name": "x", "role": "root"})).await.unwrap(), 400, Some("invalid-json"))
            .await;
    assert_eq!(problem["pointer"], "/role");
    // An expired key stops working by itself.
    let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(5);
    let expires_at = soon.unix_timestamp();
    let soon = soon.format(&time::format_description::well_known::Rfc3339).unwrap();
    let (key, _) = create_key(&app, json!({"name": "brief", "role": "viewer", "expires_at": soon})).await;
    let sent_at = cloud_agent::store::now_epoch();
    let status = app.client.get(app.url("/api/v1/agents/health")).bearer_auth(&key).send().await.unwrap().status();
    // Before its expiry the key works; a machine stalled past the expiry cannot tell (no race on the clock).
    if sent_at + 1 < expires_at {
        assert_eq!(status, 200);
    }
    // Waits for a condition (the key's expiry), with a generous deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
    loop {
        let status = app.client.get(app.url("/api/v1/agents/health")).bearer_auth(&key).send().await.unwrap().status();
        if status == 401 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the key never expired");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// Every record of one trail, read straight from the table.
async fn trail(app: &TestApp, tenant: &str) -> Vec<cloud_agent::store::Item> {
    let query = cloud_agent::store::Query::partition(format!("AUDIT#{tenant}")).limit(1000);
    app.state.store().query(query).await.unwrap().items
}

/// The audit policy (CloudTrail's: management events always, data events opt-in): operator requests, agents'
/// writes and every denial are stored, once each, before the response; an agent's successful reads are only in
/// the access log; a failed authentication is stored in the trail of the tenant its key names, or in the
/// unauthenticated trail; a request with no credential at all is not stored.
async fn the_audit_trail_stores_what_its_policy_says(store: DynStore) {
    let app = app_on(Some(store)).await;
    let (key, created) = create_key(&app, json!({"name": "auditor", "role": "analyst"})).await;
    let prefix = created["prefix"].as_str().unwrap().to_owned();
    let agent = app.access_token("agent-7", "u-7");
    let mut sent: Vec<(String, &str, u16)> = Vec::new();
    let mut remember = |response: &reqwest::Response, route: &'static str| {
        let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
        sent.push((id, route, response.status().as_u16()));
    };
    let r = app.client.get(app.url("/api/v1/agents/health")).bearer_auth(&key).send().await.unwrap();
    remember(&r, "/api/v1/agents/health");
    let r = app.client.get(app.url("/api/v1/keys")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), 403, "an analyst cannot manage keys; the refusal is audited too");
    remember(&r, "/api/v1/keys");
    let r = app.client.get(app.url("/api/v1/agents/a-1/health")).bearer_auth(&key).send().await.unwrap();
    remember(&r, "/api/v1/agents/{agent_id}/health");
    let r = app.post_progress("agent-7", "u-7", &json!({"task_id": "t-1", "status": "running", "progress": 10})).await;
    assert_eq!(r.status(), 202, "an agent's write");
    remember(&r, "/api/v1/agent/progress");
    let r = app.get_as("/api/v1/keys", &agent).await;
    assert_eq!(r.status(), 403, "an agent's denial");
    remember(&r, "/api/v1/keys");
    // An agent's successful reads: the access log line only.
    let read = app.get_as("/api/v1/agent/me", &agent).await;
    assert_eq!(read.status(), 200);
    let read_id = read.headers()["x-request-id"].to_str().unwrap().to_owned();
    // No credential at all: nothing attempted, nothing stored.
    let anonymous = app.client.get(app.url("/api/v1/agents/health")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let anonymous_id = anonymous.headers()["x-request-id"].to_str().unwrap().to_owned();
    // A made-up key: the unauthenticated trail. The real key's id with a wrong secret: its tenant's trail.
    let forged = app.client.get(app.url("/api/v1/agents/health")).header("x-api-key", format!("{key}x")).send();
    let forged = forged.await.unwrap();
    assert_eq!(forged.status(), 401);
    let forged_id = forged.headers()["x-request-id"].to_str().unwrap().to_owned();
    let unknown = "ca_test_0000000000000000_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let made_up = app.client.get(app.url("/api/v1/agents/health")).header("x-api-key", unknown).send().await.unwrap();
    assert_eq!(made_up.status(), 401);
    let made_up_id = made_up.headers()["x-request-id"].to_str().unwrap().to_owned();

    let items = trail(&app, "default").await;
    let now = cloud_agent::store::now_epoch();
    let of = |items: &[cloud_agent::store::Item], id: &str| {
        items.iter().filter(|i| i.get_str("request_id") == Some(id)).cloned().collect::<Vec<_>>()
    };
    for (id, route, status) in &sent {
        let mine = of(&items, id);
        assert_eq!(mine.len(), 1, "request {id} ({route}) left {} records", mine.len());
        assert_eq!(mine[0].get_str("route"), Some(*route));
        assert_eq!(mine[0].get_i64("status"), Some(i64::from(*status)));
        let ttl = mine[0].expires_at().unwrap() - now;
        assert!((30 * 86_400 - 120..=30 * 86_400 + 5).contains(&ttl), "30-day retention, got {ttl} s");
    }
    assert!(of(&items, &read_id).is_empty(), "an agent's read is not stored under the standard policy");
    assert!(of(&items, &anonymous_id).is_empty(), "no credential: not stored");
    let forged_record = of(&items, &forged_id);
    assert_eq!(forged_record.len(), 1, "a real key with a wrong secret: its tenant's trail");
    assert_eq!(forged_record[0].get_str("actor"), Some("anonymous"));
    assert_eq!(forged_record[0].get_i64("status"), Some(401));
    let unauthenticated = trail(&app, "~unauthenticated").await;
    assert_eq!(of(&unauthenticated, &made_up_id).len(), 1, "a made-up key: the unauthenticated trail");
    let client_ip = items.iter().find(|i| i.get_str("request_id") == Some(sent[0].0.as_str())).unwrap();
    assert_eq!(client_ip.get_str("client_ip"), Some("127.0.0.1"), "the socket's address on the local server");

    // The audit route: an analyst reads it; filtered by actor and route, newest first, paged.
    let url = app.url(&format!("/api/v1/audit?actor=key:{prefix}&limit=1"));
    let wanted: Vec<&String> = sent.iter().take(3).map(|(id, _, _)| id).collect();
    // The actor index is eventually consistent on DynamoDB: wait for the condition, with a generous deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let mut seen = Vec::new();
        let mut next = Some(url.clone());
        while let Some(page_url) = next {
            let page = common::get_json(&app.client, &page_url, Some(&key)).await;
            for record in page["records"].as_array().unwrap() {
                assert_eq!(record["actor"], format!("key:{prefix}"));
                seen.push(record["request_id"].as_str().unwrap().to_owned());
            }
            next = page["next_cursor"].as_str().map(|c| format!("{url}&cursor={c}"));
        }
        if wanted.iter().all(|id| seen.contains(id)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{wanted:?} not all in {seen:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let by_route =
        common::get_json(&app.client, &app.url("/api/v1/audit?route=/api/v1/agent/progress"), Some(&key)).await;
    let records = by_route["records"].as_array().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["actor"], "agent:agent-7");
    assert_eq!(records[0]["role"], "agent");
    assert!(records[0]["id"].as_str().is_some_and(|id| id.len() == 36), "a server-made id: {}", records[0]);
    let future = common::get_json(&app.client, &app.url("/api/v1/audit?from=2999-01-01T00:00:00Z"), Some(&key)).await;
    assert_eq!(future["records"], json!([]));
    let inverted = app
        .client
        .get(app.url("/api/v1/audit?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    common::assert_problem(inverted, 422, Some("validation")).await;
    // A cursor issued for one filter is refused for another.
    let first = common::get_json(&app.client, &app.url("/api/v1/audit?limit=1"), Some(&key)).await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let moved = app
        .client
        .get(app.url(&format!("/api/v1/audit?limit=1&actor=agent:agent-7&cursor={cursor}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    common::assert_problem(moved, 422, None).await;
}

/// A signed request as a client makes one: canonical string, HMAC under the signing secret, the headers.
fn signed(
    app: &TestApp,
    key: &str,
    secret: &str,
    (method, path, query, body): (Method, &str, &str, &str),
    timestamp: i64,
) -> reqwest::RequestBuilder {
    use cloud_agent::auth::signing;
    let query_opt = (!query.is_empty()).then_some(query);
    let canonical = signing::canonical_string(&method, path, query_opt, &timestamp.to_string(), body.as_bytes());
    let url = if query.is_empty() { app.url(path) } else { app.url(&format!("{path}?{query}")) };
    app.client
        .request(method, url)
        .header("x-api-key", key)
        .header("x-timestamp", timestamp.to_string())
        .header("x-signature", signing::sign(secret.as_bytes(), &canonical))
        .header("content-type", "application/json")
        .body(body.to_owned())
}

async fn signed_requests_pass_and_every_tampering_is_named(store: DynStore) {
    let app = app_on(Some(store)).await;
    let (key, created) = create_key(&app, json!({"name": "signer", "role": "admin", "signing": "required"})).await;
    let secret = created["signing_secret"].as_str().expect("a signing key comes with its secret").to_owned();
    let now = cloud_agent::store::now_epoch();
    let create = r#"{"name": "made by a signed request", "role": "viewer"}"#;
    let ok = signed(&app, &key, &secret, (Method::POST, "/api/v1/keys", "b=2&a=1", create), now).send().await.unwrap();
    assert_eq!(ok.status(), 201, "a valid signed request passes");
    let ok = signed(&app, &key, &secret, (Method::GET, "/api/v1/keys", "limit=5", ""), now).send().await.unwrap();
    assert_eq!(ok.status(), 200);

    let refused = |request: reqwest::RequestBuilder, slug: &'static str| async move {
        common::assert_problem(request.send().await.unwrap(), 401, Some(slug)).await
    };
    // Unsigned, with a key that requires signing.
    refused(app.client.get(app.url("/api/v1/keys")).header("x-api-key", &key), "signature-required").await;
    // The body changed after signing: named as such when the client sent its digest, else a mismatch.
    let base = signed(&app, &key, &secret, (Method::POST, "/api/v1/keys", "", create), now);
    let digest = cloud_agent::auth::signing::sha256_hex(create.as_bytes());
    let tampered = r#"{"name": "made by a signed request", "role": "admin"}"#;
    refused(base.header("x-content-sha256", &digest).body(tampered), "body-digest-mismatch").await;
    let base = signed(&app, &key, &secret, (Method::POST, "/api/v1/keys", "", create), now + 1);
    let body = refused(base.body(tampered), "signature-mismatch").await;
    assert!(body["detail"].as_str().unwrap().contains("canonical string"), "{body}");
    // Path, query and method changed after signing.
    let mut path = signed(&app, &key, &secret, (Method::GET, "/api/v1/keys", "", ""), now + 2).build().unwrap();
    *path.url_mut() = reqwest::Url::parse(&app.url("/api/v1/audit")).unwrap();
    let response = app.client.execute(path).await.unwrap();
    common::assert_problem(response, 401, Some("signature-mismatch")).await;
    let mut query = signed(&app, &key, &secret, (Method::GET, "/api/v1/keys", "limit=5", ""), now + 3).build().unwrap();
    query.url_mut().set_query(Some("limit=50"));
    common::assert_problem(app.client.execute(query).await.unwrap(), 401, Some("signature-mismatch")).await;
    // Signed as a GET, sent as a DELETE of the same path.
    let mut method =
        signed(&app, &key, &secret, (Method::GET, "/api/v1/keys/aaaaaaaaaaaaaaaa", "", ""), now + 4).build().unwrap();
    *method.method_mut() = Method::DELETE;
    common::assert_problem(app.client.execute(method).await.unwrap(), 401, Some("signature-mismatch")).await;
    // Outside the window: too old, from the future.
    let stale = signed(&app, &key, &secret, (Method::GET, "/api/v1/keys", "", ""), now - 301);
    refused(stale, "signature-expired").await;
    let future = signed(&app, &key, &secret, (Method::GET, "/api/v1/keys", "", ""), now + 120);
    refused(future, "signature-from-the-future").await;
    // A replay of a request that passed.
    let once = signed(&app, &key, &secret, (Method::GET, "/api/v1/keys", "limit=7", ""), now);
    let replay = once.try_clone().unwrap();
    assert_eq!(once.send().await.unwrap().status(), 200);
    refused(replay, "signature-replayed").await;
    // The wrong secret, and an unknown key.
    let wrong = signed(&app, &key, "ca_sig_not-the-secret", (Method::GET, "/api/v1/keys", "", ""), now + 5);
    refused(wrong, "signature-mismatch").await;
    let unknown_key = format!("ca_test_aaaaaaaaaaaaaaaa_{}", "x".repeat(43));
    refused(signed(&app, &unknown_key, &secret, (Method::GET, "/api/v1/keys", "", ""), now), "invalid-key").await;
    // A key with signing off ignores signatures; one with optional signing checks only signed requests.
    let (optional, created) = create_key(&app, json!({"name": "opt", "role": "viewer", "signing": "optional"})).await;
    let opt_secret = created["signing_secret"].as_str().unwrap().to_owned();
    let plain = app.client.get(app.url("/api/v1/agents/health")).header("x-api-key", &optional).send();
    assert_eq!(plain.await.unwrap().status(), 200);
    let bad = signed(&app, &optional, "ca_sig_wrong", (Method::GET, "/api/v1/agents/health", "", ""), now);
    refused(bad, "signature-mismatch").await;
    let good = signed(&app, &optional, &opt_secret, (Method::GET, "/api/v1/agents/health", "", ""), now);
    assert_eq!(good.send().await.unwrap().status(), 200);
    // The SDK's signer signs exactly what the server checks (a body, a query with characters to encode).
    let sdk = cloud_agent_sdk::RequestSigner::new(&secret);
    let mut post = app
        .client
        .post(app.url("/api/v1/keys?z=%7e&a=x+y"))
        .header("x-api-key", &key)
        .json(&json!({"name": "signed by the SDK", "role": "viewer"}))
        .build()
        .unwrap();
    sdk.sign(&mut post);
    assert_eq!(app.client.execute(post).await.unwrap().status(), 201);
    let mut list = app.client.get(app.url("/api/v1/keys?limit=3")).header("x-api-key", &key).build().unwrap();
    sdk.sign(&mut list);
    assert_eq!(app.client.execute(list).await.unwrap().status(), 200);
    // With the SDK's X-Signature-Parts, each tampered part has its own problem type.
    let tampered = |method: Method, url: &str, body: Option<Value>| {
        let mut request = app.client.request(method, app.url(url)).header("x-api-key", &key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let mut request = request.build().unwrap();
        sdk.sign(&mut request);
        request
    };
    let mut r = tampered(Method::GET, "/api/v1/keys/aaaaaaaaaaaaaaaa", None);
    *r.method_mut() = Method::DELETE;
    common::assert_problem(app.client.execute(r).await.unwrap(), 401, Some("signature-method-mismatch")).await;
    let mut r = tampered(Method::GET, "/api/v1/keys", None);
    *r.url_mut() = reqwest::Url::parse(&app.url("/api/v1/audit")).unwrap();
    common::assert_problem(app.client.execute(r).await.unwrap(), 401, Some("signature-path-mismatch")).await;
    let mut r = tampered(Method::GET, "/api/v1/keys?limit=3", None);
    r.url_mut().set_query(Some("limit=30"));
    common::assert_problem(app.client.execute(r).await.unwrap(), 401, Some("signature-query-mismatch")).await;
    let mut r = tampered(Method::POST, "/api/v1/keys", Some(json!({"name": "n", "role": "viewer"})));
    r.headers_mut().remove("x-content-sha256");
    *r.body_mut() = Some(reqwest::Body::from(r#"{"name": "n", "role": "admin"}"#));
    common::assert_problem(app.client.execute(r).await.unwrap(), 401, Some("body-digest-mismatch")).await;
    let (off, created) = create_key(&app, json!({"name": "off", "role": "viewer"})).await;
    assert!(created.get("signing_secret").is_none(), "no signing secret for a key that does not sign");
    let ignored = signed(&app, &off, "anything", (Method::GET, "/api/v1/agents/health", "", ""), now);
    assert_eq!(ignored.send().await.unwrap().status(), 200);
}

on_both_backends!(
    a_key_limited_to_address_blocks_works_only_from_them,
    agents_are_managed_over_the_api_within_their_tenant,
    signed_requests_pass_and_every_tampering_is_named,
    keys_are_shown_once_listed_rotated_and_revoked,
    another_tenants_keys_are_absent,
    bad_key_requests_name_the_field,
    the_audit_trail_stores_what_its_policy_says,
    one_request_id_a_hundred_times_leaves_a_hundred_records,
    failed_authentication_is_cheap_limited_and_audited,
);

/// What the perimeter costs in store calls (BENCHMARKS.md reports these). Rate limits are spent from leases of
/// the table's count, so a steady stream pays a write per block, not per request: an agent's reads (not audited
/// under the standard policy) cost at most 0.1 store calls each; an operator's requests one audit write each plus
/// the leases. Over the limit, the first refusal costs the lease attempt and its audit record; the rest nothing.
#[tokio::test]
async fn the_perimeter_costs_a_fraction_of_a_write_per_agent_read() {
    let vars = [
        ("DEV_ADMIN_KEY", ADMIN_KEY),
        ("CLOUD_AGENT_RATE_TIERS", "standard:600/60:10/60,tiny:3/3600:3/3600"),
        ("CLOUD_AGENT_RATE_AGENT", "1200/60"),
    ];
    let app = TestApp::builder().envs(&vars).spawn().await;
    let agent = app.access_token("agent-1", "u-1");
    app.store.take_perimeter();
    for _ in 0..200 {
        assert_eq!(app.get_as("/api/v1/agent/me", &agent).await.status(), 200);
    }
    let agent_calls = app.store.take_perimeter();
    println!("perimeter store calls for 200 agent reads: {agent_calls}");
    assert!(agent_calls <= 20, "an agent's reads cost {agent_calls} store calls per 200 requests (goal ≤ 0.1 each)");
    assert!(agent_calls >= 1, "the quota is still counted in the table");

    let (key, _) = create_key(&app, json!({"name": "counted", "role": "viewer"})).await;
    let get = || app.client.get(app.url("/api/v1/agents/health")).header("x-api-key", &key).send();
    assert_eq!(get().await.unwrap().status(), 200);
    app.store.take_perimeter();
    for _ in 0..100 {
        assert_eq!(get().await.unwrap().status(), 200);
    }
    let operator_calls = app.store.take_perimeter();
    println!("perimeter store calls for 100 operator reads: {operator_calls}");
    // 100 audit records and about 6 leases (2, 4, … 60); a minute turning meanwhile adds a few leases and a
    // last-used write, a slow machine a key re-read every 10 s.
    assert!(
        (100..=115).contains(&operator_calls),
        "an operator's request: its audit record and a share of a lease, got {operator_calls} per 100"
    );

    let (tiny, _) = create_key(&app, json!({"name": "tiny", "role": "viewer", "tier": "tiny"})).await;
    for _ in 0..3 {
        let ok = app.client.get(app.url("/api/v1/agents/health")).header("x-api-key", &tiny).send();
        assert_eq!(ok.await.unwrap().status(), 200);
    }
    app.store.take_perimeter();
    let over = app.client.get(app.url("/api/v1/agents/health")).header("x-api-key", &tiny).send().await.unwrap();
    assert_eq!(over.status(), 429, "the fourth request of a 3-per-hour key");
    assert_eq!(app.store.take_perimeter(), 2, "the first refusal: the lease that found nothing left, its audit record");
    for _ in 0..5 {
        let again = app.client.get(app.url("/api/v1/agents/health")).header("x-api-key", &tiny).send().await.unwrap();
        assert_eq!(again.status(), 429);
        assert!(again.headers().contains_key("retry-after"));
    }
    assert_eq!(app.store.take_perimeter(), 0, "known over the limit: refused from memory, logged, not stored");
}

/// `CLOUD_AGENT_AUDIT=all` stores agents' reads too.
#[tokio::test]
async fn the_audit_setting_all_stores_agents_reads() {
    let app = TestApp::builder().envs(&ROOMY).env("CLOUD_AGENT_AUDIT", "all").spawn().await;
    let agent = app.access_token("agent-2", "u-2");
    let read = app.get_as("/api/v1/agent/me", &agent).await;
    let id = read.headers()["x-request-id"].to_str().unwrap().to_owned();
    let items = trail(&app, "default").await;
    assert_eq!(items.iter().filter(|i| i.get_str("request_id") == Some(id.as_str())).count(), 1);
}

/// HEAD is a GET without a body: it needs GET's permission, passes the whole perimeter (rate limit, audit) and
/// answers what GET would, never a 5xx.
#[tokio::test]
async fn head_is_a_get_through_the_whole_perimeter() {
    let app = app_on(None).await;
    let viewer = key_of_role(&app, Role::Viewer).await;
    for path in ["/v3/tasks", "/api/v1/agents"] {
        let head = app.client.head(app.url(path)).header("x-api-key", &viewer).send().await.unwrap();
        assert_eq!(head.status(), 200, "HEAD {path}");
        assert!(head.headers().contains_key("ratelimit"), "HEAD {path} was counted");
        let id = head.headers()["x-request-id"].to_str().unwrap().to_owned();
        let stored: Vec<_> =
            trail(&app, "default").await.into_iter().filter(|i| i.get_str("request_id") == Some(id.as_str())).collect();
        assert_eq!(stored.len(), 1, "HEAD {path} is audited");
        assert_eq!(stored[0].get_str("method"), Some("HEAD"));
    }
    let agent = app.access_token("agent-1", "u-1");
    let refused = app.client.head(app.url("/api/v1/agents")).bearer_auth(agent).send().await.unwrap();
    assert_eq!(refused.status(), 403, "an agent lacks agent:read");
}

/// The record's key is the server's, never the caller's request id: a hundred concurrent requests sent with one
/// `X-Request-Id` leave a hundred records (a client can neither erase its trail nor lose records by retrying).
async fn one_request_id_a_hundred_times_leaves_a_hundred_records(store: DynStore) {
    let app = app_on(Some(store)).await;
    let viewer = key_of_role(&app, Role::Viewer).await;
    let mut calls = Vec::new();
    for _ in 0..100 {
        let request = app
            .client
            .get(app.url("/api/v1/agents/health"))
            .header("x-api-key", &viewer)
            .header("x-request-id", "the-same-id");
        calls.push(tokio::spawn(request.send()));
    }
    for call in calls {
        let response = call.await.unwrap().unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-request-id"], "the-same-id");
    }
    let records: Vec<_> =
        trail(&app, "default").await.into_iter().filter(|i| i.get_str("request_id") == Some("the-same-id")).collect();
    assert_eq!(records.len(), 100, "one record per request");
    let ids: std::collections::BTreeSet<&str> = records.iter().filter_map(|i| i.get_str("id")).collect();
    assert_eq!(ids.len(), 100, "each with its own server-made id");
}

/// Failed authentication is cheap and limited: a made-up key costs one store read, then none while it is
/// remembered; failures (bad keys, failed signatures) count against the address and past the quota the address is
/// refused 429 before any credential is looked at; a failed signature is audited in its key's tenant.
async fn failed_authentication_is_cheap_limited_and_audited(store: DynStore) {
    let app = TestApp::builder().envs(&ROOMY).env("CLOUD_AGENT_AUTH_FAILURES", "5/3600").store(store).spawn().await;
    let (signing, created) = create_key(&app, json!({"name": "signer", "role": "viewer", "signing": "required"})).await;
    let prefix = created["prefix"].as_str().unwrap().to_owned();
    let viewer = key_of_role(&app, Role::Viewer).await;
    let get = |key: &str| app.client.get(app.url("/api/v1/agents/health")).header("x-api-key", key).send();
    // 1–2: unsigned requests of a key that must sign.
    for _ in 0..2 {
        common::assert_problem(get(&signing).await.unwrap(), 401, Some("signature-required")).await;
    }
    let signature_failures: Vec<_> = trail(&app, "default")
        .await
        .into_iter()
        .filter(|i| i.get_str("actor") == Some(&format!("key:{prefix}")) && i.get_i64("status") == Some(401))
        .collect();
    assert_eq!(signature_failures.len(), 2, "failed signatures are audited in the key's tenant");
    // 3–5: a made-up key; the table is read once for it.
    let made_up = "ca_test_aaaaaaaaaaaaaaaa_not-a-real-secret";
    app.store.key_reads.store(0, std::sync::atomic::Ordering::SeqCst);
    for _ in 0..3 {
        common::assert_problem(get(made_up).await.unwrap(), 401, Some("invalid-key")).await;
    }
    assert_eq!(app.store.key_reads.load(std::sync::atomic::Ordering::SeqCst), 1, "an unknown key id is remembered");
    // 6: over the quota.
    let limited = get(made_up).await.unwrap();
    assert!(limited.headers().contains_key("retry-after"));
    common::assert_problem(limited, 429, Some("too-many-failed-attempts")).await;
    // The address is now refused before any credential is checked, a good one included, at no store cost.
    app.store.take_perimeter();
    common::assert_problem(get(&viewer).await.unwrap(), 429, Some("too-many-failed-attempts")).await;
    assert_eq!(app.store.take_perimeter(), 0);
}

async fn agents_are_managed_over_the_api_within_their_tenant(store: DynStore) {
    let app = app_on(Some(store)).await;
    let register = |key: &str, id: &str| {
        app.client
            .post(app.url("/api/v1/agents"))
            .bearer_auth(key)
            .json(&json!({"agent_id": id, "owner": "u-1"}))
            .send()
    };
    let created = register(ADMIN_KEY, "api-agent").await.unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["cache-control"], "no-store");
    let secret = created.json::<Value>().await.unwrap()["agent_secret"].as_str().unwrap().to_owned();
    let login = |secret: String| {
        app.client
            .post(app.url("/api/v1/agent/token"))
            .json(&json!({"agent_id": "api-agent", "agent_secret": secret}))
            .send()
    };
    assert_eq!(login(secret.clone()).await.unwrap().status(), 200);
    common::assert_problem(register(ADMIN_KEY, "api-agent").await.unwrap(), 409, Some("agent-exists")).await;
    // A viewer lists, but may not register.
    let viewer = key_of_role(&app, Role::Viewer).await;
    let list = common::get_json(&app.client, &app.url("/api/v1/agents"), Some(&viewer)).await;
    let ids: Vec<&str> = list["agents"].as_array().unwrap().iter().map(|a| a["agent_id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"api-agent"), "{list}");
    assert!(!list.to_string().contains(&secret));
    common::assert_problem(register(&viewer, "other").await.unwrap(), 403, Some("forbidden")).await;
    // Another tenant's admin sees none of ours and cannot touch them.
    let (theirs, _) = create_key(&app, json!({"name": "acme", "role": "admin", "tenant": "acme"})).await;
    let list = common::get_json(&app.client, &app.url("/api/v1/agents"), Some(&theirs)).await;
    assert_eq!(list["agents"], json!([]));
    for action in ["disable", "rotate"] {
        let url = app.url(&format!("/api/v1/agents/api-agent/{action}"));
        let response = app.client.post(url).bearer_auth(&theirs).send().await.unwrap();
        common::assert_problem(response, 404, Some("not-found")).await;
    }
    assert_eq!(login(secret.clone()).await.unwrap().status(), 200, "still working: nothing was changed");
    // Agents, their health and their users' contexts live in the default tenant: another tenant sees none of
    // them and adds none.
    common::assert_problem(register(&theirs, "acme-agent").await.unwrap(), 403, Some("agents-default-tenant")).await;
    let health = common::get_json(&app.client, &app.url("/api/v1/agents/health"), Some(&theirs)).await;
    assert_eq!(health["agents"], json!([]));
    let one = app.client.get(app.url("/api/v1/agents/api-agent/health")).bearer_auth(&theirs).send().await.unwrap();
    common::assert_problem(one, 404, Some("not-found")).await;
    let context = app
        .client
        .put(app.url("/api/v1/admin/users/u-1/context"))
        .bearer_auth(&theirs)
        .json(&json!({"profile": {}, "preferences": {}, "permissions": []}))
        .send()
        .await
        .unwrap();
    common::assert_problem(context, 404, Some("not-found")).await;
    // Rotation and disabling, by our admin.
    let rotated = app.client.post(app.url("/api/v1/agents/api-agent/rotate")).bearer_auth(ADMIN_KEY).send();
    let rotated: Value = rotated.await.unwrap().json().await.unwrap();
    let new_secret = rotated["agent_secret"].as_str().unwrap().to_owned();
    assert_eq!(login(secret).await.unwrap().status(), 401);
    assert_eq!(login(new_secret.clone()).await.unwrap().status(), 200);
    let disabled = app.client.post(app.url("/api/v1/agents/api-agent/disable")).bearer_auth(ADMIN_KEY).send();
    assert_eq!(disabled.await.unwrap().status(), 204);
    assert_eq!(login(new_secret).await.unwrap().status(), 401);
}

/// The unauthenticated credential routes are limited per client address: guessing secrets at speed ends in 429,
/// whatever credential is tried.
#[tokio::test]
async fn credential_routes_are_limited_per_client_address() {
    let app = TestApp::builder().env("CLOUD_AGENT_RATE_CREDENTIAL", "3/3600").spawn().await;
    let attempt = |secret: &str| {
        app.client
            .post(app.url("/api/v1/agent/token"))
            .json(&json!({"agent_id": "nobody", "agent_secret": secret}))
            .send()
    };
    for i in 0..3 {
        let response = attempt(&format!("guess-{i}")).await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["ratelimit-policy"], "\"credential\";q=3;w=3600");
    }
    let limited = attempt("guess-3").await.unwrap();
    assert!(limited.headers().contains_key("retry-after"));
    let body = common::assert_problem(limited, 429, Some("rate-limited")).await;
    assert!(body["detail"].as_str().unwrap().contains("retry after"), "{body}");
    // The refresh and revoke routes share the address's budget.
    let refresh = app.client.post(app.url("/api/v1/agent/token/refresh")).json(&json!({"refresh_token": "x"}));
    assert_eq!(refresh.send().await.unwrap().status(), 429);
}
