//! Typed administration: API keys, agents, the audit trail and users' contexts (each route's permission applies:
//! a key without it gets `Forbidden`). Listings follow `next_cursor` to the end.

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{Client, ClientError};
use crate::api::admin::{
    AgentCredential, AgentPage, AgentSummary, AuditPage, AuditRecord, ContextStored, CreateKey, CreatedKey, KeyInfo,
    KeyPage,
};

/// Which audit records to read.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// `key:ca_live_…`, `agent:<id>`, `admin:bootstrap`.
    pub actor: Option<String>,
    /// A route template, e.g. `/api/v1/keys`.
    pub route: Option<String>,
    /// Not before (RFC 3339).
    pub from: Option<String>,
    /// Not after (RFC 3339).
    pub to: Option<String>,
    /// Stop after this many records (default: all).
    pub max: Option<usize>,
}

/// One path segment of an id the caller gives: refused before it is sent when it could change the path.
fn segment(id: &str) -> Result<&str, ClientError> {
    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        Ok(id)
    } else {
        Err(ClientError::Protocol(format!("{id:?} is not an id (letters, digits, '.', '_', '-')")))
    }
}

impl Client {
    /// Every page of a listing, its items gathered until `max`.
    async fn all<P: DeserializeOwned, T>(
        &self,
        path: &str,
        query: &[(&str, String)],
        max: Option<usize>,
        split: impl Fn(P) -> (Vec<T>, Option<String>),
    ) -> Result<Vec<T>, ClientError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut params: Vec<(&str, String)> = query.to_vec();
            if let Some(cursor) = cursor.take() {
                params.push(("cursor", cursor));
            }
            let (page, next) = split(self.get(path, params).await?);
            items.extend(page);
            if max.is_some_and(|max| items.len() >= max) {
                items.truncate(max.unwrap_or(usize::MAX));
                return Ok(items);
            }
            match next {
                Some(next) => cursor = Some(next),
                None => return Ok(items),
            }
        }
    }

    /// The tenant's API keys (never their text).
    pub async fn keys(&self) -> Result<Vec<KeyInfo>, ClientError> {
        self.all("/api/v1/keys", &[], None, |p: KeyPage| (p.keys, p.next_cursor)).await
    }

    /// Creates a key; its text and secrets are in the answer only.
    pub async fn create_key(&self, key: &CreateKey) -> Result<CreatedKey, ClientError> {
        Ok(self.write(Method::POST, "/api/v1/keys", Some(key), false).await?.1)
    }

    /// A new key replacing `id` (which keeps working for the grace period).
    pub async fn rotate_key(&self, id: &str) -> Result<CreatedKey, ClientError> {
        let path = format!("/api/v1/keys/{}/rotate", segment(id)?);
        Ok(self.write::<(), _>(Method::POST, &path, None, false).await?.1)
    }

    /// Revokes a key at once.
    pub async fn revoke_key(&self, id: &str) -> Result<(), ClientError> {
        let path = format!("/api/v1/keys/{}", segment(id)?);
        self.send_json(Method::DELETE, &path, None, false).await.map(drop)
    }

    /// The agents registered for the tenant's users.
    pub async fn agents(&self) -> Result<Vec<AgentSummary>, ClientError> {
        self.all("/api/v1/agents", &[], None, |p: AgentPage| (p.agents, p.next_cursor)).await
    }

    /// Registers an agent working for `owner`; the secret is in the answer only.
    pub async fn create_agent(&self, agent_id: &str, owner: &str) -> Result<AgentCredential, ClientError> {
        let body = json!({"agent_id": segment(agent_id)?, "owner": owner});
        Ok(self.write(Method::POST, "/api/v1/agents", Some(&body), false).await?.1)
    }

    /// A new secret for an agent; the old one and its refresh tokens stop working.
    pub async fn rotate_agent(&self, agent_id: &str) -> Result<AgentCredential, ClientError> {
        let path = format!("/api/v1/agents/{}/rotate", segment(agent_id)?);
        Ok(self.write::<(), _>(Method::POST, &path, None, false).await?.1)
    }

    /// Disables an agent: its secret and refresh tokens stop working.
    pub async fn disable_agent(&self, agent_id: &str) -> Result<(), ClientError> {
        let path = format!("/api/v1/agents/{}/disable", segment(agent_id)?);
        self.send_json(Method::POST, &path, None, false).await.map(drop)
    }

    /// The tenant's audit trail, newest first.
    pub async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, ClientError> {
        let mut query = Vec::new();
        for (name, value) in
            [("actor", &filter.actor), ("route", &filter.route), ("from", &filter.from), ("to", &filter.to)]
        {
            if let Some(value) = value {
                query.push((name, value.clone()));
            }
        }
        self.all("/api/v1/audit", &query, filter.max, |p: AuditPage| (p.records, p.next_cursor)).await
    }

    /// Stores the context agents working for `user` read (`GET /api/v1/agent/context`).
    pub async fn put_context(&self, user: &str, context: &serde_json::Value) -> Result<ContextStored, ClientError> {
        let path = format!("/api/v1/admin/users/{}/context", segment(user)?);
        // Storing the same context twice leaves the same state: safe to replay.
        Ok(self.write(Method::PUT, &path, Some(context), true).await?.1)
    }
}
