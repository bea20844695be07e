//! Hooks: policy and bookkeeping the engine runs around handlers, declared for one task type or for all.
//!
//! - `before` runs at intake, before the task is stored: a rejection is answered to the caller as its own
//!   problem and nothing is created (a queued task is checked while the caller still waits, not later).
//! - `after` runs when an attempt succeeds, before the result is stored: it may annotate the result.
//! - `on_error` runs when an attempt fails or times out (each attempt, retried or not): for logging and metrics.
//!
//! Hooks are synchronous and should be cheap: they run on the request path. One that panics is treated as a
//! refusal (fail closed) at `before`, and ignored after a run (the task's outcome stands).

use serde_json::Value;

use crate::contract::{Failure, Rejection, TaskInfo};

pub trait Hook: Send + Sync + 'static {
    /// For logs and the capabilities listing.
    fn name(&self) -> &'static str;

    /// May refuse the task before it is stored.
    fn before(&self, task: &TaskInfo, input: &Value) -> Result<(), Rejection> {
        let _ = (task, input);
        Ok(())
    }

    /// May annotate a successful result before it is stored.
    fn after(&self, task: &TaskInfo, result: &mut Value) {
        let _ = (task, result);
    }

    /// Sees every failed attempt.
    fn on_error(&self, task: &TaskInfo, failure: &Failure) {
        let _ = (task, failure);
    }
}
