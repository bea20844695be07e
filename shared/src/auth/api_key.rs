//! API keys: `ca_live_<id>_<secret>` in production, `ca_test_<id>_<secret>` elsewhere. The visible part
//! (`ca_live_<id>`) names a key in logs, audit records and listings; the whole key is shown once, at creation,
//! and the table keeps only HMAC-SHA256(pepper, key). A fast keyed hash is right for 256 random bits (nothing to
//! brute-force; a leaked table cannot be checked offline without the pepper), and comparison is constant-time.

use base64::Engine as _;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::permissions::Role;
use crate::config::Environment;
use crate::config::secrets::{Secret, SecretString, constant_time_eq, hex, unhex};
use crate::ids::TenantId;
use crate::store::{Condition, DynStore, GSI1_PK, GSI1_SK, Index, Item, Page, Query, StoreError, TxOp, Update};
use crate::store::{EXPIRES_AT, keys, now_epoch};

pub const LIVE_PREFIX: &str = "ca_live_";
pub const TEST_PREFIX: &str = "ca_test_";
/// Characters of a key id (base32, lower case): 80 random bits, unique without a lookup.
const ID_CHARS: usize = 16;
/// `last_used_at` is written at most this often per key (not on every request).
pub const LAST_USED_EVERY_SECS: i64 = 60;

/// The prefix keys of `environment` carry: live keys only in production, so a test key can never be pasted
/// into production and work.
pub fn prefix(environment: Environment) -> &'static str {
    if environment == Environment::Production { LIVE_PREFIX } else { TEST_PREFIX }
}

/// A key id: the public half of a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId(String);

impl KeyId {
    pub fn parse(text: &str) -> Result<Self, crate::ids::InvalidId> {
        if text.len() == ID_CHARS && text.bytes().all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)) {
            Ok(Self(text.to_owned()))
        } else {
            Err(crate::ids::InvalidId("key id: 16 characters of a-z 2-7"))
        }
    }

    fn random() -> Self {
        const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
        let mut bytes = [0u8; ID_CHARS];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes.iter().map(|b| char::from(ALPHABET[usize::from(b & 31)])).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for KeyId {
    type Error = crate::ids::InvalidId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<KeyId> for String {
    fn from(value: KeyId) -> Self {
        value.0
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a key's requests must be signed (see `auth::signing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Signing {
    /// Signatures are ignored.
    #[default]
    Off,
    /// A signed request is checked; an unsigned one passes.
    Optional,
    /// Every request must be signed.
    Required,
}

impl Signing {
    fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Optional => "optional",
            Self::Required => "required",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "optional" => Self::Optional,
            "required" => Self::Required,
            _ => Self::Off,
        }
    }
}

/// What the table knows about a key (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: KeyId,
    /// The visible part, e.g. `ca_test_abcd…`: how logs and audit records name the key.
    pub display: String,
    pub tenant: TenantId,
    pub name: String,
    pub role: Role,
    pub tier: String,
    pub signing: Signing,
    pub created_at: i64,
    /// Epoch seconds; the key stops working then (the table's TTL removes it later).
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    /// Set when the key was rotated: the key that replaced it.
    pub replaced_by: Option<KeyId>,
    /// When not empty, the key works only from these address blocks.
    pub allowed_cidrs: Vec<String>,
    hash: Vec<u8>,
}

mod attr {
    pub(super) const ID: &str = "key_id";
    pub(super) const DISPLAY: &str = "display";
    pub(super) const TENANT: &str = "tenant";
    pub(super) const NAME: &str = "name";
    pub(super) const ROLE: &str = "role";
    pub(super) const TIER: &str = "tier";
    pub(super) const SIGNING: &str = "signing";
    pub(super) const HASH: &str = "hash";
    pub(super) const CREATED_AT: &str = "created_at";
    pub(super) const LAST_USED_AT: &str = "last_used_at";
    pub(super) const REPLACED_BY: &str = "replaced_by";
    pub(super) const ALLOWED_CIDRS: &str = "allowed_cidrs";
}

impl KeyRecord {
    fn to_item(&self) -> Item {
        let mut item = Item::new(&keys::api_key(self.id.as_str()))
            .with(attr::ID, self.id.as_str())
            .with(attr::DISPLAY, self.display.as_str())
            .with(attr::TENANT, self.tenant.as_str())
            .with(attr::NAME, self.name.as_str())
            .with(attr::ROLE, self.role.as_str())
            .with(attr::TIER, self.tier.as_str())
            .with(attr::SIGNING, self.signing.as_str())
            .with(attr::HASH, hex(&self.hash))
            .with(attr::CREATED_AT, self.created_at)
            .with(GSI1_PK, keys::api_keys_of(self.tenant.as_str()))
            .with(GSI1_SK, format!("{:013}#{}", self.created_at, self.id));
        if let Some(at) = self.expires_at {
            item.set(EXPIRES_AT, at);
        }
        if !self.allowed_cidrs.is_empty() {
            let list = self.allowed_cidrs.iter().map(|c| crate::store::Value::S(c.clone())).collect();
            item.set(attr::ALLOWED_CIDRS, crate::store::Value::L(list));
        }
        item
    }

    fn from_item(item: &Item) -> Option<Self> {
        Some(Self {
            id: KeyId::parse(item.get_str(attr::ID)?).ok()?,
            display: item.get_str(attr::DISPLAY)?.to_owned(),
            tenant: TenantId::parse(item.get_str(attr::TENANT)?).ok()?,
            name: item.get_str(attr::NAME)?.to_owned(),
            role: Role::parse(item.get_str(attr::ROLE)?)?,
            tier: item.get_str(attr::TIER)?.to_owned(),
            signing: Signing::parse(item.get_str(attr::SIGNING).unwrap_or_default()),
            created_at: item.get_i64(attr::CREATED_AT)?,
            expires_at: item.get_i64(EXPIRES_AT),
            last_used_at: item.get_i64(attr::LAST_USED_AT),
            replaced_by: item.get_str(attr::REPLACED_BY).and_then(|t| KeyId::parse(t).ok()),
            allowed_cidrs: match item.get(attr::ALLOWED_CIDRS) {
                Some(crate::store::Value::L(list)) => {
                    list.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
                }
                _ => Vec::new(),
            },
            hash: unhex(item.get_str(attr::HASH)?)?,
        })
    }

    /// Live at `now` (not past its expiry).
    pub fn is_live(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// Hashes keys under this environment's key pepper, and derives their signing secrets.
#[derive(Clone)]
pub struct KeyHasher {
    pepper: Secret,
    signing: Secret,
    prefix: &'static str,
}

/// Prefix of request-signing secrets, so secret scanners can recognise leaked ones.
pub const SIGNING_PREFIX: &str = "ca_sig_";

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher([redacted])")
    }
}

impl KeyHasher {
    /// A pepper of its own, derived from the environment's agent secret (one purpose per key).
    pub fn derive(secret: &Secret, environment: Environment) -> Self {
        Self {
            pepper: Secret::new(secret.mac(b"cloud-agent api key pepper v1").to_vec()),
            signing: Secret::new(secret.mac(b"cloud-agent request signing v1").to_vec()),
            prefix: prefix(environment),
        }
    }

    /// The secret a key signs requests with: derived from its id, so the table keeps nothing that signs, and a
    /// rotated key (a new id) gets a new one. The HMAC key is this text's bytes.
    pub fn signing_secret(&self, id: &KeyId) -> SecretString {
        let mac = self.signing.mac(id.as_str().as_bytes());
        SecretString::new(format!("{SIGNING_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac)))
    }

    fn hash(&self, key: &str) -> [u8; 32] {
        self.pepper.mac(key.as_bytes())
    }

    /// The id inside a presented key, if it has this environment's shape.
    pub fn key_id<'a>(&self, presented: &'a str) -> Option<&'a str> {
        let rest = presented.strip_prefix(self.prefix)?;
        let (id, secret) = rest.split_once('_')?;
        (id.len() == ID_CHARS && !secret.is_empty()).then_some(id)
    }

    /// True when `presented` is the key `record` was made from.
    pub fn matches(&self, record: &KeyRecord, presented: &str) -> bool {
        constant_time_eq(&self.hash(presented), &record.hash)
    }

    /// Does `presented` look like one of our keys (of any environment)? Used to tell keys from JWTs.
    pub fn looks_like_key(presented: &str) -> bool {
        presented.starts_with(LIVE_PREFIX) || presented.starts_with(TEST_PREFIX)
    }
}

/// What a new key is for.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub tenant: TenantId,
    pub name: String,
    pub role: Role,
    pub tier: String,
    pub signing: Signing,
    pub expires_at: Option<i64>,
    pub allowed_cidrs: Vec<String>,
}

/// Makes a fresh key: the record to store and the key text, to be shown once.
fn mint(hasher: &KeyHasher, spec: &NewKey, now: i64) -> (KeyRecord, SecretString) {
    let id = KeyId::random();
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let display = format!("{}{id}", hasher.prefix);
    let text = format!("{display}_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret));
    let record = KeyRecord {
        hash: hasher.hash(&text).to_vec(),
        id,
        display,
        tenant: spec.tenant.clone(),
        name: spec.name.clone(),
        role: spec.role,
        tier: spec.tier.clone(),
        signing: spec.signing,
        created_at: now,
        expires_at: spec.expires_at,
        last_used_at: None,
        replaced_by: None,
        allowed_cidrs: spec.allowed_cidrs.clone(),
    };
    (record, SecretString::new(text))
}

/// Creates a key. The returned text is the only copy anywhere.
pub async fn create(
    store: &DynStore,
    hasher: &KeyHasher,
    spec: &NewKey,
) -> Result<(KeyRecord, SecretString), StoreError> {
    let (record, text) = mint(hasher, spec, now_epoch());
    // An id collision (80 random bits) would fail the condition rather than overwrite another key.
    store.put(record.to_item(), Some(Condition::NotExists)).await?;
    Ok((record, text))
}

/// The live record of key `id`.
pub async fn find(store: &DynStore, id: &str) -> Result<Option<KeyRecord>, StoreError> {
    Ok(store.get(&keys::api_key(id)).await?.as_ref().and_then(KeyRecord::from_item))
}

/// The record of key `id` if it belongs to `tenant`; another tenant's key is absent.
pub async fn find_in(store: &DynStore, tenant: &TenantId, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
    Ok(find(store, id.as_str()).await?.filter(|r| r.tenant == *tenant))
}

/// One page of a tenant's keys, oldest first.
pub async fn list(
    store: &DynStore,
    tenant: &TenantId,
    limit: u32,
    after: Option<crate::store::Cursor>,
) -> Result<(Vec<KeyRecord>, Option<crate::store::Cursor>), StoreError> {
    let query = Query::partition(keys::api_keys_of(tenant.as_str())).on(Index::Gsi1).limit(limit).after(after);
    let Page { items, next } = store.query(query).await?;
    Ok((items.iter().filter_map(KeyRecord::from_item).collect(), next))
}

fn owned_by(tenant: &TenantId) -> Condition {
    Condition::eq(attr::TENANT, tenant.as_str())
}

/// Revokes a key at once. `false` when the tenant has no such key.
pub async fn revoke(store: &DynStore, tenant: &TenantId, id: &KeyId) -> Result<bool, StoreError> {
    match store.delete(&keys::api_key(id.as_str()), Some(owned_by(tenant))).await {
        Ok(removed) => Ok(removed.is_some()),
        Err(StoreError::ConditionFailed { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Why a rotation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("no such key")]
    NotFound,
    #[error("the key was already rotated; rotate its replacement")]
    AlreadyRotated,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Replaces a key with a new one of the same name, role, tier and signing mode; the old key keeps working for
/// `grace_secs` (or until its own expiry, if sooner) and then expires. One transaction: either both happen or
/// neither does, and a key can be rotated only once (so two concurrent rotations cannot both mint a successor).
pub async fn rotate(
    store: &DynStore,
    hasher: &KeyHasher,
    tenant: &TenantId,
    id: &KeyId,
    grace_secs: i64,
) -> Result<(KeyRecord, SecretString), RotateError> {
    let old = find_in(store, tenant, id).await?.ok_or(RotateError::NotFound)?;
    if old.replaced_by.is_some() {
        return Err(RotateError::AlreadyRotated);
    }
    let now = now_epoch();
    let spec = NewKey {
        tenant: old.tenant.clone(),
        name: old.name.clone(),
        role: old.role,
        tier: old.tier.clone(),
        signing: old.signing,
        expires_at: old.expires_at,
        allowed_cidrs: old.allowed_cidrs.clone(),
    };
    let (new, text) = mint(hasher, &spec, now);
    let retire_at = old.expires_at.map_or(now + grace_secs, |at| at.min(now + grace_secs));
    let ops = vec![
        TxOp::Put { item: new.to_item(), condition: Some(Condition::NotExists) },
        TxOp::Update {
            key: keys::api_key(id.as_str()),
            update: Update::new().set(EXPIRES_AT, retire_at).set(attr::REPLACED_BY, new.id.as_str()),
            condition: Some(owned_by(tenant).and(Condition::AttrNotExists(attr::REPLACED_BY.into()))),
        },
    ];
    match store.transact_write(ops).await {
        Ok(()) => Ok((new, text)),
        Err(StoreError::TransactionCanceled { .. }) => {
            // The old key vanished, changed tenant or was rotated meanwhile: say which, from a fresh read.
            match find_in(store, tenant, id).await? {
                Some(r) if r.replaced_by.is_some() => Err(RotateError::AlreadyRotated),
                _ => Err(RotateError::NotFound),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Records that a key was used at `now`, unless that was already recorded within the last minute (by any
/// instance: the condition makes the table the judge). Returns whether it wrote.
pub async fn touch(store: &DynStore, id: &KeyId, now: i64) -> Result<bool, StoreError> {
    let fresh_enough = Condition::Exists.and(
        Condition::AttrNotExists(attr::LAST_USED_AT.into())
            .or(Condition::le(attr::LAST_USED_AT, now - LAST_USED_EVERY_SECS)),
    );
    let update = Update::new().set(attr::LAST_USED_AT, now);
    match store.update(&keys::api_key(id.as_str()), update, Some(fresh_enough)).await {
        Ok(_) => Ok(true),
        Err(StoreError::ConditionFailed { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_their_environment_and_an_id_the_hasher_can_find() {
        let secret = Secret::new(b"0123456789abcdef0123456789abcdef".to_vec());
        let test = KeyHasher::derive(&secret, Environment::Staging);
        let live = KeyHasher::derive(&secret, Environment::Production);
        let spec = NewKey {
            tenant: TenantId::default_tenant(),
            name: "ci".into(),
            role: Role::Viewer,
            tier: "standard".into(),
            signing: Signing::Off,
            expires_at: None,
            allowed_cidrs: Vec::new(),
        };
        let (record, text) = mint(&test, &spec, 1);
        assert!(text.expose().starts_with("ca_test_") && text.expose().starts_with(&record.display));
        assert_eq!(test.key_id(text.expose()), Some(record.id.as_str()));
        assert!(test.matches(&record, text.expose()));
        assert!(!test.matches(&record, &format!("{}x", text.expose())));
        // A staging key is not a production key, whatever its bytes.
        assert_eq!(live.key_id(text.expose()), None);
        assert!(!format!("{text:?} {record:?}").contains(text.expose()));
    }
}
