//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub, unused_macros)]

use std::sync::Arc;

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

/// A running local server on a random port (the zero-to-production `spawn_app` pattern).
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub _dir: Option<tempfile::TempDir>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
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

/// `GET url` (with a bearer credential if given), its body as JSON.
pub async fn get_json(client: &reqwest::Client, url: &str, bearer: Option<&str>) -> serde_json::Value {
    let request = client.get(url);
    let request = match bearer {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    request.send().await.unwrap().json().await.unwrap()
}

/// Configuration for tests: development, embedded store in a temp dir, small limits.
pub fn test_config(data_dir: &std::path::Path) -> cloud_agent::config::Config {
    test_config_with(data_dir, &[])
}

/// [`test_config`] with some variables set.
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
            _ => None,
        }
    })
    .expect("test config")
}

/// Serves `router` on 127.0.0.1:0 in the background.
pub async fn serve_router(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    address
}

/// The whole app, as `cloudagent serve` runs it, on the embedded store.
pub async fn spawn_app() -> TestApp {
    spawn_app_with_state().await.0
}

/// Like [`spawn_app`], also handing back the state (to register agents in its store).
pub async fn spawn_app_with_state() -> (TestApp, cloud_agent::AppState) {
    let dir = tempfile::tempdir().unwrap();
    let state = cloud_agent::AppState::from_config(test_config(dir.path())).await.unwrap();
    let address = serve_router(cloud_agent::app(state.clone())).await;
    (TestApp { address, client: reqwest::Client::new(), _dir: Some(dir) }, state)
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
    /// BatchWriteItem calls alone.
    pub batch_writes: std::sync::atomic::AtomicUsize,
    pub down: std::sync::atomic::AtomicBool,
}

/// The same decorator, used for its outage switch.
pub type Outage = Counting;

impl Counting {
    pub fn new(inner: DynStore) -> Self {
        Self {
            inner,
            calls: std::sync::atomic::AtomicUsize::default(),
            batch_writes: std::sync::atomic::AtomicUsize::default(),
            down: std::sync::atomic::AtomicBool::new(false),
        }
    }
    fn hit(&self) -> Result<(), cloud_agent::store::StoreError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(cloud_agent::store::StoreError::Unavailable("injected outage".into()));
        }
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
    pub fn take(&self) -> usize {
        self.calls.swap(0, std::sync::atomic::Ordering::SeqCst)
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
        self.hit()?;
        self.inner.get(key).await
    }
    async fn put(
        &self,
        item: cloud_agent::store::Item,
        c: Option<cloud_agent::store::Condition>,
    ) -> Result<(), cloud_agent::store::StoreError> {
        self.hit()?;
        self.inner.put(item, c).await
    }
    async fn update(
        &self,
        key: &cloud_agent::store::Key,
        u: cloud_agent::store::Update,
        c: Option<cloud_agent::store::Condition>,
    ) -> Result<cloud_agent::store::Item, cloud_agent::store::StoreError> {
        self.hit()?;
        self.inner.update(key, u, c).await
    }
    async fn delete(
        &self,
        key: &cloud_agent::store::Key,
        c: Option<cloud_agent::store::Condition>,
    ) -> Result<Option<cloud_agent::store::Item>, cloud_agent::store::StoreError> {
        self.hit()?;
        self.inner.delete(key, c).await
    }
    async fn query(
        &self,
        q: cloud_agent::store::Query,
    ) -> Result<cloud_agent::store::Page, cloud_agent::store::StoreError> {
        self.hit()?;
        self.inner.query(q).await
    }
    async fn batch_write_once(
        &self,
        ops: Vec<cloud_agent::store::WriteOp>,
    ) -> Result<Vec<cloud_agent::store::WriteOp>, cloud_agent::store::StoreError> {
        self.hit()?;
        self.batch_writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.batch_write_once(ops).await
    }
    async fn transact_write(&self, ops: Vec<cloud_agent::store::TxOp>) -> Result<(), cloud_agent::store::StoreError> {
        self.hit()?;
        self.inner.transact_write(ops).await
    }
}
