//! The agent-side SDK: what a Rust agent (and the `cloudagent agent …` commands) use to talk to Cloud Agent.
//!
//! - [`TokenManager`]: logs in with the agent's credential, refreshes before expiry (one refresh at a time),
//!   logs in again when the refresh family ends.
//! - [`ProgressReporter`]: `report(update)` returns at once; updates are posted in batches with retries under
//!   the same batch id, so a retry never writes twice.
//! - [`batch::Batcher`]: the request batcher both are built on.
//! - [`RequestSigner`]: signs requests made with an API key whose signing is on.
//! - [`client::Client`]: the operator client — typed task calls, retries under a shared budget, signing.
//! - [`retry`]: which requests an operator client retries, how long it waits, and the budget that bounds retries.
//!
//! The wire types ([`wire`]) are this client's view of the API; the contract tests run them against the server.

/// The API's bodies, the same types the server sends (problem details, tasks).
pub use cloud_agent_wire as api;

pub mod backoff;
pub mod batch;
pub mod client;
pub mod orchestrator;
pub mod progress;
pub mod retry;
pub mod secret;
pub mod signing;
pub mod token_manager;
pub mod webhook;
pub mod wire;

pub use batch::{BatchConfig, BatchError, Batcher};
pub use progress::{ProgressReporter, ReporterOptions, ReporterStats};
pub use retry::{RetryBudget, RetryPolicy};
pub use secret::AgentSecret;
pub use signing::RequestSigner;
pub use token_manager::{SdkError, TokenManager, TokenManagerOptions};
pub use wire::{ItemIssue, ProgressUpdate, Receipt, TaskStatus};
