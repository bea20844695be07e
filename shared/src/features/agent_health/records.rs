//! The agent health report as stored: one item per agent (`AGENTHEALTH` / agent id), kept an hour.

use crate::features::tokens::credentials::AgentId;
use crate::store::{Item, Key, StoreError, keys};

use super::report::AgentReport;

/// How long an agent's report is kept: an agent that stops reporting drops off the list.
pub const REPORT_TTL_SECS: i64 = 3600;

/// An agent's latest report.
#[derive(Debug, Clone)]
pub struct ReportRecord {
    pub agent_id: String,
    /// Epoch seconds.
    pub reported_at: i64,
    pub report: AgentReport,
}

impl ReportRecord {
    pub fn key(agent: &AgentId) -> Key {
        keys::agent_health_report(agent.as_str())
    }

    /// The item, checked against DynamoDB's limits.
    pub fn to_item(&self) -> Result<Item, StoreError> {
        let report = serde_json::to_string(&self.report).map_err(|e| StoreError::Internal(e.to_string()))?;
        let item = Item::new(&keys::agent_health_report(&self.agent_id))
            .with("agent_id", self.agent_id.as_str())
            .with("report", report)
            .with("reported_at", self.reported_at)
            .with("expires_at", self.reported_at + REPORT_TTL_SECS);
        item.check_limits()?;
        Ok(item)
    }

    /// `None` for an item that is not a report (or one written by an incompatible version).
    pub fn from_item(item: &Item) -> Option<Self> {
        Some(Self {
            agent_id: item.get_str("agent_id")?.to_owned(),
            reported_at: item.get_i64("reported_at")?,
            report: serde_json::from_str(item.get_str("report")?).ok()?,
        })
    }
}
