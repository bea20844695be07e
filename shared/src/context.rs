//! The context of the user an agent works for: a stored document, cached per instance (LRU with TTL). When the
//! store fails, a stale cached copy is served (the seed's CACHE fallback) rather than an error.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::{DynStore, Item, Key, StoreError, now_epoch};

/// What agents read about their user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UserContext {
    #[serde(default)]
    pub profile: serde_json::Value,
    #[serde(default)]
    pub preferences: serde_json::Value,
    #[serde(default)]
    pub permissions: Vec<String>,
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

fn key(user: &str) -> Key {
    Key::new(format!("USER#{user}"), "CONTEXT")
}

/// Errors of loading a context.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("no context stored for user {0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub async fn load(store: &DynStore, user: &str) -> Result<Arc<StoredContext>, ContextError> {
    let item = store.get(&key(user)).await?.ok_or_else(|| ContextError::NotFound(user.to_owned()))?;
    let context: UserContext = item
        .get_str("doc")
        .and_then(|d| serde_json::from_str(d).ok())
        .ok_or_else(|| StoreError::Internal(format!("unreadable context for {user}")))?;
    Ok(Arc::new(StoredContext {
        user_id: user.to_owned(),
        context,
        updated_at: item.get_i64("updated_at").unwrap_or(0),
    }))
}

pub async fn save(store: &DynStore, user: &str, context: &UserContext) -> Result<(), StoreError> {
    let doc = serde_json::to_string(context).map_err(|e| StoreError::Validation(e.to_string()))?;
    store.put(Item::new(&key(user)).with("user_id", user).with("doc", doc).with("updated_at", now_epoch()), None).await
}
