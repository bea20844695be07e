//! The operator client (`cloud_agent_sdk::client`) against the real server, directly and through a fault-injecting
//! proxy (a real HTTP hop that answers 503 in place of the server, or forwards a request and loses the answer):
//! typed task calls and their errors, retries with backoff and `Retry-After`, an idempotent replay after a lost
//! answer, the retry budget capping retries, no retry of what cannot be delivered twice, and the client's circuit
//! breaker opening and recovering.

use crate::common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloud_agent::store::DynStore;
use cloud_agent_sdk::api::tasks::{CreateTask, Status, TaskOptions};
use cloud_agent_sdk::client::{Client, ClientError, TaskFilter};
use cloud_agent_sdk::{RetryBudget, RetryPolicy};
use common::TestApp;
use futures_util::StreamExt as _;
use serde_json::{Value, json};

const ADMIN_KEY: &str = "admin-key-0123456789abcdef0123456789";

async fn app_on(store: DynStore) -> TestApp {
    TestApp::builder()
        .env("DEV_ADMIN_KEY", ADMIN_KEY)
        .env("CLOUD_AGENT_RATE_TIERS", "standard:100000/60:100000/60")
        .store(store)
        .spawn()
        .await
}

async fn operator_key(app: &TestApp) -> String {
    let body = json!({"name": "sdk", "role": "operator"});
    let response = app.client.post(app.url("/api/v1/keys")).bearer_auth(ADMIN_KEY).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["key"].as_str().unwrap().to_owned()
}

/// Quick retries, so the tests do not wait out production backoff.
fn quick() -> RetryPolicy {
    RetryPolicy { base: Duration::from_millis(10), cap: Duration::from_millis(40), ..RetryPolicy::default() }
}

fn echo(message: &str) -> CreateTask {
    CreateTask { kind: "echo".into(), payload: json!({"message": message}), options: TaskOptions::default() }
}

async fn typed_task_calls_and_their_errors(store: DynStore) {
    let app = app_on(store).await;
    let client = Client::builder(&app.address).api_key(operator_key(&app).await).build().unwrap();

    let capabilities = client.capabilities().await.unwrap();
    let echo_type = capabilities.handlers.iter().find(|h| h.name == "echo").expect("echo is listed");
    assert_eq!(echo_type.input_schema["type"], "object");
    assert!(capabilities.handlers.iter().any(|h| h.name == "csv-parser"), "plugins are listed too");

    let ran = client.create_task(echo("now")).await.unwrap();
    assert_eq!(ran.status, Status::Succeeded);
    assert_eq!(ran.result.as_ref().map(|r| &r["message"]), Some(&json!("now")));
    assert!(ran.idempotency_key.is_some(), "the client adds an idempotency key to every create");
    assert_eq!(client.task(&ran.id).await.unwrap(), ran, "read back as created");

    let mut queued = echo("later");
    queued.options.asynchronous = true;
    let queued = client.create_task(queued).await.unwrap();
    assert_eq!(queued.status, Status::Queued);
    let mut third = echo("third");
    third.options.asynchronous = true;
    let third = client.create_task(third).await.unwrap();

    // Pages of one, newest first, until the cursor runs out.
    let mut pages = client.tasks(TaskFilter { page_size: Some(1), ..TaskFilter::default() });
    let mut seen = Vec::new();
    while let Some(page) = pages.next_page().await {
        let page = page.unwrap();
        assert!(page.len() <= 1);
        seen.extend(page.into_iter().map(|t| t.id));
    }
    assert_eq!(seen, [third.id.clone(), queued.id.clone(), ran.id.clone()]);
    let queued_only =
        client.tasks(TaskFilter { status: Some(Status::Queued), ..TaskFilter::default() }).collect().await.unwrap();
    assert_eq!(queued_only.len(), 2);

    let cancelled = client.cancel_task(&third.id).await.unwrap();
    assert_eq!(cancelled.status, Status::Cancelled);
    assert!(matches!(client.cancel_task(&third.id).await, Err(ClientError::Conflict(_))));
    let missing = client.task("t_00000000000000000000000000000000").await.unwrap_err();
    assert!(matches!(missing, ClientError::NotFound(_)), "{missing}");
    assert!(missing.problem().unwrap().request_id.is_some(), "the problem keeps the request id to quote");

    let bad = CreateTask { kind: "echo".into(), payload: json!({"delay_ms": -1}), options: TaskOptions::default() };
    match client.create_task(bad).await {
        Err(ClientError::Validation { pointer, .. }) => assert_eq!(pointer.as_deref(), Some("/payload/delay_ms")),
        other => panic!("expected a validation error, got {other:?}"),
    }
    let unauthenticated = Client::builder(&app.address).api_key("ca_test_not-a-key").build().unwrap();
    assert!(matches!(unauthenticated.task(&ran.id).await, Err(ClientError::Unauthorized(_))));

    // The queued task runs (a drain, as the worker does); waiting sees it finish.
    let engine = app.state.part::<cloud_agent::features::tasks::engine::Engine>();
    cloud_agent::features::tasks::worker::drain(&engine, Duration::from_mins(1)).await;
    let finished = client.wait_for_task(&queued.id, Duration::from_secs(30)).await.unwrap();
    let metrics = client.task_metrics().await.unwrap();
    assert_eq!(metrics.by_type["echo"].succeeded, 2, "{metrics:?}");
    assert_eq!(metrics.cancelled, 1);
    assert_eq!(finished.status, Status::Succeeded);
    assert_eq!(finished.result.as_ref().map(|r| &r["message"]), Some(&json!("later")));

    // Several at once: one outcome per task, in order; the refused one does not stop its neighbours.
    let bad = CreateTask { kind: "echo".into(), payload: json!({"delay_ms": -1}), options: TaskOptions::default() };
    let outcomes = client.create_tasks(vec![echo("b0"), bad, echo("b2")]).await;
    assert_eq!(outcomes.len(), 3);
    assert!(matches!(&outcomes[1], Err(ClientError::Validation { .. })), "{:?}", outcomes[1]);
    for (outcome, message) in [(&outcomes[0], "b0"), (&outcomes[2], "b2")] {
        let task = outcome.as_ref().unwrap();
        assert_eq!(task.result.as_ref().map(|r| &r["message"]), Some(&json!(message)));
        assert!(task.idempotency_key.is_some());
    }
    let batch_keys: std::collections::HashSet<_> =
        [&outcomes[0], &outcomes[2]].iter().map(|o| o.as_ref().unwrap().idempotency_key.clone()).collect();
    assert_eq!(batch_keys.len(), 2, "each create has its own key");

    // The listing as a stream of tasks: pages of two fetched as they are used up, the same tasks as collected.
    let streamed: Vec<String> = client
        .tasks(TaskFilter { page_size: Some(2), ..TaskFilter::default() })
        .into_stream()
        .map(|task| task.unwrap().id)
        .collect()
        .await;
    let collected: Vec<String> =
        client.tasks(TaskFilter::default()).collect().await.unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(streamed.len(), 5, "three earlier tasks and the batch's two: {streamed:?}");
    assert_eq!(streamed, collected);
}

/// What the proxy does with one request.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Forward it and return the answer.
    Pass,
    /// Answer 503 (with `Retry-After` seconds, if given) without forwarding.
    Unavailable(Option<u64>),
    /// Forward it, then answer 503 instead of the server's answer: the work was done, the caller never heard.
    LoseAnswer,
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    /// Every answer waits this long (a slow endpoint).
    delay: Duration,
    plan: Arc<Mutex<VecDeque<Fault>>>,
    /// What happens once the plan is used up.
    then: Fault,
    seen: Arc<AtomicUsize>,
    /// Each request's `Content-Encoding` and body size, as it crossed the wire.
    bodies: Bodies,
    http: reqwest::Client,
}

async fn relay(
    axum::extract::State(proxy): axum::extract::State<Proxy>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    proxy.seen.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(proxy.delay).await;
    let fault = proxy.plan.lock().unwrap().pop_front().unwrap_or(proxy.then);
    let unavailable = |retry_after: Option<u64>| {
        let mut response = (http::StatusCode::SERVICE_UNAVAILABLE, "injected").into_response();
        if let Some(seconds) = retry_after {
            response.headers_mut().insert("retry-after", seconds.to_string().parse().unwrap());
        }
        response
    };
    if let Fault::Unavailable(retry_after) = fault {
        return unavailable(retry_after);
    }
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let coding = parts.headers.get("content-encoding").map(|v| v.to_str().unwrap().to_owned());
    proxy.bodies.lock().unwrap().push((coding, body.len()));
    let url = format!("{}{}", proxy.upstream, parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut forwarded = proxy.http.request(parts.method, url).body(body);
    for (name, value) in &parts.headers {
        if name != http::header::HOST {
            forwarded = forwarded.header(name, value);
        }
    }
    let answer = forwarded.send().await.unwrap();
    if matches!(fault, Fault::LoseAnswer) {
        return unavailable(None);
    }
    let status = answer.status();
    let headers = answer.headers().clone();
    let mut response = (status, answer.bytes().await.unwrap()).into_response();
    for (name, value) in &headers {
        if name != http::header::CONTENT_LENGTH && name != http::header::TRANSFER_ENCODING {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}

/// A proxy in front of `upstream` that applies `plan` to the requests in order, then `then` to the rest.
async fn proxy(upstream: &str, plan: Vec<Fault>, then: Fault) -> (String, Arc<AtomicUsize>) {
    slow_proxy(upstream, plan, then, Duration::ZERO).await
}

/// [`proxy`], answering each request `delay` late.
async fn slow_proxy(upstream: &str, plan: Vec<Fault>, then: Fault, delay: Duration) -> (String, Arc<AtomicUsize>) {
    let (address, seen, _) = recording_proxy(upstream, plan, then, delay).await;
    (address, seen)
}

type Bodies = Arc<Mutex<Vec<(Option<String>, usize)>>>;

/// [`slow_proxy`], also keeping what each forwarded request's body looked like on the wire.
async fn recording_proxy(
    upstream: &str,
    plan: Vec<Fault>,
    then: Fault,
    delay: Duration,
) -> (String, Arc<AtomicUsize>, Bodies) {
    let seen = Arc::new(AtomicUsize::new(0));
    let bodies = Bodies::default();
    let state = Proxy {
        bodies: bodies.clone(),
        delay,
        upstream: upstream.to_owned(),
        plan: Arc::new(Mutex::new(plan.into())),
        then,
        seen: seen.clone(),
        http: reqwest::Client::new(),
    };
    let router = axum::Router::new().fallback(relay).with_state(state);
    (common::serve_router(router).await, seen, bodies)
}

async fn gzip_round_trip(store: DynStore) {
    let app = app_on(store).await;
    // A signing key: the signature must cover the decoded body, which is what the server verifies.
    let body = json!({"name": "zipper", "role": "operator", "signing": "required"});
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
    let (address, _, bodies) = recording_proxy(&app.address, Vec::new(), Fault::Pass, Duration::ZERO).await;
    let client = Client::builder(&address)
        .api_key(created["key"].as_str().unwrap())
        .signing_secret(created["signing_secret"].as_str().unwrap())
        .build()
        .unwrap();
    let long = "all work and no play ".repeat(250);
    let task = client.create_task(echo(&long)).await.unwrap();
    assert_eq!(task.result.as_ref().map(|r| &r["message"]), Some(&json!(long)), "decoded as sent");
    let small = client.create_task(echo("short")).await.unwrap();
    assert_eq!(small.status, Status::Succeeded);
    let seen = bodies.lock().unwrap().clone();
    assert_eq!(seen[0].0.as_deref(), Some("gzip"), "a body over 1 KiB goes gzip-encoded: {seen:?}");
    assert!(seen[0].1 < long.len() / 10, "and small: {seen:?}");
    assert_eq!(seen[1].0, None, "a small body goes as it is: {seen:?}");
    // The answer to a large read comes back compressed and reads the same.
    assert_eq!(client.task(&task.id).await.unwrap(), task);

    // A zip bomb: 64 MiB of zeros in 64 KiB under the 1 MiB body limit is refused after 1 MiB, and the server
    // carries on.
    let bomb = {
        use std::io::Write as _;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&vec![0; 64 << 20]).unwrap();
        encoder.finish().unwrap()
    };
    assert!(bomb.len() < 128 << 10);
    let key = operator_key(&app).await;
    let response = app
        .client
        .post(app.url("/api/v1/tasks"))
        .header("x-api-key", &key)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    let problem = common::assert_problem(response, 413, Some("payload-too-large")).await;
    assert!(problem["detail"].as_str().unwrap().contains("decoded body"), "{problem}");
    let plain = Client::builder(&app.address).api_key(key).build().unwrap();
    assert_eq!(plain.create_task(echo("after")).await.unwrap().status, Status::Succeeded);
}

/// The admin calls, typed: keys, agents, the audit trail, a user's context. Each answer the server sends reads
/// back field for field into the wire type (nothing the server sends is unknown to the SDK).
async fn typed_admin_calls(store: DynStore) {
    use cloud_agent_sdk::api::admin::{AgentPage, AuditPage, CreateKey, KeyPage};
    use cloud_agent_sdk::client::AuditFilter;
    let app = app_on(store).await;
    let admin = Client::builder(&app.address).bearer(ADMIN_KEY).build().unwrap();
    let created = admin
        .create_key(&CreateKey { name: "typed".into(), role: "viewer".into(), ..CreateKey::default() })
        .await
        .unwrap();
    assert!(created.webhook_secret.starts_with("whsec_") && created.info.role == "viewer");
    let keys = admin.keys().await.unwrap();
    assert!(keys.iter().any(|k| k.id == created.info.id && k.name == "typed"), "{keys:?}");
    let rotated = admin.rotate_key(&created.info.id).await.unwrap();
    assert_ne!(rotated.key, created.key);
    admin.revoke_key(&rotated.info.id).await.unwrap();
    assert!(matches!(admin.revoke_key("../keys").await, Err(ClientError::Protocol(_))), "no path tricks");

    let agent = admin.create_agent("typed-agent", "user-typed").await.unwrap();
    assert_eq!(agent.agent_id, "typed-agent");
    assert!(admin.agents().await.unwrap().iter().any(|a| a.agent_id == "typed-agent" && a.status == "active"));
    let again = admin.rotate_agent("typed-agent").await.unwrap();
    assert_ne!(again.agent_secret, agent.agent_secret);
    admin.disable_agent("typed-agent").await.unwrap();
    assert!(admin.agents().await.unwrap().iter().any(|a| a.agent_id == "typed-agent" && a.status == "disabled"));
    assert!(matches!(admin.create_agent("typed-agent", "user-typed").await, Err(ClientError::Conflict(_))));

    let context = json!({"profile": {"name": "Ada"}, "preferences": {}, "permissions": ["deploy"]});
    let stored = admin.put_context("user-typed", &context).await.unwrap();
    assert_eq!(stored.user_id, "user-typed");

    let trail =
        admin.audit(&AuditFilter { route: Some("/api/v1/keys".into()), ..AuditFilter::default() }).await.unwrap();
    assert!(trail.iter().any(|r| r.method == "POST" && r.status == 201), "{trail:?}");
    let two = admin.audit(&AuditFilter { max: Some(2), ..AuditFilter::default() }).await.unwrap();
    assert_eq!(two.len(), 2);
    let viewer = Client::builder(&app.address).api_key(&created.key).build().unwrap();
    assert!(matches!(
        viewer.create_agent("x", "y").await,
        Err(ClientError::Unauthorized(_) | ClientError::Forbidden(_))
    ));

    // Field for field: what the server sent reads back as it was sent.
    let http = reqwest::Client::new();
    for path in ["/api/v1/keys", "/api/v1/agents", "/api/v1/audit?limit=5"] {
        let raw: Value = http.get(app.url(path)).bearer_auth(ADMIN_KEY).send().await.unwrap().json().await.unwrap();
        let back = match path {
            "/api/v1/keys" => serde_json::to_value(serde_json::from_value::<KeyPage>(raw.clone()).unwrap()),
            "/api/v1/agents" => serde_json::to_value(serde_json::from_value::<AgentPage>(raw.clone()).unwrap()),
            _ => serde_json::to_value(serde_json::from_value::<AuditPage>(raw.clone()).unwrap()),
        };
        assert_eq!(back.unwrap(), raw, "{path}");
    }
}

on_both_backends!(typed_task_calls_and_their_errors, gzip_round_trip, typed_admin_calls);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_ride_out_503s_honour_retry_after_and_replay_a_lost_create_idempotently() {
    let app = app_on(common::embedded().store.clone()).await;
    let key = operator_key(&app).await;

    // Two 503s, then the server: the call succeeds on its third attempt.
    let (address, seen) = proxy(&app.address, vec![Fault::Unavailable(None); 2], Fault::Pass).await;
    let client = Client::builder(&address).api_key(&key).retry_policy(quick()).build().unwrap();
    let created = client.create_task(echo("through")).await.unwrap();
    assert_eq!(created.status, Status::Succeeded);
    assert_eq!(seen.load(Ordering::SeqCst), 3);
    assert_eq!(client.retry_budget().available(), RetryBudget::CAPACITY, "a success gives its retries back");

    // Retry-After is honoured: the second attempt waits the second the server asked for.
    let (address, seen) = proxy(&app.address, vec![Fault::Unavailable(Some(1))], Fault::Pass).await;
    let client = Client::builder(&address).api_key(&key).retry_policy(quick()).build().unwrap();
    let started = Instant::now();
    client.task(&created.id).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "waited {:?}", started.elapsed());
    assert_eq!(seen.load(Ordering::SeqCst), 2);

    // The server creates the task but the answer is lost: the retry carries the same idempotency key and gets
    // the same task back; one task exists.
    let (address, seen) = proxy(&app.address, vec![Fault::LoseAnswer], Fault::Pass).await;
    let client = Client::builder(&address).api_key(&key).retry_policy(quick()).build().unwrap();
    let replayed = client.create_task(echo("once")).await.unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    let direct = Client::builder(&app.address).api_key(&key).build().unwrap();
    let once: Vec<_> = direct
        .tasks(TaskFilter::default())
        .collect()
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.result.as_ref().map(|r| &r["message"]) == Some(&json!("once")))
        .collect();
    assert_eq!(once.len(), 1, "one task, whatever the retries: {once:?}");
    assert_eq!(once[0].id, replayed.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_caps_retries_and_unsafe_calls_are_not_retried() {
    let app = app_on(common::embedded().store.clone()).await;
    let key = operator_key(&app).await;
    let (address, seen) = proxy(&app.address, Vec::new(), Fault::Unavailable(None)).await;

    // A budget of 20 tokens pays for four retries (5 each): five failing reads make 5 + 4 requests, not 15.
    let budget = Arc::new(RetryBudget::new(20));
    // A breaker that does not open here, so the budget alone limits the retries.
    let never = cloud_agent::breaker::BreakerConfig { minimum_calls: 1000, ..Default::default() };
    let client = Client::builder(&address).api_key(&key).retry_policy(quick()).retry_budget(budget.clone());
    let client = client.breaker(never).build().unwrap();
    for _ in 0..5 {
        let failed = client.task("t_00000000000000000000000000000000").await.unwrap_err();
        assert!(matches!(failed, ClientError::Server { .. }), "{failed}");
    }
    assert_eq!(seen.load(Ordering::SeqCst), 9);
    assert_eq!(budget.available(), 0);

    // A cancel may have arrived before its answer was lost: never sent twice.
    let client = Client::builder(&address).api_key(&key).retry_policy(quick()).build().unwrap();
    seen.store(0, Ordering::SeqCst);
    assert!(client.cancel_task("t_00000000000000000000000000000000").await.is_err());
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

/// The client's breaker opens after the endpoint keeps failing (calls fail fast, the server sees none), then
/// lets a trial call through once its open time has passed; the trial's success closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_on_a_failing_endpoint_and_recovers() {
    use cloud_agent::breaker::{BreakerConfig, State};
    let app = app_on(common::embedded().store.clone()).await;
    let key = operator_key(&app).await;
    let (address, seen) = proxy(&app.address, vec![Fault::Unavailable(None); 3], Fault::Pass).await;
    let breaker = BreakerConfig {
        consecutive_failures: Some(3),
        open_duration: Duration::from_millis(300),
        half_open_calls: 1,
        ..BreakerConfig::default()
    };
    let once = RetryPolicy { max_attempts: 1, ..quick() };
    let client = Client::builder(&address).api_key(&key).retry_policy(once).breaker(breaker).build().unwrap();
    let id = "t_00000000000000000000000000000000";
    for _ in 0..3 {
        assert!(matches!(client.task(id).await, Err(ClientError::Server { .. })));
    }
    assert_eq!(client.breaker_state().state, State::Open);
    let Err(ClientError::CircuitOpen { retry_after }) = client.task(id).await else { panic!("the breaker is open") };
    assert_eq!(seen.load(Ordering::SeqCst), 3, "an open breaker sends nothing");

    // Once the open time has passed, a trial call goes through; it succeeds (the server answers 404 for a task
    // that is not there: the endpoint works), and the breaker closes.
    tokio::time::sleep(retry_after + Duration::from_millis(20)).await;
    assert!(matches!(client.task(id).await, Err(ClientError::NotFound(_))));
    assert_eq!(client.breaker_state().state, State::Closed);
    assert_eq!(seen.load(Ordering::SeqCst), 4);
}

/// A TCP forwarder that can be killed: its listener closes and every connection through it is cut, as when a
/// server dies (a proxy that answered 503 would not be a dead server).
struct Killable {
    address: String,
    tasks: Arc<Mutex<Option<tokio::task::JoinSet<()>>>>,
}

impl Killable {
    async fn start(upstream: &str) -> Self {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let tasks = Arc::new(Mutex::new(Some(tokio::task::JoinSet::new())));
        let spawner = tasks.clone();
        let accept = async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let mut guard = spawner.lock().unwrap();
                let Some(set) = guard.as_mut() else { return };
                set.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        };
        tasks.lock().unwrap().as_mut().unwrap().spawn(accept);
        Self { address, tasks }
    }

    /// Closes the listener and cuts every connection.
    fn kill(&self) {
        if let Some(mut set) = self.tasks.lock().unwrap().take() {
            set.abort_all();
        }
    }
}

/// Each balancing algorithm spreads calls as it says: round-robin and weighted exactly, least-outstanding and
/// peak-EWMA away from a slow endpoint (under 20 % of the calls to the one that is 20 times slower), region
/// preference to its region only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_balancing_algorithm_spreads_calls_as_it_says() {
    use cloud_agent_sdk::client::{Balance, EndpointConfig};
    let app = app_on(common::embedded().store.clone()).await;
    let key = operator_key(&app).await;
    let id = "t_00000000000000000000000000000000";
    let counts = |seen: &[Arc<AtomicUsize>]| seen.iter().map(|s| s.swap(0, Ordering::SeqCst)).collect::<Vec<_>>();

    let mut seen = Vec::new();
    let mut addresses = Vec::new();
    for _ in 0..3 {
        let (address, count) = proxy(&app.address, Vec::new(), Fault::Pass).await;
        addresses.push(address);
        seen.push(count);
    }
    let client = |balance: Balance, weights: [u32; 3], regions: [&str; 3]| {
        let endpoints = (0..3).map(|i| EndpointConfig::new(&addresses[i]).weight(weights[i]).region(regions[i]));
        Client::builder_for(endpoints).api_key(&key).balance(balance).build().unwrap()
    };

    let round_robin = client(Balance::RoundRobin, [1, 1, 1], ["a", "b", "c"]);
    for _ in 0..30 {
        assert!(matches!(round_robin.task(id).await, Err(ClientError::NotFound(_))));
    }
    assert_eq!(counts(&seen), [10, 10, 10]);

    let weighted = client(Balance::Weighted, [1, 2, 3], ["a", "b", "c"]);
    for _ in 0..60 {
        weighted.task(id).await.unwrap_err();
    }
    assert_eq!(counts(&seen), [10, 20, 30], "in proportion to the weights 1:2:3");

    let regional = client(Balance::Region("eu".into()), [1, 1, 1], ["us", "eu", "eu"]);
    for _ in 0..20 {
        regional.task(id).await.unwrap_err();
    }
    assert_eq!(counts(&seen), [0, 10, 10], "only the preferred region while it works");

    // One endpoint twenty times slower than the others, eight calls at a time.
    let (slow, slow_seen) = slow_proxy(&app.address, Vec::new(), Fault::Pass, Duration::from_millis(200)).await;
    let (fast_a, fast_a_seen) = slow_proxy(&app.address, Vec::new(), Fault::Pass, Duration::from_millis(10)).await;
    let (fast_b, fast_b_seen) = slow_proxy(&app.address, Vec::new(), Fault::Pass, Duration::from_millis(10)).await;
    let seen = [slow_seen, fast_a_seen, fast_b_seen];
    for balance in [Balance::LeastOutstanding, Balance::PeakEwma] {
        let client = Client::builder(&slow)
            .api_key(&key)
            .balance(balance.clone())
            .endpoint(EndpointConfig::new(&fast_a))
            .endpoint(EndpointConfig::new(&fast_b))
            .build()
            .unwrap();
        let calls = (0..8).map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    client.task(id).await.unwrap_err();
                }
            })
        });
        for call in calls.collect::<Vec<_>>() {
            call.await.unwrap();
        }
        let spread = counts(&seen);
        println!("{balance:?}: calls per endpoint (slow, fast, fast): {spread:?}");
        assert_eq!(spread.iter().sum::<usize>(), 160);
        assert!(spread[0] < 32, "{balance:?} sends the slow endpoint under 20 % of the calls: {spread:?}");
    }
}

/// Two endpoints of one deployment; one dies mid-run. Every idempotent call still succeeds (a call cut off
/// is retried on the other endpoint with the same idempotency key), no task is created twice, and the dead one
/// is marked unhealthy and gets no more calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_when_one_of_two_endpoints_dies_mid_run() {
    use cloud_agent_sdk::client::{EndpointConfig, Health};
    let app = app_on(common::embedded().store.clone()).await;
    let key = operator_key(&app).await;
    let (a, b) = (Killable::start(&app.address).await, Killable::start(&app.address).await);
    let client = Client::builder(&a.address)
        .api_key(&key)
        .retry_policy(quick())
        .endpoint(EndpointConfig::new(&b.address))
        .build()
        .unwrap();
    let mut created = Vec::new();
    for i in 0..40 {
        if i == 10 {
            a.kill();
        }
        let task = client.create_task(echo(&format!("call {i}"))).await.unwrap_or_else(|e| panic!("call {i}: {e}"));
        created.push(task.id);
    }
    let endpoints = client.endpoints();
    assert_eq!(endpoints[0].health, Health::Unhealthy, "{endpoints:?}");
    assert_eq!(endpoints[1].health, Health::Healthy, "{endpoints:?}");
    let direct = Client::builder(&app.address).api_key(&key).build().unwrap();
    let stored = direct.tasks(TaskFilter::default()).collect().await.unwrap();
    assert_eq!(stored.len(), 40, "one task per call, none twice");
    created.sort();
    created.dedup();
    assert_eq!(created.len(), 40);
}

/// Health from probes alone: with `/health/ready` checked every 50 ms, an endpoint that dies is marked unhealthy
/// before any call meets it, and the live one healthy. The health report is typed (the wire's) and cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_mark_a_dead_endpoint_and_the_health_report_is_cached() {
    use cloud_agent_sdk::api::health::HealthStatus;
    use cloud_agent_sdk::client::{EndpointConfig, Health};
    let app = app_on(common::embedded().store.clone()).await;
    let (a, b) = (Killable::start(&app.address).await, Killable::start(&app.address).await);
    let client = Client::builder(&a.address)
        .endpoint(EndpointConfig::new(&b.address))
        .health_checks(Duration::from_millis(50))
        .build()
        .unwrap();
    let until = |want: [Health; 2]| {
        let client = client.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let now: Vec<Health> = client.endpoints().iter().map(|e| e.health).collect();
                if now == want {
                    return;
                }
                assert!(Instant::now() < deadline, "endpoints stayed {now:?}, wanted {want:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    until([Health::Healthy, Health::Healthy]).await;
    a.kill();
    until([Health::Unhealthy, Health::Healthy]).await;
    assert!(client.endpoints().iter().all(|e| e.calls == 0), "no call was made: the probes found it");

    let (address, seen) = proxy(&app.address, Vec::new(), Fault::Pass).await;
    let client = Client::builder(&address).build().unwrap();
    let report = client.health().await.unwrap();
    // `warn` is possible on a loaded machine (a slow store round trip); `fail` is not.
    assert_ne!(report.status, HealthStatus::Fail, "{report:?}");
    assert!(report.checks.contains_key("datastore:responseTime"), "{report:?}");
    // Every field the server sends is one the wire type knows: the report reads back as the server wrote it.
    let raw: Value = reqwest::get(format!("{}/health", app.address)).await.unwrap().json().await.unwrap();
    let typed: cloud_agent_sdk::api::health::HealthReport = serde_json::from_value(raw.clone()).unwrap();
    assert_eq!(serde_json::to_value(&typed).unwrap(), raw);
    assert_eq!(client.health().await.unwrap(), report, "within a minute the answer is reused");
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

/// The orchestrator's queue: with one slot, waiting work runs high before normal before low, first come first
/// served within a priority; the report counts it; no more than `concurrency` run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orchestrator_serves_by_priority_within_its_concurrency() {
    use cloud_agent_sdk::api::tasks::Priority;
    use cloud_agent_sdk::orchestrator::{Orchestrator, Place, Work};
    let order = Arc::new(Mutex::new(Vec::new()));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (record, wait) = (order.clone(), gate.clone());
    let orchestrator = Orchestrator::builder()
        .concurrency(1)
        .local("step", move |payload: Value| {
            let (record, wait) = (record.clone(), wait.clone());
            async move {
                wait.acquire().await.unwrap().forget();
                record.lock().unwrap().push(payload["name"].as_str().unwrap().to_owned());
                Ok(payload)
            }
        })
        .start();
    let submit = |name: &str, priority: Priority| {
        tokio::spawn(orchestrator.submit(Work::new("step", json!({"name": name})).priority(priority)))
    };
    let mut handles = vec![submit("first", Priority::Low)];
    // The first holds the only slot (waiting at the gate) before the others arrive.
    let deadline = Instant::now() + Duration::from_secs(30);
    while orchestrator.status().running == 0 {
        assert!(Instant::now() < deadline, "the first job never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for (name, priority) in [
        ("low", Priority::Low),
        ("normal-1", Priority::Normal),
        ("high", Priority::High),
        ("normal-2", Priority::Normal),
    ] {
        handles.push(submit(name, priority));
    }
    while orchestrator.status().queued.values().sum::<usize>() < 4 {
        assert!(Instant::now() < deadline, "the work was not queued");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = orchestrator.status();
    assert_eq!(status.running, 1);
    assert_eq!((status.queued["high"], status.queued["normal"], status.queued["low"]), (1, 2, 1), "{status:?}");
    gate.add_permits(5);
    for handle in handles {
        let outcome = handle.await.unwrap();
        assert_eq!(outcome.place, Place::Local);
        assert!(outcome.result.is_ok());
    }
    assert_eq!(*order.lock().unwrap(), ["first", "high", "normal-1", "normal-2", "low"]);
    assert_eq!(orchestrator.status().done[&Place::Local], 5);

    // Bounded: twelve jobs, three slots, never a fourth at once.
    let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (n, m) = (now.clone(), most.clone());
    let orchestrator = Orchestrator::builder()
        .concurrency(3)
        .local("busy", move |payload: Value| {
            let (n, m) = (n.clone(), m.clone());
            async move {
                let running = n.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(running, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                n.fetch_sub(1, Ordering::SeqCst);
                Ok(payload)
            }
        })
        .start();
    let all: Vec<_> = (0..12).map(|i| orchestrator.submit(Work::new("busy", json!(i)))).collect();
    for outcome in all {
        assert!(outcome.await.result.is_ok());
    }
    assert_eq!(most.load(Ordering::SeqCst), 3);
}

/// Where work goes: a type only the cloud has goes there; a built-in run in-process through the handlers crate
/// takes a payload too large to ship and everything while the cloud is down; otherwise the cloud.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orchestrator_routes_between_the_cloud_and_local_handlers() {
    use cloud_agent_sdk::client::{EndpointConfig, Health};
    use cloud_agent_sdk::orchestrator::{Orchestrator, Place, Work};
    let app = app_on(common::embedded().store.clone()).await;
    let key = operator_key(&app).await;
    let registry =
        Arc::new(cloud_agent_handlers::builtin::register(cloud_agent_handlers::Registry::builder()).build().unwrap());
    let policy = cloud_agent_handlers::outbound::Policy::default();
    let cloud = Client::builder(&app.address).api_key(&key).build().unwrap();
    let orchestrator =
        Orchestrator::builder().cloud(cloud).local_handlers(&registry, policy.clone()).max_cloud_payload(200).start();
    let small = orchestrator.submit(Work::new("echo", json!({"message": "small"}))).await;
    assert_eq!(small.place, Place::Cloud);
    assert!(small.task_id.is_some());
    assert_eq!(small.result.unwrap()["message"], "small");
    let big = "x".repeat(500);
    let large = orchestrator.submit(Work::new("echo", json!({"message": big}))).await;
    assert_eq!((large.place, large.task_id.as_deref()), (Place::Local, None), "too large to ship");
    assert_eq!(large.result.unwrap()["message"], big.as_str(), "the built-in ran in-process");
    let bad = orchestrator.submit(Work::new("echo", json!({"message": big, "delay_ms": -1}))).await;
    assert!(bad.result.unwrap_err().contains("delay_ms"), "local input is checked against the schema");
    let csv = orchestrator.submit(Work::new("csv-parser", json!({"csv": "a,b\n1,2\n"}))).await;
    assert_eq!(csv.place, Place::Cloud, "a plug-in only the cloud has");

    // The cloud goes down: probes mark it, and work that can run here does.
    let dead = Killable::start(&app.address).await;
    dead.kill();
    let down = Client::builder_for([EndpointConfig::new(&dead.address)])
        .api_key(&key)
        .health_checks(Duration::from_millis(50))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while down.endpoints()[0].health != Health::Unhealthy {
        assert!(Instant::now() < deadline, "the dead endpoint was never marked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let orchestrator = Orchestrator::builder().cloud(down).local_handlers(&registry, policy).start();
    let outcome = orchestrator.submit(Work::new("echo", json!({"message": "while down"}))).await;
    assert_eq!(outcome.place, Place::Local);
    assert_eq!(outcome.result.unwrap()["message"], "while down");
    assert_eq!(orchestrator.status().done[&Place::Local], 1);
}
