//! The audit trail: one record per authenticated request, written by the perimeter layer before the response
//! leaves (an instance may freeze the moment it answers, so nothing is deferred). One `PutItem` per request; the
//! record lives 30 days (TTL). Records are kept per tenant in time order, and per actor on `gsi1`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::TenantId;
use crate::store::{Cursor, DynStore, EXPIRES_AT, GSI1_PK, GSI1_SK, Index, Item, Query, StoreError, keys};

/// How long a record is kept.
pub const RETENTION_SECS: i64 = 30 * 24 * 3600;

/// One authenticated request, as the trail keeps it. Never a credential: actors are named by id or key prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditRecord {
    /// Milliseconds since the epoch when the request arrived.
    pub at_ms: i64,
    pub request_id: String,
    /// `agent:<id>`, `key:ca_live_…`, `admin:bootstrap`.
    pub actor: String,
    pub role: String,
    pub method: String,
    /// The route template (`/api/v1/keys/{key_id}`), not the raw path.
    pub route: String,
    pub status: u16,
    pub duration_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_type: Option<String>,
}

mod attr {
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

fn sort_key(at_ms: i64, request_id: &str) -> String {
    format!("{at_ms:013}#{request_id}")
}

impl AuditRecord {
    fn to_item(&self, tenant: &TenantId) -> Item {
        let mut item = Item::new(&keys::audit_record(tenant.as_str(), self.at_ms, &self.request_id))
            .with(attr::AT_MS, self.at_ms)
            .with(attr::REQUEST_ID, self.request_id.as_str())
            .with(attr::ACTOR, self.actor.as_str())
            .with(attr::ROLE, self.role.as_str())
            .with(attr::METHOD, self.method.as_str())
            .with(attr::ROUTE, self.route.as_str())
            .with(attr::STATUS, i64::from(self.status))
            .with(attr::DURATION_MS, self.duration_ms)
            .with(GSI1_PK, keys::audit_by_actor(tenant.as_str(), &self.actor))
            .with(GSI1_SK, sort_key(self.at_ms, &self.request_id))
            .with(EXPIRES_AT, self.at_ms / 1000 + RETENTION_SECS);
        for (name, value) in
            [(attr::CLIENT_IP, &self.client_ip), (attr::COUNTRY, &self.country), (attr::TASK_TYPE, &self.task_type)]
        {
            if let Some(v) = value {
                item.set(name, v.as_str());
            }
        }
        item
    }

    fn from_item(item: &Item) -> Option<Self> {
        let text = |name: &str| item.get_str(name).map(str::to_owned);
        Some(Self {
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
}

/// Writes one record (one `PutItem`). The sort key holds the request id, so a retried write of the same record
/// rewrites it rather than adding a second one.
pub async fn write(store: &DynStore, tenant: &TenantId, record: &AuditRecord) -> Result<(), StoreError> {
    store.put(record.to_item(tenant), None).await
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
    // `~` sorts after every request id character, so the bound includes every record of `to_ms`.
    let to = sort_key(filter.to_ms.unwrap_or(9_999_999_999_999).clamp(0, 9_999_999_999_999), "~");
    let query = match &filter.actor {
        Some(actor) => Query::partition(keys::audit_by_actor(tenant.as_str(), actor)).on(Index::Gsi1),
        None => Query::partition(keys::audit_partition(tenant.as_str())),
    };
    let page = store.query(query.between(from, to).backward().limit(limit).after(after)).await?;
    let records = page
        .items
        .iter()
        .filter_map(AuditRecord::from_item)
        .filter(|r| filter.route.as_ref().is_none_or(|route| *route == r.route))
        .collect();
    Ok((records, page.next))
}
