//! The health report (`GET /health`, the IETF health-check draft's `application/health+json`) and the alerts it
//! carries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// pass / warn / fail, as the health-check draft defines them (ordered: the worst check decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Pass,
    Warn,
    Fail,
}

/// One measurement of one component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub component_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_unit: Option<String>,
    pub status: HealthStatus,
    /// RFC 3339 time of the measurement.
    pub time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

/// What can be wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    ErrorRate,
    Latency,
    BreakerOpen,
    Memory,
    /// Work that failed every attempt waits in the dead-letter queue.
    DeadLetters,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ErrorRate => "error_rate",
            Self::Latency => "latency",
            Self::BreakerOpen => "breaker_open",
            Self::Memory => "memory",
            Self::DeadLetters => "dead_letters",
        }
    }
}

/// An alert condition holding on the instance that answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Alert {
    pub kind: AlertKind,
    pub detail: String,
}

/// The whole health document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct HealthReport {
    pub status: HealthStatus,
    /// Public major version of the service interface.
    pub version: String,
    /// This exact release.
    pub release_id: String,
    pub service_id: String,
    /// development, staging or production.
    pub environment: String,
    pub description: String,
    /// Keyed `component:measurement`.
    pub checks: BTreeMap<String, Vec<Check>>,
    /// Which instance answered (in-memory state is per instance).
    pub notes: Vec<String>,
    /// Alert conditions holding on this instance.
    pub alerts: Vec<Alert>,
}
