//! The registry a deployment is built with: every task type it knows, which of them this binary can run, and the
//! hooks. Built once at start ([`Builder::build`] checks names and hook targets), then shared read-only.
//!
//! A type can be *runnable* here (its code is linked into this binary) or only *described* (its descriptor is:
//! the type is listed and its input validated, and it runs on the queue, in the worker that links its code). That
//! is how a route function stays small while the worker runs everything.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use crate::contract::{Context, Descriptor, Failure, Handler, Rejection, TaskInfo};
use crate::hooks::Hook;
use crate::input::InputError;

/// A registration mistake, found at start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("task type {0:?} is registered twice")]
    Duplicate(&'static str),
    #[error("task type {0:?} is not a valid name: 1-64 of a-z, 0-9 and '-', starting with a letter")]
    BadName(&'static str),
    #[error("hook {hook:?} is declared for task type {kind:?}, which is not registered")]
    HookForUnknown { hook: &'static str, kind: String },
    #[error("task type {name:?}: max_timeout_ms must be at least default_timeout_ms, and both above 0")]
    BadLimits { name: &'static str },
}

struct Entry {
    descriptor: &'static Descriptor,
    handler: Option<Arc<dyn Handler>>,
    hooks: Vec<Arc<dyn Hook>>,
    /// The input schema, compiled on first use.
    schema: OnceLock<Result<Arc<jsonschema::Validator>, String>>,
}

/// One registered task type, as found by name.
#[derive(Clone, Copy)]
pub struct TaskType<'r> {
    entry: &'r Entry,
    registry: &'r Registry,
}

impl std::fmt::Debug for TaskType<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskType")
            .field("name", &self.entry.descriptor.name)
            .field("runs_here", &self.runs_here())
            .finish_non_exhaustive()
    }
}

/// Every task type of a deployment.
pub struct Registry {
    entries: Vec<Entry>,
    by_name: HashMap<&'static str, usize>,
    global_hooks: Vec<Arc<dyn Hook>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("types", &self.names()).finish_non_exhaustive()
    }
}

/// Collects registrations; [`Builder::build`] checks them.
#[derive(Default)]
pub struct Builder {
    entries: Vec<(&'static Descriptor, Option<Arc<dyn Handler>>)>,
    global_hooks: Vec<Arc<dyn Hook>>,
    hooks_for: Vec<(String, Arc<dyn Hook>)>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder").field("types", &self.entries.len()).finish_non_exhaustive()
    }
}

impl Builder {
    /// A type this binary runs.
    #[must_use]
    pub fn handler(mut self, handler: impl Handler) -> Self {
        let handler: Arc<dyn Handler> = Arc::new(handler);
        self.entries.push((handler.descriptor(), Some(handler)));
        self
    }

    /// A type this binary lists and validates but does not run: its tasks are queued for a binary that does.
    #[must_use]
    pub fn describe(mut self, descriptor: &'static Descriptor) -> Self {
        self.entries.push((descriptor, None));
        self
    }

    /// A hook around every task type.
    #[must_use]
    pub fn hook(mut self, hook: impl Hook) -> Self {
        self.global_hooks.push(Arc::new(hook));
        self
    }

    /// A hook around one task type (registered before or after it).
    #[must_use]
    pub fn hook_for(mut self, kind: &str, hook: impl Hook) -> Self {
        self.hooks_for.push((kind.to_owned(), Arc::new(hook)));
        self
    }

    pub fn build(self) -> Result<Registry, RegistryError> {
        let mut entries: Vec<Entry> = Vec::with_capacity(self.entries.len());
        let mut by_name = HashMap::new();
        for (descriptor, handler) in self.entries {
            if !valid_name(descriptor.name) {
                return Err(RegistryError::BadName(descriptor.name));
            }
            let limits = descriptor.limits;
            if limits.default_timeout_ms == 0 || limits.max_timeout_ms < limits.default_timeout_ms {
                return Err(RegistryError::BadLimits { name: descriptor.name });
            }
            if by_name.insert(descriptor.name, entries.len()).is_some() {
                return Err(RegistryError::Duplicate(descriptor.name));
            }
            entries.push(Entry { descriptor, handler, hooks: Vec::new(), schema: OnceLock::new() });
        }
        for (kind, hook) in self.hooks_for {
            let Some(&at) = by_name.get(kind.as_str()) else {
                return Err(RegistryError::HookForUnknown { hook: hook.name(), kind });
            };
            entries[at].hooks.push(hook);
        }
        Ok(Registry { entries, by_name, global_hooks: self.global_hooks })
    }
}

fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=64).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

impl Registry {
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A registry that knows no task type (a binary built without any).
    pub fn empty() -> Self {
        Self { entries: Vec::new(), by_name: HashMap::new(), global_hooks: Vec::new() }
    }

    pub fn find(&self, name: &str) -> Option<TaskType<'_>> {
        self.by_name.get(name).map(|&at| TaskType { entry: &self.entries[at], registry: self })
    }

    /// Every type, in registration order (the order the listing shows).
    pub fn types(&self) -> impl Iterator<Item = TaskType<'_>> {
        self.entries.iter().map(|entry| TaskType { entry, registry: self })
    }

    /// The names, for error messages ("this deployment runs: ...").
    pub fn names(&self) -> String {
        if self.entries.is_empty() {
            return "(no task types)".into();
        }
        self.entries.iter().map(|e| e.descriptor.name).collect::<Vec<_>>().join(", ")
    }

    /// The global hooks' names.
    pub fn global_hooks(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.global_hooks.iter().map(|h| h.name())
    }
}

impl<'r> TaskType<'r> {
    pub fn descriptor(&self) -> &'static Descriptor {
        self.entry.descriptor
    }

    pub fn name(&self) -> &'static str {
        self.entry.descriptor.name
    }

    /// The circuit breakers the type's handler keeps (none when its code is not linked here).
    pub fn breakers(&self) -> Vec<Arc<cloud_agent_breaker::Breaker>> {
        self.entry.handler.as_ref().map(|h| h.breakers()).unwrap_or_default()
    }

    /// Whether this binary links the type's code; if not, its tasks go to the queue.
    pub fn runs_here(&self) -> bool {
        self.entry.handler.is_some()
    }

    /// The hooks around this type: its own first, then the global ones.
    fn hooks(&self) -> impl Iterator<Item = &'r Arc<dyn Hook>> {
        self.entry.hooks.iter().chain(self.registry.global_hooks.iter())
    }

    /// The names of the hooks around this type.
    pub fn hook_names(&self) -> Vec<&'static str> {
        self.hooks().map(|h| h.name()).collect()
    }

    /// Checks `input` against the published schema (compiled once per instance), so a bad input is refused with
    /// 422 before anything is stored.
    pub fn validate(&self, input: &Value) -> Result<(), InputError> {
        let descriptor = self.entry.descriptor;
        let compiled = self.entry.schema.get_or_init(|| {
            jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .build(&(descriptor.input_schema)())
                .map(Arc::new)
                .map_err(|e| format!("the {} handler's schema does not compile: {e}", descriptor.name))
        });
        let validator = compiled.as_ref().map_err(|e| InputError::new("", e.clone()))?;
        match validator.iter_errors(input).next() {
            None => Ok(()),
            Some(error) => Err(InputError::new(
                error.instance_path().to_string(),
                format!("{error} (see the {} schema in GET /api/capabilities)", descriptor.name),
            )),
        }
    }

    /// Runs every `before` hook; the first refusal wins. A hook that panics refuses (fail closed).
    pub fn before(&self, task: &TaskInfo, input: &Value) -> Result<(), Rejection> {
        for hook in self.hooks() {
            match catch_unwind(AssertUnwindSafe(|| hook.before(task, input))) {
                Ok(Ok(())) => {}
                Ok(Err(rejection)) => return Err(rejection),
                Err(_) => {
                    tracing::error!(hook = hook.name(), kind = %task.kind, "a before hook panicked");
                    return Err(Rejection::new(
                        500,
                        "hook-failed",
                        "Hook failed",
                        format!("the {} hook failed while checking this task; nothing was created", hook.name()),
                    ));
                }
            }
        }
        Ok(())
    }

    /// One attempt: the handler on its own task (a panic fails the task, and dropping the future stops the
    /// handler at its next await; CPU work it put on the blocking pool finishes on its own), then `after` or
    /// `on_error` hooks. `None` if this binary does not run the type.
    pub async fn run(&self, cx: Context, input: Value) -> Option<Result<Value, Failure>> {
        let handler = self.entry.handler.clone()?;
        let task = cx.task().clone();
        let running = AbortOnDrop(tokio::spawn(async move { handler.run(&cx, input).await }));
        let outcome = match running.join().await {
            Ok(outcome) => outcome,
            Err(e) => Err(stopped(&task, &e)),
        };
        Some(match outcome {
            Ok(mut result) => {
                for hook in self.hooks() {
                    if catch_unwind(AssertUnwindSafe(|| hook.after(&task, &mut result))).is_err() {
                        tracing::error!(hook = hook.name(), kind = %task.kind, "an after hook panicked");
                    }
                }
                Ok(result)
            }
            Err(failure) => {
                self.failed(&task, &failure);
                Err(failure)
            }
        })
    }

    /// Tells the `on_error` hooks about a failure the engine saw (a deadline that passed).
    pub fn failed(&self, task: &TaskInfo, failure: &Failure) {
        for hook in self.hooks() {
            if catch_unwind(AssertUnwindSafe(|| hook.on_error(task, failure))).is_err() {
                tracing::error!(hook = hook.name(), kind = %task.kind, "an on_error hook panicked");
            }
        }
    }
}

/// A handler that panicked: a bug, not bad luck, so the attempt is not retried; the panic's message goes to the
/// log, not to the tenant.
pub(crate) fn stopped(task: &TaskInfo, error: &dyn std::fmt::Display) -> Failure {
    tracing::error!(kind = %task.kind, task = %task.id, error = %error, "a task handler panicked");
    Failure::Rejected(Rejection::new(
        500,
        "handler-failed",
        "Handler failed",
        format!("the {} handler failed unexpectedly; the task was not completed", task.kind),
    ))
}

/// A spawned task that is aborted when its waiter goes away (a deadline fired), so a handler's async work does not
/// outlive its task.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn join(mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::contract::{INPUT_FAILURE, Limits};
    use crate::outbound::{Outbound, Policy};

    static SLEEPY: Descriptor = Descriptor {
        name: "sleepy",
        description: "sleeps, then answers; or panics",
        input_schema: || json!({"type": "object", "properties": {"ms": {"type": "integer"}}}),
        limits: Limits { default_timeout_ms: 1_000, max_timeout_ms: 5_000 },
        long: false,
        failures: &[INPUT_FAILURE],
    };

    struct Sleepy(Arc<Mutex<bool>>);

    #[async_trait::async_trait]
    impl Handler for Sleepy {
        fn descriptor(&self) -> &'static Descriptor {
            &SLEEPY
        }

        async fn run(&self, _cx: &Context, input: Value) -> Result<Value, Failure> {
            let ms = input["ms"].as_u64().unwrap_or(0);
            assert!(ms != 13, "unlucky");
            tokio::time::sleep(Duration::from_millis(ms)).await;
            *self.0.lock().unwrap() = true;
            Ok(json!({"slept": ms}))
        }
    }

    struct Seen(Arc<Mutex<Vec<String>>>);

    impl Hook for Seen {
        fn name(&self) -> &'static str {
            "seen"
        }
        fn before(&self, task: &TaskInfo, input: &Value) -> Result<(), Rejection> {
            self.0.lock().unwrap().push(format!("before {}", task.kind));
            if input["ms"] == 7 {
                Err(Rejection::new(403, "no-sevens", "No sevens", "seven is refused"))
            } else {
                Ok(())
            }
        }
        fn after(&self, _task: &TaskInfo, result: &mut Value) {
            result["seen"] = json!(true);
        }
        fn on_error(&self, _task: &TaskInfo, failure: &Failure) {
            self.0.lock().unwrap().push(format!("error {failure}"));
        }
    }

    fn info() -> TaskInfo {
        TaskInfo { id: "t_1".into(), tenant: "acme".into(), kind: "sleepy".into(), attempt: 1 }
    }

    fn context() -> Context {
        Context::new(Outbound::new(Policy::default()), info())
    }

    static BAD: Descriptor = Descriptor { name: "Bad Name", ..SLEEPY };

    #[test]
    fn registration_mistakes_are_found_at_start() {
        let dup = Registry::builder().describe(&SLEEPY).describe(&SLEEPY).build();
        assert_eq!(dup.unwrap_err(), RegistryError::Duplicate("sleepy"));
        let unknown = Registry::builder().hook_for("nope", Seen(Arc::default())).build();
        assert!(matches!(unknown.unwrap_err(), RegistryError::HookForUnknown { kind, .. } if kind == "nope"));
        assert_eq!(Registry::builder().describe(&BAD).build().unwrap_err(), RegistryError::BadName("Bad Name"));
    }

    #[tokio::test]
    async fn hooks_run_around_the_handler_and_a_described_type_does_not_run() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let ran = Arc::new(Mutex::new(false));
        let registry =
            Registry::builder().handler(Sleepy(ran.clone())).hook_for("sleepy", Seen(log.clone())).build().unwrap();
        let kind = registry.find("sleepy").unwrap();
        assert_eq!(kind.before(&info(), &json!({"ms": 7})).unwrap_err().kind, "no-sevens");
        assert!(kind.before(&info(), &json!({"ms": 1})).is_ok());
        let result = kind.run(context(), json!({"ms": 1})).await.unwrap().unwrap();
        assert_eq!(result, json!({"slept": 1, "seen": true}));
        let failed = kind.run(context(), json!({"ms": 13})).await.unwrap().unwrap_err();
        assert!(
            matches!(failed, Failure::Rejected(ref r) if r.kind == "handler-failed" && !r.detail.contains("unlucky")),
            "{failed:?}"
        );
        assert_eq!(log.lock().unwrap().len(), 3, "{log:?}");
        assert!(*ran.lock().unwrap());

        let described = Registry::builder().describe(&SLEEPY).build().unwrap();
        let kind = described.find("sleepy").unwrap();
        assert!(!kind.runs_here());
        assert!(kind.run(context(), json!({})).await.is_none());
        assert_eq!(kind.validate(&json!({"ms": "x"})).unwrap_err().pointer, "/ms");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_run_stops_the_handler() {
        let ran = Arc::new(Mutex::new(false));
        let registry = Registry::builder().handler(Sleepy(ran.clone())).build().unwrap();
        let kind = registry.find("sleepy").unwrap();
        let cut = tokio::time::timeout(Duration::from_millis(10), kind.run(context(), json!({"ms": 1000}))).await;
        assert!(cut.is_err());
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!*ran.lock().unwrap(), "the handler went on after its deadline");
    }
}
