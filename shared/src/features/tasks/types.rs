//! The task types this binary was built with: a [`Registry`] of the handlers crate, supplied at start by the
//! binary (`AppState::provide`), since which handlers a function links is decided where it is built (see
//! `api/_registry.rs`). A binary that supplies none knows no task type.

use std::sync::Arc;

use cloud_agent_handlers::{Registry, Rejection};
use http::StatusCode;

use crate::http::Problem;
use crate::problem::PROBLEM_BASE;
use crate::state::{AppState, Part};

#[derive(Debug, Clone)]
pub struct TaskTypes(Arc<Registry>);

impl TaskTypes {
    pub fn new(registry: Registry) -> Self {
        Self(Arc::new(registry))
    }

    pub fn registry(&self) -> &Registry {
        &self.0
    }
}

impl Part for TaskTypes {
    fn build(_: &AppState) -> Self {
        tracing::warn!("this binary was started without task types: every task type is unknown here");
        Self::new(Registry::empty())
    }
}

/// A hook's (or handler's) refusal as the problem the caller sees: its own type (an absolute URI as given, a
/// slug under ours), its status, title, detail and pointer (under where the input sits in the request).
pub fn rejection_problem(rejection: &Rejection, input_pointer: &str) -> Problem {
    let status = StatusCode::from_u16(rejection.status()).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
    let mut problem = Problem::new(status, "", &rejection.title).detail(rejection.detail.clone());
    problem.kind =
        if rejection.kind.contains(':') { rejection.kind.clone() } else { format!("{PROBLEM_BASE}{}", rejection.kind) };
    problem.pointer = rejection.pointer.as_ref().map(|p| format!("{input_pointer}{p}"));
    problem
}

/// Writes the task types into the OpenAPI document: `TaskType` (the names, each described), the `type` and
/// `task_type` fields that take one, and a `TaskInput.<name>` for each type's input schema, so a client generator
/// sees what this deployment (built-ins and plugins) accepts. The input schemas are any JSON Schema, which
/// utoipa's model cannot hold: they are marked here and written in by [`splice_inputs`] on the text.
pub fn document(doc: &mut utoipa::openapi::OpenApi, registry: &Registry) {
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    use utoipa::openapi::{Ref, RefOr};
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    let described: Vec<String> =
        registry.types().map(|t| format!("- `{}`: {}", t.name(), t.descriptor().description)).collect();
    let task_type = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(registry.types().map(|t| t.name())))
        .description(Some(format!(
            "A task type this deployment runs (its input schema is `TaskInput.<type>`, and in GET \
             /api/capabilities):\n{}",
            described.join("\n")
        )));
    components.schemas.insert("TaskType".into(), RefOr::T(Schema::Object(task_type.build())));
    for t in registry.types() {
        let marker = Ref::new(format!("{INPUT_MARKER}{}", t.name()));
        components.schemas.insert(format!("TaskInput.{}", t.name()), RefOr::Ref(marker));
    }
    for (schema, field) in [("CreateTask", "type"), ("DelegateRequest", "task_type")] {
        if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(schema)
            && let Some(property) = object.properties.get_mut(field)
        {
            let description = match property {
                RefOr::T(Schema::Object(o)) => o.description.clone().unwrap_or_default(),
                _ => String::new(),
            };
            let mut reference = Ref::from_schema_name("TaskType");
            reference.description = description;
            *property = RefOr::Ref(reference);
        }
    }
}

const INPUT_MARKER: &str = "urn:cloud-agent:task-input:";

/// Replaces each input-schema marker [`document`] left in the pretty-printed `text` with the schema itself.
pub fn splice_inputs(text: &str, registry: &Registry) -> String {
    let mut out = text.to_owned();
    for t in registry.types() {
        let line = format!("\"$ref\": \"{INPUT_MARKER}{}\"", t.name());
        let Some(at) = out.find(&line) else { continue };
        let open = out[..at].rfind('{').unwrap_or(at);
        let close = at + out[at..].find('}').unwrap_or(0) + 1;
        let indent = out[..open].rsplit('\n').next().map_or(0, |l| l.len() - l.trim_start().len());
        let mut schema = (t.descriptor().input_schema)();
        // The document is already one JSON Schema dialect (OpenAPI 3.1's).
        if let Some(object) = schema.as_object_mut() {
            object.remove("$schema");
        }
        let pretty = serde_json::to_string_pretty(&schema).unwrap_or_else(|_| "{}".into());
        let pad = " ".repeat(indent);
        let indented = pretty.replace('\n', &format!("\n{pad}"));
        out.replace_range(open..close, &indented);
    }
    out
}
