//! The context of the user an agent works for: a stored document, cached per instance (LRU with TTL). When the
//! store fails, a stale cached copy is served (a cache fallback) rather than an error.

use std::num::NonZeroUsize;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::cache::Cache;
use crate::ids::UserId;
use crate::state::{AppState, Part};
use crate::store::{DynStore, Item, Key, StoreError, keys, now_epoch};

/// What agents read about their user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UserContext {
    #[serde(default)]
    pub profile: serde_json::Value,
    #[serde(default)]
    pub preferences: serde_json::Value,
    /// At most 256, each of 1–256 characters.
    #[serde(default)]
    #[schema(schema_with = permissions_schema)]
    pub permissions: Vec<String>,
}

/// Most permissions a context holds.
pub const MAX_PERMISSIONS: usize = 256;
/// Longest permission, in characters.
pub const MAX_PERMISSION: usize = 256;

fn permissions_schema() -> utoipa::openapi::Array {
    crate::openapi::bounded_strings(MAX_PERMISSIONS, MAX_PERMISSION)
}

impl UserContext {
    /// What the schema promises beyond types: the permission list's bounds. (The whole context is bounded by
    /// DynamoDB's 400 KB item limit when it is stored.)
    pub fn validate(&self) -> Result<(), crate::http::ApiError> {
        let refuse = |detail: &str| {
            Err(crate::http::ApiError::Unprocessable {
                detail: detail.to_owned(),
                pointer: Some("/permissions".into()),
            })
        };
        if self.permissions.len() > MAX_PERMISSIONS {
            return refuse("at most 256 permissions");
        }
        if self.permissions.iter().any(|p| p.is_empty() || p.chars().count() > MAX_PERMISSION) {
            return refuse("a permission is 1-256 characters");
        }
        Ok(())
    }
}

/// A stored context with its owner and version time.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StoredContext {
    pub user_id: String,
    #[serde(flatten)]
    pub context: UserContext,
    /// Epoch seconds of the last change.
    pub updated_at: i64,
}

/// Approximate bytes of a cached context, for the cache's byte budget.
pub fn weigh(value: &Arc<StoredContext>) -> usize {
    serde_json::to_vec(&value.context).map_or(1024, |v| v.len()) + value.user_id.len() + 64
}

/// This feature's part of the instance state: the per-instance context cache (10,000 users, 16 MiB).
#[derive(Debug)]
pub struct ContextCache(pub Arc<Cache<UserId, Arc<StoredContext>>>);

impl Part for ContextCache {
    fn build(state: &AppState) -> Self {
        let cache = Arc::new(Cache::new(
            NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN),
            16 * 1024 * 1024,
            state.config().context_ttl,
            weigh,
        ));
        state.metrics().register_cache("context", cache.clone());
        Self(cache)
    }
}

impl std::ops::Deref for ContextCache {
    type Target = Cache<UserId, Arc<StoredContext>>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

fn key(user: &UserId) -> Key {
    keys::user_context(user.as_str())
}

/// Errors of loading a context.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("no context stored for user {0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl crate::http::ToProblem for ContextError {
    fn status(&self) -> http::StatusCode {
        match self {
            Self::NotFound(_) => http::StatusCode::NOT_FOUND,
            Self::Store(e) => e.status(),
        }
    }

    fn problem(&self) -> crate::http::Problem {
        match self {
            Self::NotFound(_) => {
                crate::http::Problem::new(self.status(), "not-found", "Not Found").detail(self.to_string())
            }
            Self::Store(e) => e.problem(),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Store(e) => e.retry_after(),
            Self::NotFound(_) => None,
        }
    }
}

pub async fn load(store: &DynStore, user: &UserId) -> Result<Arc<StoredContext>, ContextError> {
    let item = store.get(&key(user)).await?.ok_or_else(|| ContextError::NotFound(user.to_string()))?;
    let context: UserContext = item
        .get_str("doc")
        .and_then(|d| serde_json::from_str(d).ok())
        .ok_or_else(|| StoreError::Internal(format!("unreadable context for {user}")))?;
    Ok(Arc::new(StoredContext {
        user_id: user.to_string(),
        context,
        updated_at: item.get_i64("updated_at").unwrap_or(0),
    }))
}

/// The stored item of a context; [`Item::check_limits`] on it says whether DynamoDB would take it.
pub fn item(user: &UserId, context: &UserContext) -> Result<Item, StoreError> {
    let doc = serde_json::to_string(context).map_err(|e| StoreError::Validation(e.to_string()))?;
    Ok(Item::new(&key(user)).with("user_id", user.as_str()).with("doc", doc).with("updated_at", now_epoch()))
}

/// Stores a context; one over DynamoDB's 400 KB item limit is refused (`StoreError::Limit`) on both backends.
pub async fn save(store: &DynStore, user: &UserId, context: &UserContext) -> Result<(), StoreError> {
    let item = item(user, context)?;
    item.check_limits()?;
    store.put(item, None).await
}
