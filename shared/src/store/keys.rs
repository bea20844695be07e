//! The single table's key layout, in one place. Every item the service writes has its key built here; the
//! features own the records (attributes) but not the layout, so two features can never collide.
//!
//! | item | pk | sk |
//! |---|---|---|
//! | health probe (read only) | `HEALTH#probe` | `PROBE` |
//! | agent credential | `AGENT#{agent}` | `CRED` (gsi1: `AGENTS#{tenant}`, `{agent}`) |
//! | refresh family | `FAMILY#{family}` | `META` |
//! | task state | `TASK#{user}#{task}` | `STATE` |
//! | progress event | `TASK#{user}#{task}` | `EVENT#{ms:013}#{batch}#{index:04}` |
//! | batch receipt | `BATCH#{agent}#{batch}` | `RECEIPT` |
//! | user context | `USER#{user}` | `CONTEXT` |
//! | agent health report | `AGENTHEALTH` | `{agent}` |
//! | API key | `APIKEY#{id}` | `META` (gsi1: `APIKEYS#{tenant}`, `{created_ms:013}#{id}`) |
//! | audit record | `AUDIT#{tenant}` | `{ms:013}#{record id}` (gsi1: `AUDITBY#{tenant}#{actor}`, same sk) |
//! | rate-limit window | `RATE#{subject}#{window}` | `WINDOW` |
//! | used request signature | `SIGSEEN#{key}#{signature}` | `SEEN` |
//! | delegated task | `JOB#{tenant}#{task}` | `STATE` (gsi1: `JOBS#{tenant}`, `{task}`: ids are time-ordered) |
//! | idempotency key of a task | `JOBIDEM#{tenant}#{sha256(key)}` | `IDEM` |
//! | due work (table-drained queue) | `DUE#{rank}#{tenant}` | `{due_ms:013}#{kind}#{task}` |
//! | tenants with due work at a rank | `DUETENANTS#{rank}` | `{tenant}` (`n`: its due items) |
//! | a tenant's unfinished queued tasks | `QUEUED#{tenant}` | `COUNT` (`n`) |
//! | task statistics of a tenant | `JOBSTATS#{tenant}` | `{type}` |
//! | a tenant's tasks finished in one hour | `JOBHOURS#{tenant}` | `{YYYY-MM-DDTHH}#{type}` |
//! | a tenant's requests served in one hour | `REQHOURS#{tenant}` | `{YYYY-MM-DDTHH}#{route}` |
//! | disabled webhook endpoint | `HOOKOFF#{tenant}#{sha256(url)}` | `OFF` |
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

/// The `gsi1` partition listing a tenant's agents (sort key: the agent id).
pub fn agents_of(tenant: &str) -> String {
    format!("AGENTS#{tenant}")
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

/// An API key's record (`APIKEY#{id}`); listed per tenant through `gsi1` (`APIKEYS#{tenant}`).
pub fn api_key(id: &str) -> Key {
    Key::new(format!("APIKEY#{id}"), "META")
}

/// The `gsi1` partition listing a tenant's API keys.
pub fn api_keys_of(tenant: &str) -> String {
    format!("APIKEYS#{tenant}")
}

/// A tenant's audit trail, ordered by time (`{ms:013}#{record id}`).
pub fn audit_partition(tenant: &str) -> String {
    format!("AUDIT#{tenant}")
}

pub fn audit_record(tenant: &str, at_ms: i64, id: &str) -> Key {
    Key::new(audit_partition(tenant), format!("{at_ms:013}#{id}"))
}

/// The `gsi1` partition of one actor's audit records.
pub fn audit_by_actor(tenant: &str, actor: &str) -> String {
    format!("AUDITBY#{tenant}#{actor}")
}

/// One rate-limit window of one subject (a key, an agent, a client address).
pub fn rate_window(subject: &str, window: i64) -> Key {
    Key::new(format!("RATE#{subject}#{window}"), "WINDOW")
}

/// A request signature already used (replay protection).
pub fn signature_seen(key_id: &str, signature: &str) -> Key {
    Key::new(format!("SIGSEEN#{key_id}#{signature}"), "SEEN")
}

/// A delegated task (`JOB#…`, to keep it apart from agents' progress tasks under `TASK#…`). One partition per task
/// spreads writes; a tenant's listing walks `gsi1`.
pub fn job(tenant: &str, task: &str) -> Key {
    Key::new(format!("JOB#{tenant}#{task}"), "STATE")
}

/// The `gsi1` partition listing a tenant's delegated tasks (sort key: the task id, which is time-ordered).
pub fn jobs_of(tenant: &str) -> String {
    format!("JOBS#{tenant}")
}

/// The task an idempotency key made; the key is hashed so any text the caller chose fits a key.
pub fn job_idempotency(tenant: &str, key_digest: &str) -> Key {
    Key::new(format!("JOBIDEM#{tenant}#{key_digest}"), "IDEM")
}

/// The partition of one tenant's due work at one priority rank (0 is drained first).
pub fn due_partition(rank: u8, tenant: &str) -> String {
    format!("DUE#{rank}#{tenant}")
}

/// One piece of due work: ordered by when it is due, so a drain reads a tenant's due ones with one range query.
pub fn due_entry(rank: u8, due_ms: i64, kind: &str, tenant: &str, task: &str) -> Key {
    Key::new(due_partition(rank, tenant), format!("{due_ms:013}#{kind}#{task}"))
}

/// Due work at one rank as it was kept before it was kept per tenant; drained until empty.
pub fn legacy_due_partition(rank: u8) -> String {
    format!("DUE#{rank}")
}

/// The tenants with due work at one rank: a drain takes work round-robin across them.
pub fn due_tenants(rank: u8) -> String {
    format!("DUETENANTS#{rank}")
}

/// One tenant's entry among the tenants with due work at `rank` (`n` counts its due items).
pub fn due_tenant(rank: u8, tenant: &str) -> Key {
    Key::new(due_tenants(rank), tenant)
}

/// A tenant's count of queued tasks not yet finished, capped per tenant.
pub fn queued_count(tenant: &str) -> Key {
    Key::new(format!("QUEUED#{tenant}"), "COUNT")
}

/// A tenant's task statistics, one item per task type.
pub fn job_stats(tenant: &str, task_type: &str) -> Key {
    Key::new(format!("JOBSTATS#{tenant}"), task_type)
}

pub fn job_stats_partition(tenant: &str) -> String {
    format!("JOBSTATS#{tenant}")
}

/// The tasks of one type a tenant finished in one UTC hour (`hour`: `YYYY-MM-DDTHH`, so keys sort by time).
pub fn job_hour(tenant: &str, hour: &str, task_type: &str) -> Key {
    Key::new(job_hours_partition(tenant), format!("{hour}#{task_type}"))
}

pub fn job_hours_partition(tenant: &str) -> String {
    format!("JOBHOURS#{tenant}")
}

/// The requests to one route (its template) a tenant made in one UTC hour.
pub fn request_hour(tenant: &str, hour: &str, route: &str) -> Key {
    Key::new(request_hours_partition(tenant), format!("{hour}#{route}"))
}

pub fn request_hours_partition(tenant: &str) -> String {
    format!("REQHOURS#{tenant}")
}

/// A webhook endpoint that answered 410 Gone: no more deliveries to it for this tenant.
pub fn webhook_disabled(tenant: &str, url_digest: &str) -> Key {
    Key::new(format!("HOOKOFF#{tenant}#{url_digest}"), "OFF")
}
