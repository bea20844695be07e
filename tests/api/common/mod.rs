//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub, unused_macros)]

use std::sync::Arc;

#[cfg(feature = "cli")]
pub mod browser;
pub mod process;

use cloud_agent::store::DynStore;
use cloud_agent::store::dynamo::{DynamoConfig, DynamoStore};
use cloud_agent::store::embedded::EmbeddedStore;

/// Where the test command started DynamoDB Local (see infra/test.sh).
pub const DYNAMODB_ENV: &str = "CLOUD_AGENT_TEST_DYNAMODB_ENDPOINT";

/// The DynamoDB Local endpoint, or `None` when this run has none. `infra/test.sh` sets
/// `CLOUD_AGENT_REQUIRE_DYNAMODB=1`, which turns a missing endpoint into a failure instead of a skip.
pub fn dynamodb_endpoint() -> Option<String> {
    match std::env::var(DYNAMODB_ENV) {
        Ok(endpoint) if !endpoint.is_empty() => Some(endpoint),
        _ => {
            assert!(
                std::env::var("CLOUD_AGENT_REQUIRE_DYNAMODB").is_err(),
                "{DYNAMODB_ENV} is not set but CLOUD_AGENT_REQUIRE_DYNAMODB is: run the tests with infra/test.sh"
            );
            eprintln!("SKIPPED: {DYNAMODB_ENV} not set (infra/test.sh starts DynamoDB Local and sets it)");
            None
        }
    }
}

/// A store under test plus whatever keeps it alive (a temp dir).
pub struct TestStore {
    pub store: DynStore,
    pub table: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

pub fn embedded() -> TestStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path()).expect("open embedded store");
    TestStore { store: Arc::new(store), table: None, _dir: Some(dir) }
}

/// A fresh table on DynamoDB Local, so tests never see each other's items.
pub async fn dynamodb() -> Option<TestStore> {
    let endpoint = dynamodb_endpoint()?;
    let table = format!("test-{}", uuid::Uuid::new_v4().simple());
    let store =
        DynamoStore::connect(&DynamoConfig { table: table.clone(), endpoint: Some(endpoint), region: None }).await;
    assert!(store.create_table().await.expect("create table on DynamoDB Local"));
    Some(TestStore { store: Arc::new(store), table: Some(table), _dir: None })
}

/// The app under test, built by [`TestApp::builder`] (the zero-to-production `spawn_app` pattern): the whole
/// router as `cloudagent serve` runs it, on a store of the test's choice wrapped in the [`Counting`] decorator,
/// with development configuration plus the test's variables. `spawn` serves it on a random port; `in_process`
/// skips the socket and answers through `oneshot`.
pub struct TestApp {
    /// `http://127.0.0.1:port`, or empty for an in-process app.
    pub address: String,
    pub client: reqwest::Client,
    pub state: cloud_agent::AppState,
    /// The store as the app sees it: count its calls, or switch an outage on.
    pub store: Arc<Counting>,
    pub _dir: Option<tempfile::TempDir>,
}

/// What a test may choose: the store backend and environment variables.
#[derive(Default)]
pub struct TestAppBuilder {
    store: Option<DynStore>,
    env: Vec<(String, String)>,
    types: Option<cloud_agent_handlers::Registry>,
}

impl TestAppBuilder {
    /// Runs on this store (default: a fresh embedded store in a temp dir).
    pub fn store(mut self, store: DynStore) -> Self {
        self.store = Some(store);
        self
    }

    /// The task types the app is built with (default: every type, runnable, as `cloudagent serve` has them).
    pub fn types(mut self, types: cloud_agent_handlers::Registry) -> Self {
        self.types = Some(types);
        self
    }

    /// Sets one configuration variable, as the environment would.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets several configuration variables.
    pub fn envs(mut self, vars: &[(&str, &str)]) -> Self {
        self.env.extend(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        self
    }

    /// The app without a socket (requests go through [`TestApp::oneshot`]).
    pub async fn in_process(self) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let vars: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let config = test_config_with(dir.path(), &vars);
        let store = match self.store {
            Some(store) => store,
            None => cloud_agent::state::open_store(&config.store).await.expect("open the embedded store"),
        };
        let store = Arc::new(Counting::new(store));
        let types = cloud_agent::features::tasks::types::TaskTypes::new(
            self.types.unwrap_or_else(cloud_agent_functions::everything),
        );
        let state = cloud_agent::AppState::new(config, store.clone()).provide(types);
        TestApp { address: String::new(), client: reqwest::Client::new(), state, store, _dir: Some(dir) }
    }

    /// The app served on 127.0.0.1 at a random port.
    pub async fn spawn(self) -> TestApp {
        let mut app = self.in_process().await;
        app.address = serve_router(cloud_agent::app(app.state.clone())).await;
        app
    }
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder::default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// One request through the whole router without a socket.
    pub async fn oneshot(&self, request: http::Request<axum::body::Body>) -> http::Response<axum::body::Body> {
        use tower::ServiceExt as _;
        cloud_agent::app(self.state.clone()).oneshot(request).await.unwrap()
    }

    /// Registers an agent working for `user`; its secret.
    pub async fn register_agent(&self, agent: &str, user: &str) -> String {
        use cloud_agent::features::tokens::credentials;
        let secret = credentials::generate_secret();
        credentials::register(
            self.state.store(),
            &self.state.config().secrets.agent,
            &credentials::AgentId::parse(agent).unwrap(),
            &cloud_agent::ids::UserId::parse(user).unwrap(),
            &secret,
        )
        .await
        .unwrap();
        secret
    }

    /// An access token for `agent` working for `user`, signed with the app's key and issued now.
    pub fn access_token(&self, agent: &str, user: &str) -> String {
        self.access_token_at(agent, user, cloud_agent::store::now_epoch())
    }

    /// An access token issued at `iat` (epoch seconds): in the past to test expiry.
    pub fn access_token_at(&self, agent: &str, user: &str, iat: i64) -> String {
        let tokens = self.state.tokens();
        tokens.sign_access(&tokens.access_claims(agent, user, "fam", "jti", iat))
    }

    /// `POST /api/v1/agent/progress` as `agent` (working for `user`) with a JSON body.
    pub async fn post_progress(&self, agent: &str, user: &str, body: &serde_json::Value) -> reqwest::Response {
        self.post_progress_raw(agent, user, serde_json::to_vec(body).unwrap()).await
    }

    /// The same with raw bytes, to send what a JSON serialiser never would.
    pub async fn post_progress_raw(&self, agent: &str, user: &str, body: Vec<u8>) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/agent/progress"))
            .bearer_auth(self.access_token(agent, user))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client.post(self.url(path)).json(body).send().await.unwrap()
    }

    /// `GET path` with a bearer credential.
    pub async fn get_as(&self, path: &str, bearer: &str) -> reqwest::Response {
        self.client.get(self.url(path)).bearer_auth(bearer).send().await.unwrap()
    }
}

/// Asserts `response` is an RFC 9457 problem with `status` (and, when given, the problem type
/// `urn:cloud-agent:problem:<slug>`), quoting the request id; its body.
pub async fn assert_problem(response: reqwest::Response, status: u16, slug: Option<&str>) -> serde_json::Value {
    let got = response.status().as_u16();
    if got != status {
        let text = response.text().await.unwrap_or_default();
        panic!("expected {status}, got {got}; body: {text}");
    }
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/problem+json");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_problem_body(&body, status, slug, &headers);
    body
}

fn assert_problem_body(body: &serde_json::Value, status: u16, slug: Option<&str>, headers: &http::HeaderMap) {
    assert_eq!(body["status"], status, "{body}");
    let kind = body["type"].as_str().unwrap_or_default();
    assert!(kind.starts_with("urn:cloud-agent:problem:"), "{body}");
    if let Some(slug) = slug {
        assert_eq!(kind, format!("urn:cloud-agent:problem:{slug}"), "{body}");
    }
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()), "{body}");
    assert!(body["instance"].as_str().is_some_and(|i| i.starts_with('/')), "{body}");
    let request_id = headers["x-request-id"].to_str().unwrap();
    assert_eq!(body["request_id"], request_id, "the problem quotes the request id");
}

/// `GET url` (with a bearer credential if given), its body as JSON.
pub async fn get_json(client: &reqwest::Client, url: &str, bearer: Option<&str>) -> serde_json::Value {
    let request = client.get(url);
    let request = match bearer {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    request.send().await.unwrap().json().await.unwrap()
}

/// GETs `url` with a bearer credential and returns the body as text.
pub async fn get_text(client: &reqwest::Client, url: &str, bearer: &str) -> String {
    client.get(url).bearer_auth(bearer).send().await.unwrap().text().await.unwrap()
}

/// Configuration for tests: development, embedded store in `data_dir`, small limits, plus `extra` variables.
pub fn test_config_with(data_dir: &std::path::Path, extra: &[(&str, &str)]) -> cloud_agent::config::Config {
    let dir = data_dir.to_string_lossy().into_owned();
    let extra: Vec<(String, String)> = extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    cloud_agent::config::Config::from_lookup(&move |name| {
        if let Some((_, v)) = extra.iter().find(|(k, _)| k == name) {
            return Some(v.clone());
        }
        match name {
            "CLOUD_AGENT_STORE" => Some("embedded".into()),
            "CLOUD_AGENT_DATA_DIR" => Some(dir.clone()),
            "CLOUD_AGENT_BODY_LIMIT" => Some("65536".into()),
            "CLOUD_AGENT_RELEASE" => Some("test-release".into()),
            // A loaded test machine can take longer than production's 300 ms over a store call; the perimeter must
            // not cut off (and fail open on) a slow but working store in a test about something else.
            "CLOUD_AGENT_PERIMETER_BUDGET_MS" => Some("5000".into()),
            // Every test client is 127.0.0.1: only the failed-authentication tests set a small quota.
            "CLOUD_AGENT_AUTH_FAILURES" => Some("100000/60".into()),
            // Request counts are written by the request ending 30 s after the last write: in a test that counts
            // store calls per request that write would land at random. Tests of the counts set their own.
            "CLOUD_AGENT_REQUEST_COUNTS_FLUSH_SECS" => Some("3600".into()),
            _ => None,
        }
    })
    .expect("test config")
}

/// Serves `router` on 127.0.0.1:0 in the background.
pub async fn serve_router(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    address
}

/// The whole app, as `cloudagent serve` runs it, on the embedded store.
pub async fn spawn_app() -> TestApp {
    TestApp::builder().spawn().await
}

/// Generates `embedded::<test>` and `dynamodb::<test>` for each named `async fn <test>(store: DynStore)`, so
/// one body runs against both backends.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let s = crate::common::embedded();
                    super::$name(s.store.clone()).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(s) = crate::common::dynamodb().await else { return };
                    super::$name(s.store.clone()).await;
                }
            )*
        }
    };
}

/// Counts the calls a real backend receives (a decorator, not a fake: every call goes through).
/// It also plays a store outage (DynamoDB going away cannot be staged per test here): while `down` is set,
/// every call fails as `Unavailable` without reaching the backend.
#[derive(Debug)]
pub struct Counting {
    inner: DynStore,
    calls: std::sync::atomic::AtomicUsize,
    /// Calls the perimeter layer made (rate-limit windows, audit records, API keys): counted apart, so a test of
    /// what a handler costs is not about what every authenticated request costs.
    pub perimeter: std::sync::atomic::AtomicUsize,
    /// BatchWriteItem calls alone.
    pub batch_writes: std::sync::atomic::AtomicUsize,
    /// Reads of API key records alone (also counted in `perimeter`).
    pub key_reads: std::sync::atomic::AtomicUsize,
    /// The next this many transactions are cancelled as DynamoDB cancels one that met a concurrent transaction on
    /// the same item (`TransactionConflict`), which DynamoDB Local rarely reproduces on demand.
    pub conflicts: std::sync::atomic::AtomicUsize,
    pub down: std::sync::atomic::AtomicBool,
}

/// The same decorator, used for its outage switch.
pub type Outage = Counting;

impl Counting {
    pub fn new(inner: DynStore) -> Self {
        Self {
            inner,
            calls: std::sync::atomic::AtomicUsize::default(),
            perimeter: std::sync::atomic::AtomicUsize::default(),
            batch_writes: std::sync::atomic::AtomicUsize::default(),
            key_reads: std::sync::atomic::AtomicUsize::default(),
            conflicts: std::sync::atomic::AtomicUsize::new(0),
            down: std::sync::atomic::AtomicBool::new(false),
        }
    }
    /// Counts every call that reaches the store, including those the outage then fails: the handlers' calls in
    /// `calls`, the perimeter's (by the partition they touch) in `perimeter`.
    fn hit(&self, pk: &str) -> Result<(), cloud_agent::store::StoreError> {
        let perimeter = ["RATE#", "AUDIT#", "APIKEY#"].iter().any(|p| pk.starts_with(p));
        let counter = if perimeter { &self.perimeter } else { &self.calls };
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(cloud_agent::store::StoreError::Unavailable("injected outage".into()));
        }
        Ok(())
    }
    /// The handlers' calls since the last take.
    pub fn take(&self) -> usize {
        self.calls.swap(0, std::sync::atomic::Ordering::SeqCst)
    }
    /// The perimeter's calls since the last take.
    pub fn take_perimeter(&self) -> usize {
        self.perimeter.swap(0, std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl cloud_agent::store::Store for Counting {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn get(
        &self,
        key: &cloud_agent::store::Key,
    ) -> Result<Option<cloud_agent::store::Item>, cloud_agent::store::StoreError> {
        if key.pk.starts_with("APIKEY#") {
            self.key_reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        self.hit(&key.pk)?;
        self.inner.get(key).await
    }
    async fn put(
        &self,
        item: cloud_agent::store::Item,
        c: Option<cloud_agent::store::Condition>,
    ) -> Result<(), cloud_agent::store::StoreError> {
        self.hit(item.get_str(cloud_agent::store::PK).unwrap_or_default())?;
        self.inner.put(item, c).await
    }
    async fn update(
        &self,
        key: &cloud_agent::store::Key,
        u: cloud_agent::store::Update,
        c: Option<cloud_agent::store::Condition>,
    ) -> Result<cloud_agent::store::Item, cloud_agent::store::StoreError> {
        self.hit(&key.pk)?;
        self.inner.update(key, u, c).await
    }
    async fn delete(
        &self,
        key: &cloud_agent::store::Key,
        c: Option<cloud_agent::store::Condition>,
    ) -> Result<Option<cloud_agent::store::Item>, cloud_agent::store::StoreError> {
        self.hit(&key.pk)?;
        self.inner.delete(key, c).await
    }
    async fn query(
        &self,
        q: cloud_agent::store::Query,
    ) -> Result<cloud_agent::store::Page, cloud_agent::store::StoreError> {
        self.hit(&q.partition)?;
        self.inner.query(q).await
    }
    /// One call per update: what DynamoDB receives.
    async fn update_each(
        &self,
        updates: Vec<(cloud_agent::store::Key, cloud_agent::store::Update)>,
    ) -> Vec<Result<(), cloud_agent::store::StoreError>> {
        for (key, _) in &updates {
            if let Err(e) = self.hit(&key.pk) {
                return updates.iter().map(|_| Err(e.clone_kind())).collect();
            }
        }
        self.inner.update_each(updates).await
    }
    async fn batch_write_once(
        &self,
        ops: Vec<cloud_agent::store::WriteOp>,
    ) -> Result<Vec<cloud_agent::store::WriteOp>, cloud_agent::store::StoreError> {
        self.hit("")?;
        self.batch_writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.batch_write_once(ops).await
    }
    async fn transact_write(&self, ops: Vec<cloud_agent::store::TxOp>) -> Result<(), cloud_agent::store::StoreError> {
        self.hit("")?;
        let conflict = self.conflicts.fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |n| n.checked_sub(1),
        );
        if conflict.is_ok() {
            use cloud_agent::store::CancelReason;
            let reasons = (0..ops.len())
                .map(|i| if i == 1 { CancelReason::TransactionConflict } else { CancelReason::None })
                .collect();
            return Err(cloud_agent::store::StoreError::TransactionCanceled {
                reasons,
                current: vec![None; ops.len()],
            });
        }
        self.inner.transact_write(ops).await
    }
}
