//! Windowed statistics on the wire (`GET /api/v1/analytics`): per bucket (hour or day) and task type, outcomes,
//! throughput and duration percentiles; per route, requests and their durations; anomalies; a cost estimate.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The width of one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    #[default]
    Hour,
    Day,
}

impl Bucket {
    pub fn seconds(self) -> i64 {
        match self {
            Self::Hour => 3600,
            Self::Day => 86_400,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }
}

/// Duration percentiles in milliseconds; `null` where nothing was timed.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub mean: Option<f64>,
}

/// Tasks of one type in one bucket (or the whole window).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskPoint {
    /// The bucket's start (RFC 3339, UTC); the window's start for the window's summary.
    pub start: String,
    /// Tasks that finished in the bucket.
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub cancelled: u64,
    /// (failed + timed out) / total; `null` without tasks.
    pub error_rate: Option<f64>,
    /// Finished tasks per second over the bucket.
    pub throughput_per_s: f64,
    pub duration_ms: Percentiles,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TaskSeries {
    #[serde(rename = "type")]
    pub kind: String,
    /// One per bucket of the window, in time order (buckets without tasks included, with zeros).
    pub points: Vec<TaskPoint>,
    /// The whole window: counts added, percentiles from the merged histograms.
    pub window: TaskPoint,
}

/// Requests to one route in one bucket (or the whole window).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoutePoint {
    pub start: String,
    pub requests: u64,
    pub server_errors: u64,
    pub client_errors: u64,
    /// Server errors / requests; `null` without requests.
    pub error_rate: Option<f64>,
    pub duration_ms: Percentiles,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RouteSeries {
    /// The route template (`/v3/tasks/{task_id}`).
    pub route: String,
    pub points: Vec<RoutePoint>,
    pub window: RoutePoint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Critical,
}

/// A bucket whose value is far from its trailing baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Anomaly {
    /// `task:<type>` or `route:<template>`.
    pub series: String,
    /// `throughput` (tasks or requests per second), `error_rate` or `p95_ms`.
    pub metric: String,
    /// The bucket's start.
    pub start: String,
    pub value: f64,
    /// The baseline's mean and standard deviation.
    pub mean: f64,
    pub deviation: f64,
    pub z: f64,
    pub severity: Severity,
}

/// One platform's estimate for the window, in USD.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlatformCost {
    /// The function memory the estimate assumes.
    pub memory_mb: u32,
    /// Lambda: GB-seconds; Vercel: active CPU and provisioned memory.
    pub compute_usd: f64,
    pub requests_usd: f64,
    pub total_usd: f64,
}

/// What the window's requests would cost on each platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cost {
    /// The date the price table was read off the price lists: check it against today's.
    pub prices_as_of: String,
    /// Requests counted in the window.
    pub invocations: u64,
    /// Their summed durations.
    pub busy_seconds: f64,
    /// How the figures were reached, in a sentence.
    pub basis: String,
    /// `lambda` and `vercel`.
    pub platforms: BTreeMap<String, PlatformCost>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Analytics {
    /// The first bucket's start and the end of the last (RFC 3339, UTC).
    pub from: String,
    pub to: String,
    pub bucket: Bucket,
    /// Relative error of every percentile (0.02: within 2 % of the exact value).
    pub accuracy: f64,
    /// Every bucket's start, in order: the x axis of every series.
    pub buckets: Vec<String>,
    pub tasks: Vec<TaskSeries>,
    pub requests: Vec<RouteSeries>,
    pub anomalies: Vec<Anomaly>,
    pub cost: Cost,
}
