//! The single table's key layout, in one place. Every item the service writes has its key built here; the
//! features own the records (attributes) but not the layout, so two features can never collide.
//!
//! | item | pk | sk |
//! |---|---|---|
//! | health probe (read only) | `HEALTH#probe` | `PROBE` |
//! | agent credential | `AGENT#{agent}` | `CRED` |
//! | refresh family | `FAMILY#{family}` | `META` |
//! | task state | `TASK#{user}#{task}` | `STATE` |
//! | progress event | `TASK#{user}#{task}` | `EVENT#{ms:013}#{batch}#{index:04}` |
//! | batch receipt | `BATCH#{agent}#{batch}` | `RECEIPT` |
//! | user context | `USER#{user}` | `CONTEXT` |
//! | agent health report | `AGENTHEALTH` | `{agent}` |
//!
//! Ids inside keys are validated at the edge and cannot contain `#` (user ids) or are drawn from alphabets
//! without it (agent, task, family ids), so a key can never be read two ways. Batch ids are visible ASCII and
//! come last in their partition key.

use super::Key;

/// The key the health check reads: a real round trip that needs no data.
pub fn probe() -> Key {
    Key::new("HEALTH#probe", "PROBE")
}

pub fn agent_credential(agent: &str) -> Key {
    Key::new(format!("AGENT#{agent}"), "CRED")
}

pub fn refresh_family(family: &str) -> Key {
    Key::new(format!("FAMILY#{family}"), "META")
}

/// A task's partition: tasks belong to the user the agent works for, so the same task id under two users is
/// two tasks.
pub fn task_partition(user: &str, task: &str) -> String {
    format!("TASK#{user}#{task}")
}

pub fn task_state(user: &str, task: &str) -> Key {
    Key::new(task_partition(user, task), "STATE")
}

/// Sort-key prefix of a task's progress events.
pub const EVENT_PREFIX: &str = "EVENT#";

/// One progress event: ordered by the agent's timestamp, unique per batch and position, so a replayed batch
/// rewrites the same items instead of duplicating them.
pub fn progress_event(user: &str, task: &str, at_ms: i64, batch: &str, index: usize) -> Key {
    Key::new(task_partition(user, task), format!("{EVENT_PREFIX}{at_ms:013}#{batch}#{index:04}"))
}

pub fn batch_receipt(agent: &str, batch: &str) -> Key {
    Key::new(format!("BATCH#{agent}#{batch}"), "RECEIPT")
}

pub fn user_context(user: &str) -> Key {
    Key::new(format!("USER#{user}"), "CONTEXT")
}

/// The partition holding the latest health report of every agent.
pub const AGENT_HEALTH_PARTITION: &str = "AGENTHEALTH";

pub fn agent_health_report(agent: &str) -> Key {
    Key::new(AGENT_HEALTH_PARTITION, agent)
}
