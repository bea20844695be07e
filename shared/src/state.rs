//! The state every handler shares, built once per process: the instance's core services, plus the parts
//! features declare for themselves, each built on first use (a function builds only what its route asks for).
//!
//! Handlers ask for what they use through axum's `State` and [`FromRef`]: `State<DynStore>`, `State<Arc<Tokens>>`,
//! or a feature's own part, `State<Arc<ContextCache>>`. The centre never names a feature's type.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::extract::FromRef;

use crate::alerts::Alerts;
use crate::breaker::Registry;
use crate::config::{Config, StoreSettings};
use crate::metrics::Metrics;
use crate::paging::CursorKey;
use crate::store::Guarded;
use crate::store::dynamo::DynamoStore;
use crate::store::{DynStore, StoreError};
use crate::token::Tokens;

/// The store's breaker: the one dependency without a fallback (its opening fails health and readiness).
pub const STORE_BREAKER: &str = "store";

/// A feature's own state: built from the instance's state the first time a handler asks for it.
pub trait Part: Send + Sync + Sized + 'static {
    fn build(state: &AppState) -> Self;
}

/// Cheap to clone: one `Arc`.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    store: DynStore,
    tokens: Arc<Tokens>,
    cursors: Arc<CursorKey>,
    breakers: Arc<Registry>,
    metrics: Arc<Metrics>,
    alerts: Arc<Alerts>,
    parts: RwLock<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    instance_id: InstanceId,
}

/// Which instance answered: instances are per process, and health and metrics name theirs.
#[derive(Debug, Clone)]
pub struct InstanceId(pub Arc<str>);

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("environment", &self.config.environment)
            .field("store", &self.store.backend())
            .field("instance_id", &self.instance_id)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Puts `store` behind this instance's "store" circuit breaker.
    pub fn new(config: Config, store: DynStore) -> Self {
        let breakers = Registry::default();
        let store: DynStore = Arc::new(Guarded::new(store, breakers.breaker(STORE_BREAKER, config.breaker)));
        let tokens = Tokens::new(&config);
        let metrics = Arc::new(Metrics::default());
        metrics.register_cache("verified_tokens", tokens.verified_cache());
        Self {
            inner: Arc::new(Inner {
                breakers: Arc::new(breakers),
                metrics,
                alerts: Arc::new(Alerts::new(config.alerts)),
                tokens: Arc::new(tokens),
                cursors: Arc::new(CursorKey::derive(&config.secrets.jwt)),
                config: Arc::new(config),
                store,
                parts: RwLock::default(),
                instance_id: InstanceId(uuid::Uuid::new_v4().simple().to_string()[..12].into()),
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
    pub fn cursors(&self) -> &CursorKey {
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

    /// This instance's circuit breakers.
    pub fn breakers(&self) -> &Registry {
        &self.inner.breakers
    }

    /// Instances are per process: health and metrics say which one answered.
    pub fn instance_id(&self) -> &str {
        &self.inner.instance_id.0
    }

    /// The feature part `T`, built on first use. Two first uses racing may both build; one is kept, so a
    /// part's `build` must not have side effects beyond its own value.
    pub fn part<T: Part>(&self) -> Arc<T> {
        let id = TypeId::of::<T>();
        let found = self.inner.parts.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&id).cloned();
        let any = found.unwrap_or_else(|| {
            // Built outside the lock: a part may ask for another part while it builds.
            let built: Arc<dyn Any + Send + Sync> = Arc::new(T::build(self));
            let mut parts = self.inner.parts.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            parts.entry(id).or_insert(built).clone()
        });
        any.downcast::<T>().unwrap_or_else(|_| unreachable!("parts are keyed by their own TypeId"))
    }

    /// Supplies the part `T` from outside instead of its `build`: what the binary decides at start (the task
    /// types it was built with). Call it before the router serves; a later call replaces it for later uses only.
    #[must_use]
    pub fn provide<T: Part>(self, part: T) -> Self {
        let built: Arc<dyn Any + Send + Sync> = Arc::new(part);
        self.inner.parts.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(TypeId::of::<T>(), built);
        self
    }
}

impl<T: Part> FromRef<AppState> for Arc<T> {
    fn from_ref(state: &AppState) -> Self {
        state.part::<T>()
    }
}

/// The core services as handler state: `State<DynStore>`, `State<Arc<Tokens>>`, ...
macro_rules! core_state {
    ($($ty:ty => $field:ident),* $(,)?) => {$(
        impl FromRef<AppState> for $ty {
            fn from_ref(state: &AppState) -> Self {
                state.inner.$field.clone()
            }
        }
    )*};
}

core_state! {
    DynStore => store,
    Arc<Config> => config,
    Arc<Tokens> => tokens,
    Arc<CursorKey> => cursors,
    Arc<Registry> => breakers,
    Arc<Metrics> => metrics,
    Arc<Alerts> => alerts,
    InstanceId => instance_id,
}

/// Opens the store the settings name. The embedded store exists only in builds with the `embedded` feature
/// (the CLI and the test suite): deployed functions carry neither redb nor its code.
pub async fn open_store(settings: &StoreSettings) -> Result<DynStore, StoreError> {
    Ok(match settings {
        #[cfg(feature = "embedded")]
        StoreSettings::Embedded { data_dir } => {
            let store = crate::store::embedded::EmbeddedStore::open(data_dir)?;
            store.spawn_reaper(std::time::Duration::from_mins(10));
            Arc::new(store)
        }
        #[cfg(not(feature = "embedded"))]
        StoreSettings::Embedded { .. } => {
            return Err(StoreError::Unavailable(
                "this build has no embedded store (it is for `cloudagent serve`); set CLOUD_AGENT_STORE=dynamodb"
                    .into(),
            ));
        }
        StoreSettings::DynamoDb(dynamo) => Arc::new(DynamoStore::connect(dynamo).await),
    })
}
