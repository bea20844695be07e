//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

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
            eprintln!(
                "SKIPPED: {DYNAMODB_ENV} not set (infra/test.sh starts DynamoDB Local and sets it)"
            );
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
    TestStore {
        store: Arc::new(store),
        table: None,
        _dir: Some(dir),
    }
}

/// A fresh table on DynamoDB Local, so tests never see each other's items.
pub async fn dynamodb() -> Option<TestStore> {
    let endpoint = dynamodb_endpoint()?;
    let table = format!("test-{}", uuid::Uuid::new_v4().simple());
    let store = DynamoStore::connect(&DynamoConfig {
        table: table.clone(),
        endpoint: Some(endpoint),
        region: None,
    })
    .await;
    assert!(
        store
            .create_table()
            .await
            .expect("create table on DynamoDB Local")
    );
    Some(TestStore {
        store: Arc::new(store),
        table: Some(table),
        _dir: None,
    })
}
