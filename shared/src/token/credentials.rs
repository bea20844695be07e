//! Agent credentials. Each agent has its own random secret; the store keeps only HMAC-SHA256(pepper, secret)
//! where the pepper is the environment's agent secret. A fast keyed hash is right here (not a password hash):
//! agent secrets are 256 random bits, so there is nothing to brute-force, and a leaked table alone cannot even
//! be checked offline without the pepper. Comparison is constant-time, and an unknown agent costs the same as a
//! wrong secret.

use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::TokenError;
use crate::config::secrets::{Secret, hex};
use crate::store::{Condition, DynStore, Item, Key, StoreError, now_epoch};

/// Prefix of agent secrets, so secret scanners can recognise leaked ones.
pub const SECRET_PREFIX: &str = "cas_";

/// An agent id: 1–64 of `A-Z a-z 0-9 . _ -`. Parsed at the edge; ids end up in keys and logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AgentId(String);

impl AgentId {
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let ok = !text.is_empty()
            && text.len() <= 64
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(TokenError::InvalidRequest("agent_id must be 1-64 characters of A-Z a-z 0-9 . _ -".into()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AgentId {
    type Error = TokenError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<AgentId> for String {
    fn from(value: AgentId) -> Self {
        value.0
    }
}

impl std::fmt::Display for AgentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the store knows about an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub id: AgentId,
    /// The user the agent works for.
    pub owner: String,
}

fn key(id: &AgentId) -> Key {
    Key::new(format!("AGENT#{id}"), "CRED")
}

fn digest(pepper: &Secret, secret: &str) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256>>::new_from_slice(pepper.expose()).expect("HMAC takes keys of any length");
    mac.update(secret.as_bytes());
    mac
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    text.len()
        .is_multiple_of(2)
        .then(|| (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect())
        .flatten()
}

/// A new random agent secret.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{SECRET_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Creates or replaces an agent's credential and returns nothing secret: the caller chose `secret`.
pub async fn register(
    store: &DynStore,
    pepper: &Secret,
    id: &AgentId,
    owner: &str,
    secret: &str,
) -> Result<(), StoreError> {
    let hash = hex(&digest(pepper, secret).finalize().into_bytes());
    let item = Item::new(&key(id))
        .with("agent_id", id.as_str())
        .with("owner", owner)
        .with("secret_hash", hash)
        .with("status", "active")
        .with("created_at", now_epoch());
    store.put(item, None).await
}

/// Checks an agent's credential. Unknown agent, wrong secret and disabled agent are one error, at one cost.
pub async fn authenticate(store: &DynStore, pepper: &Secret, id: &AgentId, secret: &str) -> Result<Agent, TokenError> {
    let found = store.get(&key(id)).await?;
    let stored = found.as_ref().and_then(|i| i.get_str("secret_hash")).and_then(unhex).unwrap_or_else(|| vec![0u8; 32]);
    // Always run the comparison, even for an unknown agent, so timing does not tell agents apart.
    let matches = digest(pepper, secret).verify_slice(&stored).is_ok();
    match found {
        Some(item) if matches && item.get_str("status") == Some("active") => {
            Ok(Agent { id: id.clone(), owner: item.get_str("owner").unwrap_or_default().to_owned() })
        }
        _ => Err(TokenError::InvalidClient),
    }
}

/// Disables an agent: its credential stops working (existing refresh families are revoked separately).
pub async fn disable(store: &DynStore, id: &AgentId) -> Result<bool, StoreError> {
    let update = crate::store::Update::new().set("status", "disabled");
    match store.update(&key(id), update, Some(Condition::Exists)).await {
        Ok(_) => Ok(true),
        Err(StoreError::ConditionFailed { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}
