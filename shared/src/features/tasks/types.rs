//! The task types this binary was built with: a [`Registry`] of the handlers crate, supplied at start by the
//! binary (`AppState::provide`), since which handlers a function links is decided where it is built (see
//! `api/_registry.rs`). A binary that supplies none knows no task type.

use std::sync::Arc;

use cloud_agent_handlers::{Registry, Rejection};
use http::StatusCode;
use serde_json::Value as Json;

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

/// Writes the task types into the OpenAPI document: `TaskType` (the names, each described) and the `type` and
/// `task_type` fields that take one. The input schemas are any JSON Schema, which utoipa's model cannot hold:
/// [`insert_inputs`] writes them into the serialised document.
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

/// Adds each type's input schema to the serialised document as `TaskInput.<type>`, so a client generator sees
/// what this deployment (built-ins and plugins) accepts. Its `$defs` move beside it as `TaskInput.<type>.<def>`:
/// inside a component, `#/$defs/…` would resolve against the document's root, where there is no `$defs`.
pub fn insert_inputs(doc: &mut Json, registry: &Registry) {
    let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(Json::as_object_mut) else {
        return;
    };
    for t in registry.types() {
        let name = format!("TaskInput.{}", t.name());
        let mut schema = (t.descriptor().input_schema)();
        let prefix = format!("#/components/schemas/{name}.");
        rewrite_refs(&mut schema, &prefix);
        if let Some(object) = schema.as_object_mut() {
            // The document is already one JSON Schema dialect (OpenAPI 3.1's).
            object.remove("$schema");
            if let Some(Json::Object(defs)) = object.remove("$defs") {
                for (def, body) in defs {
                    schemas.insert(format!("{name}.{def}"), body);
                }
            }
        }
        schemas.insert(name, schema);
    }
    one_shape_per_type(schemas, registry);
}

/// Turns `CreateTask` into one shape per task type, told apart by `type` (a discriminated `oneOf`): a generated
/// client gets a typed payload for each (`CreateTask.echo` takes `TaskInput.echo`), and every input schema is
/// used by the operation that takes it.
fn one_shape_per_type(schemas: &mut serde_json::Map<String, Json>, registry: &Registry) {
    let Some(generic) = schemas.get("CreateTask").cloned() else { return };
    if registry.types().next().is_none() {
        return;
    }
    let mut mapping = serde_json::Map::new();
    let mut shapes = Vec::new();
    for t in registry.types() {
        let name = format!("CreateTask.{}", t.name());
        let mut shape = generic.clone();
        shape["description"] = Json::from(format!("A new `{}` task: {}", t.name(), t.descriptor().description));
        shape["properties"]["type"] =
            serde_json::json!({"type": "string", "enum": [t.name()], "description": "The task type."});
        shape["properties"]["payload"] =
            serde_json::json!({"$ref": format!("#/components/schemas/TaskInput.{}", t.name())});
        let reference = format!("#/components/schemas/{name}");
        mapping.insert(t.name().to_owned(), Json::from(reference.clone()));
        shapes.push(serde_json::json!({"$ref": reference}));
        schemas.insert(name, shape);
    }
    schemas.insert(
        "CreateTask".into(),
        serde_json::json!({
            "description": "A new task. Its shape depends on `type`: one per task type this deployment runs.",
            "oneOf": shapes,
            "discriminator": {"propertyName": "type", "mapping": mapping},
        }),
    );
}

/// Points every local `#/$defs/<name>` reference in `schema` at `<prefix><name>`.
fn rewrite_refs(schema: &mut Json, prefix: &str) {
    match schema {
        Json::Object(object) => {
            for (key, value) in object.iter_mut() {
                match value {
                    Json::String(target) if key == "$ref" => {
                        if let Some(def) = target.strip_prefix("#/$defs/") {
                            *target = format!("{prefix}{def}");
                        }
                    }
                    _ => rewrite_refs(value, prefix),
                }
            }
        }
        Json::Array(items) => items.iter_mut().for_each(|item| rewrite_refs(item, prefix)),
        _ => {}
    }
}
