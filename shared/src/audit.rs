//! The audit trail: records of requests, written by the perimeter layer before the response leaves (an instance
//! may freeze the moment it answers, so nothing is deferred); which requests are stored is the perimeter's audit
//! policy (`crate::perimeter::audit`). One conditional `PutItem` per record; the record lives 30 days (TTL).
//! Records are kept per tenant in time order, and per actor on `gsi1`. Each record's key holds an id the server
//! generates (UUIDv7), never anything the caller sent, and the put only creates: no request can overwrite or
//! erase another's record, whatever request id it sends.

use crate::ids::TenantId;
use crate::store::{Condition, Cursor, DynStore, EXPIRES_AT, GSI1_PK, GSI1_SK, Index, Item, Query, StoreError, keys};

/// How long a record is kept.
pub const RETENTION_SECS: i64 = 30 * 24 * 3600;

// The record is the wire's: the SDK reads the same definition.
pub use cloud_agent_wire::admin::AuditRecord;

mod attr {
    pub(super) const ID: &str = "id";
    pub(super) const AT_MS: &str = "at_ms";
    pub(super) const REQUEST_ID: &str = "request_id";
    pub(super) const ACTOR: &str = "actor";
    pub(super) const ROLE: &str = "role";
    pub(super) const METHOD: &str = "method";
    pub(super) const ROUTE: &str = "route";
    pub(super) const STATUS: &str = "status";
    pub(super) const DURATION_MS: &str = "duration_ms";
    pub(super) const CLIENT_IP: &str = "client_ip";
    pub(super) const COUNTRY: &str = "country";
    pub(super) const TASK_TYPE: &str = "task_type";
}

/// The trail of failed authentications whose tenant is unknown (no valid credential named one). `~` is not a
/// tenant id character, so no tenant can read or write it as its own.
pub const UNAUTHENTICATED: &str = "~unauthenticated";

fn sort_key(at_ms: i64, id: &str) -> String {
    format!("{at_ms:013}#{id}")
}

/// A fresh record id.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

// The record is a wire type: its storage form lives here, as functions.
fn to_item(record: &AuditRecord, trail: &str) -> Item {
    let mut item = Item::new(&keys::audit_record(trail, record.at_ms, &record.id))
        .with(attr::ID, record.id.as_str())
        .with(attr::AT_MS, record.at_ms)
        .with(attr::REQUEST_ID, record.request_id.as_str())
        .with(attr::ACTOR, record.actor.as_str())
        .with(attr::ROLE, record.role.as_str())
        .with(attr::METHOD, record.method.as_str())
        .with(attr::ROUTE, record.route.as_str())
        .with(attr::STATUS, i64::from(record.status))
        .with(attr::DURATION_MS, record.duration_ms)
        .with(GSI1_PK, keys::audit_by_actor(trail, &record.actor))
        .with(GSI1_SK, sort_key(record.at_ms, &record.id))
        .with(EXPIRES_AT, record.at_ms / 1000 + RETENTION_SECS);
    for (name, value) in
        [(attr::CLIENT_IP, &record.client_ip), (attr::COUNTRY, &record.country), (attr::TASK_TYPE, &record.task_type)]
    {
        if let Some(v) = value {
            item.set(name, v.as_str());
        }
    }
    item
}

fn from_item(item: &Item) -> Option<AuditRecord> {
    let text = |name: &str| item.get_str(name).map(str::to_owned);
    Some(AuditRecord {
        id: text(attr::ID)?,
        at_ms: item.get_i64(attr::AT_MS)?,
        request_id: text(attr::REQUEST_ID)?,
        actor: text(attr::ACTOR)?,
        role: text(attr::ROLE)?,
        method: text(attr::METHOD)?,
        route: text(attr::ROUTE)?,
        status: u16::try_from(item.get_i64(attr::STATUS)?).ok()?,
        duration_ms: item.get(attr::DURATION_MS).and_then(crate::store::Value::as_number)?.as_f64(),
        client_ip: text(attr::CLIENT_IP),
        country: text(attr::COUNTRY),
        task_type: text(attr::TASK_TYPE),
    })
}

/// Writes one record to `tenant`'s trail (one `PutItem` that only creates).
pub async fn write(store: &DynStore, tenant: &TenantId, record: &AuditRecord) -> Result<(), StoreError> {
    write_to(store, tenant.as_str(), record).await
}

/// Writes one record to a trail: a tenant's, or [`UNAUTHENTICATED`]. The put only creates; an id that is somehow
/// taken gets a fresh one rather than overwriting the record that holds it.
pub async fn write_to(store: &DynStore, trail: &str, record: &AuditRecord) -> Result<(), StoreError> {
    match store.put(to_item(record, trail), Some(Condition::NotExists)).await {
        Err(StoreError::ConditionFailed { .. }) => {
            let fresh = AuditRecord { id: new_id(), ..record.clone() };
            store.put(to_item(&fresh, trail), Some(Condition::NotExists)).await
        }
        other => other,
    }
}

/// What to read from a tenant's trail.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub actor: Option<String>,
    pub route: Option<String>,
    /// Inclusive bounds, milliseconds since the epoch.
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

/// One page of a tenant's trail, newest first. The actor and time range are key conditions (the actor's index,
/// the sort key range); the route is matched on the page read, so a page may hold fewer than `limit` records
/// while `next` says there is more.
pub async fn query(
    store: &DynStore,
    tenant: &TenantId,
    filter: &Filter,
    limit: u32,
    after: Option<Cursor>,
) -> Result<(Vec<AuditRecord>, Option<Cursor>), StoreError> {
    let from = sort_key(filter.from_ms.unwrap_or(0).max(0), "");
    // `~` sorts after every id character, so the bound includes every record of `to_ms`.
    let to = sort_key(filter.to_ms.unwrap_or(9_999_999_999_999).clamp(0, 9_999_999_999_999), "~");
    let query = match &filter.actor {
        Some(actor) => Query::partition(keys::audit_by_actor(tenant.as_str(), actor)).on(Index::Gsi1),
        None => Query::partition(keys::audit_partition(tenant.as_str())),
    };
    let page = store.query(query.between(from, to).backward().limit(limit).after(after)).await?;
    let records = page
        .items
        .iter()
        .filter_map(from_item)
        .filter(|r| filter.route.as_ref().is_none_or(|route| *route == r.route))
        .collect();
    Ok((records, page.next))
}
