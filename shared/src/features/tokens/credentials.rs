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

use crate::config::secrets::{Secret, hex, unhex};
use crate::ids::new_id;
use crate::ids::{TenantId, UserId};
use crate::store::{Condition, Cursor, DynStore, GSI1_PK, GSI1_SK, Index, Item, Key, Query, StoreError, TxOp, Update};
use crate::store::{keys, now_epoch};
use crate::token::TokenError;

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

/// What the store knows about an authenticated agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub id: AgentId,
    /// The user the agent works for.
    pub owner: UserId,
    /// Changes whenever the credential does (new secret, new owner, disabled). Refresh families record the
    /// version they were issued under and die with it.
    pub cred_version: String,
}

fn key(id: &AgentId) -> Key {
    keys::agent_credential(id.as_str())
}

/// The credential item's attributes, spelled here only.
mod attr {
    pub(super) const AGENT_ID: &str = "agent_id";
    pub(super) const OWNER: &str = "owner";
    pub(super) const SECRET_HASH: &str = "secret_hash";
    pub(super) const STATUS: &str = "status";
    pub(super) const CRED_VERSION: &str = "cred_version";
    pub(super) const CREATED_AT: &str = "created_at";
    pub(super) const ROTATED_AT: &str = "rotated_at";
    pub(super) const TENANT: &str = "tenant";
}

/// Whether a credential may log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Active,
    Disabled,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }
}

/// The stored credential: the keyed hash of the secret, never the secret.
struct CredentialRecord {
    secret_hash: Option<Vec<u8>>,
    /// `Some` for an active credential with a well-formed owner and version.
    active: Option<(UserId, String)>,
}

impl CredentialRecord {
    fn from_item(item: &Item) -> Self {
        let active = (item.get_str(attr::STATUS) == Some(Status::Active.as_str()))
            .then(|| {
                Some((UserId::parse(item.get_str(attr::OWNER)?).ok()?, item.get_str(attr::CRED_VERSION)?.to_owned()))
            })
            .flatten();
        Self { secret_hash: item.get_str(attr::SECRET_HASH).and_then(unhex), active }
    }
}

/// The transaction step a refresh runs beside its rotation: the agent is still active under the same credential
/// version (same secret, same owner). A rotated, disabled or re-owned agent fails it, in the same single call.
pub fn still_valid(agent: &str, cred_version: &str) -> TxOp {
    TxOp::Check {
        key: keys::agent_credential(agent),
        condition: Condition::eq(attr::STATUS, Status::Active.as_str())
            .and(Condition::eq(attr::CRED_VERSION, cred_version)),
    }
}

fn digest(pepper: &Secret, secret: &str) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256>>::new_from_slice(pepper.expose()).expect("HMAC takes keys of any length");
    mac.update(secret.as_bytes());
    mac
}

/// A new random agent secret.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{SECRET_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn secret_hash(pepper: &Secret, secret: &str) -> String {
    hex(&digest(pepper, secret).finalize().into_bytes())
}

/// Creates or replaces an agent's credential (the caller chose `secret`) in the default tenant. Replacing it — a
/// new secret or a new owner — starts a new credential version: every refresh family issued before stops working.
pub async fn register(
    store: &DynStore,
    pepper: &Secret,
    id: &AgentId,
    owner: &UserId,
    secret: &str,
) -> Result<(), StoreError> {
    store.put(credential_item(pepper, id, owner, secret, &TenantId::default_tenant()), None).await
}

fn credential_item(pepper: &Secret, id: &AgentId, owner: &UserId, secret: &str, tenant: &TenantId) -> Item {
    Item::new(&key(id))
        .with(attr::AGENT_ID, id.as_str())
        .with(attr::OWNER, owner.as_str())
        .with(attr::SECRET_HASH, secret_hash(pepper, secret))
        .with(attr::STATUS, Status::Active.as_str())
        .with(attr::CRED_VERSION, new_id())
        .with(attr::CREATED_AT, now_epoch())
        .with(attr::TENANT, tenant.as_str())
        .with(GSI1_PK, keys::agents_of(tenant.as_str()))
        .with(GSI1_SK, id.as_str())
}

/// Registers a new agent in `tenant` with a generated secret (returned, shown once). `None` when the id is taken
/// (in any tenant: ids are global, and an existing agent is never silently replaced over the API).
pub async fn create(
    store: &DynStore,
    pepper: &Secret,
    tenant: &TenantId,
    id: &AgentId,
    owner: &UserId,
) -> Result<Option<String>, StoreError> {
    let secret = generate_secret();
    match store.put(credential_item(pepper, id, owner, &secret, tenant), Some(Condition::NotExists)).await {
        Ok(()) => Ok(Some(secret)),
        Err(StoreError::ConditionFailed { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

pub use cloud_agent_wire::admin::AgentSummary;

fn summary(item: &Item) -> Option<AgentSummary> {
    Some(AgentSummary {
        agent_id: item.get_str(attr::AGENT_ID)?.to_owned(),
        owner: item.get_str(attr::OWNER)?.to_owned(),
        status: item.get_str(attr::STATUS)?.to_owned(),
        created_at: item.get_i64(attr::CREATED_AT)?,
        rotated_at: item.get_i64(attr::ROTATED_AT),
    })
}

/// One page of a tenant's agents, by id.
pub async fn list(
    store: &DynStore,
    tenant: &TenantId,
    limit: u32,
    after: Option<Cursor>,
) -> Result<(Vec<AgentSummary>, Option<Cursor>), StoreError> {
    let query = Query::partition(keys::agents_of(tenant.as_str())).on(Index::Gsi1).limit(limit).after(after);
    let page = store.query(query).await?;
    Ok((page.items.iter().filter_map(summary).collect(), page.next))
}

/// The agent exists and belongs to `tenant` (credentials written before tenants belong to the default one).
fn in_tenant(tenant: &TenantId) -> Condition {
    let owned = Condition::eq(attr::TENANT, tenant.as_str());
    let owned = if *tenant == TenantId::default_tenant() {
        owned.or(Condition::AttrNotExists(attr::TENANT.into()))
    } else {
        owned
    };
    Condition::Exists.and(owned)
}

/// Gives an existing agent a new secret (returned, shown once); its old secret and every refresh family issued
/// before stop working. `None` when there is no such agent.
pub async fn rotate_secret(store: &DynStore, pepper: &Secret, id: &AgentId) -> Result<Option<String>, StoreError> {
    rotate_secret_if(store, pepper, id, Condition::Exists).await
}

/// [`rotate_secret`] for an agent of `tenant`; another tenant's agent is absent.
pub async fn rotate_secret_in(
    store: &DynStore,
    pepper: &Secret,
    tenant: &TenantId,
    id: &AgentId,
) -> Result<Option<String>, StoreError> {
    rotate_secret_if(store, pepper, id, in_tenant(tenant)).await
}

async fn rotate_secret_if(
    store: &DynStore,
    pepper: &Secret,
    id: &AgentId,
    condition: Condition,
) -> Result<Option<String>, StoreError> {
    let secret = generate_secret();
    let update = Update::new()
        .set(attr::SECRET_HASH, secret_hash(pepper, &secret))
        .set(attr::CRED_VERSION, new_id())
        .set(attr::ROTATED_AT, now_epoch());
    match store.update(&key(id), update, Some(condition)).await {
        Ok(_) => Ok(Some(secret)),
        Err(StoreError::ConditionFailed { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Checks an agent's credential. Unknown agent, wrong secret and disabled agent are one error, at one cost.
pub async fn authenticate(store: &DynStore, pepper: &Secret, id: &AgentId, secret: &str) -> Result<Agent, TokenError> {
    let record = store.get(&key(id)).await?.map(|item| CredentialRecord::from_item(&item));
    let stored = record.as_ref().and_then(|r| r.secret_hash.clone()).unwrap_or_else(|| vec![0u8; 32]);
    // Always run the comparison, even for an unknown agent, so timing does not tell agents apart.
    let matches = digest(pepper, secret).verify_slice(&stored).is_ok();
    match record.and_then(|r| r.active) {
        Some((owner, cred_version)) if matches => Ok(Agent { id: id.clone(), owner, cred_version }),
        _ => Err(TokenError::InvalidClient),
    }
}

/// Disables an agent: its credential stops working and so does every refresh family it holds (they check the
/// credential on each refresh). Access tokens already issued live out their minutes.
pub async fn disable(store: &DynStore, id: &AgentId) -> Result<bool, StoreError> {
    disable_if(store, id, Condition::Exists).await
}

/// [`disable`] for an agent of `tenant`; another tenant's agent is absent.
pub async fn disable_in(store: &DynStore, tenant: &TenantId, id: &AgentId) -> Result<bool, StoreError> {
    disable_if(store, id, in_tenant(tenant)).await
}

async fn disable_if(store: &DynStore, id: &AgentId, condition: Condition) -> Result<bool, StoreError> {
    let update = Update::new().set(attr::STATUS, Status::Disabled.as_str()).set(attr::CRED_VERSION, new_id());
    match store.update(&key(id), update, Some(condition)).await {
        Ok(_) => Ok(true),
        Err(StoreError::ConditionFailed { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}
