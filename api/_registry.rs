//! The task types these functions are built with: the built-in handlers (the `cloud_agent_handlers` features
//! this package enables) and any plugins, added in [`plugins`]. Each function links only what its registry
//! names: the worker and the drain run every type; the routes that create tasks run the short ones inside the
//! request and queue the long ones; the routes that only read tasks link no handler code at all.
//!
//! Not a function: Vercel ignores files under `api/_*`; this is the functions' shared library
//! (`cloud_agent_functions`).

use std::process::ExitCode;

use cloud_agent::features::tasks::types::TaskTypes;
use cloud_agent::features::tasks::worker;
use cloud_agent::route::RouteSpec;
use cloud_agent_handlers::{Builder, Registry, builtin};

/// Plugins: one line per plugin crate (add the crate to this package's dependencies). Registration is a plain
/// function call, checked by the compiler and by `Builder::build` at start, so what a binary runs is exactly
/// what it links, with nothing found by link-time magic.
fn plugins(builder: Builder) -> Builder {
    #[cfg(feature = "example-plugin")]
    let builder = cloud_agent_example_csv::register(builder);
    builder
}

fn built(builder: Builder) -> Registry {
    plugins(builder).build().unwrap_or_else(|e| panic!("the task registry is inconsistent: {e}"))
}

/// Every type, runnable: the worker, the drain and `cloudagent serve`.
pub fn everything() -> Registry {
    built(builtin::register(Registry::builder()))
}

/// Routes that create tasks: short types run in the request, long ones are queued for the worker.
pub fn for_requests() -> Registry {
    built(builtin::register_for_requests(Registry::builder()))
}

/// Routes that list, read or cancel tasks: every type described, no built-in's code linked.
pub fn described() -> Registry {
    built(builtin::describe(Registry::builder()))
}

/// A function that creates tasks.
pub fn run_creating(routes: &[RouteSpec]) -> ExitCode {
    cloud_agent::runtime::run_function_with(routes, |state| state.provide(TaskTypes::new(for_requests())))
}

/// A function that reads tasks or lists their types.
pub fn run_reading(routes: &[RouteSpec]) -> ExitCode {
    cloud_agent::runtime::run_function_with(routes, |state| state.provide(TaskTypes::new(described())))
}

/// A function that runs queued work (the cron drain).
pub fn run_draining(routes: &[RouteSpec]) -> ExitCode {
    cloud_agent::runtime::run_function_with(routes, |state| state.provide(TaskTypes::new(everything())))
}

/// The SQS worker.
pub fn run_worker() -> ExitCode {
    worker::run(TaskTypes::new(everything()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runnable(registry: &Registry) -> Vec<&'static str> {
        registry.types().filter(cloud_agent_handlers::TaskType::runs_here).map(|t| t.name()).collect()
    }

    #[test]
    fn each_kind_of_function_links_what_it_runs_and_lists_every_type() {
        let (all, requests, reading) = (everything(), for_requests(), described());
        let names = |r: &Registry| r.types().map(|t| t.name()).collect::<std::collections::BTreeSet<_>>();
        assert_eq!(names(&all), names(&requests));
        assert_eq!(names(&all).len(), runnable(&all).len(), "the worker runs every type");
        // Long types are never run in a request: the route functions do not link them.
        for t in requests.types() {
            assert_eq!(t.runs_here(), !t.descriptor().long, "{}", t.name());
        }
        // Readers link no built-in's code (plugins register as they choose).
        assert!(
            reading
                .types()
                .filter(cloud_agent_handlers::TaskType::runs_here)
                .all(|t| builtin_names().all(|b| b != t.name()))
        );
    }

    /// Schemas compile lazily (at a type's first task); a broken one would refuse every input, so each is compiled
    /// here, built-ins and plugins alike.
    #[test]
    fn every_published_schema_compiles() {
        let all = everything();
        for t in all.types() {
            if let Err(e) = t.validate(&serde_json::json!({})) {
                assert!(!e.detail.contains("does not compile"), "{}: {}", t.name(), e.detail);
            }
        }
    }

    fn builtin_names() -> impl Iterator<Item = &'static str> {
        let builtins = builtin::describe(Registry::builder()).build().expect("the built-ins register");
        builtins.types().map(|t| t.name()).collect::<Vec<_>>().into_iter()
    }
}
