//! Feature folders. Each owns its routes, service, records and errors, and exports one
//! [`crate::route::Feature`] that the centre ([`crate::app`]) concatenates.

pub mod agent_health;
pub mod agents;
pub mod analytics;
pub mod audit;
pub mod context;
pub mod health;
pub mod keys;
pub mod platform;
pub mod progress;
pub mod tasks;
pub mod tokens;
