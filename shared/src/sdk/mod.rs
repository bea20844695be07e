//! The agent-side SDK: what a Rust agent (and the `cloudagent agent …` commands) use to talk to Cloud Agent.

pub mod progress;
pub mod token_manager;

pub use progress::{ProgressReporter, ReporterOptions};
pub use token_manager::{SdkError, TokenManager, TokenManagerOptions};
