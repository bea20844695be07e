//! The state every handler shares: configuration and the store, built once per process.

use std::sync::Arc;
use std::time::Instant;

use crate::alerts::Alerts;
use crate::breaker::Registry;
use crate::cache::Cache;
use crate::config::{Config, StoreSettings};
use crate::features::context::StoredContext;
use crate::features::tokens::Tokens;
use crate::metrics::Metrics;
use crate::store::Guarded;
use crate::store::dynamo::DynamoStore;
use crate::store::embedded::EmbeddedStore;
use crate::store::{DynStore, StoreError};
use std::num::NonZeroUsize;

/// Cheap to clone: one `Arc`.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    store: DynStore,
    tokens: Tokens,
    cursors: crate::paging::CursorKey,
    breakers: Registry,
    metrics: Metrics,
    alerts: Alerts,
    health: std::sync::Mutex<Option<(Instant, crate::features::health::HealthReport)>>,
    context_cache: Cache<crate::ids::UserId, Arc<StoredContext>>,
    started: Instant,
    instance_id: String,
}

impl AppState {
    /// Puts `store` behind this instance's "store" circuit breaker.
    pub fn new(config: Config, store: DynStore) -> Self {
        let breakers = Registry::default();
        let store: DynStore = Arc::new(Guarded::new(store, breakers.breaker("store", config.breaker)));
        Self {
            inner: Arc::new(Inner {
                breakers,
                metrics: Metrics::default(),
                alerts: Alerts::new(config.alerts),
                health: std::sync::Mutex::new(None),
                tokens: Tokens::new(&config),
                cursors: crate::paging::CursorKey::derive(&config.secrets.jwt),
                context_cache: Cache::new(
                    NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN),
                    16 * 1024 * 1024,
                    config.context_ttl,
                    crate::features::context::weigh,
                ),
                config,
                store,
                started: Instant::now(),
                instance_id: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
            }),
        }
    }

    /// Builds the configured store (the DynamoDB client is created here, once) and the state.
    pub async fn from_config(config: Config) -> Result<Self, StoreError> {
        let store = open_store(&config.store).await?;
        Ok(Self::new(config, store))
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn store(&self) -> &DynStore {
        &self.inner.store
    }

    pub fn tokens(&self) -> &Tokens {
        &self.inner.tokens
    }

    /// Seals and opens paging cursors.
    pub fn cursors(&self) -> &crate::paging::CursorKey {
        &self.inner.cursors
    }

    /// This instance's request metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Alert conditions with their cooldowns.
    pub fn alerts(&self) -> &Alerts {
        &self.inner.alerts
    }

    /// The last health report if it is younger than `max_age`.
    pub fn cached_health(&self, max_age: std::time::Duration) -> Option<crate::features::health::HealthReport> {
        let guard = self.inner.health.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.as_ref().filter(|(at, _)| at.elapsed() < max_age).map(|(_, r)| r.clone())
    }

    pub fn store_health(&self, report: &crate::features::health::HealthReport) {
        *self.inner.health.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((Instant::now(), report.clone()));
    }

    /// This instance's circuit breakers.
    pub fn breakers(&self) -> &Registry {
        &self.inner.breakers
    }

    /// Per-instance cache of user contexts.
    pub fn context_cache(&self) -> &Cache<crate::ids::UserId, Arc<StoredContext>> {
        &self.inner.context_cache
    }

    /// Instances are per process: health and metrics say which one answered.
    pub fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.inner.started.elapsed()
    }
}

/// Opens the store the settings name.
pub async fn open_store(settings: &StoreSettings) -> Result<DynStore, StoreError> {
    Ok(match settings {
        StoreSettings::Embedded { data_dir } => {
            let store = EmbeddedStore::open(data_dir)?;
            store.spawn_reaper(std::time::Duration::from_mins(10));
            Arc::new(store)
        }
        StoreSettings::DynamoDb(dynamo) => Arc::new(DynamoStore::connect(dynamo).await),
    })
}
