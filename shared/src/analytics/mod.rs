//! Analytics over any window: finished tasks and served requests counted per tenant and UTC hour in the table
//! ([`task_hours`], [`requests`]), merged into hour or day buckets with exact-to-the-histogram percentiles
//! ([`sketch`]), judged for anomalies ([`anomaly`]) and priced per platform ([`cost`]) by [`window`].

pub mod anomaly;
pub mod cost;
pub mod hours;
pub mod requests;
pub mod sketch;
pub mod task_hours;
pub mod window;

pub use cloud_agent_wire::analytics::{Analytics, Bucket};
