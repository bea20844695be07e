//! The real stack through DynamoDB faults: `cloudagent`'s router on DynamoDB Local, with a TCP proxy in between
//! that can cut every connection (an outage) or stop answering while keeping connections open (a hang, the
//! common fault). The store breaker opens, health fails with 503 without waiting on the store, context is served
//! STALE, writes answer 503 + Retry-After (nothing acknowledged); when DynamoDB is back, HALF_OPEN trial calls
//! close the breaker and the service recovers on its own. Every wait is on a condition with a generous deadline.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use cloud_agent::features::context::{self, UserContext};
use cloud_agent::store::dynamo::{DynamoConfig, DynamoStore};
use common::TestApp;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the network between the service and DynamoDB does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Net {
    Up,
    /// Every connection is closed at once, new ones too.
    Cut,
    /// Connections stay open and nothing comes back.
    Hang,
}

/// Forwards TCP to `upstream` as `net` says.
async fn proxy(upstream: String, net: watch::Receiver<Net>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else { return };
            let mut net = net.clone();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let mode = *net.borrow_and_update();
                match mode {
                    Net::Cut => return,
                    // Hold the socket, answer nothing, until the hang ends.
                    Net::Hang => {
                        let _ = net.wait_for(|m| *m != Net::Hang).await;
                        return;
                    }
                    Net::Up => {}
                }
                let Ok(mut server) = TcpStream::connect(&upstream).await else { return };
                // A pooled connection opened before the fault suffers it too.
                let faulted = tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => false,
                    _ = net.wait_for(|m| *m != Net::Up) => true,
                };
                let hang = faulted && *net.borrow() == Net::Hang;
                if hang {
                    let _ = net.wait_for(|m| *m != Net::Hang).await;
                }
            });
        }
    });
    address
}

/// The bootstrap admin key: reading the breakers needs metrics:read.
const ADMIN_KEY: &str = "admin-key-0123456789abcdef0123456789";

struct Rig {
    base: String,
    client: reqwest::Client,
    token: String,
    net: watch::Sender<Net>,
    _app: TestApp,
}

async fn rig(extra: &[(&str, &str)]) -> Option<Rig> {
    let endpoint = common::dynamodb_endpoint()?;
    let (net, watcher) = watch::channel(Net::Up);
    let via_proxy = proxy(endpoint.trim_start_matches("http://").to_owned(), watcher).await;
    let table = format!("outage-{}", uuid::Uuid::new_v4().simple());
    let direct =
        DynamoStore::connect(&DynamoConfig { table: table.clone(), endpoint: Some(endpoint), region: None }).await;
    direct.create_table().await.unwrap();
    let store = Arc::new(DynamoStore::connect(&DynamoConfig { table, endpoint: Some(via_proxy), region: None }).await);
    let mut vars = vec![
        ("CLOUD_AGENT_CONTEXT_TTL_SECS", "1"),
        ("CLOUD_AGENT_BREAKER_OPEN_SECS", "3"),
        ("CLOUD_AGENT_BREAKER_MIN_CALLS", "4"),
        ("CLOUD_AGENT_HEALTH_CACHE_MS", "0"),
        ("DEV_ADMIN_KEY", ADMIN_KEY),
        // Production's bound: a hung store must not eat the 1 s request budget before the handler runs.
        ("CLOUD_AGENT_PERIMETER_BUDGET_MS", "300"),
    ];
    vars.extend_from_slice(extra);
    let app = TestApp::builder().store(store).envs(&vars).spawn().await;
    let state = &app.state;
    let sample = UserContext { profile: json!({"name": "Ada"}), preferences: json!({}), permissions: vec![] };
    context::save(state.store(), &cloud_agent::ids::UserId::parse("user-1").unwrap(), &sample).await.unwrap();
    let token = app.access_token("agent-1", "user-1");
    Some(Rig { base: app.address.clone(), client: reqwest::Client::new(), token, net, _app: app })
}

impl Rig {
    async fn health(&self) -> reqwest::Response {
        self.client.get(format!("{}/health", self.base)).send().await.unwrap()
    }

    async fn breaker(&self) -> Value {
        let v =
            common::get_json(&self.client, &format!("{}/api/v1/circuit-breakers", self.base), Some(ADMIN_KEY)).await;
        v["breakers"][0].clone()
    }

    async fn breaker_state(&self) -> String {
        self.breaker().await["state"].as_str().unwrap().to_owned()
    }

    async fn context(&self) -> reqwest::Response {
        self.client.get(format!("{}/api/v1/agent/context", self.base)).bearer_auth(&self.token).send().await.unwrap()
    }

    async fn write(&self) -> reqwest::Response {
        self.client
            .post(format!("{}/api/v1/agent/progress", self.base))
            .bearer_auth(&self.token)
            .json(&json!({"task_id": "t1", "progress": 5, "status": "running", "timestamp": "2026-11-23T10:00:00Z"}))
            .send()
            .await
            .unwrap()
    }

    async fn read(&self) -> reqwest::Response {
        self.client
            .get(format!("{}/api/v1/agent/progress/t1", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }

    /// Repeats `step` until the breaker is in `state`, for at most `deadline` (generous: the machine is noisy).
    async fn until_breaker<F, Fut>(&self, state: &str, deadline: Duration, mut step: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let end = tokio::time::Instant::now() + deadline;
        while tokio::time::Instant::now() < end {
            if self.breaker_state().await == state {
                return true;
            }
            step().await;
        }
        self.breaker_state().await == state
    }

    /// Waits for the service to recover on its own: health passes and the breaker is CLOSED.
    async fn recovers(&self) -> bool {
        let end = tokio::time::Instant::now() + Duration::from_secs(90);
        while tokio::time::Instant::now() < end {
            if self.health().await.status() == 200 && self.breaker_state().await == "CLOSED" {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_breaker_rides_out_a_dynamodb_outage() {
    let Some(rig) = rig(&[]).await else { return };
    assert_eq!(rig.health().await.status(), 200);
    assert_eq!(rig.context().await.headers()["x-cache"], "MISS");
    tokio::time::sleep(Duration::from_millis(1100)).await; // the cached context is now stale

    rig.net.send_replace(Net::Cut);
    let opened = rig
        .until_breaker("OPEN", Duration::from_secs(90), || async {
            let _ = rig.health().await;
        })
        .await;
    assert!(opened, "the store breaker opens");
    let failing = rig.health().await;
    assert_eq!(failing.status(), 503);
    let body: Value = failing.json().await.unwrap();
    assert_eq!(body["status"], "fail");
    let stale = rig.context().await;
    assert_eq!(stale.status(), 200);
    assert_eq!(stale.headers()["x-cache"], "STALE");
    let refused = rig.write().await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(refused.headers()["content-type"], "application/problem+json");

    rig.net.send_replace(Net::Up);
    assert!(rig.recovers().await, "HALF_OPEN trials close the breaker and health passes again");
    assert_eq!(rig.write().await.status(), 202, "writes work again");
    let written: Value = rig.read().await.json().await.unwrap();
    assert_eq!(written["history"].as_array().unwrap().len(), 1, "the refused write was never half-stored");
}

/// A hang: DynamoDB accepts connections and never answers. The calls end only because the request budget
/// (1 s here, below the SDK's 2 s attempt timeout) cancels them; each cancelled call must still count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamodb_hang_opens_the_breaker_and_cancelled_trials_do_not_wedge_it() {
    let Some(rig) = rig(&[("CLOUD_AGENT_REQUEST_TIMEOUT_MS", "1000")]).await else { return };
    assert_eq!(rig.write().await.status(), 202);

    rig.net.send_replace(Net::Hang);
    let answers = std::sync::Mutex::new(Vec::new());
    let opened = rig
        .until_breaker("OPEN", Duration::from_secs(90), || async {
            let status = rig.read().await.status().as_u16();
            answers.lock().unwrap().push(status);
        })
        .await;
    let answers = answers.into_inner().unwrap();
    assert!(opened, "calls cut off by the request budget open the breaker (answers: {answers:?})");
    assert!(answers.iter().all(|s| *s == 503), "every cut-off request answered 503: {answers:?}");
    let breaker = rig.breaker().await;
    assert!(breaker["cancelled_calls"].as_u64().unwrap() >= 1, "{breaker}");
    // Health no longer waits on the hung store: its datastore check reports the open circuit.
    let health: Value = rig.health().await.json().await.unwrap();
    assert_eq!(health["checks"]["datastore:responseTime"][0]["output"], "circuit open");

    // Still hanging when the open time ends: the HALF_OPEN trials are cancelled by the budget too. They give
    // their permits back as failures, so the breaker re-opens instead of staying HALF_OPEN forever.
    let before = rig.breaker().await["transitions"].as_u64().unwrap();
    let reopen_deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut transitions = rig.breaker().await["transitions"].as_u64().unwrap();
    while transitions < before + 2 && tokio::time::Instant::now() < reopen_deadline {
        let _ = rig.read().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        transitions = rig.breaker().await["transitions"].as_u64().unwrap();
    }
    assert!(transitions >= before + 2, "OPEN → HALF_OPEN → OPEN after cancelled trials");
    assert_eq!(rig.breaker_state().await, "OPEN");

    // DynamoDB answers again: the service recovers by itself, no restart.
    rig.net.send_replace(Net::Up);
    assert!(rig.recovers().await, "trials succeed, the breaker closes, health passes");
    assert_eq!(rig.write().await.status(), 202);
}
